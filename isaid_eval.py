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
import argparse
import glob
import json
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

REPO_ROOT = os.path.dirname(os.path.abspath(__file__))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import simplecv.util.mkl_env  # noqa: E402,F401  (before Paddle runs: MKL's AVX2 path on AMD CPUs)
from simplecv.core.errors import CheckpointError, ConfigError, DataError, FactSegError  # noqa: E402
from simplecv.util.logger import configure_logging, get_logger  # noqa: E402

_LOGGER = get_logger('factseg.eval')
_CHECKPOINT_EXTENSIONS = ('.pdparams',)

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
    parser = argparse.ArgumentParser(
        prog='isaid_eval.py', description=__doc__.split('\n\n')[0],
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config_path', required=True,
                        help="config: dotted name under configs/ ('isaid.factseg') or a .py file")
    parser.add_argument('--ckpt_path', required=True,
                        help='checkpoint file, a folder of *.pdparams checkpoints, or a glob pattern '
                             '(quote it); several checkpoints are each evaluated and the best is reported')
    parser.add_argument('--image_dir', required=True, help='folder of <name>.png / .jpg / .tif images')
    parser.add_argument('--mask_dir', default=None,
                        help='folder of masks; leave out to predict only (then --vis_dir is needed)')
    parser.add_argument('--vis_dir', default=None,
                        help='write colour-coded predictions (iSAID palette) here')
    parser.add_argument('--log_dir', default=None,
                        help='write the IoU table (.txt), results (.json) and VisualDL scalars here')
    parser.add_argument('--patch_size', default=896, type=int, help='window size in pixels (official: 896)')
    parser.add_argument('--stride', default=512, type=int,
                        help='step between windows (official: 512, fixed there); at most --patch_size')
    parser.add_argument('--batch_size', default=1, type=int,
                        help='windows per forward pass; any value gives the same predictions')
    parser.add_argument('--mask_format', default='color', choices=('color', 'label'),
                        help='color: iSAID <name>_instance_color_RGB.png colour masks (default); '
                             'label: single-channel <name>_label.png or <name>.png with classes 0..15, 255 ignored')
    parser.add_argument('--backend', default='auto', choices=('auto', 'dygraph', 'onednn'),
                        help='auto: oneDNN fast path on CPU (checked against dygraph on the first window), '
                             'dygraph elsewhere; dygraph: exact reference arithmetic; onednn: CPU fast path')
    parser.add_argument('--cache_dir', default=None,
                        help='where exported oneDNN programs are kept between runs (default: $FACTSEG_CACHE_DIR, '
                             'else ~/.cache/factseg-paddle; "none" turns the cache off; '
                             'python tools/program_cache.py --clear empties it)')
    parser.add_argument('--amp', default='none', choices=('none', 'fp16', 'bf16'),
                        help='mixed-precision inference on a GPU (dygraph backend; output cast back to float32)')
    parser.add_argument('--tta', action='store_true',
                        help='average with horizontally and vertically flipped windows (not in the official protocol)')
    parser.add_argument('--device', default=None, choices=('cpu', 'gpu'),
                        help="Paddle device (default: Paddle's default, the GPU when there is one)")
    parser.add_argument('opts', nargs=argparse.REMAINDER, default=None,
                        help='config overrides as KEY VALUE pairs, last on the command line, '
                             'e.g. model.params.num_classes 16')
    return parser


