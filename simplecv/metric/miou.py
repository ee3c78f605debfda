"""Confusion matrix and intersection over union for semantic segmentation.

The official evaluator uses SimpleCV's ``NPMeanIntersectionOverUnion``: a float32 scipy sparse
matrix per image, summed across images in float32. A cell of one image saturates at 2**24
pixels and the cross-image sum loses counts in the same way (spec §9.2); the effect on the
mIoU is below 1e-4. Here counts are exact ``int64`` ``bincount`` sums.

Conventions (the same as the official code):

- rows are ground truth, columns are predictions;
- ``IoU_c = CM[c, c] / (row_sum_c + col_sum_c - CM[c, c])``;
- the reported mIoU averages all classes, background included (16 classes for iSAID);
  ``miou_fg`` averages classes 1.. (15 for iSAID), as the official TensorBoard tag
  ``eval-miou/miou-fg`` does.

Differences from the official code:

- pixels whose ground truth is ``ignore_index`` (255) are left out; the official metric raises
  ``ValueError`` on them. Any other label outside ``0..num_classes-1`` raises
  :class:`~simplecv.core.errors.DataError`;
- a class absent from both the ground truth and the predictions has an undefined IoU (0/0).
  Its IoU is reported as NaN and the means skip it (``np.nanmean``); the official mean becomes
  NaN, the previous Paddle port counts it as 0. ``num_valid_classes`` says how many classes
  the means cover. On the iSAID val set every class is present, so the values agree.
"""

from collections import namedtuple

import numpy as np

from simplecv.core.errors import DataError

IoUSummary = namedtuple('IoUSummary', 'ious miou miou_fg num_valid_classes')
IoUSummary.__doc__ = """Result of :meth:`MeanIoU.summary`.

Fields:
    ious: ``(C,)`` float64 IoU per class, NaN where undefined.
    miou: mean IoU over the defined classes, background included.
    miou_fg: mean IoU over the defined classes ``1..C-1``.
    num_valid_classes: how many classes have a defined IoU.
"""


def confusion_matrix(y_true, y_pred, num_classes, ignore_index=255):
    """Count ``(ground truth, prediction)`` pairs.

    Args:
        y_true: integer array of any shape, values ``0..num_classes-1`` or ``ignore_index``.
        y_pred: integer array of the same shape, values ``0..num_classes-1``.
        num_classes: number of classes ``C``.
        ignore_index: ground-truth value to leave out; None to allow none.

    Returns:
        np.ndarray: ``(C, C)`` int64 matrix, rows ground truth, columns prediction.

    Raises:
        DataError: shapes differ, or a value is outside the allowed range.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise DataError(
            'confusion_matrix: ground truth %s and prediction %s differ in shape' % (y_true.shape, y_pred.shape)
        )
    y_true = y_true.reshape(-1)
    y_pred = y_pred.reshape(-1)
    if ignore_index is not None:
        keep = y_true != ignore_index
        if not keep.all():
            y_true = y_true[keep]
            y_pred = y_pred[keep]
    _check_range('ground truth', y_true, num_classes, ignore_index)
    _check_range('prediction', y_pred, num_classes, None)
    index = y_true.astype(np.int64) * num_classes + y_pred.astype(np.int64)
    counts = np.bincount(index, minlength=num_classes * num_classes)
    return counts.astype(np.int64).reshape(num_classes, num_classes)


def _check_range(what, values, num_classes, ignore_index):
    if values.size == 0:
        return
    low, high = values.min(), values.max()
    if low < 0 or high >= num_classes:
        bad = values[(values < 0) | (values >= num_classes)]
        allowed = '0..%d' % (num_classes - 1)
        if ignore_index is not None:
            allowed += ' (and %d, ignored)' % ignore_index
        raise DataError(
            '%s holds values %s outside %s; check the mask format (colour masks need '
            'mask_format color) and the class order' % (what, np.unique(bad)[:10].tolist(), allowed)
        )


def iou_per_class(matrix):
    """IoU of every class from a confusion matrix.

    Args:
        matrix: ``(C, C)`` counts, rows ground truth, columns prediction.

    Returns:
        np.ndarray: ``(C,)`` float64; NaN for a class with no ground-truth and no predicted
        pixel.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    diag = np.diag(matrix)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - diag
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(union > 0, diag / np.where(union > 0, union, 1), np.nan)


