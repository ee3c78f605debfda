"""Config -> model, schedule, optimizer, AMP state, data loader, hooks and trainer: the one place that assembles.

Every way of training (``apex_train.py``, the alignment chain, the benchmarks, the tests) calls
these builders, so a change to how a piece is made from its config section is made once. They
follow SimpleCV's ``apex_ddp_train.run`` order (spec §8): model from ``MODEL`` (SyncBatchNorm
across processes when ``train.apex_sync_bn``), the poly schedule, SGD whose learning rate is the
schedule's ``base_lr`` with global-norm clipping, AMP, ``DataParallel`` when several processes train.
"""

import copy
import logging
import os

import paddle

from simplecv.core.trainer import Trainer, prepare_amp, unwrap_model
from simplecv.opt import make_learning_rate, make_optimizer

_logger = logging.getLogger('factseg.train')
DEFAULT_SEED = 2333


def build_model(config, for_inference=False):
    """Build ``config.model`` through the ``MODEL`` registry.

    Args:
        config: a full config (``AttrDict``) with ``model.type`` and ``model.params``; not modified.
        for_inference: skip the encoder's ImageNet file (every weight comes from a checkpoint)
            and return the model in eval mode.

    Returns:
        paddle.nn.Layer: the model, in train mode unless ``for_inference``.
    """
    from simplecv.api.components import MODEL

    params = copy.deepcopy(config.model.params)
    if for_inference and 'resnet_encoder' in params:
        params.resnet_encoder.pretrained = False
    model = MODEL[config.model.type](params)
    if for_inference:
        model.eval()
    return model


def build_and_load(config, ckpt_path):
    """Return ``(model, global_step)``: the config's model in eval mode with a checkpoint loaded strictly.

    Args:
        config: the model's config.
        ckpt_path: a checkpoint written by ``apex_train.py``, official weights converted by
            ``torch_ref/convert.py factseg``, or a bare Paddle state dict.

    Raises:
        CheckpointError: missing or unreadable file, or keys/shapes that do not match the model
            (the message lists them).
    """
    from simplecv.core.checkpoint import load_model_state
    from simplecv.util.state_dict import load_state_dict_strict

    model = build_model(config, for_inference=True)
    state, global_step = load_model_state(ckpt_path)
    load_state_dict_strict(model, state, source=ckpt_path)
    model.eval()
    _logger.info('loaded %s (global step %s)', ckpt_path, global_step)
    return model, global_step


def build_lr_schedule(config):
    """Return the learning-rate schedule of ``config.learning_rate`` (``step(global_step, optimizer) -> lr``)."""
    return make_learning_rate(config.learning_rate)


def build_optimizer(config, model, lr_schedule):
    """Return the optimizer of ``config.optimizer`` over ``model``'s parameters at the schedule's ``base_lr``."""
    return make_optimizer(config.optimizer, model.parameters(), lr_schedule.base_lr)


def build_train_loader(config):
    """Return the ``data.train`` loader (its ``type`` from the ``DATALOADER`` registry, its ``params``)."""
    from simplecv.api.components import DATALOADER

    return DATALOADER[config.data.train.type](config.data.train.params)


