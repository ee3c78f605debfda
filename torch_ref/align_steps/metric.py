"""Step ``metric``: the project's evaluator against a NumPy reference of the official NPmIoU.

Ground truth: the colour masks of generated demo images (``data.demo``, two 256x256 val
images; ``--full``: two 1024x1024), decoded by ``data.isaid.decode_color_mask``. Predictions:
the ground truth with a seeded corruption (a shift of a few pixels plus 20% of the pixels set
to random classes), so that every class occurs and every kind of confusion is counted. Both
implementations see the same images one at a time.

Paddle side: :class:`simplecv.metric.miou.MeanIoU` (int64 ``bincount`` counts).
Reference: :func:`official_np_miou`, the algorithm of SimpleCV's
``NPMeanIntersectionOverUnion`` (a float32 ``scipy.sparse.coo_matrix`` per image summed across
images, ``IoU_c = CM[c,c] / (colsum_c + rowsum_c - CM[c,c])``, mean over all 16 classes, and the
15-class foreground mean of the official TensorBoard tag ``eval-miou/miou-fg``).

Compared (mean absolute difference <= 1e-6 each): the confusion matrix, per-class IoU, mIoU and
foreground mIoU. The counts here stay far below 2**24, where the official float32 counts are
exact, so any difference is a real one.
"""

import os

import numpy as np
from PIL import Image
from scipy import sparse

from torch_ref.align_steps import common

NAME = 'metric'
THRESHOLD = 1e-6
NUM_CLASSES = 16
SMALL_SIZE = 256
FULL_SIZE = 1024
NUM_IMAGES = 2
NOISE_FRACTION = 0.2


def official_np_miou(pairs, num_classes=NUM_CLASSES):
    """The official NPmIoU on ``(y_true, y_pred)`` image pairs.

    Returns:
        tuple: ``(confusion (C, C) float32, iou (C,) float32, miou, miou_fg)``.
    """
    total = sparse.coo_matrix((num_classes, num_classes), dtype=np.float32)
    for y_true, y_pred in pairs:
        y_true, y_pred = y_true.reshape(-1), y_pred.reshape(-1)
        total = total + sparse.coo_matrix(
            (np.ones_like(y_pred), (y_true, y_pred)), shape=(num_classes, num_classes), dtype=np.float32
        )
    matrix = total.toarray()
    diag = np.diag(matrix)
    iou = diag / (matrix.sum(axis=0) + matrix.sum(axis=1) - diag)
    return matrix, iou, float(iou.mean()), float(iou[1:].mean())


def demo_label_pairs(out_dir, size, seed):
    """Ground-truth and corrupted-prediction label maps of generated demo val images.

    Returns:
        list: ``NUM_IMAGES`` tuples ``(y_true, y_pred)`` of ``(size, size)`` uint8 arrays.
    """
    from data.demo import generate_demo_dataset
    from data.isaid import decode_color_mask

    folders = generate_demo_dataset(
        os.path.join(out_dir, 'metric_data'), num_train=0, num_val=NUM_IMAGES, size=(size, size), seed=seed
    )
    mask_dir = folders['val'][1]
    rng = np.random.RandomState(seed)
    pairs = []
    for name in sorted(os.listdir(mask_dir)):
        with Image.open(os.path.join(mask_dir, name)) as mask:
            y_true = decode_color_mask(np.asarray(mask.convert('RGB')))
        y_pred = np.roll(y_true, shift=tuple(rng.randint(-4, 5, size=2)), axis=(0, 1))
        noisy = rng.rand(*y_pred.shape) < NOISE_FRACTION
        y_pred = np.where(noisy, rng.randint(0, NUM_CLASSES, size=y_pred.shape), y_pred).astype(np.uint8)
        pairs.append((y_true, y_pred))
    return pairs


def run(out_dir, options):
    """Run the step; see the module docstring. Returns a :class:`common.StepResult`."""
    from simplecv.metric.miou import MeanIoU

    pairs = demo_label_pairs(out_dir, FULL_SIZE if options.full else SMALL_SIZE, options.seed)
    metric = MeanIoU(NUM_CLASSES)
    for y_true, y_pred in pairs:
        metric.update(y_true, y_pred)
    summary = metric.summary()
    matrix, iou, miou, miou_fg = official_np_miou(pairs)
    paddle_data = dict(
        confusion_matrix=metric.matrix, iou=summary.ious, miou=np.array(summary.miou), miou_fg=np.array(summary.miou_fg)
    )
    torch_data = dict(confusion_matrix=matrix, iou=iou, miou=np.array(miou), miou_fg=np.array(miou_fg))
    notes = [
        '%d demo images of %dx%d, %d pixels; reference mIoU %.6f, foreground mIoU %.6f'
        % (len(pairs), pairs[0][0].shape[0], pairs[0][0].shape[1], int(matrix.sum()), miou, miou_fg)
    ]
    return common.compare(NAME, out_dir, paddle_data, torch_data, THRESHOLD, notes=notes)