def parse_args(argv=None):
    """Parse and check the command line (no file access).

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
    if args.opts and len(args.opts) % 2:
        parser.error('config overrides come in KEY VALUE pairs, got %s' % args.opts)
    return args


def find_checkpoints(ckpt_path):
    """Resolve ``--ckpt_path`` (file, folder or glob) to checkpoint files, by training step.

    Raises:
        CheckpointError: nothing matches.
    """
    if os.path.isfile(ckpt_path):
        return [ckpt_path]
    if os.path.isdir(ckpt_path):
        paths = [os.path.join(ckpt_path, f) for f in os.listdir(ckpt_path) if f.endswith(_CHECKPOINT_EXTENSIONS)]
        where = 'folder %s has no %s files' % (ckpt_path, ' / '.join('*' + e for e in _CHECKPOINT_EXTENSIONS))
    else:
        paths = [p for p in glob.glob(ckpt_path) if os.path.isfile(p)]
        where = 'no file matches %s' % ckpt_path
    if not paths:
        raise CheckpointError('--ckpt_path: %s; give a checkpoint file, a folder of checkpoints or a glob'
                              % where)
    return sorted(paths, key=_step_key)


def _step_key(path):
    numbers = re.findall(r'\d+', os.path.basename(path))
    return (int(numbers[-1]) if numbers else -1, os.path.basename(path))


def list_items(args):
    """Every image (and mask) to process, checked before any model is built.

    Returns:
        list: :class:`simplecv.io.pairs.ImagePair` objects, listed and checked as training does.
    """
    from data.isaid import list_isaid_pairs

    return list_isaid_pairs(args.image_dir, args.mask_dir, args.mask_format)


def _prepare_output_dir(path, what):
    if path is None:
        return
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise DataError('cannot create %s %s: %s' % (what, path, error)) from None


def _class_names(num_classes):
    from data.isaid import CLASS_NAMES

    return CLASS_NAMES if num_classes == len(CLASS_NAMES) else tuple('class_%d' % i for i in range(num_classes))


def evaluate_checkpoint(args, ckpt_path, items, config, vis_dir):
    """Evaluate (or predict with) one checkpoint over ``items``; returns the result dict."""
    from tqdm import tqdm

    from data.isaid import COLOR_MAP
    from simplecv.api.infer_tool import build_and_load_from_file
    from simplecv.inference.fast_path import build_forward
    from simplecv.inference.sliding_window import SlidingWindowPredictor, normalization_from_config
    from simplecv.metric.miou import MeanIoU
    from simplecv.io.writers import GeoTiffLabelWriter, save_label_png, save_palette_png

    model, global_step = build_and_load_from_file(args.config_path, ckpt_path, args.opts)
    num_classes = int(config.model.params.get('num_classes', 16))
    mean, std = normalization_from_config(config)
    forward = build_forward(model, args.backend, args.amp, cache_dir=args.cache_dir, config=config.model)
    predictor = SlidingWindowPredictor(forward, args.patch_size, args.stride, mean, std,
                                       batch_size=args.batch_size, tta=args.tta)
    metric = MeanIoU(num_classes, _class_names(num_classes)) if args.mask_dir else None
    total = sum(len(predictor.windows(item.height, item.width)) for item in items)
    _LOGGER.info('%s (step %s): %d images, %d windows of %d px, stride %d, batch %d, backend %s',
                 ckpt_path, global_step, len(items), total, args.patch_size, args.stride, args.batch_size,
                 forward.name)
    start = time.perf_counter()
    with ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(2) as writer, \
            tqdm(total=total, unit='win', desc=os.path.basename(ckpt_path), dynamic_ncols=True) as bar:
        pending = reader.submit(items[0].open)
        saves = []
        for index, item in enumerate(items):
            image, mask = pending.result()
            if index + 1 < len(items):
                pending = reader.submit(items[index + 1].open)
            bar.set_postfix_str(item.name)
            geo_writer = None
            if vis_dir is not None and item.geotiff:
                geo_writer = GeoTiffLabelWriter(os.path.join(vis_dir, item.name + '.tif'), item.height, item.width,
                                                image.profile, COLOR_MAP)
            labels = [] if vis_dir is not None and not item.geotiff else None
            window_tops = predictor.windows(item.height, item.width)[:, 1]
            done = 0
            for y1, y2, band in predictor.predict_bands(image):
                if metric is not None:
                    metric.update(mask.read_rows(y1, y2), band)
                if geo_writer is not None:
                    geo_writer.write_rows(y1, band)
                if labels is not None:
                    labels.append(band)
                covered = int((window_tops < y2).sum())
                bar.update(covered - done)
                done = covered
            image.close()
            if mask is not None:
                mask.close()
            if geo_writer is not None:
                geo_writer.close()
            if labels is not None:
                label = np.concatenate(labels, axis=0)
                saves.append(writer.submit(save_palette_png, os.path.join(vis_dir, item.name + '.png'),
                                           label, COLOR_MAP))
                if args.mask_dir is None:
                    saves.append(writer.submit(save_label_png, os.path.join(vis_dir, item.name + '_label.png'), label))
        for save in saves:
            save.result()
    seconds = time.perf_counter() - start
    backend = forward.name if getattr(forward, 'fallback', None) is None else 'dygraph (onednn fell back)'
    if hasattr(forward, 'close'):
        forward.close()
    result = dict(checkpoint=ckpt_path, global_step=global_step, num_images=len(items), num_windows=total,
                  seconds=round(seconds, 3), windows_per_second=round(total / max(seconds, 1e-9), 4),
                  backend=backend,
                  patch_size=args.patch_size, stride=args.stride, batch_size=args.batch_size, tta=args.tta,
                  amp=args.amp)
    if metric is not None:
        result.update(metric.to_dict())
        result['table'] = metric.table()
        _LOGGER.info('%s (step %s)\n%s', ckpt_path, global_step, result['table'])
    return result


def _write_logs(log_dir, result):
    stem = os.path.splitext(os.path.basename(result['checkpoint']))[0]
    with open(os.path.join(log_dir, 'eval_%s.txt' % stem), 'w') as stream:
        stream.write('checkpoint %s (global step %s), %d images\n%s\n'
                     % (result['checkpoint'], result['global_step'], result['num_images'], result['table']))
    with open(os.path.join(log_dir, 'eval_%s.json' % stem), 'w') as stream:
        json.dump({k: v for k, v in result.items() if k != 'table'}, stream, indent=1)
    try:
        from visualdl import LogWriter
    except ImportError:
        _LOGGER.warning('visualdl is not installed: no scalars written to %s', log_dir)
        return
    step = result['global_step'] if isinstance(result['global_step'], int) else 0
    with LogWriter(logdir=log_dir) as writer:
        for tag, value in [('eval-miou/miou', result['miou']), ('eval-miou/miou-fg', result['miou_fg'])] + [
                ('eval-ious/%s' % name, iou) for name, iou in result['iou'].items()]:
            if value is not None:
                writer.add_scalar(tag=tag, value=float(value), step=step)


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

    if args.device is not None:
        paddle.set_device(args.device)
    if args.amp != 'none' and paddle.get_device() == 'cpu':
        # Paddle 3.3's auto_cast leaves CPU kernels in float32 (bf16 output equals fp32 there).
        raise ConfigError('--amp %s needs a GPU; on CPU the oneDNN backend is the fast path' % args.amp)
    from simplecv.api.infer_tool import build_config

    config = build_config(args.config_path, args.opts)
    checkpoints = find_checkpoints(args.ckpt_path)
    items = list_items(args)
    _prepare_output_dir(args.vis_dir, '--vis_dir')
    _prepare_output_dir(args.log_dir, '--log_dir')
    results = []
    for ckpt_path in checkpoints:
        vis_dir = args.vis_dir
        if vis_dir is not None and len(checkpoints) > 1:
            vis_dir = os.path.join(vis_dir, os.path.splitext(os.path.basename(ckpt_path))[0])
            _prepare_output_dir(vis_dir, '--vis_dir')
        result = evaluate_checkpoint(args, ckpt_path, items, config, vis_dir)
        if args.log_dir is not None and args.mask_dir is not None:
            _write_logs(args.log_dir, result)
        results.append(result)
    if args.mask_dir is not None and len(results) > 1:
        best = max(results, key=lambda r: -1.0 if r['miou'] is None else r['miou'])
        lines = ['%-40s step %-8s mIoU %s  fg mIoU %s' % (
            os.path.basename(r['checkpoint']), r['global_step'], _pct(r['miou']), _pct(r['miou_fg'])) for r in results]
        _LOGGER.info('checkpoints:\n%s\nbest: %s (mIoU %s)', '\n'.join(lines), best['checkpoint'], _pct(best['miou']))
        if args.log_dir is not None:
            with open(os.path.join(args.log_dir, 'eval_summary.json'), 'w') as stream:
                json.dump(dict(best=best['checkpoint'], best_miou=best['miou'], checkpoints=[
                    {k: r[k] for k in ('checkpoint', 'global_step', 'miou', 'miou_fg')} for r in results]),
                    stream, indent=1)
    return results


def _pct(value):
    return 'n/a' if value is None else '%.2f' % (100 * value)


if __name__ == '__main__':
    try:
        main()
    except (FactSegError, ConfigError) as error:
        sys.stderr.write('isaid_eval.py: error: %s\n' % error)
        sys.exit(2)