def _sync_batch_norm(model, config, world_size):
    """Convert BatchNorm to SyncBatchNorm when several processes train and ``train.apex_sync_bn`` asks for it."""
    if world_size < 2 or not config.train.get('apex_sync_bn', False):
        return model
    if paddle.get_device().startswith('cpu'):
        _logger.warning('train.apex_sync_bn: SyncBatchNorm has no CPU kernel; each process normalises its own batch')
        return model
    _logger.info('SyncBatchNorm over %d processes', world_size)
    return paddle.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def build_trainer(config, model, hooks=(), opt_level='O0', amp_dtype='float16', state_info=None):
    """Wrap ``model`` with its schedule, optimizer, AMP state and process group into a :class:`Trainer`.

    Args:
        config: the training config (``learning_rate``, ``optimizer``, ``train`` sections).
        model: the model from :func:`build_model` (weights already set as wanted).
        hooks: :class:`simplecv.core.trainer.HookBase` instances (see :func:`build_hooks`).
        opt_level, amp_dtype: mixed precision (``'O0'`` fp32, ``'O1'``, ``'O2'``; ``'float16'`` or
            ``'bfloat16'``).
        state_info: extra entries stored in every checkpoint (``config_name``, ``config_digest``).

    Returns:
        Trainer: ready for ``trainer.train(loader)``.
    """
    world_size = paddle.distributed.get_world_size()
    model = _sync_batch_norm(model, config, world_size)
    lr_schedule = build_lr_schedule(config)
    optimizer = build_optimizer(config, model, lr_schedule)
    model, optimizer, scaler = prepare_amp(model, optimizer, opt_level, amp_dtype)
    if world_size > 1:
        model = paddle.DataParallel(model)
    return Trainer(
        model, optimizer, lr_schedule, config.train.num_iters, opt_level, amp_dtype, scaler, hooks, state_info
    )


def checkpoint_interval(train, steps_per_epoch):
    """Steps between checkpoints: ``train.save_ckpt_interval_iter``, else ``save_ckpt_interval_epoch`` epochs."""
    if train.get('save_ckpt_interval_iter') is not None:
        return train.save_ckpt_interval_iter
    return train.get('save_ckpt_interval_epoch', 1) * steps_per_epoch


def build_hooks(config, model_dir, steps_per_epoch, title=None, rank=0):
    """Return the hooks of a training run, in calling order.

    Process 0: logging, checkpoints, the evaluation of ``data.test`` when the config asks for it
    (see :func:`simplecv.engine.evaluation_hook.build_evaluation_hook`), VisualDL scalars and the
    curves plot at the end. Other processes: only the evaluation, which they share.

    Args:
        config: the training config.
        model_dir: output folder.
        steps_per_epoch: batches in one pass over the training data (for the epoch intervals).
        title: the plot's title.
        rank: this process's rank.

    Returns:
        list: :class:`simplecv.core.trainer.HookBase` instances.
    """
    from simplecv.engine.evaluation_hook import build_evaluation_hook
    from simplecv.engine.hooks import CheckpointHook, LoggerHook, PlotHook, VisualDLHook

    train = config.train
    if rank != 0:
        evaluation = build_evaluation_hook(config, model_dir, steps_per_epoch, write=False)
        return [] if evaluation is None else [evaluation]
    hooks = [
        LoggerHook(train.get('log_interval_step', 50), model_dir),
        CheckpointHook(model_dir, checkpoint_interval(train, steps_per_epoch)),
    ]
    evaluation = build_evaluation_hook(config, model_dir, steps_per_epoch)
    if evaluation is not None:
        hooks.append(evaluation)
    hooks += [VisualDLHook(model_dir, train.get('tensorboard_interval_step', 100)), PlotHook(model_dir, title=title)]
    return hooks


def describe_run(config, trainer, loader, world_size):
    """Log processes, batch, steps per epoch, AMP and the number of trainable parameters."""
    steps_per_epoch = len(loader)
    _logger.info(
        '%d process(es) x batch %s, %d steps per epoch, %d steps (~%.1f epochs), AMP %s%s, %d trainable parameters',
        world_size,
        config.data.train.params.get('batch_size'),
        steps_per_epoch,
        trainer.num_iters,
        trainer.num_iters / max(steps_per_epoch, 1),
        trainer.amp_level,
        '' if trainer.amp_level == 'O0' else ' ' + trainer.amp_dtype,
        sum(int(p.size) for p in unwrap_model(trainer.model).parameters() if not p.stop_gradient),
    )


def plot_title(config_path, model_dir):
    """The curves plot's title: ``'<config> (<model_dir name>)'``."""
    return '%s (%s)' % (config_path, os.path.basename(os.path.normpath(model_dir)))
