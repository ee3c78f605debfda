"""The iteration loop: forward, (AMP) backward, clip, step, learning rate, and hooks.

One step follows SimpleCV's ``Launcher.train_iters`` (spec §8.3): the model returns a dict in
which every key ending in ``loss`` is a loss (non-scalars are averaged), their sum is
back-propagated, the gradients are clipped by their global norm inside the optimizer, the
optimizer steps, and the global step grows by one. The learning rate of step ``g`` is
``lr_schedule.step(g, optimizer)``, set just before the update (the schedule carries the
official one-step lag). A step whose gradients hold Inf or NaN is skipped and counted, with
or without a loss scaler; it still counts as a step, as apex's skipped steps do.

The loop knows no model names. Logging, checkpoints, VisualDL, evaluation and the final plot are
hooks (:class:`HookBase`, implemented in :mod:`simplecv.engine.hooks`) called ``before_train``,
``after_step`` and ``after_train``.
"""

import math
import random
import time

import numpy as np
import paddle

from simplecv.core.checkpoint import load_optimizer_state_by_name, optimizer_state_by_name
from simplecv.core.errors import DataError, FactSegError
from simplecv.util.logger import get_logger
from simplecv.util.state_dict import load_state_dict_strict

_logger = get_logger('factseg.train')
AMP_LEVELS = ('O0', 'O1', 'O2')
AMP_DTYPES = ('float16', 'bfloat16')


def unwrap_model(model):
    """Return the layer inside a ``paddle.DataParallel`` wrapper (or ``model`` itself)."""
    return model._layers if isinstance(model, paddle.DataParallel) else model


def _checked_amp(level, dtype):
    """Return ``(level, dtype)`` if they are an AMP level and dtype Paddle knows; raise ``ValueError`` otherwise."""
    if level not in AMP_LEVELS or dtype not in AMP_DTYPES:
        raise ValueError(
            'AMP level must be one of %s and dtype one of %s, got %r and %r' % (AMP_LEVELS, AMP_DTYPES, level, dtype)
        )
    return level, dtype


def prepare_amp(model, optimizer, level, dtype='float16'):
    """Set up mixed precision; call before wrapping the model in ``DataParallel``.

    ``O1`` casts white-listed ops (convolutions) inside ``auto_cast`` and keeps fp32 weights;
    ``O2`` also stores the weights in ``dtype`` with fp32 master copies in the optimizer. float16
    runs get a dynamic loss scaler with Paddle's defaults (2^16, x2 every 2000 clean steps, /2 on
    overflow), the same as apex. bfloat16 needs no scaling. On a CPU Paddle turns AMP and the
    scaler off by itself and the run is fp32.

    Args:
        model: the ``paddle.nn.Layer``.
        optimizer: its optimizer.
        level: ``'O0'`` (fp32), ``'O1'`` or ``'O2'``.
        dtype: ``'float16'`` or ``'bfloat16'``.

    Returns:
        tuple: ``(model, optimizer, scaler)``; ``scaler`` is a ``paddle.amp.GradScaler`` or None.

    Raises:
        ValueError: an unknown level or dtype.
    """
    _checked_amp(level, dtype)
    if level == 'O0':
        return model, optimizer, None
    if level == 'O2':
        model, optimizer = paddle.amp.decorate(models=model, optimizers=optimizer, level='O2', dtype=dtype)
    scaler = paddle.amp.GradScaler() if dtype == 'float16' else None
    return model, optimizer, scaler


def global_grad_norm(parameters):
    """Return the global L2 norm of the gradients of ``parameters`` as a Python float (Inf/NaN kept).

    float16/bfloat16/float32 gradients are squared and summed in float32, float64 ones in
    float64 (as ``ClipGradByGlobalNorm`` does); the per-tensor sums are added in float64.
    """
    squares = []
    for param in parameters:
        grad = param.grad
        if grad is None:
            continue
        if grad.dtype != paddle.float64:
            grad = grad.astype('float32')
        squares.append(paddle.sum(paddle.square(grad)).astype('float64'))
    if not squares:
        return 0.0
    return float(paddle.sqrt(paddle.add_n(squares)))


def _on_cpu():
    return paddle.get_device().startswith('cpu')


