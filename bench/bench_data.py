"""Training patches per second per loader worker: the official reading procedure and this port's loader.

On a generated iSAID-like scene (default 4000x13000, the size of the largest iSAID images; a PNG
image and its colour mask at the default zlib level, as the DOTA/iSAID files), one process
produces training samples (one 896 window, the official transforms: colour decoding, flips,
rot90, pad to 896, to-tensor, normalise) five ways:

1. official, raw scene: what the official ``ISAIDSegmmDataset.__getitem__`` does: open and decode
   the whole image and colour mask with PIL (``convert('RGB')``), crop the window, then the
   official transforms on PIL images (hash colour decoding, PIL flips and rotation, pad);
2. ours, raw scene, no cache (``cache_mb=0``): decode the whole scene for every patch;
3. ours, raw scene, LRU cache hit: the decoded scene stays in the worker's cache (an upper bound:
   shuffled training over many scenes rarely hits it);
4. official, pre-cut: the official procedure on the files of ``tools/cut_patches.py`` (one
   window per file, labels already decoded);
5. ours, pre-cut (``mask_format='label'``): the training setting the README recommends.

Each row is the median time of ``--patches`` random windows in this one process, i.e. one loader
worker on one core; it prints patches/s per worker and how many workers keep a GPU training at
``--gpu_s_per_iter`` seconds per iteration with batch ``--batch_size`` fed (0.1 s and 8:
80 patches/s), assuming one core per worker.

Usage::

    OMP_NUM_THREADS=2 python bench/bench_data.py                          # 4000x13000, 4 patches per row
    OMP_NUM_THREADS=2 python bench/bench_data.py --size 4000 6000 --patches 8
"""

import argparse
import math
import os
import statistics
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import simplecv.util.mkl_env  # noqa: E402,F401  (before Paddle runs: MKL's AVX2 path on AMD CPUs)
from data.demo import render_sample  # noqa: E402
from data.isaid import (  # noqa: E402
    COLOR_MAP,
    COLOR_MASK_SUFFIX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ISAIDSegmmDataset,
    train_transforms,
)
from simplecv.util.cli import add_size_option  # noqa: E402
from simplecv.util.logger import configure_logging  # noqa: E402
from tools.cut_patches import cut_patches  # noqa: E402

TILE = 1000


