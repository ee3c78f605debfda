"""Time onnxruntime against Paddle Inference on the same exported FactSeg window, same run.

The model (``--config_path``, initial weights unless ``--ckpt_path``) is exported once with
``tools/export_model.py``'s code (matmul interpolation, fixed window) and converted to ONNX with
paddle2onnx; then the same random normalised window goes through

1. ``paddle``: the Paddle Inference program with oneDNN (``tools/infer.py``'s default);
2. ``onnxruntime``: ``model.onnx`` on onnxruntime's CPU provider (``--backend onnxruntime``);

``--repeats`` times each, the two alternating so that a busy machine slows them alike, after one
untimed warm-up run each. Printed: the export and conversion times, the median wall seconds and
process CPU seconds per window, the speed ratio to Paddle Inference, and each backend's largest
probability difference and number of differing labels against the Paddle model in dygraph (the
exact reference, run once, untimed).

Usage::

    OMP_NUM_THREADS=2 python bench/bench_onnx.py                        # FactSeg-R50, one 896x896 window
    OMP_NUM_THREADS=2 python bench/bench_onnx.py --config_path isaid.factseg_demo --input_size 256 256
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import simplecv.util.mkl_env  # noqa: E402,F401  (before Paddle runs: MKL's AVX2 path on AMD CPUs)
from simplecv.util.cli import add_size_option  # noqa: E402
from simplecv.util.logger import configure_logging  # noqa: E402


def parse_args(argv=None):
    """Parse ``argv`` (default ``sys.argv[1:]``) into an ``argparse.Namespace``."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--config_path', default='isaid.factseg', help='config (default isaid.factseg, ResNet-50)')
    parser.add_argument('--ckpt_path', default=None, help='weights to load (default: the initial weights)')
    add_size_option(parser, '--input_size', (896, 896), 'window size, multiples of 32 (default 896 896)')
    parser.add_argument('--repeats', type=int, default=3, help='timed runs per backend (default 3)')
    return parser.parse_args(argv)


def timed(forward, window):
    """Run once; return (output, wall seconds, process CPU seconds)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = forward(window)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None):
    """Export one model, time Paddle Inference against onnxruntime per window and print the table.

    Returns:
        int: the exit status 0.
    """
    args = parse_args(argv)
    configure_logging()
    import paddle
    from tqdm import tqdm

    from data.isaid import CLASS_NAMES, COLOR_MAP
    from simplecv.api.infer_tool import build_and_load_from_file, build_config, build_from_file
    from simplecv.inference.onnx_backend import OnnxModelForward, export_onnx
    from simplecv.inference.sliding_window import normalization_from_config
    from simplecv.inference.static_model import StaticModelForward, export_model

    paddle.set_device('cpu')
    paddle.seed(0)
    if args.ckpt_path:
        model = build_and_load_from_file(args.config_path, args.ckpt_path)[0]
    else:
        model = build_from_file(args.config_path)
    mean, std = normalization_from_config(build_config(args.config_path))
    window = np.random.RandomState(0).randn(1, 3, *args.input_size).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        export_model(model, folder, (1, 3) + tuple(args.input_size), mean, std, CLASS_NAMES, COLOR_MAP)
        export_s = time.perf_counter() - start
        start = time.perf_counter()
        onnx_path = export_onnx(folder)
        convert_s = time.perf_counter() - start
        onnx_mb = os.path.getsize(onnx_path) / 2**20

        backends = {'paddle': StaticModelForward(folder), 'onnxruntime': OnnxModelForward(folder)}
        outputs, walls, cpus = {}, {n: [] for n in backends}, {n: [] for n in backends}
        for forward in backends.values():  # warm-up: first-run allocations and oneDNN kernel choice
            forward(window)
        for _ in tqdm(range(args.repeats), desc='repeats', unit='round', dynamic_ncols=True):
            for name, forward in backends.items():
                outputs[name], wall, cpu = timed(forward, window)
                walls[name].append(wall)
                cpus[name].append(cpu)

    with paddle.no_grad():
        reference = model(paddle.to_tensor(window)).numpy()
    print(
        'config %s, window %dx%d, OMP_NUM_THREADS=%s, %d repeats'
        % (args.config_path, *args.input_size, os.environ.get('OMP_NUM_THREADS', 'unset'), args.repeats)
    )
    print('Paddle export %.1f s; paddle2onnx conversion %.1f s (model.onnx %.0f MiB)' % (export_s, convert_s, onnx_mb))
    print(
        '%-12s %10s %10s %14s %16s %16s'
        % ('backend', 's/window', 'CPU s', 'vs paddle', 'max |p - dygraph|', 'labels differing')
    )
    base = float(np.median(walls['paddle']))
    for name in backends:
        median = float(np.median(walls[name]))
        difference = float(np.abs(outputs[name] - reference).max())
        differing = int((outputs[name].argmax(1) != reference.argmax(1)).sum())
        print(
            '%-12s %10.2f %10.2f %13.2fx %16.2e %16d'
            % (name, median, float(np.median(cpus[name])), base / median, difference, differing)
        )
    return 0


if __name__ == '__main__':
    sys.exit(main())
