"""Cut an iSAID split into its sliding-window patches once, so training reads small files.

Reading one 896×896 patch of a 4000×6000 iSAID image means decoding the whole PNG, because PNG
cannot be read in parts; with shuffled patches a cache rarely helps. This tool writes every
window of every image as its own PNG, with the colour mask already decoded to a label PNG:

- ``out/images/<name>_<x1>_<y1>.png``
- ``out/masks/<name>_<x1>_<y1>_label.png`` (values 0..15, 255 ignored)

Train on it with ``image_dir=out/images``, ``mask_dir=out/masks``, ``mask_format='label'`` and
the same ``patch_config``: each patch is exactly one window, so the set of training samples is
the same as when cutting on the fly (only their index order differs).

Example::

    python tools/cut_patches.py --image_dir ./isaid_segm/train/images \\
        --mask_dir ./isaid_segm/train/masks --out ./isaid_patches/train
"""

import argparse
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import simplecv.util.mkl_env  # noqa: E402,F401  (before Paddle runs: MKL's AVX2 path on AMD CPUs)
from data.isaid import LABEL_MASK_SUFFIX, ISAIDSegmmDataset, RemoveColorMap  # noqa: E402
from simplecv.util.cli import add_choice_option  # noqa: E402
from simplecv.util.logger import configure_logging, get_logger  # noqa: E402

_LOGGER = get_logger('factseg.cut_patches')


def _cut_files(dataset, file_indices, out_dir, compress_level):
    image_dir, mask_dir = os.path.join(out_dir, 'images'), os.path.join(out_dir, 'masks')
    count = 0
    for file_index in file_indices:
        stem = os.path.splitext(os.path.basename(dataset.files[file_index][0]))[0]
        for index in np.flatnonzero(dataset.windows[:, 0] == file_index):
            image, label = dataset.read(int(index))
            _, x1, y1, _, _ = dataset.windows[index]
            name = '%s_%d_%d' % (stem, x1, y1)
            Image.fromarray(np.ascontiguousarray(image)).save(
                os.path.join(image_dir, name + '.png'), compress_level=compress_level
            )
            Image.fromarray(np.ascontiguousarray(label)).save(
                os.path.join(mask_dir, name + LABEL_MASK_SUFFIX), compress_level=compress_level
            )
            count += 1
    return count


def cut_patches(
    image_dir,
    mask_dir,
    out_dir,
    patch_size=896,
    stride=512,
    mask_format='color',
    unknown='ignore',
    match='exact',
    workers=1,
    compress_level=1,
):
    """Write every sliding-window patch of a split as image and label PNGs.

    Args:
        image_dir: folder of ``<name>.png`` images.
        mask_dir: folder of the masks (see :class:`data.isaid.ISAIDSegmmDataset`).
        out_dir: output folder; ``images/`` and ``masks/`` are created in it.
        patch_size: window size, as in the training config's ``patch_config``.
        stride: window stride.
        mask_format: ``'color'`` or ``'label'``, the format of ``mask_dir``.
        unknown: label of colours outside the iSAID table, ``'ignore'`` (255) or ``'background'``.
        match: ``'exact'`` or the official ``'hash'`` colour matching.
        workers: processes, each cutting whole images.
        compress_level: PNG zlib level 0..9 (1 writes fast and decodes as fast as 9).

    Returns:
        int: the number of patches written.

    Raises:
        DataError: a problem with the input files (checked before anything is written).
    """
    # One decoded image pair at a time per process: the windows are cut image by image.
    dataset = ISAIDSegmmDataset(
        image_dir,
        mask_dir,
        dict(patch_size=patch_size, stride=stride),
        [RemoveColorMap(unknown=unknown, match=match)],
        mask_format=mask_format,
        cache_mb=1024,
    )
    os.makedirs(os.path.join(out_dir, 'images'), exist_ok=True)
    os.makedirs(os.path.join(out_dir, 'masks'), exist_ok=True)
    chunks = [list(range(len(dataset.files)))[w::workers] for w in range(workers)]
    _LOGGER.info(
        'cutting %d images into %d patches of %d px (stride %d) with %d process(es) into %s',
        len(dataset.files),
        len(dataset),
        patch_size,
        stride,
        workers,
        out_dir,
    )
    if workers == 1:
        return _cut_files(dataset, chunks[0], out_dir, compress_level)
    # Spawned, not forked: Paddle (imported with the data set) runs threads that a fork would copy
    # in whatever state their locks are.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context('spawn')) as pool:
        futures = [pool.submit(_cut_files, dataset, chunk, out_dir, compress_level) for chunk in chunks]
        return sum(future.result() for future in futures)


def parse_args(argv=None):
    """Parse ``argv`` (default ``sys.argv[1:]``) into an ``argparse.Namespace``."""
    parser = argparse.ArgumentParser(
        description='Cut an iSAID split into sliding-window patch PNGs with label masks.',
        epilog='example: python tools/cut_patches.py --image_dir ./isaid_segm/train/images '
        '--mask_dir ./isaid_segm/train/masks --out ./isaid_patches/train',
    )
    parser.add_argument('--image_dir', required=True, help='folder of <name>.png images')
    parser.add_argument('--mask_dir', required=True, help='folder of the masks')
    parser.add_argument('--out', required=True, help='output folder (gets images/ and masks/)')
    parser.add_argument('--patch_size', type=int, default=896, help='window size (default 896)')
    parser.add_argument('--stride', type=int, default=512, help='window stride (default 512)')
    add_choice_option(
        parser,
        '--mask_format',
        ('color', 'label'),
        'color: <name>_instance_color_RGB.png; label: <name>_label.png or <name>.png',
    )
    add_choice_option(
        parser,
        '--unknown',
        ('ignore', 'background'),
        'label of colours outside the iSAID table: 255 (ignore) or 0 (official)',
    )
    add_choice_option(parser, '--match', ('exact', 'hash'), 'colour matching: exact RGB, or the official R+2G+3B hash')
    parser.add_argument('--workers', type=int, default=1, help='parallel processes (default 1)')
    return parser.parse_args(argv)


def main(argv=None):
    """Cut the patches of one split as the command line says and log how many were written."""
    args = parse_args(argv)
    configure_logging()
    count = cut_patches(
        args.image_dir,
        args.mask_dir,
        args.out,
        args.patch_size,
        args.stride,
        args.mask_format,
        args.unknown,
        args.match,
        args.workers,
    )
    _LOGGER.info('wrote %d patches to %s', count, args.out)


if __name__ == '__main__':
    main()
