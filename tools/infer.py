"""Predict label maps of large images with an exported FactSeg program (no config, no torch).

Each image (PNG/JPEG, or a GeoTIFF read by rows) goes through the official sliding-window
procedure; outputs are ``<name>.png`` (iSAID palette) and ``<name>_label.png`` (class indices),
or for GeoTIFF input a one-band ``<name>.tif`` keeping the CRS and transform.
"""

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import simplecv.util.mkl_env  # noqa: E402,F401  (before Paddle runs: MKL's AVX2 path on AMD CPUs)
from simplecv.util.cli import add_choice_option, script_parser  # noqa: E402
from simplecv.util.logger import configure_logging  # noqa: E402

EPILOG = """example:
  python tools/export_model.py --config_path isaid.factseg --ckpt_path factseg50.pdparams --save_dir inference_model
  python tools/infer.py --model_dir inference_model --image_dir my_scenes --out_dir predictions
"""


def parse_args(argv=None):
    """Parse ``argv`` (default ``sys.argv[1:]``) into an ``argparse.Namespace``.

    Raises:
        SystemExit: invalid options, e.g. ``--use_gpu`` with ``--backend onnxruntime``.
    """
    parser = script_parser('python tools/infer.py', __doc__, EPILOG)
    parser.add_argument('--model_dir', required=True, help='folder written by tools/export_model.py')
    parser.add_argument('--image_dir', required=True, help='folder of images, or one image file')
    parser.add_argument('--out_dir', required=True, help='where the predictions are written')
    parser.add_argument(
        '--patch_size',
        type=int,
        default=None,
        help='window size; default: the exported input size (896 unless exported otherwise)',
    )
    parser.add_argument('--stride', type=int, default=None, help='window step (default: min(512, patch size))')
    parser.add_argument('--batch_size', type=int, default=1, help='windows per run; any value gives the same result')
    parser.add_argument('--use_gpu', action='store_true', help='run on GPU 0 (needs an --interpolation native export)')
    add_choice_option(
        parser,
        '--backend',
        ('paddle', 'onnxruntime'),
        'paddle: the Paddle Inference program (default); onnxruntime: model.onnx of an '
        '--format onnx export, on the CPU',
    )
    args = parser.parse_args(argv)
    if args.use_gpu and args.backend == 'onnxruntime':
        parser.error('--use_gpu runs the Paddle program; --backend onnxruntime runs on the CPU only')
    return args


def list_images(image_dir):
    """List and check the images to predict, as training and evaluation list and check them.

    Args:
        image_dir: a folder of images (PNG, JPEG, BMP, TIFF/GeoTIFF), or one image file.

    Returns:
        list: :class:`simplecv.io.pairs.ImagePair` objects (no masks), sorted by name.

    Raises:
        DataError: naming the file (or folder) and the fix.
    """
    from data.isaid import list_isaid_pairs

    return list_isaid_pairs(image_dir)


def main(argv=None):
    """Predict; returns the exit status (0, or 2 with a message on stderr)."""
    args = parse_args(argv)
    configure_logging()
    from simplecv.core.errors import FactSegError
    from simplecv.engine.evaluator import Evaluator
    from simplecv.inference.static_model import StaticModelForward

    try:
        if args.backend == 'onnxruntime':
            from simplecv.inference.onnx_backend import OnnxModelForward

            forward = OnnxModelForward(args.model_dir)
        else:
            forward = StaticModelForward(args.model_dir, use_gpu=args.use_gpu)
        info = forward.info
        exported = info['input_shape'][2:]
        patch = args.patch_size or (exported[0] if exported[0] > 0 else 896)
        stride = args.stride or min(512, patch)
        colors = [tuple(c) for c in info['colors']]
        evaluator = Evaluator(
            forward,
            len(colors),
            patch,
            stride,
            info['mean'],
            info['std'],
            info.get('class_names'),
            colors,
            batch_size=args.batch_size,
        )
        pairs = list_images(args.image_dir)
        os.makedirs(args.out_dir, exist_ok=True)
        evaluator.run(pairs, args.out_dir, label_pngs=True, desc='predict')
    except (FactSegError, ValueError) as error:
        print('error: %s' % error, file=sys.stderr)
        return 2
    print('wrote predictions of %d images to %s' % (len(pairs), args.out_dir))
    return 0


if __name__ == '__main__':
    sys.exit(main())
