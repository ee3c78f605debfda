"""Train a segmentation model from a config, as the official ``apex_train.py`` does, with Paddle AMP.

The run follows SimpleCV's ``apex_ddp_train.run`` (spec §8): model from ``MODEL``, SyncBatchNorm
when several GPUs train (``train.apex_sync_bn``), the poly schedule's ``base_lr`` as the
optimizer's learning rate, SGD with weight decay on every parameter and global-norm clipping,
``--opt_level`` mixed precision with a dynamic loss scaler, and ``train.num_iters`` steps over
the ``data.train`` loader. Every ``train.save_ckpt_interval_epoch`` epochs (or
``train.save_ckpt_interval_iter`` steps) and at the end, ``model_dir/model-<step>.pdparams`` and
``checkpoint_info.json`` are written atomically; running the same command again continues
exactly where the last checkpoint left off. Ctrl-C or SIGTERM finishes the current step, saves and
stops; a sample that fails to load stops the run after saving the last complete step.

Outputs in ``--model_dir``: checkpoints, ``train.log``, ``train_log.jsonl`` (one record per
logged step), VisualDL scalars (``visualdl --logdir MODEL_DIR``) and ``training_curves.png``.
"""
import argparse
import os
import signal
import sys

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import simplecv.util.mkl_env  # noqa: E402,F401  (before Paddle runs: MKL's AVX2 path on AMD CPUs)
from simplecv.core.errors import CheckpointError, ConfigError, FactSegError  # noqa: E402
from simplecv.core.graceful_stop import EXIT_CODES, GracefulStop  # noqa: E402
from simplecv.util.logger import get_logger  # noqa: E402

_logger = get_logger('factseg.train')
DEFAULT_SEED = 2333

EPILOG = """examples:
  # the official recipe (AMP O1) on one GPU
  python apex_train.py --config_path isaid.factseg --model_dir log/factseg --opt_level O1

  # the official setup: two GPUs x 4 images, SyncBatchNorm, SOM per GPU
  python -m paddle.distributed.launch --gpus 0,1 apex_train.py \\
      --config_path isaid.factseg --model_dir log/factseg --opt_level O1

  # the CPU demo on generated data (python -m data.demo --out demo_data first)
  python apex_train.py --config_path isaid.factseg_demo --model_dir demo_output

  # continue an interrupted run: run the same command again, or name a checkpoint
  python apex_train.py --config_path isaid.factseg --model_dir log/factseg \\
      --resume log/factseg/model-20000.pdparams

  # config overrides as KEY VALUE pairs at the end
  python apex_train.py --config_path isaid.factseg --model_dir log/short \\
      train.num_iters 1000 data.train.params.batch_size 2
"""


def build_parser():
    """The argument parser (official flags first)."""
    parser = argparse.ArgumentParser(
        prog='apex_train.py', description=__doc__.split('\n\n')[0], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config_path', required=True,
                        help="config: dotted name under configs/ ('isaid.factseg') or a .py file")
    parser.add_argument('--model_dir', required=True,
                        help='output folder for checkpoints and logs; a run resumes from the checkpoint it holds')
    parser.add_argument('--opt_level', default='O0', choices=('O0', 'O1', 'O2'),
                        help='mixed precision: O0 fp32 (default), O1 autocast (the official run), '
                             'O2 half-precision weights with fp32 master copies; GPU only, fp32 on CPU')
    parser.add_argument('--amp_dtype', default='float16', choices=('float16', 'bfloat16'),
                        help='half-precision type for O1/O2 (float16 uses a dynamic loss scaler; default float16)')
    parser.add_argument('--resume', '--resume_model_path', dest='resume', default=None, metavar='CKPT',
                        help='continue from this checkpoint (model, optimizer, scaler, step) instead of the last '
                             'one in --model_dir')
    parser.add_argument('--resume_iter', type=int, default=None, metavar='N',
                        help='continue from --model_dir/model-N.pdparams (with --resume: check that the '
                             'checkpoint is at step N)')
    parser.add_argument('--cpu', action='store_true', help='train on the CPU even when a GPU is present')
    parser.add_argument('--local_rank', type=int, default=None,
                        help='accepted for compatibility with torch.distributed.launch; Paddle sets the rank')
    parser.add_argument('opts', nargs=argparse.REMAINDER, default=None,
                        help='config overrides as KEY VALUE pairs, e.g. train.num_iters 1000')
    return parser


