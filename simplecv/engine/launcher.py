"""A whole training run from a config: checks, resume policy, output folder, processes, train, stop.

:func:`train_from_config` is what ``apex_train.py`` calls after parsing its arguments. It reads
and checks the config before anything is built, refuses a ``model_dir`` that holds another
model's run, picks the checkpoint to continue from, starts ``train.log`` on process 0, builds
everything through :mod:`simplecv.engine.build` and trains under :class:`GracefulStop`.
"""

import logging
import os
import pprint
import signal

from simplecv.core.errors import CheckpointError, ConfigError

_logger = logging.getLogger('factseg.train')


def check_config(config, config_path, overrides=()):
    """Check the parts of a config that training reads before anything is built.

    Every section is strict (:func:`simplecv.core.config_check.check_training_config`); the
    official keys that are accepted but not used are logged.

    Args:
        config: the config after overrides.
        config_path: its name, for messages.
        overrides: the dotted keys given on the command line.

    Raises:
        ConfigError: an unknown key, a missing section or a bad ``train`` value, naming the key.
    """
    from simplecv.core.config_check import check_training_config, declared_unused

    try:
        check_training_config(config, overrides)
    except ConfigError as error:
        raise ConfigError('config %s: %s' % (config_path, error)) from None
    for dotted, _, reason in declared_unused(config):
        _logger.info('%s is accepted but not used: %s', dotted, reason)


def find_resume_checkpoint(model_dir, resume=None, resume_iter=None, resume_from_last=True):
    """Return the checkpoint path to continue from, or None for a fresh run.

    Args:
        model_dir: the run's output folder.
        resume: a checkpoint file named by the user, or None.
        resume_iter: continue from ``model_dir/model-<resume_iter>.pdparams`` (without ``resume``).
        resume_from_last: whether the last checkpoint in ``model_dir`` may be continued.

    Raises:
        CheckpointError: a named checkpoint is missing, or ``model_dir`` holds a run that must
            not be overwritten.
    """
    from simplecv.core.checkpoint import checkpoint_name, last_checkpoint

    if resume is not None:
        if not os.path.isfile(resume):
            raise CheckpointError('--resume %s: no such file' % resume)
        return resume
    if resume_iter is not None:
        path = os.path.join(model_dir, checkpoint_name(resume_iter))
        if not os.path.isfile(path):
            raise CheckpointError('--resume_iter %d: %s does not exist' % (resume_iter, path))
        return path
    last = last_checkpoint(model_dir)
    if last is not None and not resume_from_last:
        raise CheckpointError(
            '%s already holds a run (last checkpoint %s) and train.resume_from_last is False; '
            'choose an empty --model_dir or allow resuming' % (model_dir, last)
        )
    return last


def config_name(config_path):
    """Return the dotted name of a config given by name or by path (``'isaid.factseg'``)."""
    from simplecv.core.config import CONFIG_ROOT, config_file

    rel = os.path.relpath(config_file(config_path), CONFIG_ROOT)
    return config_path if rel.startswith('..') else rel[: -len('.py')].replace(os.sep, '.')


def architecture(config):
    """The model section without the encoder's initial-weights file, which does not change the model."""
    model = config.model.to_dict()
    encoder = model.get('params', {}).get('resnet_encoder')
    if isinstance(encoder, dict):
        model['params']['resnet_encoder'] = {k: v for k, v in encoder.items() if k != 'pretrained'}
    return model


def _announce_backbone(config, resuming):
    """Log where the encoder's initial weights come from; loudly when it is trained from scratch."""
    encoder = config.model.params.get('resnet_encoder')
    if encoder is None:
        return
    if resuming:
        # The checkpoint overwrites every weight: the ImageNet file is not needed.
        encoder.pretrained = False
    elif not encoder.get('pretrained'):
        _logger.warning('!' * 72)
        _logger.warning(
            'TRAINING FROM SCRATCH: model.params.resnet_encoder.pretrained is False, so the '
            'encoder starts from random weights, not ImageNet. Expect much lower accuracy '
            'than the paper on iSAID.'
        )
        _logger.warning('!' * 72)
    else:
        _logger.info('encoder initialised from %s', encoder.pretrained)


def _prepare_model_dir(model_dir):
    """Check that ``model_dir`` can be written, remove temporaries of killed runs, start ``train.log``.

    Returns:
        logging.Handler: the file handler added to the ``factseg`` logger (remove it when done).

    Raises:
        OutputError: the folder cannot be created or written (read-only, full).
    """
    from simplecv.util.output_guard import GuardedFileHandler, check_writable, remove_stale_temporaries

    check_writable(model_dir)
    handler = GuardedFileHandler(os.path.join(model_dir, 'train.log'))
    handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(message)s', '%Y-%m-%d %H:%M:%S'))
    logging.getLogger('factseg').addHandler(handler)
    for name in remove_stale_temporaries(model_dir):
        _logger.warning('removed %s, left by a run that was killed while writing it', os.path.join(model_dir, name))
    return handler


