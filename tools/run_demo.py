"""The built-in demo: generate iSAID-format data, train the demo FactSeg, evaluate, print per-class IoU.

Steps (each is also a command of its own):

1. ``python -m data.demo --out demo_data ...``: seeded synthetic scenes with every iSAID class;
2. ``python apex_train.py --config_path isaid.factseg_demo --model_dir demo_output``;
3. ``python isaid_eval.py --config_path isaid.factseg_demo --ckpt_path demo_output/model-N.pdparams
   --image_dir demo_data/val/images --mask_dir demo_data/val/masks --patch_size 256 --stride 128``.

Run again with the same folders and it reuses the data and the finished training (the trainer
resumes from ``demo_output``), so only the evaluation runs. Set ``OMP_NUM_THREADS=2`` on a
2-core machine: it is faster than Paddle's default.
"""

import argparse
import os
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import simplecv.util.mkl_env  # noqa: E402,F401  (before Paddle runs: MKL's AVX2 path on AMD CPUs)
from simplecv.util.cli import parse_with_overrides  # noqa: E402
from simplecv.util.logger import configure_logging  # noqa: E402

CONFIG = 'isaid.factseg_demo'
EVAL_PATCH, EVAL_STRIDE = 256, 128


def parse_args(argv=None):
    """Parse ``argv`` (default ``sys.argv[1:]``) into an ``argparse.Namespace``."""
    parser = argparse.ArgumentParser(
        prog='python tools/run_demo.py',
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='example: OMP_NUM_THREADS=2 python tools/run_demo.py --data demo_data --out demo_output',
    )
    parser.add_argument(
        '--data',
        default=os.path.join(REPO_ROOT, 'demo_data'),
        help='demo data folder, generated when it has no train/ and val/ (default: demo_data)',
    )
    parser.add_argument(
        '--out',
        default=os.path.join(REPO_ROOT, 'demo_output'),
        help='training and evaluation output folder (default: demo_output)',
    )
    parser.add_argument('--num_train', type=int, default=16, help='training images to generate (default 16)')
    parser.add_argument('--num_val', type=int, default=4, help='validation images to generate (default 4)')
    parser.add_argument('--size', type=int, default=512, help='side of the generated images in pixels (default 512)')
    return parse_with_overrides(parser, argv, 'train.num_iters 50 (for the training)')


def main(argv=None):
    """Run the demo; returns the exit status (0, or 2 with a message on stderr)."""
    args = parse_args(argv)
    configure_logging()
    import apex_train
    import isaid_eval
    from data.demo import generate_demo_dataset
    from simplecv.core.checkpoint import best_entry, last_checkpoint
    from simplecv.core.errors import FactSegError

    start = time.time()
    train_images = os.path.join(args.data, 'train', 'images')
    val_images, val_masks = os.path.join(args.data, 'val', 'images'), os.path.join(args.data, 'val', 'masks')
    if not (os.path.isdir(train_images) and os.path.isdir(val_images)):
        print('[1/3] generating demo data in %s' % args.data, flush=True)
        generate_demo_dataset(args.data, args.num_train, args.num_val, (args.size, args.size), seed=0)
    else:
        print('[1/3] using the demo data in %s' % args.data, flush=True)
    data_seconds = time.time() - start

    print('[2/3] training %s into %s' % (CONFIG, args.out), flush=True)
    overrides = [
        'data.train.params.image_dir',
        train_images,
        'data.train.params.mask_dir',
        os.path.join(args.data, 'train', 'masks'),
        'data.test.params.image_dir',
        val_images,
        'data.test.params.mask_dir',
        val_masks,
    ] + list(args.opts or [])
    status = apex_train.main(['--config_path', CONFIG, '--model_dir', args.out] + overrides)
    if status != 0:
        return status
    train_seconds = time.time() - start - data_seconds

    print('[3/3] evaluating on %s' % val_images, flush=True)
    try:
        checkpoint = last_checkpoint(args.out)
        result = isaid_eval.main(
            [
                '--config_path',
                CONFIG,
                '--ckpt_path',
                checkpoint,
                '--image_dir',
                val_images,
                '--mask_dir',
                val_masks,
                '--log_dir',
                args.out,
                '--patch_size',
                str(EVAL_PATCH),
                '--stride',
                str(EVAL_STRIDE),
                '--batch_size',
                '4',
                '--vis_dir',
                os.path.join(args.out, 'vis'),
            ]
        )[0]
    except FactSegError as error:
        sys.stderr.write('run_demo.py: error: %s\n' % error)
        return 2
    eval_seconds = time.time() - start - data_seconds - train_seconds

    print(
        '\nper-class IoU of %s (step %s) on %d demo val images:\n%s'
        % (checkpoint, result['global_step'], result['num_images'], result['table'])
    )
    print('\nmIoU %s, foreground mIoU %s' % (_percent(result['miou']), _percent(result['miou_fg'])))
    best = best_entry(args.out)
    if best is not None:
        print(
            'best step during training: %d (mIoU %s), kept as %s'
            % (best['global_step'], _percent(best['miou']), os.path.join(args.out, best['file']))
        )
    print(
        'time: data %.0f s, training %.0f s, evaluation %.0f s, total %.0f s'
        % (data_seconds, train_seconds, eval_seconds, time.time() - start)
    )
    print('training curves: %s' % os.path.join(args.out, 'training_curves.png'))
    print(
        'image | ground truth | prediction: %s'
        % save_comparison(val_images, val_masks, os.path.join(args.out, 'vis'), args.out)
    )
    return 0


def save_comparison(image_dir, mask_dir, vis_dir, out_dir):
    """Write ``comparison.png``: one row per val image with the image, its colour mask and the prediction."""
    import glob

    import numpy as np
    from PIL import Image

    from data.isaid import COLOR_MASK_SUFFIX

    rows = []
    for path in sorted(glob.glob(os.path.join(image_dir, '*.png'))):
        name = os.path.splitext(os.path.basename(path))[0]
        panels = [
            Image.open(path).convert('RGB'),
            Image.open(os.path.join(mask_dir, name + COLOR_MASK_SUFFIX)).convert('RGB'),
            Image.open(os.path.join(vis_dir, name + '.png')).convert('RGB'),
        ]
        gap = np.full((panels[0].height, 8, 3), 255, np.uint8)
        rows.append(np.concatenate([part for panel in panels for part in (np.asarray(panel), gap)][:-1], axis=1))
        rows.append(np.full((8, rows[-1].shape[1], 3), 255, np.uint8))
    target = os.path.join(out_dir, 'comparison.png')
    Image.fromarray(np.concatenate(rows[:-1], axis=0)).save(target)
    return target


def _percent(value):
    return 'n/a' if value is None else '%.2f %%' % (100 * value)


if __name__ == '__main__':
    sys.exit(main())
