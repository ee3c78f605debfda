"""Time reading one training patch from a large iSAID-like image, three ways, side by side.

1. decode per patch: open and decode the whole image and colour mask for every patch
   (what the official loader does; here ``cache_mb=0``);
2. LRU cache: the decoded image stays in the per-process cache, so a patch is a crop
   (only helps when several windows of one image are read close together);
3. pre-cut: ``tools/cut_patches.py`` writes each window once as small PNGs, a patch is a
   small decode.

Usage::

    OMP_NUM_THREADS=2 python bench/bench_data.py --size 4000 6000 --patches 8
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import simplecv.util.mkl_env  # noqa: E402,F401  (before Paddle runs: MKL's AVX2 path on AMD CPUs)
from data.demo import render_sample  # noqa: E402
from data.isaid import (COLOR_MAP, COLOR_MASK_SUFFIX, IMAGENET_MEAN, IMAGENET_STD,  # noqa: E402
                        ISAIDSegmmDataset, RemoveColorMap)
from simplecv.api.preprocess import comm, segm  # noqa: E402
from tools.cut_patches import cut_patches  # noqa: E402


def _train_transforms(patch_size):
    return [RemoveColorMap(), segm.RandomHorizontalFlip(0.5), segm.RandomVerticalFlip(0.5),
            segm.RandomRotate90K((0, 1, 2, 3)), segm.FixedPad((patch_size, patch_size), 255),
            segm.ToTensor(True), comm.THMeanStdNormalize(IMAGENET_MEAN, IMAGENET_STD)]


def _ms_per_call(fn, keys):
    start = time.perf_counter()
    for key in keys:
        fn(key)
    return 1000. * (time.perf_counter() - start) / len(keys)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', type=int, nargs=2, default=(4000, 6000), metavar=('H', 'W'))
    parser.add_argument('--patch_size', type=int, default=896)
    parser.add_argument('--stride', type=int, default=512)
    parser.add_argument('--patches', type=int, default=8, help='patches timed per method')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as root:
        image_dir, mask_dir = os.path.join(root, 'images'), os.path.join(root, 'masks')
        os.makedirs(image_dir)
        os.makedirs(mask_dir)
        image, label = render_sample(np.random.default_rng(args.seed), tuple(args.size))
        # Default zlib level, like the DOTA/iSAID files.
        Image.fromarray(image).save(os.path.join(image_dir, 'P0000.png'))
        Image.fromarray(np.asarray(COLOR_MAP, np.uint8)[label]).save(
            os.path.join(mask_dir, 'P0000' + COLOR_MASK_SUFFIX))
        patch_config = dict(patch_size=args.patch_size, stride=args.stride)
        transforms = _train_transforms(args.patch_size)
        uncached = ISAIDSegmmDataset(image_dir, mask_dir, patch_config, transforms, cache_mb=0)
        cached = ISAIDSegmmDataset(image_dir, mask_dir, patch_config, transforms, cache_mb=1024)
        rng = np.random.default_rng(args.seed)
        keys = [int(k) for k in rng.choice(len(uncached), size=min(args.patches, len(uncached)), replace=False)]

        start = time.perf_counter()
        cut_dir = os.path.join(root, 'patches')
        num_patches = cut_patches(image_dir, mask_dir, cut_dir, args.patch_size, args.stride)
        cut_ms = 1000. * (time.perf_counter() - start) / num_patches
        precut = ISAIDSegmmDataset(os.path.join(cut_dir, 'images'), os.path.join(cut_dir, 'masks'),
                                   patch_config, transforms, mask_format='label', cache_mb=0)
        cut_keys = [int(k) for k in rng.choice(len(precut), size=len(keys), replace=False)]

        miss_start = time.perf_counter()
        cached.read(keys[0])
        miss_ms = 1000. * (time.perf_counter() - miss_start)
        rows = [
            ('decode per patch (cache_mb=0)', _ms_per_call(uncached.read, keys)),
            ('LRU cache, hit (cache_mb=1024)', _ms_per_call(cached.read, keys)),
            ('pre-cut patches (mask_format=label)', _ms_per_call(precut.read, cut_keys)),
        ]
        augment_ms = (_ms_per_call(lambda k: cached[(k, k)], keys) - _ms_per_call(cached.read, keys))
    base = rows[0][1]
    print('image %dx%d, %d windows of %d px (stride %d), %d random patches timed per row'
          % (args.size[0], args.size[1], len(uncached), args.patch_size, args.stride, len(keys)))
    print('%-38s %10s %10s' % ('method', 'ms/patch', 'speed-up'))
    for name, read_ms in rows:
        print('%-38s %10.2f %9.0fx' % (name, read_ms, base / max(read_ms, 1e-3)))
    print('LRU cache, first read of the image (miss): %.0f ms' % miss_ms)
    print('cutting the image once: %.0f ms per patch written (%d patches)' % (cut_ms, num_patches))
    print('training transforms (flips, rot90, pad, to-tensor, normalise): %.1f ms/patch, the same '
          'for every row' % augment_ms)

if __name__ == '__main__':
    main()