def _resume_state(path, resume_iter, name, digest):
    """Load the checkpoint to continue from and check that it belongs to this run.

    Raises:
        CheckpointError: another config, another step than ``--resume_iter``, or weights only.
    """
    from simplecv.core.checkpoint import check_compatible, load_checkpoint

    state = load_checkpoint(path)
    check_compatible(state, name, digest, path)
    if resume_iter is not None and int(state.get('global_step', -1)) != resume_iter:
        raise CheckpointError('%s is at step %s, not --resume_iter %d' % (path, state.get('global_step'), resume_iter))
    if 'opt' not in state:
        raise CheckpointError(
            '%s holds model weights only (no optimizer state or step), so training cannot continue '
            'from it exactly; resume from a checkpoint written by apex_train.py' % path
        )
    return state


def train_from_config(
    config_path, model_dir, opts=None, opt_level='O0', amp_dtype='float16', resume=None, resume_iter=None, cpu=False
):
    """Train the model of a config; continue the run in ``model_dir`` when it holds one.

    Args:
        config_path: dotted config name (``'isaid.factseg'``) or a ``.py`` file.
        model_dir: output folder (checkpoints, logs, curves, evaluations).
        opts: ``KEY VALUE`` overrides as a flat list.
        opt_level, amp_dtype: mixed precision (``'O0'`` fp32; ``'O1'``/``'O2'`` on a GPU).
        resume: continue from this checkpoint instead of the last one in ``model_dir``.
        resume_iter: continue from ``model_dir/model-<resume_iter>.pdparams`` (with ``resume``:
            check that it is at that step).
        cpu: train on the CPU even when a GPU is present.

    Returns:
        int: 0 when done, 130 or 143 when stopped by Ctrl-C or SIGTERM after saving a checkpoint.

    Raises:
        FactSegError: bad config, data, checkpoint or ``model_dir`` (the message says what to fix).
    """
    import paddle

    from simplecv.api.infer_tool import build_config
    from simplecv.core.checkpoint import check_compatible, config_digest, read_checkpoint_info
    from simplecv.core.graceful_stop import EXIT_CODES, GracefulStop
    from simplecv.engine.build import (
        DEFAULT_SEED,
        build_hooks,
        build_model,
        build_train_loader,
        build_trainer,
        describe_run,
        plot_title,
    )

    config = build_config(config_path, opts)
    check_config(config, config_path, (opts or [])[0::2])
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise ConfigError('--model_dir %s is a file, not a folder' % model_dir)
    name = config_name(config_path)
    digest = config_digest(architecture(config))
    info = read_checkpoint_info(model_dir) if os.path.isdir(model_dir) else None
    if info is not None:
        check_compatible(info, name, digest, model_dir)
    resume_path = find_resume_checkpoint(model_dir, resume, resume_iter, config.train.get('resume_from_last', True))

    if cpu or not paddle.device.is_compiled_with_cuda():
        paddle.set_device('cpu')
    world_size = paddle.distributed.get_world_size()
    if world_size > 1:
        paddle.distributed.init_parallel_env()
    rank = paddle.distributed.get_rank()
    state = None if resume_path is None else _resume_state(resume_path, resume_iter, name, digest)
    log_handler = _prepare_model_dir(model_dir) if rank == 0 else None
    try:
        _logger.info(
            'config %s, overrides %s\n%s',
            config_path,
            opts or [],
            pprint.pformat(config.to_dict(), width=110, sort_dicts=False),
        )
        _announce_backbone(config, state is not None)
        paddle.seed(config.train.get('seed', DEFAULT_SEED))
        model = build_model(config)
        loader = build_train_loader(config)
        hooks = build_hooks(config, model_dir, len(loader), plot_title(config_path, model_dir), rank)
        trainer = build_trainer(
            config, model, hooks, opt_level, amp_dtype, state_info=dict(config_name=name, config_digest=digest)
        )
        describe_run(config, trainer, loader, world_size)
        if state is not None:
            trainer.load_state_dict(state, source=resume_path)
            _logger.info('resumed from %s at step %d', resume_path, trainer.global_step)
        with GracefulStop(trainer) as stop:
            trainer.train(loader)
    finally:
        if log_handler is not None:
            logging.getLogger('factseg').removeHandler(log_handler)
            log_handler.close()
    if trainer.stopped_early:
        signal_name = signal.Signals(stop.received).name if stop.received else 'a stop on another process'
        _logger.warning(
            'stopped by %s at step %d of %d; run the same command again to continue',
            signal_name,
            trainer.global_step,
            trainer.num_iters,
        )
        return stop.exit_code or EXIT_CODES[signal.SIGINT]
    return 0
