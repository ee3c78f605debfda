"""Time whole prediction processes: ``isaid_eval.py`` against the official procedure in PyTorch.

For each generated image it runs, one after the other on the same image and the same weights:

* ``torch``: a fresh Python process that imports PyTorch, builds the reference FactSeg
  (``torch_ref/reference.py``), loads the weights, reads the PNG, runs the official
  sliding-window procedure (:func:`torch_ref.reference.predict_sliding_window`: per window
  normalise, pad to 32, fused probabilities, full-image average over overlaps, argmax) and
  writes the label PNG;
* ``ours-cold``: ``isaid_eval.py`` predict-only (palette + label PNGs) with an empty program
  cache, so it exports the oneDNN program and checks it against dygraph;
* ``ours``: the same command again, with the program cached by an earlier run (of any image);
* ``ours+masks``: ``isaid_eval.py`` with a label mask (prediction + metric, cached program);
* ``ours-lean``: ``ours`` with ``FACTSEG_LEAN_MEMORY=1``: freed memory goes back to the system
  at once during the sweep too (:func:`simplecv.inference.heap.lean_memory`), the lowest
  peak memory at the cost of page faults each window;
* ``ours-no-mkl5`` (``--mkl``): ``ours`` with ``MKL_DEBUG_CPU_TYPE`` set empty, which keeps the
  entry points from setting it to 5 on AMD CPUs (:mod:`simplecv.util.mkl_env`): what that
  setting does for the oneDNN path.

Each figure is a whole process, start-up included: wall seconds from launch to exit, windows
per second, CPU seconds (user + system; less sensitive than wall time to other jobs on a shared
machine), the peak resident memory of the process (``ru_maxrss`` from ``wait4``) and the load
average when it ended. The ratios are the torch process's seconds (wall, CPU) over ours. The labels
of every prediction are compared with the torch labels pixel by pixel.

Weights: a seeded PyTorch FactSeg of the chosen config as initialised, with random BatchNorm
statistics (``randomize_batchnorm_``), saved as ``.pth`` and converted with
``torch_ref/convert.py``; both sides load the same numbers. An untrained model has many
near-ties between classes, so a few labels may differ between any two float32 implementations.
(Scaling its class head by 20 to make labels confident made the fused probabilities so
sensitive that the oneDNN program differed from dygraph by 1.8e-3 on the first window, above
the 1e-4 check, and the evaluator fell back to dygraph.)

Usage::

    OMP_NUM_THREADS=2 python bench/bench_eval.py --sizes 2472x2299
    OMP_NUM_THREADS=2 python bench/bench_eval.py --sizes 4000x13000:isaid.factseg_demo --modes torch ours
    OMP_NUM_THREADS=2 python bench/bench_eval.py --lock LOCKFILE ...   # each process under an exclusive flock

``SIZE`` is ``HxW`` or ``HxW:config`` (default config ``isaid.factseg``, FactSeg-R50).
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time

import numpy as np

LEAN_MEMORY_ENV = 'FACTSEG_LEAN_MEMORY'  # simplecv.inference.heap's, not imported: keeps the parent small
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = ('torch', 'ours-cold', 'ours', 'ours+masks', 'ours-lean', 'ours-no-mkl5')


def parse_args(argv=None):
    """Parse ``argv`` (default ``sys.argv[1:]``) into an ``argparse.Namespace``."""
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        '--sizes',
        nargs='+',
        default=['2472x2299', '4000x6000', '4000x13000:isaid.factseg_demo'],
        help='images HxW or HxW:config',
    )
    parser.add_argument(
        '--modes',
        nargs='+',
        default=['torch', 'ours-cold', 'ours', 'ours+masks'],
        choices=MODES,
        help='processes to run for each size',
    )
    parser.add_argument('--mkl', action='store_true', help='also run ours without MKL_DEBUG_CPU_TYPE=5')
    parser.add_argument('--workdir', default='bench_eval_work', help='images, weights, outputs and logs go here')
    parser.add_argument('--patch_size', type=int, default=896, help='window size')
    parser.add_argument('--stride', type=int, default=512, help='window step')
    parser.add_argument('--seed', type=int, default=0, help='seed of the image and the weights')
    parser.add_argument('--lock', default=None, help='hold an exclusive flock on this file during each process')
    parser.add_argument('--json', default=None, help='also write the figures to this JSON file')
    parser.add_argument(
        '--torch-run', nargs=4, metavar=('PARAMS_JSON', 'WEIGHTS', 'IMAGE', 'OUT_PNG'), help=argparse.SUPPRESS
    )
    parser.add_argument('--prepare', nargs=3, metavar=('SIZE', 'CONFIG', 'FOLDER'), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mkl and 'ours-no-mkl5' not in args.modes:
        args.modes.append('ours-no-mkl5')
    return args


def torch_run(params_json, weights, image_path, out_png, patch_size, stride):
    """The ``torch`` process: official procedure in PyTorch, labels to ``out_png``."""
    sys.path.insert(0, REPO_ROOT)
    import torch
    from PIL import Image

    from torch_ref.reference import FactSeg, predict_sliding_window

    with open(params_json) as stream:
        model = FactSeg(json.load(stream))
    model.load_state_dict(torch.load(weights, map_location='cpu', weights_only=True))
    model.eval()
    image = np.asarray(Image.open(image_path).convert('RGB'))
    labels = predict_sliding_window(model, image, patch_size, stride)
    Image.fromarray(labels.numpy().astype(np.uint8)).save(out_png)


def weight_paths(config_name, workdir, seed):
    """Files of the seeded weights of ``config_name``: params JSON, torch ``.pth``, Paddle ``.pdparams``."""
    stem = os.path.join(workdir, 'weights-%s-%d' % (config_name.replace('.', '_'), seed))
    return dict(params=stem + '.json', pth=stem + '.pth', pdparams=stem + '.pdparams')


def make_weights(config_name, workdir, seed):
    """Seeded torch weights of ``config_name`` and their Paddle conversion; returns the paths."""
    paths = weight_paths(config_name, workdir, seed)
    if all(os.path.isfile(p) for p in paths.values()):
        return paths
    import torch

    from torch_ref.convert import convert_factseg_file, factseg_params_from_config
    from torch_ref.reference import FactSeg, randomize_batchnorm_

    params = factseg_params_from_config(config_name)
    params['resnet_encoder']['pretrained'] = False
    torch.manual_seed(seed)
    model = randomize_batchnorm_(FactSeg(params), torch.Generator().manual_seed(seed))
    torch.save(model.state_dict(), paths['pth'])
    convert_factseg_file(paths['pth'], paths['pdparams'], params)
    with open(paths['params'], 'w') as stream:
        json.dump(params, stream)
    return paths


def image_paths(height, width, folder):
    """``(name, image path)`` of the generated image of this size."""
    name = 'scene_%dx%d' % (height, width)
    return name, os.path.join(folder, 'images', name + '.png')


def make_image(height, width, seed, folder):
    """A synthetic aerial-looking image and its label mask (tiles of the demo renderer) as PNGs."""
    from PIL import Image

    from data.demo import render_sample

    name, image_path = image_paths(height, width, folder)
    mask_path = os.path.join(folder, 'masks', name + '_label.png')
    if os.path.isfile(image_path) and os.path.isfile(mask_path):
        return name, image_path
    os.makedirs(os.path.dirname(image_path), exist_ok=True)
    os.makedirs(os.path.dirname(mask_path), exist_ok=True)
    rng = np.random.default_rng(seed)
    tile = 512
    image = np.zeros((height, width, 3), dtype=np.uint8)
    label = np.zeros((height, width), dtype=np.uint8)
    for y in range(0, height, tile):
        for x in range(0, width, tile):
            part, part_label = render_sample(rng, (tile, tile))
            h, w = min(tile, height - y), min(tile, width - x)
            image[y : y + h, x : x + w] = part[:h, :w]
            label[y : y + h, x : x + w] = part_label[:h, :w]
    Image.fromarray(image).save(image_path)
    Image.fromarray(label).save(mask_path)
    return name, image_path


@contextlib.contextmanager
def exclusive(lock_path):
    """Hold an exclusive ``flock`` on ``lock_path`` (nothing if None)."""
    if lock_path is None:
        yield
        return
    import fcntl

    with open(lock_path, 'a') as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_process(command, log_path, env, lock):
    """Run ``command`` to completion.

    Returns:
        dict: wall ``seconds``, ``cpu_seconds`` (user + system), ``peak_rss_mib``, the 1-minute
        load average when it ended (``load``) and the exit ``code``.
    """
    with exclusive(lock), open(log_path, 'w') as log:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    return dict(
        seconds=seconds,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss_mib=usage.ru_maxrss / 1024.0,
        load=os.getloadavg()[0],
        code=process.returncode,
    )


def read_labels(path):
    """The ``[H, W]`` uint8 label map of a label PNG."""
    from PIL import Image

    return np.asarray(Image.open(path))


def eval_command(args, config, weights, folder, out_dir, cache_dir, masks):
    """The ``isaid_eval.py`` command line for ``folder/images``: with ``masks`` scored against
    ``folder/masks`` (logs in ``out_dir``), else predict-only (label maps in ``out_dir``)."""
    command = [
        sys.executable,
        os.path.join(REPO_ROOT, 'isaid_eval.py'),
        '--config_path',
        config,
        '--ckpt_path',
        weights,
        '--image_dir',
        os.path.join(folder, 'images'),
        '--patch_size',
        str(args.patch_size),
        '--stride',
        str(args.stride),
        '--cache_dir',
        cache_dir,
    ]
    if masks:
        return command + ['--mask_dir', os.path.join(folder, 'masks'), '--mask_format', 'label', '--log_dir', out_dir]
    return command + ['--vis_dir', out_dir]


def bench_size(args, spec):
    """Benchmark one scene size: prepare its image and weights, run torch and each of our variants.

    Args:
        args: the parsed options.
        spec: ``'HxW'`` or ``'HxW:config'`` (default config ``isaid.factseg``).

    Returns:
        dict: the size, window count and each variant's figures (see the module docstring).
    """
    size, _, config = spec.partition(':')
    config = config or 'isaid.factseg'
    height, width = (int(v) for v in size.lower().split('x'))
    from simplecv.data.sliding_window import sliding_window

    windows = len(sliding_window((height, width), (args.patch_size, args.patch_size), args.stride))
    folder = os.path.join(args.workdir, '%dx%d' % (height, width))
    # Made in a child process: the parent stays small, because a child's peak RSS (ru_maxrss)
    # counts the memory it was forked with.
    subprocess.run(
        [
            sys.executable,
            os.path.abspath(__file__),
            '--prepare',
            size,
            config,
            folder,
            '--workdir',
            args.workdir,
            '--seed',
            str(args.seed),
        ],
        check=True,
        cwd=REPO_ROOT,
    )
    name, image_path = image_paths(height, width, folder)
    weights = weight_paths(config, args.workdir, args.seed)
    # One cache per config, shared by the sizes (as a user's would be); ours-cold empties it.
    cache_dir = os.path.join(args.workdir, 'program_cache-' + config.replace('.', '_'))
    if 'ours-cold' in args.modes:
        from simplecv.inference.program_cache import ProgramCache

        ProgramCache(cache_dir).clear()
    results = {}
    labels = {}
    for mode in args.modes:
        out_dir = os.path.join(folder, 'out-' + mode)
        os.makedirs(out_dir, exist_ok=True)
        env = dict(os.environ)
        env.pop('MKL_DEBUG_CPU_TYPE', None)  # the entry points' default unless a mode sets it
        if mode == 'torch':
            label_path = os.path.join(out_dir, name + '_label.png')
            command = [
                sys.executable,
                os.path.abspath(__file__),
                '--torch-run',
                weights['params'],
                weights['pth'],
                image_path,
                label_path,
                '--patch_size',
                str(args.patch_size),
                '--stride',
                str(args.stride),
            ]
        else:
            label_path = None if mode == 'ours+masks' else os.path.join(out_dir, name + '_label.png')
            command = eval_command(
                args, config, weights['pdparams'], folder, out_dir, cache_dir, masks=mode == 'ours+masks'
            )
            if mode == 'ours-no-mkl5':
                env['MKL_DEBUG_CPU_TYPE'] = ''
            env[LEAN_MEMORY_ENV] = '1' if mode == 'ours-lean' else ''
        log_path = os.path.join(folder, mode + '.log')
        run = run_process(command, log_path, env, args.lock)
        if run['code'] != 0:
            raise SystemExit('bench_eval.py: %s exited with %d; see %s' % (mode, run['code'], log_path))
        seconds = run['seconds']
        results[mode] = dict(
            seconds=round(seconds, 1),
            windows_per_s=round(windows / seconds, 3),
            cpu_seconds=round(run['cpu_seconds'], 1),
            peak_rss_mib=round(run['peak_rss_mib']),
            load_at_end=round(run['load'], 2),
        )
        if label_path is not None:
            labels[mode] = read_labels(label_path)
        base = results.get('torch')
        if base is not None and mode != 'torch':
            results[mode]['ratio_vs_torch'] = round(base['seconds'] / seconds, 2)
            results[mode]['cpu_ratio_vs_torch'] = round(base['cpu_seconds'] / run['cpu_seconds'], 2)
            if mode in labels:
                results[mode]['labels_differing'] = int((labels[mode] != labels['torch']).sum())
        print(
            '%-10s %-18s %-12s %4d win %7.1f s %7.3f win/s  cpu %7.1f s  peak RSS %6d MiB  load %.1f  %s'
            % (
                size,
                config,
                mode,
                windows,
                seconds,
                windows / seconds,
                run['cpu_seconds'],
                run['peak_rss_mib'],
                run['load'],
                ', '.join(
                    '%s=%s' % (k, v)
                    for k, v in results[mode].items()
                    if k in ('ratio_vs_torch', 'cpu_ratio_vs_torch', 'labels_differing')
                ),
            ),
            flush=True,
        )
    pixels = height * width
    return dict(size=size, config=config, windows=windows, pixels=pixels, results=results)


def main(argv=None):
    """Run the benchmark, or one of its child roles (``--torch_run``, ``--prepare``).

    Returns:
        list or None: the per-size results (also written to ``--json``), None for a child role.
    """
    args = parse_args(argv)
    if args.torch_run:
        torch_run(*args.torch_run, args.patch_size, args.stride)
        return None
    sys.path.insert(0, REPO_ROOT)
    from simplecv.util.logger import configure_logging

    configure_logging()
    if args.prepare:
        size, config, folder = args.prepare
        make_image(*(int(v) for v in size.lower().split('x')), args.seed, folder)
        make_weights(config, args.workdir, args.seed)
        return None
    os.makedirs(args.workdir, exist_ok=True)
    args.workdir = os.path.abspath(args.workdir)
    from importlib.metadata import version

    print(
        'paddle %s, torch %s, OMP_NUM_THREADS=%s, MKL_DEBUG_CPU_TYPE=%s, %d CPUs, patch %d, stride %d'
        % (
            version('paddlepaddle'),
            version('torch'),
            os.environ.get('OMP_NUM_THREADS', 'unset'),
            os.environ.get('MKL_DEBUG_CPU_TYPE', 'unset'),
            os.cpu_count(),
            args.patch_size,
            args.stride,
        ),
        flush=True,
    )
    report = [bench_size(args, spec) for spec in args.sizes]
    if args.json:
        with open(args.json, 'w') as stream:
            json.dump(dict(patch_size=args.patch_size, stride=args.stride, results=report), stream, indent=1)
    return report


if __name__ == '__main__':
    main()
