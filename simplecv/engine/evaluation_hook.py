"""Evaluation during training: score ``data.test`` with the official procedure, keep the best model.

The official keys ``train.eval_per_epoch`` and ``train.eval_after_train`` and the port's
``train.eval_interval_iter N`` choose when. Each evaluation runs the model being trained (eval
mode, no gradients, dygraph, batch 1) through :class:`~simplecv.engine.evaluator.Evaluator` over
the images of ``data.test.params.image_dir``/``mask_dir`` with its ``patch_config`` windows, so
memory is bounded by one window row of sums whatever the image size. It logs mIoU and the
per-class IoU, appends a record to ``model_dir/eval_log.jsonl`` (drawn by the curves plot),
adds VisualDL scalars, and when the mIoU beats the best so far writes ``model-best.pdparams``
and its entry in ``checkpoint_info.json`` (kept across resumes). With several processes every
process scores its share of the images and process 0 writes.
"""

import logging
import os

from simplecv.core.errors import ConfigError
from simplecv.core.trainer import HookBase, unwrap_model
from simplecv.util.jsonl import append_record, keep_records_until
from simplecv.util.output_guard import writing

_logger = logging.getLogger('factseg.train')
EVAL_LOG = 'eval_log.jsonl'


def evaluation_steps(train, steps_per_epoch):
    """Return ``(interval, after_train)``: steps between evaluations (0: none) and whether to evaluate at the end.

    ``eval_interval_iter`` wins over ``eval_per_epoch`` (one epoch = ``steps_per_epoch`` steps).
    """
    interval = train.get('eval_interval_iter') or 0
    if not interval and train.get('eval_per_epoch', False):
        interval = steps_per_epoch
    return int(interval), bool(train.get('eval_after_train', False))


def build_evaluation_hook(config, model_dir, steps_per_epoch, write=True):
    """Return the :class:`EvaluationHook` the config asks for, or None.

    Args:
        config: the training config (``train`` and ``data.test``).
        model_dir: the run's folder.
        steps_per_epoch: batches in one pass over the training data.
        write: whether this process writes logs and the best model (process 0).

    Raises:
        ConfigError: evaluation is asked for but ``data.test`` is missing or has no folders.
    """
    from simplecv.api.components import DATALOADER
    from simplecv.inference.sliding_window import normalization_from_config

    interval, after_train = evaluation_steps(config.train, steps_per_epoch)
    if not interval and not after_train:
        return None
    test = config.data.get('test')
    if not test or not test.get('params', {}).get('image_dir') or not test.params.get('mask_dir'):
        raise ConfigError(
            'train.eval_interval_iter/eval_per_epoch/eval_after_train evaluate data.test, but '
            'data.test.params has no image_dir and mask_dir; add them (a validation split) or '
            'turn the evaluation off'
        )
    loader = DATALOADER[test.type]
    patch = test.params.get('patch_config', {})
    mean, std = normalization_from_config(config)
    return EvaluationHook(
        lambda: loader.evaluation_items(test.params),
        model_dir,
        interval,
        after_train,
        dict(
            num_classes=len(loader.CLASS_NAMES),
            patch_size=patch.get('patch_size', 896),
            stride=patch.get('stride', 512),
            mean=mean,
            std=std,
            class_names=loader.CLASS_NAMES,
            colors=loader.COLORS,
        ),
        write=write,
    )