def parse_args(argv=None):
    """Parse and check the command line (no file access).

    Raises:
        SystemExit: on a usage error, as argparse does.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.opts and len(args.opts) % 2:
        parser.error('config overrides come in KEY VALUE pairs, got %s' % args.opts)
    if args.resume_iter is not None and args.resume_iter < 0:
        parser.error('--resume_iter must be >= 0, got %d' % args.resume_iter)
    return args


def check_config(config, config_path, overrides=()):
    """Check the parts of a config that training reads before anything is built.

    Every section is strict (:func:`simplecv.core.config_check.check_training_config`); the
    official keys that are accepted but not used are logged.

    Raises:
        ConfigError: an unknown key, a missing section or a bad ``train`` value, naming the key.
    """
    from simplecv.core.config_check import check_training_config, declared_unused

    try:
        check_training_config(config, overrides)
    except ConfigError as error:
        raise ConfigError('config %s: %s' % (config_path, error)) from None
    for dotted, value, reason in declared_unused(config):
        _logger.info('%s is accepted but not used: %s', dotted, reason)
    train = config.train
    if not isinstance(train.num_iters, int) or train.num_iters < 1:
        raise ConfigError('train.num_iters must be a positive int, got %r' % (train.num_iters,))
    if train.get('forward_times', 1) != 1:
        raise ConfigError('train.forward_times=%r is not supported; only 1 (one batch per step)'
                          % (train.forward_times,))
    for key in ('log_interval_step', 'tensorboard_interval_step', 'save_ckpt_interval_epoch',
                'save_ckpt_interval_iter'):
        value = train.get(key)
        if value is not None and (not isinstance(value, int) or value < 0):
            raise ConfigError('train.%s must be an int >= 0, got %r' % (key, value))


def find_resume_checkpoint(args, model_dir, resume_from_last):
    """Return the checkpoint path to continue from, or None for a fresh run.

    Raises:
        CheckpointError: a named checkpoint is missing, or ``model_dir`` holds a run that must
            not be overwritten.
    """
    from simplecv.core.checkpoint import checkpoint_name, last_checkpoint

    if args.resume is not None:
        if not os.path.isfile(args.resume):
            raise CheckpointError('--resume %s: no such file' % args.resume)
        return args.resume
    if args.resume_iter is not None:
        path = os.path.join(model_dir, checkpoint_name(args.resume_iter))
        if not os.path.isfile(path):
            raise CheckpointError('--resume_iter %d: %s does not exist' % (args.resume_iter, path))
        return path
    last = last_checkpoint(model_dir)
    if last is not None and not resume_from_last:
        raise CheckpointError('%s already holds a run (last checkpoint %s) and train.resume_from_last is False; '
                              'choose an empty --model_dir or allow resuming' % (model_dir, last))
    return last


def _config_name(config_path):
    """Return the dotted name of a config given by name or by path (``'isaid.factseg'``)."""
    from simplecv.core.config import CONFIG_ROOT, config_file

    rel = os.path.relpath(config_file(config_path), CONFIG_ROOT)
    return config_path if rel.startswith('..') else rel[:-len('.py')].replace(os.sep, '.')


def _architecture(config):
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
        _logger.warning('TRAINING FROM SCRATCH: model.params.resnet_encoder.pretrained is False, so the '
                        'encoder starts from random weights, not ImageNet. Expect much lower accuracy '
                        'than the paper on iSAID.')
        _logger.warning('!' * 72)
    else:
        _logger.info('encoder initialised from %s', encoder.pretrained)


def _use_sync_bn(model, config, world_size):
    import paddle

    if world_size < 2 or not config.train.get('apex_sync_bn', False):
        return model
    if paddle.get_device().startswith('cpu'):
        _logger.warning('train.apex_sync_bn: SyncBatchNorm has no CPU kernel; each process normalises its own '
                        'batch')
        return model
    _logger.info('SyncBatchNorm over %d processes', world_size)
    return paddle.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def _checkpoint_interval(train, steps_per_epoch):
    if train.get('save_ckpt_interval_iter') is not None:
        return train.save_ckpt_interval_iter
    return train.get('save_ckpt_interval_epoch', 1) * steps_per_epoch


def _prepare_model_dir(model_dir):
    """Check that ``model_dir`` can be written, remove temporaries of killed runs, start ``train.log``.

    Raises:
        OutputError: the folder cannot be created or written (read-only, full).
    """
    import logging

    from simplecv.util.output_guard import GuardedFileHandler, check_writable, remove_stale_temporaries

    check_writable(model_dir)
    handler = GuardedFileHandler(os.path.join(model_dir, 'train.log'))
    handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(message)s', '%Y-%m-%d %H:%M:%S'))
    get_logger().addHandler(handler)
    for name in remove_stale_temporaries(model_dir):
        _logger.warning('removed %s, left by a run that was killed while writing it', os.path.join(model_dir, name))
    return handler


def train(args):
    """Build everything from ``args`` and train; return 0, or 130/143 when stopped by Ctrl-C/SIGTERM.

    Raises:
        FactSegError: bad config, data, checkpoint or model_dir (the message says what to fix).
    """
    from simplecv.api.infer_tool import build_config
    from simplecv.core.checkpoint import check_compatible, config_digest, read_checkpoint_info

    config = build_config(args.config_path, args.opts)
    check_config(config, args.config_path, (args.opts or [])[0::2])
    model_dir = args.model_dir
    if os.path.exists(model_dir) and not os.path.isdir(model_dir):
        raise ConfigError('--model_dir %s is a file, not a folder' % model_dir)
    config_name = _config_name(args.config_path)
    digest = config_digest(_architecture(config))
    info = read_checkpoint_info(model_dir) if os.path.isdir(model_dir) else None
    if info is not None:
        check_compatible(info, config_name, digest, model_dir)
    resume_path = find_resume_checkpoint(args, model_dir, config.train.get('resume_from_last', True))

    import paddle

    if args.cpu or not paddle.device.is_compiled_with_cuda():
        paddle.set_device('cpu')
    world_size = paddle.distributed.get_world_size()
    if world_size > 1:
        paddle.distributed.init_parallel_env()
    rank = paddle.distributed.get_rank()
    state = None if resume_path is None else _resume_state(resume_path, args.resume_iter, config_name, digest)
    log_handler = None
    if rank == 0:
        log_handler = _prepare_model_dir(model_dir)
    try:
        _logger.info('config %s, overrides %s\n%s', args.config_path, args.opts or [], _format_config(config))
        _announce_backbone(config, state is not None)
        trainer, loader = _build_trainer(args, config, world_size, rank, state_info=dict(
            config_name=config_name, config_digest=digest))
        if state is not None:
            trainer.load_state_dict(state, source=resume_path)
            _logger.info('resumed from %s at step %d', resume_path, trainer.global_step)
        with GracefulStop(trainer) as stop:
            trainer.train(loader)
    finally:
        if log_handler is not None:
            get_logger().removeHandler(log_handler)
            log_handler.close()
    if trainer.stopped_early:
        name = signal.Signals(stop.received).name if stop.received else 'a stop on another process'
        _logger.warning('stopped by %s at step %d of %d; run the same command again to continue', name,
                        trainer.global_step, trainer.num_iters)
        return stop.exit_code or EXIT_CODES[signal.SIGINT]
    return 0


def _resume_state(path, resume_iter, config_name, digest):
    """Load the checkpoint to continue from and check that it belongs to this run.

    Raises:
        CheckpointError: another config, another step than ``--resume_iter``, or weights only.
    """
    from simplecv.core.checkpoint import check_compatible, load_checkpoint

    state = load_checkpoint(path)
    check_compatible(state, config_name, digest, path)
    if resume_iter is not None and int(state.get('global_step', -1)) != resume_iter:
        raise CheckpointError('%s is at step %s, not --resume_iter %d' % (path, state.get('global_step'), resume_iter))
    if 'opt' not in state:
        raise CheckpointError('%s holds model weights only (no optimizer state or step), so training cannot continue '
                              'from it exactly; resume from a checkpoint written by apex_train.py' % path)
    return state


def _build_trainer(args, config, world_size, rank, state_info):
    """Build model, optimizer, schedule, AMP, data loader, hooks (rank 0) and the trainer, in SimpleCV's order."""
    import paddle

    from simplecv.core import registry
    from simplecv.core.trainer import (CheckpointHook, LoggerHook, PlotHook, Trainer, VisualDLHook, prepare_amp,
                                       unwrap_model)
    from simplecv.opt import make_learning_rate, make_optimizer

    registry.populate()
    train_cfg = config.train
    paddle.seed(train_cfg.get('seed', DEFAULT_SEED))
    model = _use_sync_bn(registry.MODEL[config.model.type](config.model.params), config, world_size)
    lr_schedule = make_learning_rate(config.learning_rate)
    optimizer = make_optimizer(config.optimizer, model.parameters(), lr_schedule.base_lr)
    model, optimizer, scaler = prepare_amp(model, optimizer, args.opt_level, args.amp_dtype)
    if world_size > 1:
        model = paddle.DataParallel(model)
    loader = registry.DATALOADER[config.data.train.type](config.data.train.params)
    hooks = []
    if rank == 0:
        hooks = [LoggerHook(train_cfg.get('log_interval_step', 50), args.model_dir),
                 CheckpointHook(args.model_dir, _checkpoint_interval(train_cfg, len(loader))),
                 VisualDLHook(args.model_dir, train_cfg.get('tensorboard_interval_step', 100)),
                 PlotHook(args.model_dir, title='%s (%s)' % (args.config_path, os.path.basename(args.model_dir)))]
    trainer = Trainer(model, optimizer, lr_schedule, train_cfg.num_iters, args.opt_level, args.amp_dtype, scaler,
                      hooks, state_info)
    _logger.info('%d process(es) x batch %s, %d steps per epoch, %d steps (~%.1f epochs), AMP %s%s, %d trainable '
                 'parameters', world_size, config.data.train.params.get('batch_size'), len(loader),
                 train_cfg.num_iters, train_cfg.num_iters / max(len(loader), 1), args.opt_level,
                 '' if args.opt_level == 'O0' else ' ' + args.amp_dtype,
                 sum(int(p.size) for p in unwrap_model(model).parameters() if not p.stop_gradient))
    return trainer, loader


def _format_config(config):
    import pprint

    return pprint.pformat(config.to_dict(), width=110, sort_dicts=False)


def main(argv=None):
    """Run training from the command line; returns the exit status.

    0: done; 2: a bad config, data set, checkpoint or ``--model_dir``, a sample that fails to load
    during the run, or a full or read-only ``--model_dir`` (one-line message on stderr, no
    traceback); 130 or 143: stopped by Ctrl-C or SIGTERM after saving a checkpoint.
    """
    args = parse_args(argv)
    try:
        return train(args)
    except FactSegError as error:
        sys.stderr.write('apex_train.py: error: %s\n' % error)
        return 2
    except Exception as error:  # noqa: BLE001 (only a dead loader worker is turned into a message)
        from simplecv.data.fail_fast import worker_death_error

        death = worker_death_error(error)
        if death is None:
            raise
        sys.stderr.write('apex_train.py: error: %s\n' % death)
        return 2


if __name__ == '__main__':
    sys.exit(main())
