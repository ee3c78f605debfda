"""Training hooks: checkpoints, log lines with a JSON-lines record, VisualDL scalars, the curves plot.

Each hook is a :class:`simplecv.core.trainer.HookBase` called by the trainer ``before_train``,
``after_step`` and ``after_train``; :func:`simplecv.engine.build.build_hooks` makes the list a
config asks for. The evaluation hook lives in :mod:`simplecv.engine.evaluation_hook`.
"""

import logging
import math
import os
import shutil
from collections import deque

from simplecv.core.checkpoint import atomic_write, save_checkpoint
from simplecv.core.errors import OutputError
from simplecv.core.trainer import HookBase, unwrap_model
from simplecv.util.jsonl import append_record, keep_records_until, read_records
from simplecv.util.output_guard import low_space_warning, writing

_logger = logging.getLogger('factseg.train')


class CheckpointHook(HookBase):
    """Save the trainer's state every ``interval`` steps and at the end (see :mod:`simplecv.core.checkpoint`).

    Args:
        model_dir: output folder.
        interval: steps between checkpoints (0 or None: only at the end).
    """

    def __init__(self, model_dir, interval):
        self.model_dir = model_dir
        self.interval = int(interval or 0)
        self._saved_step = None

    def before_train(self, trainer):
        """Remember the starting step and warn when ``model_dir``'s disk may not hold a checkpoint."""
        # The state at the start is either a checkpoint already or the untrained model: not saved again.
        self._saved_step = trainer.global_step
        # A checkpoint holds the weights and about as much optimizer state (SGD momentum), and the
        # old file stays until the new one is complete.
        weights = sum(int(v.size) * v.element_size() for v in unwrap_model(trainer.model).state_dict().values())
        warning = low_space_warning(self.model_dir, 2 * weights, 'a checkpoint')
        if warning:
            _logger.warning(warning)

    def after_step(self, trainer):
        """Save a checkpoint every ``interval`` steps.

        Raises:
            OutputError: the checkpoint could not be written.
        """
        if self.interval and trainer.global_step % self.interval == 0:
            self._save(trainer)

    def after_train(self, trainer):
        """Save the final state unless it was saved at this step already (or is the starting state)."""
        if self._saved_step != trainer.global_step:
            self._save(trainer)

    def _save(self, trainer):
        save_checkpoint(self.model_dir, trainer.state_dict())
        self._saved_step = trainer.global_step


class LoggerHook(HookBase):
    """Log a progress line every ``interval`` steps and append it to ``model_dir/train_log.jsonl``.

    The line holds the losses averaged over the last ``interval`` steps (as SimpleCV's logger
    smooths them), the learning rate and gradient norm of the last step, the average seconds per
    step, samples per second and data time, and the ETA. The JSON-lines file (one record per
    logged step) feeds :class:`PlotHook`; on resume the records after the resumed step are dropped.

    Args:
        interval: steps between lines.
        model_dir: folder of ``train_log.jsonl``, or None for log lines only.
    """

    FILE_NAME = 'train_log.jsonl'

    def __init__(self, interval, model_dir=None):
        self.interval = max(int(interval), 1)
        self.path = os.path.join(model_dir, self.FILE_NAME) if model_dir else None
        self._window = deque(maxlen=self.interval)

    def before_train(self, trainer):
        """Drop the JSON-lines records after the resumed step and log the step range."""
        self._window.clear()
        if self.path and os.path.isfile(self.path):
            keep_records_until(self.path, trainer.global_step, 'training log')
        _logger.info('training from step %d to %d', trainer.global_step, trainer.num_iters)

    def after_step(self, trainer):
        """Add the step to the window; every ``interval`` steps and at the last, log and record the averages."""
        result = trainer.last_step
        self._window.append(result)
        step = trainer.global_step
        if step % self.interval and step != trainer.num_iters:
            return
        window = list(self._window)
        step_time = sum(r.step_time for r in window) / len(window)
        data_time = sum(r.data_time for r in window) / len(window)
        samples = sum(r.batch_size for r in window) / max(sum(r.step_time for r in window), 1e-9)
        losses = {name: sum(r.losses[name] for r in window) / len(window) for name in sorted(result.losses)}
        _logger.info(
            'step %d/%d  %s  lr %.6g  grad_norm %.3g  %.3f s/it  %.2f samples/s  data %.3f s  eta %s%s',
            step,
            trainer.num_iters,
            '  '.join('%s %.4f' % kv for kv in losses.items()),
            result.lr,
            result.grad_norm,
            step_time,
            samples,
            data_time,
            _format_seconds(step_time * (trainer.num_iters - step)),
            '  skipped %d' % trainer.skipped_steps if trainer.skipped_steps else '',
        )
        if self.path:
            record = dict(
                step=step,
                loss=sum(losses.values()),
                lr=result.lr,
                grad_norm=result.grad_norm,
                s_per_iter=step_time,
                samples_per_s=samples,
                data_time=data_time,
                skipped_steps=trainer.skipped_steps,
                **losses,
            )
            append_record(self.path, record, 'training log')