def _rng_state():
    numpy_state = np.random.get_state(legacy=False)
    numpy_state['state']['key'] = numpy_state['state']['key'].tolist()
    state = dict(python=random.getstate(), numpy=numpy_state, cpu=paddle.get_rng_state('cpu'))
    if not _on_cpu():
        state['device'] = paddle.get_rng_state()
    return state


def _set_rng_state(state):
    random.setstate(tuple(state['python']))
    numpy_state = dict(state['numpy'])
    numpy_state['state'] = dict(numpy_state['state'], key=np.asarray(numpy_state['state']['key'], dtype=np.uint32))
    np.random.set_state(numpy_state)
    paddle.set_rng_state(state['cpu'], 'cpu')
    if 'device' in state and not _on_cpu():
        try:
            paddle.set_rng_state(state['device'])
        except (ValueError, RuntimeError) as exc:
            _logger.warning('device random state not restored (%s); dropout-free models are unaffected', exc)


class StepResult:
    """What one step did, for hooks.

    Attributes:
        losses (dict): ``{name: float}`` of the step's losses, averaged over processes.
        total_loss (float): their sum.
        lr (float): learning rate used.
        grad_norm (float): global L2 norm of the (unscaled, unclipped) gradients.
        skipped (bool): gradients were not finite and the update was skipped.
        batch_size (int): samples in the step over all processes.
        step_time (float): seconds for the whole step, data included.
        data_time (float): seconds spent waiting for the batch.
    """

    def __init__(self, losses, lr, grad_norm, skipped, batch_size):
        self.losses = losses
        self.total_loss = sum(losses.values())
        self.lr = lr
        self.grad_norm = grad_norm
        self.skipped = skipped
        self.batch_size = batch_size
        self.step_time = 0.0
        self.data_time = 0.0


class HookBase:
    """Called by :meth:`Trainer.train`: ``before_train`` once, ``after_step`` after every step
    (``trainer.global_step`` already incremented, ``trainer.last_step`` filled), ``after_train``
    at the end of a complete or stopped run, and when a batch failed to load (not after other
    exceptions)."""

    def before_train(self, trainer):
        """Called once before the first step (after a resume)."""

    def after_step(self, trainer):
        """Called after each step."""

    def after_train(self, trainer):
        """Called once when the loop ends normally, by :meth:`Trainer.request_stop` or by a failed batch."""


