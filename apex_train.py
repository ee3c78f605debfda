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
logged step), VisualDL scalars (``visualdl --logdir MODEL_DIR``) and ``training_curves.png``; with
``train.eval_interval_iter``/``eval_per_epoch``/``eval_after_train``, ``eval_log.jsonl`` and
``model-best.pdparams``. Everything is done by :func:`simplecv.engine.launcher.train_from_config`.
"""

import os
import sys

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import simplecv.util.mkl_env  # noqa: E402,F401  (before Paddle runs: MKL's AVX2 path on AMD CPUs)
from simplecv.core.errors import FactSegError  # noqa: E402
from simplecv.engine.launcher import train_from_config  # noqa: E402
from simplecv.util.cli import add_choice_option, config_script_parser, parse_with_overrides  # noqa: E402
from simplecv.util.logger import configure_logging  # noqa: E402

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
    """The argument parser (official flags first; the config overrides are added when parsing)."""
    parser = config_script_parser('apex_train.py', __doc__, EPILOG)
    parser.add_argument(
        '--model_dir',
        required=True,
        help='output folder for checkpoints and logs; a run resumes from the checkpoint it holds',
    )
    add_choice_option(
        parser,
        '--opt_level',
        ('O0', 'O1', 'O2'),
        'mixed precision: O0 fp32 (default), O1 autocast (the official run), '
        'O2 half-precision weights with fp32 master copies; GPU only, fp32 on CPU',
    )
    add_choice_option(
        parser,
        '--amp_dtype',
        ('float16', 'bfloat16'),
        'half-precision type for O1/O2 (float16 uses a dynamic loss scaler; default float16)',
    )
    parser.add_argument(
        '--resume',
        '--resume_model_path',
        dest='resume',
        default=None,
        metavar='CKPT',
        help='continue from this checkpoint (model, optimizer, scaler, step) instead of the last one in --model_dir',
    )
    parser.add_argument(
        '--resume_iter',
        type=int,
        default=None,
        metavar='N',
        help='continue from --model_dir/model-N.pdparams (with --resume: check that the checkpoint is at step N)',
    )
    parser.add_argument('--cpu', action='store_true', help='train on the CPU even when a GPU is present')
    parser.add_argument(
        '--local_rank',
        type=int,
        default=None,
        help='accepted for compatibility with torch.distributed.launch; Paddle sets the rank',
    )
    return parser


def parse_args(argv=None):
    """Parse the command line and check the overrides and ``--resume_iter`` (no file access).

    Raises:
        SystemExit: on a usage error, as argparse does.
    """
    parser = build_parser()
    args = parse_with_overrides(parser, argv, 'train.num_iters 1000')
    if args.resume_iter is not None and args.resume_iter < 0:
        parser.error('--resume_iter must be >= 0, got %d' % args.resume_iter)
    return args


def main(argv=None):
    """Run training from the command line; returns the exit status.

    0: done; 2: a bad config, data set, checkpoint or ``--model_dir``, a sample that fails to load
    during the run, or a full or read-only ``--model_dir`` (one-line message on stderr, no
    traceback); 130 or 143: stopped by Ctrl-C or SIGTERM after saving a checkpoint.
    """
    args = parse_args(argv)
    configure_logging()
    try:
        return train_from_config(
            args.config_path,
            args.model_dir,
            args.opts,
            args.opt_level,
            args.amp_dtype,
            args.resume,
            args.resume_iter,
            args.cpu,
        )
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
