"""Joint image and mask transforms for segmentation, on NumPy arrays.

Every transform is a callable ``t(image, mask=None)``:

- ``image``: ``(H, W, C)`` uint8 array (RGB), or the ``(C, H, W)`` float32 array that
  :class:`ToTensor` returns;
- ``mask``: ``(H, W)`` uint8 label array (class indices, 255 = ignore), or ``None``.

It returns ``(image, mask)``, or only the image when ``mask`` is None (the calling convention
of :class:`simplecv.api.preprocess.comm.Compose`). Random transforms draw from Python's
``random`` module, in the same order as SimpleCV, so the data set can make a sample's
augmentation reproducible by seeding ``random`` with the sample's seed.

Differences from SimpleCV (``simplecv/_impl/preprocess/segm.py``): SimpleCV works on PIL
images through torchvision; these transforms work on NumPy arrays (no PIL, no torch), give
identical pixels for flips, 90° rotations and bottom/right padding, return NumPy arrays from
:class:`ToTensor` (the Paddle data loader makes the tensors) and give an int64 mask instead of
uint8. :class:`FixedPad` raises ``ValueError`` instead of failing an ``assert``.
"""

import math
import random

import numpy as np


def _pair(image, mask, mask_given):
    return (image, mask) if mask_given else image


def _pad_bottom_right(array, pad_h, pad_w, fill):
    widths = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, widths, mode='constant', constant_values=fill)


class _RandomFlip:
    """Mirror image and mask along array axis ``axis`` (a view, as slicing with ``::-1``) with probability ``prob``.

    Args:
        prob: flip probability; one ``random.random()`` draw per call.
    """

    axis = None

    def __init__(self, prob=0.5):
        self.prob = prob

    def __call__(self, image, mask=None):
        if random.random() < self.prob:
            image = np.flip(image, self.axis)
            if mask is not None:
                mask = np.flip(mask, self.axis)
        return _pair(image, mask, mask is not None)

    def __repr__(self):
        return '%s(prob=%r)' % (type(self).__name__, self.prob)


class RandomHorizontalFlip(_RandomFlip):
    """Mirror image and mask left-right with probability ``prob`` (one ``random.random()`` draw per call)."""

    axis = 1


class RandomVerticalFlip(_RandomFlip):
    """Mirror image and mask top-bottom with probability ``prob`` (one ``random.random()`` draw per call)."""

    axis = 0


class RandomRotate90K:
    """Rotate image and mask counter-clockwise by ``90·k`` degrees, ``k = random.choice(k)``.

    The result equals ``np.rot90(x, k)`` (and PIL's ``rotate(90·k, expand=True)``, which SimpleCV
    uses): for odd ``k`` a non-square patch has its height and width swapped.

    Args:
        k: the quarter turns to choose from.
    """

    def __init__(self, k=(0, 1, 2, 3)):
        self.k = tuple(k)

    def __call__(self, image, mask=None):
        k = random.choice(self.k)
        if k % 4:
            image = np.rot90(image, k, axes=(0, 1))
            if mask is not None:
                mask = np.rot90(mask, k, axes=(0, 1))
        return _pair(image, mask, mask is not None)

    def __repr__(self):
        return '%s(k=%r)' % (type(self).__name__, self.k)


class FixedPad:
    """Pad image and mask at the bottom and right to ``target_size``.

    The image is padded with 0 (black, before normalisation), the mask with ``mask_pad_value``.

    Args:
        target_size: ``(height, width)`` after padding.
        mask_pad_value: label of the padded mask pixels (255 = ignored by the loss).

    Raises:
        ValueError: (on call) the input is larger than ``target_size``.
    """

    def __init__(self, target_size, mask_pad_value=255):
        self.target_size = tuple(target_size)
        self.mask_pad_value = mask_pad_value

    def __call__(self, image, mask=None):
        target_h, target_w = self.target_size
        height, width = image.shape[:2]
        if height > target_h or width > target_w:
            raise ValueError(
                'FixedPad: a %dx%d input does not fit the target size %dx%d; '
                'the patch size must not exceed the pad size' % (height, width, target_h, target_w)
            )
        image = _pad_bottom_right(image, target_h - height, target_w - width, 0)
        if mask is not None:
            mask = _pad_bottom_right(mask, target_h - height, target_w - width, self.mask_pad_value)
        return _pair(image, mask, mask is not None)

    def __repr__(self):
        return '%s(target_size=%r, mask_pad_value=%r)' % (type(self).__name__, self.target_size, self.mask_pad_value)


class DivisiblePad:
    """Pad image and mask at the bottom and right up to multiples of ``size_divisor``.

    Args:
        size_divisor: the height and width after padding are multiples of it.
        mask_pad_value: label of the padded mask pixels.
    """

    def __init__(self, size_divisor, mask_pad_value=255):
        self.size_divisor = size_divisor
        self.mask_pad_value = mask_pad_value

    def __call__(self, image, mask=None):
        height, width = image.shape[:2]
        pad_h = math.ceil(height / self.size_divisor) * self.size_divisor - height
        pad_w = math.ceil(width / self.size_divisor) * self.size_divisor - width
        image = _pad_bottom_right(image, pad_h, pad_w, 0)
        if mask is not None:
            mask = _pad_bottom_right(mask, pad_h, pad_w, self.mask_pad_value)
        return _pair(image, mask, mask is not None)

    def __repr__(self):
        return '%s(size_divisor=%r, mask_pad_value=%r)' % (type(self).__name__, self.size_divisor, self.mask_pad_value)


class ToTensor:
    """Convert an ``(H, W, C)`` image to a ``(C, H, W)`` float32 array, and the mask to int64.

    Like torchvision's ``to_tensor`` as SimpleCV calls it: a uint8 image is divided by 255
    unless ``image_keep_255``; a float image is only transposed when ``image_keep_255``
    (and divided by 255 otherwise).

    Args:
        image_keep_255: keep the 0..255 range (the FactSeg configs pass True).

    Returns (on call):
        ``(image (C, H, W) float32, mask (H, W) int64)``, both C-contiguous, or only the image.
    """

    def __init__(self, image_keep_255=False):
        self.image_keep_255 = image_keep_255

    def __call__(self, image, mask=None):
        array = np.asarray(image)
        if array.ndim == 2:
            array = array[:, :, None]
        chw = np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32)
        if not self.image_keep_255:
            chw /= np.float32(255.0)
        if mask is not None:
            mask = np.ascontiguousarray(mask, dtype=np.int64)
        return _pair(chw, mask, mask is not None)

    def __repr__(self):
        return '%s(image_keep_255=%r)' % (type(self).__name__, self.image_keep_255)
