"""Evaluate one or several checkpoints of a config on a folder of images: what ``isaid_eval.py`` runs.

The config says how to list the images and masks and how to normalise them: its ``data.test``
loader type (``data.train``'s when there is no ``data.test``) provides ``evaluation_items``,
``CLASS_NAMES`` and ``COLORS``, and :func:`normalization_from_config` reads ``data.test``'s
transforms. Each checkpoint is loaded strictly into the config's model and run through one
:class:`~simplecv.engine.evaluator.Evaluator`. With several processes
(``python -m paddle.distributed.launch --nproc_per_node N isaid_eval.py ...``) the images are
shared out, the confusion matrices summed, and the logs written once, by process 0.
"""

import glob
import json
import logging
import os
import re

from simplecv.core.errors import CheckpointError, ConfigError, DataError

_logger = logging.getLogger('factseg.eval')
CHECKPOINT_EXTENSIONS = ('.pdparams',)


def find_checkpoints(ckpt_path):
    """Resolve a checkpoint file, a folder of checkpoints or a glob pattern to files, by training step.

    Raises:
        CheckpointError: nothing matches.
    """
    if os.path.isfile(ckpt_path):
        return [ckpt_path]
    if os.path.isdir(ckpt_path):
        paths = [os.path.join(ckpt_path, f) for f in os.listdir(ckpt_path) if f.endswith(CHECKPOINT_EXTENSIONS)]
        where = 'folder %s has no %s files' % (ckpt_path, ' / '.join('*' + e for e in CHECKPOINT_EXTENSIONS))
    else:
        paths = [p for p in glob.glob(ckpt_path) if os.path.isfile(p)]
        where = 'no file matches %s' % ckpt_path
    if not paths:
        raise CheckpointError('--ckpt_path: %s; give a checkpoint file, a folder of checkpoints or a glob' % where)
    return sorted(paths, key=_step_key)


def _step_key(path):
    numbers = re.findall(r'\d+', os.path.basename(path))
    return (int(numbers[-1]) if numbers else -1, os.path.basename(path))


def dataset_of(config):
    """The loader class that knows the evaluation data: ``data.test``'s type, else ``data.train``'s."""

    from simplecv.api.components import DATALOADER

    section = config.data.get('test') or config.data.get('train')
    if not section:
        raise ConfigError('the config has neither data.test nor data.train: nothing says how to read the images')
    return DATALOADER[section.type]


def make_output_dir(path, what):
    """Create ``path`` (None: nothing); an error names the option."""
    if path is None:
        return
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise DataError('cannot create %s %s: %s' % (what, path, error)) from None


