"""Evaluate FactSeg checkpoints on large images with the official sliding-window procedure.

The procedure is the official one (``tools/isaid_eval.py``, spec §9): windows of
``--patch_size`` every ``--stride`` pixels (512) placed as the training patcher places them,
each normalised, zero-padded to a multiple of 32 and passed through the model; the fused
probabilities are averaged over overlapping windows and the class is the argmax. The metric
is a 16x16 confusion matrix (background included) summed in int64 over all images, with
per-class IoU, mIoU (16 classes) and foreground mIoU (15 classes); ground-truth pixels equal to
255 are left out. See :mod:`simplecv.inference.sliding_window` and :mod:`simplecv.metric.miou`.

It is faster than the official script with the same predictions: windows are batched, sums
stay on the device, only a band of rows is accumulated at a time, the next image is decoded
while the current one runs, and on CPU the model runs through Paddle Inference with oneDNN
(checked against dygraph on its first window; programs that passed are cached between runs,
see ``--cache_dir``; ``--backend dygraph`` gives the exact reference arithmetic).

Inputs: ``--image_dir`` holds ``<name>.png`` (or .jpg/.bmp, or GeoTIFF ``.tif``) images.
Masks in ``--mask_dir`` are the iSAID colour masks ``<name>_instance_color_RGB.png``
(``--mask_format color``) or single-channel label PNGs ``<name>_label.png`` / ``<name>.png``
(``--mask_format label``; 255 = ignore). Greyscale images are repeated to RGB, RGBA drops
alpha; images smaller than a patch are one window (padded to a multiple of 32). Without
``--mask_dir`` the images are only predicted.

Outputs: ``--log_dir/eval_<checkpoint>.txt`` and ``.json`` (table, mIoU, foreground mIoU,
confusion matrix), VisualDL scalars (``eval-miou/miou``, ``eval-miou/miou-fg``,
``eval-ious/<class>``) and, with several checkpoints, ``eval_summary.json`` naming the best.
``--vis_dir`` receives palette PNGs (pixel values are the classes, shown in the iSAID colours);
for GeoTIFF inputs a single-band GeoTIFF with the same CRS and transform and a colour table.
Predict-only runs also write ``<name>_label.png`` (plain 8-bit labels).
"""

import os
import sys

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import simplecv.util.mkl_env  # noqa: E402,F401  (before Paddle runs: MKL's AVX2 path on AMD CPUs)
from simplecv.core.errors import FactSegError  # noqa: E402
from simplecv.util.cli import (  # noqa: E402
    add_choice_option,
    add_config_overrides,
    check_config_overrides,
    config_script_parser,
)
from simplecv.util.logger import configure_logging, get_logger  # noqa: E402

_LOGGER = get_logger('factseg.eval')

EPILOG = """examples:
  # the official evaluation (iSAID val, official settings)
  python isaid_eval.py --config_path isaid.factseg --ckpt_path log/model-60000.pdparams \\
      --image_dir isaid_segm/val/images --mask_dir isaid_segm/val/masks \\
      --vis_dir log/vis-60000 --log_dir log --patch_size 896

  # every checkpoint of a training run; reports the best
  python isaid_eval.py --config_path isaid.factseg --ckpt_path log/ \\
      --image_dir isaid_segm/val/images --mask_dir isaid_segm/val/masks --log_dir log

  # predict only (no masks): palette PNGs and label PNGs, or GeoTIFFs for .tif inputs
  python isaid_eval.py --config_path isaid.factseg --ckpt_path log/model-60000.pdparams \\
      --image_dir my_scenes --vis_dir predictions

  # small demo model with smaller windows, 4 windows per forward
  python isaid_eval.py --config_path isaid.factseg_demo --ckpt_path demo_output/ \\
      --image_dir demo_data/val/images --mask_dir demo_data/val/masks --log_dir demo_output \\
      --patch_size 256 --stride 128 --batch_size 4
"""