def _format_seconds(seconds):
    seconds = int(round(seconds))
    return '%d:%02d:%02d' % (seconds // 3600, seconds // 60 % 60, seconds % 60)


class VisualDLHook(HookBase):
    """Write loss, learning-rate and speed scalars for VisualDL (``visualdl --logdir model_dir``).

    Args:
        model_dir: log folder.
        interval: steps between scalars (SimpleCV's ``tensorboard_interval_step``).
    """

    def __init__(self, model_dir, interval):
        self.model_dir = model_dir
        self.interval = max(int(interval), 1)
        self._writer = None
        self._written = 0

    def before_train(self, trainer):
        """Open the VisualDL writer (a warning and no scalars when visualdl is not installed)."""
        try:
            from visualdl import LogWriter
        except ImportError:
            _logger.warning('visualdl is not installed: no scalars are written to %s', self.model_dir)
            return
        with writing(self.model_dir, 'VisualDL log'):
            self._writer = LogWriter(logdir=self.model_dir)
        # VisualDL creates the file with its first record.
        self._written = os.path.getsize(self._writer.file_name) if os.path.exists(self._writer.file_name) else 0

    def after_step(self, trainer):
        """Every ``interval`` steps write the finite losses, learning rate, gradient norm and timings.

        Raises:
            OutputError: the records did not reach the file (VisualDL's writer thread failed).
        """
        if self._writer is None or trainer.global_step % self.interval:
            return
        result = trainer.last_step
        scalars = dict(('loss/%s' % k, v) for k, v in result.losses.items())
        scalars.update(
            {
                'loss/total_loss': result.total_loss,
                'train/lr': result.lr,
                'train/grad_norm': result.grad_norm,
                'time/s_per_iter': result.step_time,
                'time/data_time': result.data_time,
                'train/skipped_steps': trainer.skipped_steps,
            }
        )
        finite = {tag: value for tag, value in scalars.items() if math.isfinite(value)}
        for tag, value in finite.items():
            self._writer.add_scalar(tag=tag, value=value, step=trainer.global_step)
        if finite:
            self._check_written()

    def _check_written(self):
        """Raise :class:`OutputError` when the records just added did not reach the file.

        VisualDL writes in a background thread that only prints a warning when writing fails; its
        ``flush`` waits for that thread, and the file must have grown.
        """
        path = self._writer.file_name
        with writing(path, 'VisualDL log'):
            self._writer.flush()
        size = os.path.getsize(path) if os.path.exists(path) else 0
        if size <= self._written:
            free = shutil.disk_usage(self.model_dir).free
            raise OutputError(
                'cannot write the VisualDL log %s (its writer thread failed; %.0f MB free on that disk):'
                ' free space or choose another --model_dir' % (path, free / 2**20)
            )
        self._written = size

    def after_train(self, trainer):
        """Close the writer."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            with writing(writer.file_name, 'VisualDL log'):
                writer.close()


class PlotHook(HookBase):
    """At the end, draw the logged loss, the evaluations' mIoU and the learning rate.

    The figure goes to ``model_dir/training_curves.png``.
    """

    FILE_NAME = 'training_curves.png'

    def __init__(self, model_dir, title=None):
        self.model_dir = model_dir
        self.title = title

    def after_train(self, trainer):
        """Draw the curves from ``train_log.jsonl`` (and the evaluation log); nothing when no step was logged."""
        from simplecv.engine.evaluation_hook import EVAL_LOG
        from simplecv.util.plot import plot_training_curves

        log_path = os.path.join(self.model_dir, LoggerHook.FILE_NAME)
        records = read_records(log_path) if os.path.isfile(log_path) else []
        if not records:
            return
        eval_path = os.path.join(self.model_dir, EVAL_LOG)
        evaluations = read_records(eval_path) if os.path.isfile(eval_path) else []
        path = os.path.join(self.model_dir, self.FILE_NAME)
        with writing(path, 'training curves'):
            atomic_write(
                path,
                lambda tmp: plot_training_curves(
                    [r['step'] for r in records],
                    [r['loss'] for r in records],
                    [r['lr'] for r in records],
                    tmp,
                    self.title,
                    [r['step'] for r in evaluations],
                    [r['miou'] for r in evaluations],
                ),
            )
        _logger.info('training curves: %s', path)