def evaluate_checkpoints(
    config,
    ckpt_path,
    image_dir,
    mask_dir=None,
    mask_format='color',
    vis_dir=None,
    log_dir=None,
    patch_size=896,
    stride=512,
    batch_size=1,
    backend='auto',
    amp='none',
    tta=False,
    cache_dir=None,
):
    """Evaluate (or, without masks, predict with) every checkpoint of ``ckpt_path``.

    Args:
        config: the model's config (``AttrDict`` after overrides).
        ckpt_path: a checkpoint file, a folder of ``*.pdparams`` or a glob pattern.
        image_dir, mask_dir: the images and their masks (None: predict only).
        mask_format: ``'color'`` (iSAID colour masks) or ``'label'`` (class indices, 255 ignored).
        vis_dir: palette PNGs (GeoTIFFs for TIFF inputs) of the predictions; with several
            checkpoints one sub-folder each; predict-only runs also write ``<name>_label.png``.
        log_dir: ``eval_<checkpoint>.txt``/``.json``, VisualDL scalars and, with several
            checkpoints, ``eval_summary.json`` naming the best (needs masks).
        patch_size, stride, batch_size, tta: the sliding window (see :class:`Evaluator`).
        backend: ``'auto'``, ``'dygraph'`` or ``'onednn'`` (see :func:`build_forward`).
        amp: ``'none'``, ``'fp16'`` or ``'bf16'`` (GPU, dygraph).
        cache_dir: where exported oneDNN programs are kept (None: the default; ``'none'``: off).

    Returns:
        list: one :meth:`Evaluator.run` result per checkpoint, plus ``checkpoint``,
        ``global_step``, ``patch_size``, ``stride``, ``batch_size``, ``tta`` and ``amp``.

    Raises:
        FactSegError: a bad file, folder, config or checkpoint (the message says what to fix).
    """
    import paddle

    from simplecv.engine.build import build_and_load
    from simplecv.engine.evaluator import Evaluator, write_evaluation_logs
    from simplecv.inference.fast_path import build_forward
    from simplecv.inference.sliding_window import normalization_from_config

    if amp != 'none' and paddle.get_device() == 'cpu':
        # Paddle 3.3's auto_cast leaves CPU kernels in float32 (bf16 output equals fp32 there).
        raise ConfigError('--amp %s needs a GPU; on CPU the oneDNN backend is the fast path' % amp)
    checkpoints = find_checkpoints(ckpt_path)
    dataset = dataset_of(config)
    items = dataset.evaluation_items(dict(image_dir=image_dir, mask_dir=mask_dir, mask_format=mask_format))
    mean, std = normalization_from_config(config)
    num_classes = int(config.model.params.get('num_classes', len(dataset.CLASS_NAMES)))
    class_names = dataset.CLASS_NAMES if num_classes == len(dataset.CLASS_NAMES) else None
    writer = paddle.distributed.get_rank() == 0
    make_output_dir(vis_dir, '--vis_dir')
    make_output_dir(log_dir, '--log_dir')
    results = []
    for path in checkpoints:
        model, global_step = build_and_load(config, path)
        out_dir = vis_dir
        if vis_dir is not None and len(checkpoints) > 1:
            out_dir = os.path.join(vis_dir, os.path.splitext(os.path.basename(path))[0])
            make_output_dir(out_dir, '--vis_dir')
        forward = build_forward(
            model,
            backend,
            amp,
            cache_dir=cache_dir,
            config=config.model,
            reload=lambda path=path: build_and_load(config, path)[0],
        )
        del model  # the oneDNN path keeps it only until its program is verified
        evaluator = Evaluator(
            forward, num_classes, patch_size, stride, mean, std, class_names, dataset.COLORS, batch_size, tta
        )
        _logger.info(
            '%s (step %s): %d images, %d windows of %d px, stride %d, batch %d, backend %s',
            path,
            global_step,
            len(items),
            evaluator.count_windows(items),
            patch_size,
            stride,
            batch_size,
            forward.name,
        )
        try:
            result = evaluator.run(items, out_dir, label_pngs=mask_dir is None, desc=os.path.basename(path))
        finally:
            if hasattr(forward, 'close'):
                forward.close()
        result = dict(
            checkpoint=path,
            global_step=global_step,
            patch_size=patch_size,
            stride=stride,
            batch_size=batch_size,
            tta=tta,
            amp=amp,
            **result,
        )
        if 'table' in result:
            _logger.info('%s (step %s)\n%s', path, global_step, result['table'])
            if log_dir is not None and writer:
                write_evaluation_logs(log_dir, os.path.splitext(os.path.basename(path))[0], result)
        results.append(result)
    if mask_dir is not None and len(results) > 1:
        _report_best(results, log_dir if writer else None)
    return results


def _report_best(results, log_dir):
    """Log every checkpoint's mIoU and the best one; write ``eval_summary.json`` to ``log_dir`` (if given)."""
    best = max(results, key=lambda r: -1.0 if r['miou'] is None else r['miou'])
    lines = [
        '%-40s step %-8s mIoU %s  fg mIoU %s'
        % (os.path.basename(r['checkpoint']), r['global_step'], _pct(r['miou']), _pct(r['miou_fg']))
        for r in results
    ]
    _logger.info('checkpoints:\n%s\nbest: %s (mIoU %s)', '\n'.join(lines), best['checkpoint'], _pct(best['miou']))
    if log_dir is not None:
        with open(os.path.join(log_dir, 'eval_summary.json'), 'w') as stream:
            json.dump(
                dict(
                    best=best['checkpoint'],
                    best_miou=best['miou'],
                    checkpoints=[{k: r[k] for k in ('checkpoint', 'global_step', 'miou', 'miou_fg')} for r in results],
                ),
                stream,
                indent=1,
            )


def _pct(value):
    return 'n/a' if value is None else '%.2f' % (100 * value)
