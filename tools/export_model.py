"""Export a trained FactSeg checkpoint to a Paddle Inference program for deployment.

The program takes normalised windows ``[N, 3, H, W]`` (H, W multiples of 32) and returns the
fused class probabilities; ``deploy.json`` beside it records the normalisation, class names
and palette for ``tools/infer.py``.
"""

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import simplecv.util.mkl_env  # noqa: E402,F401  (before Paddle runs: MKL's AVX2 path on AMD CPUs)
from simplecv.util.cli import add_choice_option, add_size_option, parse_with_overrides, script_parser  # noqa: E402
from simplecv.util.logger import configure_logging  # noqa: E402

EPILOG = """examples:
  python tools/export_model.py --config_path isaid.factseg --ckpt_path log/model-60000.pdparams \\
      --save_dir inference_model                          # CPU + oneDNN, 896x896 windows
  python tools/export_model.py --config_path isaid.factseg --ckpt_path factseg50.pdparams \\
      --save_dir inference_model_gpu --interpolation native --input_size -1 -1 --batch_size -1
  python tools/export_model.py --config_path isaid.factseg --ckpt_path factseg50.pdparams \\
      --save_dir inference_model --format onnx            # + model.onnx for onnxruntime
"""


def parse_args(argv=None):
    """Parse ``argv`` (default ``sys.argv[1:]``) into an ``argparse.Namespace``.

    Raises:
        SystemExit: invalid options (argparse prints the usage).
    """
    parser = script_parser('python tools/export_model.py', __doc__, EPILOG)
    parser.add_argument('--config_path', required=True, help="config: dotted name ('isaid.factseg') or .py file")
    parser.add_argument('--ckpt_path', required=True, help='checkpoint of apex_train.py or converted official weights')
    parser.add_argument('--save_dir', required=True, help='output folder for model.json, model.pdiparams, deploy.json')
    add_size_option(
        parser,
        '--input_size',
        (896, 896),
        'window height and width the program takes, multiples of 32 (default 896 896; '
        '-1 -1 for free sizes with --interpolation native)',
    )
    parser.add_argument('--batch_size', type=int, default=1, help='windows per run (-1: free, native only)')
    add_choice_option(
        parser,
        '--interpolation',
        ('matmul', 'native'),
        'matmul: exact matmul interpolation that runs under oneDNN on CPU (fixed shape); '
        'native: Paddle interpolation ops (GPU; free shapes)',
    )
    add_choice_option(
        parser,
        '--format',
        ('paddle', 'onnx'),
        'paddle: the Paddle Inference program (default); onnx: also model.onnx beside it, '
        'converted with paddle2onnx (matmul interpolation only)',
    )
    args = parse_with_overrides(parser, argv, 'model.params.num_classes 16')
    if any(v > 0 and v % 32 for v in args.input_size):
        parser.error('--input_size must be multiples of 32 (the FPN needs them), got %s' % (args.input_size,))
    return args


def main(argv=None):
    """Export; returns the exit status (0, or 2 with a message on stderr)."""
    args = parse_args(argv)
    configure_logging()
    from data.isaid import CLASS_NAMES, COLOR_MAP
    from simplecv.api.infer_tool import build_and_load_from_file, build_config
    from simplecv.core.errors import FactSegError
    from simplecv.inference.sliding_window import normalization_from_config
    from simplecv.inference.static_model import export_model

    try:
        config = build_config(args.config_path, args.opts)
        model, step = build_and_load_from_file(args.config_path, args.ckpt_path, args.opts)
        mean, std = normalization_from_config(config)
        shape = (args.batch_size, 3) + tuple(args.input_size)
        prefix = export_model(model, args.save_dir, shape, mean, std, CLASS_NAMES, COLOR_MAP, args.interpolation)
        if args.format == 'onnx':
            from simplecv.inference.onnx_backend import export_onnx

            export_onnx(args.save_dir)
    except (FactSegError, ValueError) as error:
        print('error: %s' % error, file=sys.stderr)
        return 2
    files = '.json / .pdiparams' if args.format == 'paddle' else '.onnx (and .json / .pdiparams)'
    print('exported %s (step %s) to %s%s, input %s' % (args.ckpt_path, step, prefix, files, list(shape)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