def _nanmean(values):
    values = np.asarray(values, dtype=np.float64)
    valid = ~np.isnan(values)
    return float(values[valid].mean()) if valid.any() else float('nan')


class MeanIoU:
    """Accumulate a confusion matrix over images and report per-class IoU and mIoU.

    Args:
        num_classes: number of classes (16 for iSAID, background included).
        class_names: one name per class for the table; defaults to the indices.
        ignore_index: ground-truth value left out of the counts.

    Example:
        >>> metric = MeanIoU(3)
        >>> metric.update(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2]))
        >>> round(metric.summary().miou, 4)
        0.6667
    """

    def __init__(self, num_classes, class_names=None, ignore_index=255):
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError('MeanIoU: %d class names for %d classes' % (len(class_names), num_classes))
        self.num_classes = int(num_classes)
        self.class_names = tuple(class_names) if class_names is not None else tuple(str(i) for i in range(num_classes))
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def reset(self):
        """Zero the counts."""
        self.matrix[...] = 0

    def update(self, y_true, y_pred):
        """Add one image (or one band of rows) to the counts.

        Args:
            y_true: ``(H, W)`` (any shape) ground-truth labels.
            y_pred: predicted labels of the same shape.
        """
        self.matrix += confusion_matrix(y_true, y_pred, self.num_classes, self.ignore_index)

    def summary(self):
        """Return an :data:`IoUSummary` of the counts so far."""
        ious = iou_per_class(self.matrix)
        return IoUSummary(
            ious=ious, miou=_nanmean(ious), miou_fg=_nanmean(ious[1:]), num_valid_classes=int((~np.isnan(ious)).sum())
        )

    def table(self, digits=4):
        """Return a plain-text table: one row per class, then mIoU and foreground mIoU."""
        result = self.summary()
        rows = [(str(i), name, _fmt(iou, digits)) for i, (name, iou) in enumerate(zip(self.class_names, result.ious))]
        rows.append(('', 'mIoU (%d classes)' % self.num_classes, _fmt(result.miou, digits)))
        rows.append(('', 'mIoU foreground (%d classes)' % (self.num_classes - 1), _fmt(result.miou_fg, digits)))
        widths = [max(len(r[k]) for r in rows + [('idx', 'class', 'IoU')]) for k in range(3)]
        line = '+-%s-+-%s-+-%s-+' % tuple('-' * w for w in widths)
        out = [
            line,
            '| %s | %s | %s |' % ('idx'.rjust(widths[0]), 'class'.ljust(widths[1]), 'IoU'.rjust(widths[2])),
            line,
        ]
        for k, row in enumerate(rows):
            if k == self.num_classes:
                out.append(line)
            out.append('| %s | %s | %s |' % (row[0].rjust(widths[0]), row[1].ljust(widths[1]), row[2].rjust(widths[2])))
        out.append(line)
        return '\n'.join(out)

    def to_dict(self):
        """JSON-ready dict: per-class IoU by name (None where undefined), means, matrix."""
        result = self.summary()
        return dict(
            iou={name: (None if np.isnan(v) else float(v)) for name, v in zip(self.class_names, result.ious)},
            miou=None if np.isnan(result.miou) else result.miou,
            miou_fg=None if np.isnan(result.miou_fg) else result.miou_fg,
            num_valid_classes=result.num_valid_classes,
            num_pixels=int(self.matrix.sum()),
            confusion_matrix=self.matrix.tolist(),
        )


def _fmt(value, digits):
    return 'n/a' if np.isnan(value) else '%.*f' % (digits, value)