def build_parser():
    """The argument parser (official flags first)."""
    parser = config_script_parser('isaid_eval.py', __doc__, EPILOG)
    parser.add_argument(
        '--ckpt_path',
        required=True,
        help='checkpoint file, a folder of *.pdparams checkpoints, or a glob pattern '
        '(quote it); several checkpoints are each evaluated and the best is reported',
    )
    parser.add_argument('--image_dir', required=True, help='folder of <name>.png / .jpg / .tif images')
    parser.add_argument(
        '--mask_dir', default=None, help='folder of masks; leave out to predict only (then --vis_dir is needed)'
    )
    parser.add_argument('--vis_dir', default=None, help='write colour-coded predictions (iSAID palette) here')
    parser.add_argument(
        '--log_dir', default=None, help='write the IoU table (.txt), results (.json) and VisualDL scalars here'
    )
    parser.add_argument('--patch_size', default=896, type=int, help='window size in pixels (official: 896)')
    parser.add_argument(
        '--stride',
        default=512,
        type=int,
        help='step between windows (official: 512, fixed there); at most --patch_size',
    )
    parser.add_argument(
        '--batch_size', default=1, type=int, help='windows per forward pass; any value gives the same predictions'
    )
    add_choice_option(
        parser,
        '--mask_format',
        ('color', 'label'),
        'color: iSAID <name>_instance_color_RGB.png colour masks (default); '
        'label: single-channel <name>_label.png or <name>.png with classes 0..15, 255 ignored',
    )
    add_choice_option(
        parser,
        '--backend',
        ('auto', 'dygraph', 'onednn'),
        'auto: oneDNN fast path on CPU (checked against dygraph on the first window), '
        'dygraph elsewhere; dygraph: exact reference arithmetic; onednn: CPU fast path',
    )
    parser.add_argument(
        '--cache_dir',
        default=None,
        help='where exported oneDNN programs are kept between runs (default: $FACTSEG_CACHE_DIR, '
        'else ~/.cache/factseg-paddle; "none" turns the cache off; '
        'python tools/program_cache.py --clear empties it)',
    )
    add_choice_option(
        parser,
        '--amp',
        ('none', 'fp16', 'bf16'),
        'mixed-precision inference on a GPU (dygraph backend; output cast back to float32)',
    )
    parser.add_argument(
        '--tta',
        action='store_true',
        help='average with horizontally and vertically flipped windows (not in the official protocol)',
    )
    parser.add_argument(
        '--device',
        default=None,
        choices=('cpu', 'gpu'),
        help="Paddle device (default: Paddle's default, the GPU when there is one)",
    )
    add_config_overrides(parser, 'model.params.num_classes 16')
    return parser


def parse_args(argv=None):
    """Parse the command line and check the window, batch, output and override options (no file access).

    Raises:
        SystemExit: on a usage error, as argparse does.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.patch_size < 32:
        parser.error('--patch_size must be at least 32, got %d' % args.patch_size)
    if not 0 < args.stride <= args.patch_size:
        parser.error('--stride must be in 1..--patch_size (%d), got %d' % (args.patch_size, args.stride))
    if args.batch_size < 1:
        parser.error('--batch_size must be at least 1, got %d' % args.batch_size)
    if args.mask_dir is None and args.vis_dir is None:
        parser.error('without --mask_dir there is nothing to score: give --vis_dir for the predictions')
    if args.mask_dir is None and args.log_dir is not None:
        _LOGGER.warning('no --mask_dir: predict only, nothing is written to --log_dir')
    check_config_overrides(parser, args.opts)
    return args


def main(argv=None):
    """Run the evaluation; returns one result dict per checkpoint (see the module docstring).

    Args:
        argv: the arguments (default ``sys.argv[1:]``).

    Raises:
        FactSegError: a bad file, folder, config or checkpoint (the message says what to fix).
    """
    args = parse_args(argv)
    configure_logging()
    import paddle

    from simplecv.api.infer_tool import build_config
    from simplecv.engine.checkpoint_evaluation import evaluate_checkpoints

    if args.device is not None:
        paddle.set_device(args.device)
    if paddle.distributed.get_world_size() > 1:
        paddle.distributed.init_parallel_env()
    config = build_config(args.config_path, args.opts)
    return evaluate_checkpoints(
        config,
        args.ckpt_path,
        args.image_dir,
        args.mask_dir,
        args.mask_format,
        args.vis_dir,
        args.log_dir,
        args.patch_size,
        args.stride,
        args.batch_size,
        args.backend,
        args.amp,
        args.tta,
        args.cache_dir,
    )


if __name__ == '__main__':
    try:
        main()
    except FactSegError as error:
        sys.stderr.write('isaid_eval.py: error: %s\n' % error)
        sys.exit(2)
