"""The one evaluator: official sliding-window prediction -> confusion matrix -> tables, files, pictures.

``isaid_eval.py``, ``tools/infer.py``, the in-training evaluation hook and the notebook all run
images through :class:`Evaluator`. The prediction is :class:`SlidingWindowPredictor`'s (the
official procedure, spec §9, in bounded memory); the metric is :class:`MeanIoU` (an int64
confusion matrix summed over all images, 255 ignored). With several processes
(``python -m paddle.distributed.launch``) each takes every ``world_size``-th image and the
confusion matrices are summed across processes, so every process returns the same metric.

The next image is decoded in a thread while the current one runs (when it is at most
:data:`PREFETCH_PIXELS`), and label maps are written by two writer threads; GeoTIFF inputs are
written row band by row band as single-band GeoTIFFs.
"""

import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from simplecv.inference.sliding_window import SlidingWindowPredictor
from simplecv.metric.miou import MeanIoU

_logger = logging.getLogger('factseg.eval')
# The next image is decoded while the current one runs only up to this size (16 MP, 48 MB of RGB):
# decoding a whole iSAID scene (up to 52 MP) during a sweep would add it and its decoding copy to the peak.
PREFETCH_PIXELS = 16 * 2**20


class Evaluator:
    """Predict images with the official sliding-window procedure and score them against their masks.

    Args:
        forward: ``(B, 3, h, w) float32 ndarray -> (B, C, h, w)`` probabilities: a
            :class:`~simplecv.inference.fast_path.DygraphForward`, ``OneDNNForward``,
            :class:`~simplecv.inference.static_model.StaticModelForward` or ``OnnxModelForward``.
        num_classes: C.
        patch_size: window size (896 in the official evaluation).
        stride: window step (512).
        mean, std: per-channel normalisation in the 0..255 scale.
        class_names: C names for the IoU table (default: the indices).
        colors: C ``(r, g, b)`` colours of the palette PNGs (default: none written in colour).
        batch_size: windows per forward call (any value gives the same labels).
        tta: average with flipped windows (not in the official protocol).
        ignore_index: ground-truth value left out of the metric.
        progress: show a tqdm bar with the windows done and an ETA.
    """

    def __init__(
        self,
        forward,
        num_classes,
        patch_size=896,
        stride=512,
        mean=None,
        std=None,
        class_names=None,
        colors=None,
        batch_size=1,
        tta=False,
        ignore_index=255,
        progress=True,
    ):
        extra = {} if mean is None else dict(mean=mean, std=std)
        self.forward = forward
        self.predictor = SlidingWindowPredictor(forward, patch_size, stride, batch_size=batch_size, tta=tta, **extra)
        self.num_classes = int(num_classes)
        self.class_names = class_names
        self.colors = colors
        self.ignore_index = ignore_index
        self.progress = progress

    @property
    def backend(self):
        """The name of the forward function in use (``'dygraph (onednn fell back)'`` after a fallback)."""
        name = getattr(self.forward, 'name', type(self.forward).__name__)
        return name if getattr(self.forward, 'fallback', None) is None else 'dygraph (onednn fell back)'

    def count_windows(self, items):
        """Total number of windows over ``items`` (objects with ``height`` and ``width``)."""
        return sum(len(self.predictor.windows(item.height, item.width)) for item in items)

    def run(self, items, vis_dir=None, label_pngs=False, desc='eval'):
        """Predict ``items`` (and score them when they have masks); write the label maps to ``vis_dir``.

        Args:
            items: :class:`simplecv.io.pairs.ImagePair` objects (``name``, ``height``, ``width``,
                ``geotiff``, ``mask_path``, ``open() -> (image, mask)``); either all or none have masks.
            vis_dir: folder for ``<name>.png`` palette PNGs (``<name>.tif`` for GeoTIFF inputs), or None.
            label_pngs: also write ``<name>_label.png`` (plain uint8 classes) to ``vis_dir``.
            desc: the progress bar's label.

        Returns:
            dict: ``num_images``, ``num_windows``, ``seconds``, ``windows_per_second``, ``backend``
            and, when the items have masks, :meth:`MeanIoU.to_dict`'s entries (``miou``,
            ``miou_fg``, ``iou`` by class, ``confusion_matrix``) plus ``table`` (text).
        """
        import paddle
        from tqdm import tqdm

        rank, world_size = paddle.distributed.get_rank(), paddle.distributed.get_world_size()
        scored = bool(items) and items[0].mask_path is not None
        metric = MeanIoU(self.num_classes, self.class_names, self.ignore_index) if scored else None
        mine = list(items)[rank::world_size]
        total = self.count_windows(mine)
        start = time.perf_counter()
        with (
            ThreadPoolExecutor(1) as reader,
            ThreadPoolExecutor(2) as writer,
            tqdm(total=total, unit='win', desc=desc, dynamic_ncols=True, disable=not self.progress) as bar,
        ):
            saves = []
            pending = reader.submit(mine[0].open) if mine else None
            for index, item in enumerate(mine):
                image, mask = (pending or reader.submit(item.open)).result()
                pending = None
                upcoming = mine[index + 1] if index + 1 < len(mine) else None
                if upcoming is not None and upcoming.height * upcoming.width <= PREFETCH_PIXELS:
                    pending = reader.submit(upcoming.open)
                bar.set_postfix_str(item.name)
                saves += self._predict_item(item, image, mask, metric, vis_dir, label_pngs, writer, bar)
            for save in saves:
                save.result()
        seconds = time.perf_counter() - start
        num_windows = total
        if world_size > 1:
            num_windows = _sum_over_processes(np.asarray([total]))[0]
            if metric is not None:
                metric.matrix = _sum_over_processes(metric.matrix)
        result = dict(
            num_images=len(items),
            num_windows=int(num_windows),
            seconds=round(seconds, 3),
            windows_per_second=round(num_windows / max(seconds, 1e-9), 4),
            backend=self.backend,
        )
        if metric is not None:
            result.update(metric.to_dict())
            result['table'] = metric.table()
        return result

    def _predict_item(self, item, image, mask, metric, vis_dir, label_pngs, writer, bar):
        """Run one opened image (and mask); return the futures of its PNG writes."""
        from simplecv.io.writers import GeoTiffLabelWriter, save_label_png, save_palette_png

        geo_writer = None
        if vis_dir is not None and item.geotiff:
            geo_writer = GeoTiffLabelWriter(
                os.path.join(vis_dir, item.name + '.tif'), item.height, item.width, image.profile, self.colors
            )
        bands = [] if vis_dir is not None and not item.geotiff else None
        window_tops = self.predictor.windows(item.height, item.width)[:, 1]
        done = 0
        try:
            for y1, y2, labels in self.predictor.predict_bands(image):
                if metric is not None:
                    metric.update(mask.read_rows(y1, y2), labels)
                if geo_writer is not None:
                    geo_writer.write_rows(y1, labels)
                if bands is not None:
                    bands.append(labels)
                covered = int((window_tops < y2).sum())
                bar.update(covered - done)
                done = covered
        finally:
            image.close()
            if mask is not None:
                mask.close()
            if geo_writer is not None:
                geo_writer.close()
        if bands is None:
            return []
        label = np.concatenate(bands, axis=0)
        saves = [writer.submit(save_palette_png, os.path.join(vis_dir, item.name + '.png'), label, self.colors)]
        if label_pngs:
            saves.append(writer.submit(save_label_png, os.path.join(vis_dir, item.name + '_label.png'), label))
        return saves