def parse_args(argv=None):
    """Parse ``argv`` (default ``sys.argv[1:]``) into an ``argparse.Namespace``."""
    parser = argparse.ArgumentParser(
        prog='bench_data.py', description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_size_option(parser, '--size', (4000, 13000), 'scene size (default 4000 13000)')
    parser.add_argument('--patch_size', type=int, default=896, help='window size (default 896)')
    parser.add_argument('--stride', type=int, default=512, help='window step (default 512)')
    parser.add_argument('--patches', type=int, default=4, help='patches timed per row (default 4)')
    parser.add_argument(
        '--gpu_s_per_iter', type=float, default=0.1, help='GPU seconds per training iteration to keep fed (default 0.1)'
    )
    parser.add_argument('--batch_size', type=int, default=8, help='patches per iteration (default 8)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the scene and of the chosen windows')
    args = parser.parse_args(argv)
    if min(args.size) < args.patch_size:
        parser.error('--size must be at least --patch_size (%d) in both directions' % args.patch_size)
    if args.patches < 1 or args.batch_size < 1 or args.gpu_s_per_iter <= 0:
        parser.error('--patches and --batch_size must be >= 1 and --gpu_s_per_iter > 0')
    return args


class OfficialSample:
    """The official sample procedure on PIL images (spec §7.3-7.4), for timing.

    ``__call__(image_path, mask_path, box, rng)`` opens both files with PIL (``convert('RGB')``;
    a label mask is opened as ``'L'`` and not colour-decoded), crops ``box = (x1, y1, x2, y2)``,
    decodes colours by the official hash ``R + 2G + 3B``, flips, rotates by 90° k (PIL
    ``rotate(expand=True)``), pads bottom/right to ``patch_size`` (image 0, mask 255), and returns
    the normalised ``(3, S, S)`` float32 image (255 * to-tensor, then (x - mean) / std) and the
    ``(S, S)`` uint8 label.
    """

    def __init__(self, patch_size):
        self.patch_size = patch_size
        self.keys = [int(k) for k in np.asarray(COLOR_MAP, np.int64) @ np.array([1, 2, 3])]
        self.mean = np.asarray(IMAGENET_MEAN, np.float32).reshape(3, 1, 1)
        self.std = np.asarray(IMAGENET_STD, np.float32).reshape(3, 1, 1)

    def _remove_color_map(self, mask):
        rgb = np.asarray(mask, np.int64)
        keys = rgb[..., 0] + 2 * rgb[..., 1] + 3 * rgb[..., 2]
        label = np.zeros(keys.shape, np.uint8)
        for index, key in enumerate(self.keys):
            label[keys == key] = index
        return Image.fromarray(label, 'L')

    def __call__(self, image_path, mask_path, box, rng):
        color = not mask_path.endswith('_label.png')
        image = Image.open(image_path).convert('RGB').crop(box)
        mask = Image.open(mask_path).convert('RGB' if color else 'L').crop(box)
        if color:
            mask = self._remove_color_map(mask)
        for flip in (Image.FLIP_LEFT_RIGHT, Image.FLIP_TOP_BOTTOM):
            if rng.random() < 0.5:
                image, mask = image.transpose(flip), mask.transpose(flip)
        k = int(rng.integers(4))
        if k:
            image, mask = image.rotate(90 * k, expand=True), mask.rotate(90 * k, expand=True)
        size = (self.patch_size, self.patch_size)
        padded_image, padded_mask = Image.new('RGB', size, 0), Image.new('L', size, 255)
        padded_image.paste(image, (0, 0))
        padded_mask.paste(mask, (0, 0))
        tensor = np.asarray(padded_image, np.float32).transpose(2, 0, 1) / np.float32(255) * np.float32(255)
        return (tensor - self.mean) / self.std, np.asarray(padded_mask)


def make_scene(root, size, seed):
    """Write ``root/images/P0000.png`` and its colour mask (a scene tiled from the demo renderer)."""
    image_dir, mask_dir = os.path.join(root, 'images'), os.path.join(root, 'masks')
    os.makedirs(image_dir)
    os.makedirs(mask_dir)
    rng = np.random.default_rng(seed)
    height, width = size
    image = np.zeros((height, width, 3), np.uint8)
    label = np.zeros((height, width), np.uint8)
    for y in range(0, height, TILE):
        for x in range(0, width, TILE):
            tile_image, tile_label = render_sample(rng, (min(TILE, height - y), min(TILE, width - x)))
            image[y : y + TILE, x : x + TILE] = tile_image
            label[y : y + TILE, x : x + TILE] = tile_label
    Image.fromarray(image).save(os.path.join(image_dir, 'P0000.png'))
    Image.fromarray(np.asarray(COLOR_MAP, np.uint8)[label]).save(os.path.join(mask_dir, 'P0000' + COLOR_MASK_SUFFIX))
    return image_dir, mask_dir


def _median_seconds(fn, keys):
    times = []
    for key in keys:
        start = time.perf_counter()
        fn(key)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _official_row(dataset, keys, seed, patch_size):
    """Seconds per patch of :class:`OfficialSample` on the windows ``keys`` of ``dataset``'s files."""
    sample = OfficialSample(patch_size)
    rng = np.random.default_rng(seed)

    def read(index):
        file_index, x1, y1, x2, y2 = (int(v) for v in dataset.windows[index])
        image_path, mask_path = dataset.files[file_index]
        sample(image_path, mask_path, (x1, y1, x2, y2), rng)

    return _median_seconds(read, keys)


def measure(args):
    """Return ``[(row name, seconds per patch)]``, the window count and the cutting cost."""
    from tqdm import tqdm

    patch_config = dict(patch_size=args.patch_size, stride=args.stride)
    transforms = train_transforms(args.patch_size)
    rows = []
    with tempfile.TemporaryDirectory() as root:
        image_dir, mask_dir = make_scene(root, tuple(args.size), args.seed)
        uncached = ISAIDSegmmDataset(image_dir, mask_dir, patch_config, transforms, cache_mb=0)
        cached = ISAIDSegmmDataset(image_dir, mask_dir, patch_config, transforms, cache_mb=4096)
        rng = np.random.default_rng(args.seed)
        count = min(args.patches, len(uncached))
        keys = [
            (int(k), int(s))
            for k, s in zip(rng.choice(len(uncached), count, replace=False), rng.integers(2**31, size=count))
        ]
        start = time.perf_counter()
        cut_dir = os.path.join(root, 'patches')
        num_cut = cut_patches(image_dir, mask_dir, cut_dir, args.patch_size, args.stride)
        cut_seconds = (time.perf_counter() - start) / num_cut
        precut = ISAIDSegmmDataset(
            os.path.join(cut_dir, 'images'),
            os.path.join(cut_dir, 'masks'),
            patch_config,
            transforms,
            mask_format='label',
            cache_mb=0,
        )
        cut_keys = [(int(k), s) for k, (_, s) in zip(rng.choice(len(precut), count, replace=False), keys)]
        cached[keys[0]]
        jobs = [
            (
                'official, raw scene (decode per patch)',
                lambda: _official_row(uncached, [k for k, _ in keys], args.seed, args.patch_size),
            ),
            ('ours, raw scene, cache_mb=0', lambda: _median_seconds(uncached.__getitem__, keys)),
            ('ours, raw scene, LRU cache hit', lambda: _median_seconds(cached.__getitem__, keys)),
            (
                'official, pre-cut patches',
                lambda: _official_row(precut, [k for k, _ in cut_keys], args.seed, args.patch_size),
            ),
            ('ours, pre-cut patches (label PNGs)', lambda: _median_seconds(precut.__getitem__, cut_keys)),
        ]
        for name, job in tqdm(jobs, desc='timing', leave=False):
            rows.append((name, job()))
    return rows, len(uncached), cut_seconds


def report(args, rows, windows, cut_seconds):
    """Print patches/s per worker, the ratio to the official raw procedure and the workers a GPU needs."""
    needed = args.batch_size / args.gpu_s_per_iter
    print(
        'scene %dx%d (%d windows of %d px, stride %d), %d random patches per row, one process = one worker'
        % (args.size[0], args.size[1], windows, args.patch_size, args.stride, args.patches)
    )
    print('a GPU at %.3g s/iter with batch %d needs %.0f patches/s' % (args.gpu_s_per_iter, args.batch_size, needed))
    print('%-40s %10s %14s %12s %16s' % ('procedure', 'ms/patch', 'patches/s/wkr', 'vs official', 'workers for GPU'))
    base = rows[0][1]
    for name, seconds in rows:
        rate = 1.0 / seconds
        print(
            '%-40s %10.1f %14.2f %11.1fx %16d' % (name, 1000 * seconds, rate, base / seconds, math.ceil(needed / rate))
        )
    print('cutting the scene once (tools/cut_patches.py): %.0f ms per patch written' % (1000 * cut_seconds))


def main(argv=None):
    """Measure the data pipeline on a synthetic scene and print the table. Returns the exit status 0."""
    args = parse_args(argv)
    configure_logging()
    rows, windows, cut_seconds = measure(args)
    report(args, rows, windows, cut_seconds)
    return 0


if __name__ == '__main__':
    sys.exit(main())
