"""The one sliding-window placer, shared by the training patcher and the evaluator."""

import numbers

import numpy as np


def _positive_pair(name, value):
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        raise ValueError('%s must be a positive int or a pair of positive ints, got %r' % (name, value)) from None
    if len(pair) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in pair):
        raise ValueError('%s must be a positive int or a pair of positive ints, got %r' % (name, value))
    return int(pair[0]), int(pair[1])


def _window_starts(length, kernel, stride):
    # ceil((length - kernel) / stride) + 1 starts; the last one is moved inward so that it ends
    # at the border (SimpleCV's `+1` branch for a short last step can never be taken).
    count = -(-(length - kernel) // stride) + 1
    return np.minimum(np.arange(count, dtype=np.int64) * stride, length - kernel)


def sliding_window(input_size, kernel_size, stride):
    """Place overlapping windows over an image, as SimpleCV's ``sliding_window`` does.

    The kernel is first clipped to the image (``kh = min(kh, H)``). Window starts are
    ``0, stride, 2*stride, ...``; a window that would cross the right or bottom border is
    shifted inward so that it ends on the border, so every window has the clipped kernel size
    and together they cover every pixel. Windows are ordered row-major (y outer, x inner).

    Args:
        input_size: image size ``(H, W)``.
        kernel_size: window size ``(kh, kw)``, or one int for a square window.
        stride: step between window starts, the same along both axes.

    Returns:
        np.ndarray: int64 array of shape ``(K, 4)``, each row ``(x1, y1, x2, y2)`` with
        exclusive ``x2, y2``, i.e. the window is ``image[y1:y2, x1:x2]``.

    Raises:
        ValueError: a size or the stride is not a positive int.

    Examples:
        An 897×1000 image with 896 windows and stride 512 gives four heavily overlapping
        windows, with x in {0, 104} and y in {0, 1}.
    """
    height, width = _positive_pair('input_size', input_size)
    kernel_h, kernel_w = _positive_pair('kernel_size', kernel_size)
    if not (isinstance(stride, numbers.Integral) and not isinstance(stride, bool) and stride > 0):
        raise ValueError('stride must be a positive int, got %r' % (stride,))
    kernel_h, kernel_w = min(kernel_h, height), min(kernel_w, width)
    ys = _window_starts(height, kernel_h, int(stride))
    xs = _window_starts(width, kernel_w, int(stride))
    y1, x1 = np.meshgrid(ys, xs, indexing='ij')
    x1, y1 = x1.ravel(), y1.ravel()
    return np.stack([x1, y1, x1 + kernel_w, y1 + kernel_h], axis=1)