def _sum_over_processes(array):
    """Sum an integer array over all processes (every process gets the sum)."""
    import paddle

    tensor = paddle.to_tensor(np.ascontiguousarray(array, dtype=np.int64))
    paddle.distributed.all_reduce(tensor)
    return tensor.numpy()


def write_evaluation_logs(log_dir, stem, result, step=None):
    """Write ``eval_<stem>.txt`` (the table) and ``.json`` (everything but the table) and VisualDL scalars.

    Args:
        log_dir: output folder (exists).
        stem: file-name stem, e.g. the checkpoint's (``model-60000``).
        result: a scored :meth:`Evaluator.run` result plus ``checkpoint`` and ``global_step``.
        step: the VisualDL step (default: ``result['global_step']`` when it is an int, else 0).
    """
    with open(os.path.join(log_dir, 'eval_%s.txt' % stem), 'w') as stream:
        stream.write(
            'checkpoint %s (global step %s), %d images\n%s\n'
            % (result.get('checkpoint'), result.get('global_step'), result['num_images'], result['table'])
        )
    with open(os.path.join(log_dir, 'eval_%s.json' % stem), 'w') as stream:
        json.dump({k: v for k, v in result.items() if k != 'table'}, stream, indent=1)
    if step is None:
        step = result.get('global_step') if isinstance(result.get('global_step'), int) else 0
    write_iou_scalars(log_dir, result, step)


def write_iou_scalars(log_dir, result, step):
    """Add ``eval-miou/miou``, ``eval-miou/miou-fg`` and ``eval-ious/<class>`` VisualDL scalars at ``step``."""
    try:
        from visualdl import LogWriter
    except ImportError:
        _logger.warning('visualdl is not installed: no scalars written to %s', log_dir)
        return
    scalars = [('eval-miou/miou', result['miou']), ('eval-miou/miou-fg', result['miou_fg'])]
    scalars += [('eval-ious/%s' % name, iou) for name, iou in result['iou'].items()]
    with LogWriter(logdir=log_dir) as writer:
        for tag, value in scalars:
            if value is not None:
                writer.add_scalar(tag=tag, value=float(value), step=step)
