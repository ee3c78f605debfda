"""Transform composition and image-only transforms shared by all tasks.

Same calling convention as :mod:`simplecv.api.preprocess.segm`: ``t(image, mask=None)``
returns ``(image, mask)``, or only the image when ``mask`` is None.
"""

import numpy as np


class Compose:
    """Apply transforms one after another.

    Args:
        transforms: a sequence of ``t(image, mask=None)`` callables; None or empty means identity.
    """

    def __init__(self, transforms):
        self.transforms = list(transforms or ())

    def __call__(self, image, mask=None):
        if mask is None:
            for transform in self.transforms:
                image = transform(image, None)
            return image
        for transform in self.transforms:
            image, mask = transform(image, mask)
        return image, mask

    def __repr__(self):
        lines = ''.join('\n    %r' % (t,) for t in self.transforms)
        return '%s(%s\n)' % (type(self).__name__, lines)


class THMeanStdNormalize:
    """Normalise a ``(C, H, W)`` float image per channel: ``(x - mean) / std`` in float32.

    Same arithmetic as torchvision's ``normalize`` that SimpleCV's transform of this name uses
    (float32 subtract, then float32 divide), so the values are bit-identical.

    Args:
        mean: one value per channel, in the image's range (0..255 for the FactSeg configs).
        std: one value per channel.
    """

    def __init__(self, mean, std):
        self.mean = tuple(mean)
        self.std = tuple(std)
        self._mean = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
        self._std = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)

    def __call__(self, image, mask=None):
        image = (np.asarray(image, dtype=np.float32) - self._mean) / self._std
        return image if mask is None else (image, mask)

    def __repr__(self):
        return '%s(mean=%r, std=%r)' % (type(self).__name__, self.mean, self.std)