class Trainer:
    """Runs ``num_iters`` optimizer steps over a data loader.

    Args:
        model: a ``paddle.nn.Layer`` (possibly ``DataParallel``) whose train-mode
            ``forward(images, targets)`` returns a dict of losses (keys ending in ``loss``).
        optimizer: a ``paddle.optimizer.Optimizer`` with a float learning rate (clipping
            configured on it).
        lr_schedule: object with ``step(global_step, optimizer) -> lr`` and ``state_dict()``.
        num_iters: total number of steps.
        amp_level: ``'O0'``, ``'O1'`` or ``'O2'`` (``O2`` needs :func:`prepare_amp` first).
        amp_dtype: ``'float16'`` or ``'bfloat16'``.
        scaler: the ``GradScaler`` from :func:`prepare_amp`, or None.
        hooks: :class:`HookBase` instances, called in order.
        state_info: extra entries stored in every checkpoint (``config_name``, ``config_digest``).

    Attributes:
        global_step (int): steps done.
        skipped_steps (int): steps whose update was skipped because of non-finite gradients.
        last_step (StepResult): the most recent step.
    """

    def __init__(
        self,
        model,
        optimizer,
        lr_schedule,
        num_iters,
        amp_level='O0',
        amp_dtype='float16',
        scaler=None,
        hooks=(),
        state_info=None,
    ):
        self.amp_level, self.amp_dtype = _checked_amp(amp_level, amp_dtype)
        self.model = model
        self.optimizer = optimizer
        self.lr_schedule = lr_schedule
        self.num_iters = int(num_iters)
        self.scaler = scaler
        self.hooks = list(hooks)
        self.state_info = dict(state_info or {})
        self.world_size = paddle.distributed.get_world_size()
        self.global_step = 0
        self.skipped_steps = 0
        self.last_step = None
        self._stop_requested = False
        self._parameters = [p for p in model.parameters() if not p.stop_gradient]

    def request_stop(self):
        """Finish the current step, run ``after_train`` (which saves a checkpoint) and return."""
        self._stop_requested = True

    @property
    def stopped_early(self):
        """True when the last :meth:`train` ended by :meth:`request_stop` before ``num_iters``."""
        return self._stop_requested and self.global_step < self.num_iters

    def state_dict(self):
        """Return everything needed to continue exactly: model, optimizer, scaler, step, RNG."""
        core = unwrap_model(self.model)
        state = dict(
            model=core.state_dict(),
            opt=optimizer_state_by_name(self.optimizer, core),
            global_step=self.global_step,
            skipped_steps=self.skipped_steps,
            scaler=self.scaler.state_dict() if self.scaler is not None else {},
            lr=self.lr_schedule.state_dict(),
            rng=_rng_state(),
        )
        state.update(self.state_info)
        return state

    def load_state_dict(self, state, source='checkpoint'):
        """Restore a :meth:`state_dict` (strictly: every model key must match).

        Raises:
            CheckpointError: the model or optimizer entries do not fit (the keys are listed).
        """
        core = unwrap_model(self.model)
        load_state_dict_strict(core, state['model'], source=source)
        load_optimizer_state_by_name(self.optimizer, core, state.get('opt', {}), source)
        if self.scaler is not None and state.get('scaler'):
            self.scaler.load_state_dict(state['scaler'])
        saved_lr = state.get('lr')
        if saved_lr and saved_lr != self.lr_schedule.state_dict():
            _logger.warning(
                '%s was trained with the schedule %s; continuing with %s',
                source,
                saved_lr,
                self.lr_schedule.state_dict(),
            )
        if state.get('rng'):
            _set_rng_state(state['rng'])
        self.global_step = int(state['global_step'])
        self.skipped_steps = int(state.get('skipped_steps', 0))

    def run_step(self, batch):
        """Run one optimizer step on ``batch = (images, targets)``; return a :class:`StepResult`."""
        images, targets = batch
        lr = self.lr_schedule.step(self.global_step, self.optimizer)
        with paddle.amp.auto_cast(enable=self.amp_level != 'O0', level=self.amp_level, dtype=self.amp_dtype):
            outputs = self.model(images, targets)
        losses = {k: (v.mean() if v.ndim else v).astype('float32') for k, v in outputs.items() if k.endswith('loss')}
        if not losses:
            raise ValueError(
                'the model returned no loss: train-mode forward must return a dict with keys ending '
                "in 'loss', got %s" % sorted(outputs)
            )
        total = paddle.add_n(list(losses.values()))
        scaling = self.scaler is not None and self.scaler.is_enable()
        if scaling:
            self.scaler.scale(total).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            total.backward()
        grad_norm = global_grad_norm(self._parameters)
        finite = math.isfinite(grad_norm)
        if scaling:
            self.scaler.step(self.optimizer)  # skips the update itself when it found Inf/NaN
            self.scaler.update()
        elif finite:
            self.optimizer.step()
        self.optimizer.clear_grad()
        if not finite:
            self.skipped_steps += 1
            _logger.warning(
                'step %d: gradients are not finite (norm %s); update skipped (%d so far)',
                self.global_step,
                grad_norm,
                self.skipped_steps,
            )
        self.global_step += 1
        return StepResult(
            self._mean_over_processes(losses), lr, grad_norm, not finite, int(images.shape[0]) * self.world_size
        )

    def _mean_over_processes(self, losses):
        names = sorted(losses)
        values = paddle.stack([losses[k].detach() for k in names])
        if self.world_size > 1:
            paddle.distributed.all_reduce(values)
            values = values / self.world_size
        return dict(zip(names, values.numpy().tolist()))

    def enter_train_mode(self):
        """Put the model in train mode (after an evaluation, for instance)."""
        self.model.train()
        # Paddle's Layer.train() does not call sublayers' train() overrides (e.g. frozen BatchNorm).
        unwrap_model(self.model).train()

    def train(self, data_loader):
        """Train until ``global_step == num_iters`` (or a requested stop), continuing from ``global_step``.

        The data loader's batch sampler is moved to ``global_step`` when it has
        ``set_start_step`` (``simplecv.data.sampler.StepBatchSampler``), so a resumed run sees the
        same batches as an uninterrupted one.

        A batch that fails to load (the loader raises a :class:`FactSegError`, see
        :mod:`simplecv.data.fail_fast`) stops the run after the last complete step: ``after_train``
        runs (the checkpoint hook saves that step) and the error is raised again with a note on how
        to continue. With several processes they agree before every step, so a failure or a stop
        request (:meth:`request_stop`) on any of them stops all of them at the same step.

        Raises:
            DataError: the loader yields no batch, or a batch failed to load (on any process).
        """
        sampler = getattr(data_loader, 'batch_sampler', None)
        if hasattr(sampler, 'set_start_step'):
            sampler.set_start_step(self.global_step)
        elif self.global_step:
            _logger.warning('the data loader cannot skip to step %d; the data order restarts', self.global_step)
        self._stop_requested = False
        self.enter_train_mode()
        for hook in self.hooks:
            hook.before_train(self)
        failure, stop = None, False
        while self.global_step < self.num_iters and not stop and failure is None:
            batches = iter(data_loader)
            steps_before = self.global_step
            while self.global_step < self.num_iters:
                if self._stop_requested and self.world_size == 1:
                    stop = True
                    break
                start = time.perf_counter()
                batch, failure = _next_batch(batches)
                failure, stop = self._agree_to_stop(failure)
                if failure is not None or stop or batch is None:
                    break
                data_time = time.perf_counter() - start
                self.last_step = self.run_step(batch)
                self.last_step.data_time = data_time
                self.last_step.step_time = time.perf_counter() - start
                for hook in self.hooks:
                    hook.after_step(self)
            if self.global_step == steps_before and not stop and failure is None:
                raise DataError(
                    'the training data loader yielded no batch; check data.train (image_dir, mask_dir, batch_size)'
                )
        if failure is not None:
            _logger.error('step %d: %s', self.global_step + 1, failure)
            _logger.warning('stopping after step %d, the last complete step', self.global_step)
        for hook in self.hooks:
            hook.after_train(self)
        if failure is not None:
            if self.world_size > 1:
                # The other processes wait until rank 0 has written its checkpoint, then until it has left.
                paddle.distributed.barrier()
                if paddle.distributed.get_rank() != 0:
                    _outlive_rank_zero()
            raise type(failure)(
                '%s; the run stopped after step %d: fix this, then run the same command again to '
                'continue from the last checkpoint' % (failure, self.global_step)
            )

    def _agree_to_stop(self, failure):
        """Share this process's batch failure and stop request with the others before a step.

        Every process must take the same decision: a stop requested (by a signal) after the flags
        were sent counts at the next step, not at this one.

        Returns:
            tuple: ``(failure, stop)``: the failure to stop with (this process's, or another's,
            prefixed with its rank) or None, and whether any process asked to stop. An agreed
            stop sets ``_stop_requested`` on every process.
        """
        if self.world_size == 1:
            return failure, self._stop_requested
        flags = paddle.to_tensor([int(failure is not None), int(self._stop_requested)], dtype='int64')
        paddle.distributed.all_reduce(flags)
        failed, stopping = (int(v) for v in flags.numpy())
        if stopping:
            self._stop_requested = True
        if not failed:
            return None, bool(stopping)
        gathered = []
        paddle.distributed.all_gather_object(gathered, failure)
        if failure is None:
            rank, error = next((r, e) for r, e in enumerate(gathered) if e is not None)
            failure = type(error)('process %d: %s' % (rank, error))
        return failure, bool(stopping)


def _outlive_rank_zero():
    """Block until rank 0 has left the process group: its exit breaks this barrier, which it never joins.

    ``paddle.distributed.launch`` stops every process as soon as one exits and reports the first
    process's exit status; leaving after rank 0 makes that status rank 0's own, not the SIGTERM
    the launcher would send it. (gloo fails the barrier within a second; where a back-end waits
    longer, the launcher ends the wait by killing this process after rank 0 has exited.)
    """
    try:
        paddle.distributed.barrier()
    except (RuntimeError, OSError):
        pass


def _next_batch(batches):
    """Return ``(batch, None)``, ``(None, None)`` at the end of the epoch, or ``(None, error)`` when it failed."""
    try:
        return next(batches), None
    except StopIteration:
        return None, None
    except FactSegError as error:
        return None, error