class EvaluationHook(HookBase):
    """Evaluate the model every ``interval`` steps (and at the end) and keep the best one.

    Args:
        list_items: ``() -> items`` for :meth:`Evaluator.run` (called once, before training, so a
            bad validation file stops the run before the first step).
        model_dir: the run's folder (``eval_log.jsonl``, ``model-best.pdparams``, VisualDL).
        interval: steps between evaluations (0: none).
        after_train: also evaluate after the last step (unless stopped early).
        evaluator_options: keyword arguments of :class:`~simplecv.engine.evaluator.Evaluator` besides
            ``forward`` (``num_classes``, ``patch_size``, ``stride``, ``mean``, ``std``, ``class_names``,
            ``colors``): the sliding-window procedure and the classes.
        write: write logs and the best model (process 0 only).

    Attributes:
        best (dict or None): ``{'global_step', 'miou'}`` of the best evaluation so far.
        history (list): one record per evaluation of this run, ``{'step', 'miou', 'miou_fg', 'iou'}``.
    """

    def __init__(self, list_items, model_dir, interval, after_train, evaluator_options, write=True):
        self.list_items = list_items
        self.model_dir = model_dir
        self.interval = int(interval)
        self.after_train_too = after_train
        self.evaluator_options = dict(evaluator_options)
        self.write = write
        self.items = None
        self.best = None
        self.history = []
        self._evaluated_step = None

    def before_train(self, trainer):
        """List the validation items, read the best entry so far and drop records after the resumed step.

        Args:
            trainer: the :class:`simplecv.core.trainer.Trainer` about to run.
        """
        from simplecv.core.checkpoint import best_entry

        self.items = self.list_items()
        self._evaluated_step = None
        best = best_entry(self.model_dir)
        self.best = None if best is None else dict(global_step=best['global_step'], miou=best['miou'])
        if self.write:
            log = os.path.join(self.model_dir, EVAL_LOG)
            if os.path.isfile(log):
                keep_records_until(log, trainer.global_step, 'evaluation log')
        _logger.info(
            'evaluating %d validation images every %s%s; best so far: %s',
            len(self.items),
            '%d steps' % self.interval if self.interval else 'never',
            ' and after the last step' if self.after_train_too else '',
            'none' if self.best is None else 'mIoU %.4f at step %d' % (self.best['miou'], self.best['global_step']),
        )

    def after_step(self, trainer):
        """Evaluate every ``interval`` steps (:meth:`evaluate`)."""
        if self.interval and trainer.global_step % self.interval == 0:
            self.evaluate(trainer)

    def after_train(self, trainer):
        """Evaluate the final model when asked and not done at this step yet (not after an early stop); log the best."""
        if self.after_train_too and not trainer.stopped_early and self._evaluated_step != trainer.global_step:
            self.evaluate(trainer)
        if self.best is not None:
            _logger.info(
                'best: mIoU %.4f at step %d (%s)',
                self.best['miou'],
                self.best['global_step'],
                os.path.join(self.model_dir, 'model-best.pdparams'),
            )

    def evaluate(self, trainer):
        """Score the trainer's model now; log, record and keep it if it is the best. Returns the result dict."""
        from simplecv.engine.evaluator import Evaluator
        from simplecv.inference.fast_path import DygraphForward

        model = unwrap_model(trainer.model)
        model.eval()
        try:
            evaluator = Evaluator(DygraphForward(model), **self.evaluator_options)
            result = evaluator.run(self.items, desc='eval step %d' % trainer.global_step)
        finally:
            trainer.enter_train_mode()
        step = trainer.global_step
        self._evaluated_step = step
        record = dict(
            step=step, miou=result['miou'], miou_fg=result['miou_fg'], iou=result['iou'], seconds=result['seconds']
        )
        self.history.append(record)
        _logger.info(
            'evaluation at step %d: mIoU %s, foreground mIoU %s (%.1f s)\n%s',
            step,
            _pct(result['miou']),
            _pct(result['miou_fg']),
            result['seconds'],
            result['table'],
        )
        improved = result['miou'] is not None and (self.best is None or result['miou'] > self.best['miou'])
        if improved:
            self.best = dict(global_step=step, miou=result['miou'])
        if self.write:
            self._record(trainer, record, result, improved)
        return result

    def _record(self, trainer, record, result, improved):
        from simplecv.core.checkpoint import save_best
        from simplecv.engine.evaluator import write_iou_scalars

        append_record(os.path.join(self.model_dir, EVAL_LOG), record, 'evaluation log')
        with writing(self.model_dir, 'VisualDL log'):
            write_iou_scalars(self.model_dir, result, trainer.global_step)
        if improved:
            state = dict(model=unwrap_model(trainer.model).state_dict(), **trainer.state_info)
            path = save_best(self.model_dir, state, trainer.global_step, result['miou'])
            _logger.info('new best mIoU %.4f: saved %s', result['miou'], path)


def _pct(value):
    return 'n/a' if value is None else '%.2f%%' % (100 * value)
