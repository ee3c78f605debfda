"""Ground-truth masks read as labels by rows: colour masks (through a colour decoder) or label masks.

A mask file is in one of two formats:

- ``'color'``: an 8-bit RGB (or RGBA, palette) image whose colours name the classes; a colour
  decoder given by the caller turns them into labels;
- ``'label'``: a single-channel image (8 or 16 bit greyscale, or palette read as its indices)
  whose values are the labels: ``0..num_classes-1`` and ``ignore_index``.

PNG, JPEG and BMP masks are decoded whole; TIFF masks are read by rows. File checks are those
of :func:`simplecv.io.images.read_header`.
"""

import numpy as np

from simplecv.core.errors import ConfigError, DataError
from simplecv.io.images import Closable, TiffBands, decode_pillow, depth_name, is_geotiff, read_header

MASK_FORMATS = ('color', 'label')
_LABEL_DTYPES = ('uint8', 'uint16', 'int16', 'int32')


def check_mask_format(mask_format):
    """Check a ``mask_format`` value.

    Args:
        mask_format: ``'color'`` or ``'label'``.

    Raises:
        ConfigError: any other value.
    """
    if mask_format not in MASK_FORMATS:
        raise ConfigError("mask_format must be 'color' or 'label', got %r" % (mask_format,))


def check_mask_header(path, header, mask_format):
    """Check that a file's pixel format fits ``mask_format``.

    Args:
        path: the mask, for the message.
        header: its :class:`simplecv.io.images.Header`.
        mask_format: ``'color'`` or ``'label'``.

    Raises:
        DataError: a single-channel colour mask, a colour mask that is not 8-bit, a label mask
        with several channels or with non-integer values.
    """
    if mask_format == 'color':
        if header.kind in ('greyscale', 'greyscale+alpha'):
            raise DataError(
                '%s is a single-channel mask, not a colour mask; if it holds class indices set '
                "mask_format='label' (--mask_format label)" % path
            )
        if header.dtype != 'uint8':
            raise DataError('%s is a %s colour mask; save it as 8-bit RGB' % (path, depth_name(header.dtype)))
    elif header.kind not in ('greyscale', 'palette'):
        raise DataError(
            '%s is a %s mask, not a single-channel label mask; for colour masks set '
            "mask_format='color' (--mask_format color)" % (path, header.kind)
        )
    elif header.dtype not in _LABEL_DTYPES:
        raise DataError(
            '%s has %s values; label masks hold integer class indices, save it as 8-bit greyscale'
            % (path, header.dtype)
        )


def check_labels(values, path, num_classes=None, ignore_index=255):
    """Check label values and return them as uint8.

    Args:
        values: ``(H, W)`` integer array.
        path: the mask, for the message.
        num_classes: labels may be ``0..num_classes-1`` and ``ignore_index``; None allows 0..255.
        ignore_index: the label of ignored pixels.

    Returns:
        np.ndarray: ``(H, W)`` uint8.

    Raises:
        DataError: other values, listing up to ten of them.
    """
    if num_classes is None:
        bad = (values < 0) | (values > 255)
        allowed = '0..255'
    else:
        bad = (values < 0) | ((values >= num_classes) & (values != ignore_index))
        allowed = '0..%d and %d' % (num_classes - 1, ignore_index)
    if bad.any():
        raise DataError(
            '%s holds label values %s outside %s; relabel it with the class indices of the colour table '
            '(%d = ignored)' % (path, np.unique(values[bad])[:10].tolist(), allowed, ignore_index)
        )
    return values.astype(np.uint8, copy=False)


class MaskFile(Closable):
    """A mask read as labels by rows. Use :func:`open_mask`.

    Args:
        path: the mask file.
        header: its checked :class:`simplecv.io.images.Header`.
        mask_format: ``'color'`` or ``'label'``.
        decode_color: for ``'color'``: ``decode_color(pixels, path) -> labels`` turning
            ``(h, w, 3)`` uint8 RGB into ``(h, w)`` uint8 labels (it may log colours outside its
            table, once per ``path``).
        num_classes: label masks may hold ``0..num_classes-1`` and ``ignore_index``; None
            allows 0..255.
        ignore_index: the label of ignored pixels.

    Attributes:
        path, height, width, mask_format: the file, its size and format.
    """

    def __init__(self, path, header, mask_format, decode_color=None, num_classes=None, ignore_index=255):
        check_mask_format(mask_format)
        if mask_format == 'color' and decode_color is None:
            raise ConfigError("mask_format='color' needs a colour decoder (decode_color)")
        self.path = path
        self.width, self.height = header.width, header.height
        self.mask_format = mask_format
        self.decode_color = decode_color
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._labels = None
        self._bands = None

    def _decode(self, pixels):
        if self.mask_format == 'color':
            return self.decode_color(pixels, self.path)
        if pixels.ndim == 3:
            pixels = pixels[:, :, 0]
        return check_labels(pixels, self.path, self.num_classes, self.ignore_index)

    def load(self):
        """Decode a PNG, JPEG or BMP mask whole, or open a TIFF mask for reading by rows.

        Returns:
            MaskFile: self.

        Raises:
            DataError: the file is gone or damaged, or a label mask holds other values.
        """
        if is_geotiff(self.path):
            if self._bands is None:
                self._bands = TiffBands(self.path, [1, 2, 3] if self.mask_format == 'color' else [1])
        elif self._labels is None:
            self._labels = self._decode(decode_pillow(self.path, 'RGB' if self.mask_format == 'color' else None))
        return self

    def read_rows(self, y1, y2):
        """Read the labels of rows ``y1`` (included) to ``y2`` (excluded).

        Args:
            y1, y2: row range, ``0 <= y1 <= y2 <= height``.

        Returns:
            np.ndarray: ``(y2 - y1, W)`` uint8 labels.

        Raises:
            DataError: the file is gone or damaged, or a label mask holds other values.
        """
        self.load()
        if self._bands is not None:
            return self._decode(self._bands.read_rows(y1, y2))
        return self._labels[y1:y2]

    def read(self):
        """Read all labels.

        Returns:
            np.ndarray: ``(H, W)`` uint8 labels.

        Raises:
            DataError: as :meth:`read_rows`.
        """
        return self.read_rows(0, self.height)

    def close(self):
        """Release the decoded labels or the open file; a later read opens it again."""
        self._labels = None
        if self._bands is not None:
            self._bands.close()
            self._bands = None


def open_mask(path, mask_format, decode_color=None, num_classes=None, ignore_index=255):
    """Check a mask file's header and open it for reading labels by rows.

    Args:
        path: a PNG, JPEG, BMP or TIFF mask.
        mask_format: ``'color'`` or ``'label'``.
        decode_color: the colour decoder for ``'color'``, see :class:`MaskFile`.
        num_classes: the number of classes label masks may hold; None allows 0..255.
        ignore_index: the label of ignored pixels.

    Returns:
        MaskFile: with ``height``, ``width`` and ``read_rows``; nothing is decoded yet.

    Raises:
        DataError: see :func:`simplecv.io.images.read_header` and :func:`check_mask_header`.
        ConfigError: a bad ``mask_format``, or ``'color'`` without ``decode_color``.
    """
    check_mask_format(mask_format)
    header = read_header(path)
    check_mask_header(path, header, mask_format)
    return MaskFile(path, header, mask_format, decode_color, num_classes, ignore_index)
