"""Time the sliding-window evaluator against the straightforward official procedure, same run.

For each generated image size it runs, on the same model and image:

1. ``reference``: the official procedure as written (one window at a time, batch 1, dygraph,
   full-image float32 probability sum; :func:`simplecv.inference.sliding_window.predict_per_window`);
2. ``dygraph``: :class:`SlidingWindowPredictor` with the dygraph forward (exact arithmetic);
3. ``onednn``: :class:`SlidingWindowPredictor` with the CPU fast path (Paddle Inference +
   oneDNN, checked against dygraph on the first window; includes its export time).

and prints windows/s, process CPU seconds (fairer than wall time on a shared machine), peak
resident memory above the start of the run (sampled every 20 ms),
the speed ratio to the reference and whether the labels equal the reference's (the number of
differing pixels and, for the fast path, the largest probability difference of its check).

Usage::

    OMP_NUM_THREADS=2 python bench/bench_eval.py --sizes 2048x2048 4000x6000
    OMP_NUM_THREADS=2 python bench/bench_eval.py --sizes 1024x1024 --patch_size 512 --modes reference onednn

The model is ``--config_path`` built with its initial weights (no file needed) unless
``--ckpt_path`` is given; speed does not depend on the weights.
"""
import argparse
import json
import os
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import simplecv.util.mkl_env  # noqa: E402,F401  (before Paddle runs: MKL's AVX2 path on AMD CPUs)

MODES = ('reference', 'dygraph', 'onednn')


class PeakMemory:
    """Peak resident set size (MiB) above the level at entry, sampled in a thread."""

    def __init__(self, interval=0.02):
        import psutil

        self.process = psutil.Process()
        self.interval = interval
        self.peak = 0

    def __enter__(self):
        self.start = self.process.memory_info().rss
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def mib(self):
        return (self.peak - self.start) / 2 ** 20


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config_path', default='isaid.factseg', help='config (dotted name or .py file)')
    parser.add_argument('--ckpt_path', default=None, help='optional checkpoint to load')
    parser.add_argument('--sizes', nargs='+', default=['2048x2048', '4000x6000'], help='image sizes HxW')
    parser.add_argument('--patch_size', type=int, default=896, help='window size')
    parser.add_argument('--stride', type=int, default=512, help='window step')
    parser.add_argument('--batch_size', type=int, default=2, help='windows per forward for the evaluator')
    parser.add_argument('--modes', nargs='+', default=list(MODES), choices=MODES, help='what to time')
    parser.add_argument('--seed', type=int, default=0, help='seed of the generated image')
    parser.add_argument('--json', default=None, help='also write the figures to this JSON file')
    parser.add_argument('opts', nargs=argparse.REMAINDER, help='config overrides, KEY VALUE ...')
    return parser.parse_args(argv)


def make_image(height, width, seed):
    """A synthetic aerial-looking uint8 image (tiles of the demo renderer)."""
    from data.demo import render_sample

    rng = np.random.default_rng(seed)
    tile = 512
    image = np.zeros((height, width, 3), dtype=np.uint8)
    for y in range(0, height, tile):
        for x in range(0, width, tile):
            part = render_sample(rng, (tile, tile))[0]
            image[y:y + tile, x:x + tile] = part[:min(tile, height - y), :min(tile, width - x)]
    return image


def run_mode(mode, model, image, args):
    from simplecv.inference.fast_path import DygraphForward, OneDNNForward
    from simplecv.inference.sliding_window import SlidingWindowPredictor, predict_per_window

    patch = (args.patch_size, args.patch_size)
    extra = {}
    with PeakMemory() as memory:
        start, cpu_start = time.perf_counter(), time.process_time()
        if mode == 'reference':
            _, labels = predict_per_window(DygraphForward(model), image, patch, args.stride)
        else:
            forward = DygraphForward(model) if mode == 'dygraph' else OneDNNForward(model)
            predictor = SlidingWindowPredictor(forward, patch, args.stride, batch_size=args.batch_size)
            labels = predictor.predict(image)
            if mode == 'onednn':
                extra = dict(fell_back=forward.fallback is not None, check_max_abs_diff=forward.max_difference)
                forward.close()
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return labels.astype(np.uint8), dict(seconds=round(seconds, 2), cpu_seconds=round(cpu_seconds, 2),
                                         peak_mib=round(memory.mib, 1), **extra)


def main(argv=None):
    args = parse_args(argv)
    import paddle

    from simplecv.api.infer_tool import build_and_load_from_file, build_from_file
    from simplecv.data.sliding_window import sliding_window

    if args.ckpt_path:
        model, _ = build_and_load_from_file(args.config_path, args.ckpt_path, args.opts)
    else:
        paddle.seed(0)
        model = build_from_file(args.config_path, args.opts)
    threads = os.environ.get('OMP_NUM_THREADS', 'unset')
    print('paddle %s, %s, OMP_NUM_THREADS=%s, patch %d, stride %d, evaluator batch %d'
          % (paddle.__version__, paddle.get_device(), threads, args.patch_size, args.stride, args.batch_size))
    report = []
    for size in args.sizes:
        height, width = (int(v) for v in size.lower().split('x'))
        image = make_image(height, width, args.seed)
        windows = len(sliding_window((height, width), (args.patch_size, args.patch_size), args.stride))
        results = {}
        labels = {}
        for mode in args.modes:
            labels[mode], results[mode] = run_mode(mode, model, image, args)
            results[mode]['windows_per_s'] = round(windows / results[mode]['seconds'], 4)
        base = results.get('reference')
        for mode, result in results.items():
            if base is not None and mode != 'reference':
                result['speedup_vs_reference'] = round(base['seconds'] / result['seconds'], 2)
                result['cpu_time_ratio'] = round(base['cpu_seconds'] / result['cpu_seconds'], 2)
                result['label_pixels_differing'] = int((labels[mode] != labels['reference']).sum())
            print('%-10s %-9s %3d windows  %8.1f s  %7.3f win/s  peak +%7.1f MiB  %s' % (
                size, mode, windows, result['seconds'], result['windows_per_s'], result['peak_mib'],
                ', '.join('%s=%s' % (k, v) for k, v in result.items()
                          if k not in ('seconds', 'windows_per_s', 'peak_mib'))), flush=True)
        report.append(dict(size=size, windows=windows, **results))
    if args.json:
        with open(args.json, 'w') as stream:
            json.dump(dict(threads=threads, patch_size=args.patch_size, stride=args.stride,
                           batch_size=args.batch_size, results=report), stream, indent=1)
    return report


if __name__ == '__main__':
    main()
