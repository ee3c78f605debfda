"""Checking image files from their headers, and reading images by rows.

Supported files: PNG, JPEG (``.jpg``, ``.jpeg``), BMP and TIFF/GeoTIFF (``.tif``, ``.tiff``).
:func:`read_header` checks a file without decoding its pixels: the extension is supported, the
file starts with its format's signature, a PNG or JPEG ends with its end marker (so a file cut
short by an interrupted copy is caught when it is listed), and it gives the size and pixel format.

PNG, JPEG and BMP images are decoded whole with Pillow (these formats cannot be read in parts);
TIFF files are read lazily through rasterio, only the rows asked for, so an image larger than
memory can be predicted. Images become ``(H, W, 3)`` uint8 RGB:

- RGB is used as it is; greyscale is repeated to three channels; RGBA and greyscale+alpha drop
  the alpha channel; palette, CMYK and YCbCr images are converted to RGB;
- TIFF: one band is repeated to three, two bands (grey+alpha) use the first, three or more use
  bands 1-3 (a fourth band, usually alpha or near infrared, is dropped);
- anything that is not 8-bit (16-bit PNG, uint16 or float TIFF) raises :class:`DataError`: the
  models expect 0..255 values, so convert such images first.
"""

import os
import zlib
from collections import namedtuple

import numpy as np
from PIL import Image

from simplecv.core.errors import DataError

GEOTIFF_EXTENSIONS = ('.tif', '.tiff')
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp') + GEOTIFF_EXTENSIONS

# The Pillow errors that mean "this file is damaged or not an image".
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, zlib.error, Image.DecompressionBombError)
Image.MAX_IMAGE_PIXELS = None  # aerial images are legitimately huge

_TIFF_STARTS = (b'II*\x00', b'MM\x00*', b'II+\x00', b'MM\x00+')
_STARTS = {
    '.png': (b'\x89PNG\r\n\x1a\n',),
    '.jpg': (b'\xff\xd8\xff',),
    '.jpeg': (b'\xff\xd8\xff',),
    '.bmp': (b'BM',),
    '.tif': _TIFF_STARTS,
    '.tiff': _TIFF_STARTS,
}
_FORMAT_NAMES = {'.png': 'PNG', '.jpg': 'JPEG', '.jpeg': 'JPEG', '.bmp': 'BMP', '.tif': 'TIFF', '.tiff': 'TIFF'}
# End markers; the last 4 KiB of the file must hold them (JPEG files may carry a few trailing bytes).
_ENDS = {'.png': b'IEND\xaeB`\x82', '.jpg': b'\xff\xd9', '.jpeg': b'\xff\xd9'}
_TAIL_BYTES = 4096
_PNG_KINDS = {0: 'greyscale', 2: 'RGB', 3: 'palette', 4: 'greyscale+alpha', 6: 'RGBA'}
_PILLOW_KINDS = {
    '1': ('greyscale', 'uint8'),
    'L': ('greyscale', 'uint8'),
    'LA': ('greyscale+alpha', 'uint8'),
    'La': ('greyscale+alpha', 'uint8'),
    'P': ('palette', 'uint8'),
    'PA': ('palette', 'uint8'),
    'RGB': ('RGB', 'uint8'),
    'RGBA': ('RGBA', 'uint8'),
    'RGBa': ('RGBA', 'uint8'),
    'RGBX': ('RGB', 'uint8'),
    'CMYK': ('CMYK', 'uint8'),
    'YCbCr': ('RGB', 'uint8'),
    'I;16': ('greyscale', 'uint16'),
    'I;16B': ('greyscale', 'uint16'),
    'I;16L': ('greyscale', 'uint16'),
    'I;16N': ('greyscale', 'uint16'),
    'I': ('greyscale', 'int32'),
    'F': ('greyscale', 'float32'),
}
_TIFF_KINDS = {1: 'greyscale', 2: 'greyscale+alpha', 3: 'RGB', 4: 'RGBA'}
_DEPTHS = {
    'uint8': '8-bit',
    'uint16': '16-bit',
    'int16': '16-bit signed',
    'int32': '32-bit integer',
    'float32': '32-bit float',
    'float64': '64-bit float',
}

Header = namedtuple('Header', 'width height kind dtype')
Header.__doc__ = """A file's size and pixel format, read without decoding its pixels.

Attributes:
    width, height: the size in pixels.
    kind: ``'greyscale'``, ``'greyscale+alpha'``, ``'palette'``, ``'RGB'``, ``'RGBA'``, ``'CMYK'``
        or ``'<n>-band'`` (a TIFF with more than four bands).
    dtype: the NumPy name of one sample, e.g. ``'uint8'`` or ``'uint16'``.
"""


def is_geotiff(path):
    """Whether ``path`` has a TIFF/GeoTIFF extension (``.tif`` or ``.tiff``, any case).

    Args:
        path: a file path.

    Returns:
        bool
    """
    return path.lower().endswith(GEOTIFF_EXTENSIONS)


def depth_name(dtype):
    """Describe a sample type for messages, e.g. ``'uint16'`` -> ``'16-bit'``.

    Args:
        dtype: a NumPy dtype name.

    Returns:
        str
    """
    return _DEPTHS.get(dtype, dtype)


def import_rasterio():
    """Import rasterio (which ships GDAL in its wheel), the reader and writer of TIFF files.

    Returns:
        module: ``rasterio``.

    Raises:
        DataError: rasterio is not installed.
    """
    try:
        import rasterio
    except ImportError:  # pragma: no cover - rasterio is a requirement
        raise DataError('reading and writing TIFF files needs rasterio: pip install rasterio') from None
    return rasterio


def vanished_error(path):
    """The error for a file that was listed and checked but is gone when it is decoded.

    Args:
        path: the file.

    Returns:
        DataError
    """
    return DataError(
        '%s no longer exists (removed or renamed after it was listed); restore it, or remove '
        'its image and mask from the folders and start again' % path
    )


def decode_error(path, error):
    """The error for a file whose header is fine but whose pixels cannot be decoded.

    Args:
        path: the file.
        error: the exception raised by the decoder.

    Returns:
        DataError
    """
    if isinstance(error, FileNotFoundError):
        return vanished_error(path)
    if isinstance(error, PermissionError):
        return DataError('%s cannot be read (permission denied); make it readable (chmod a+r)' % path)
    return DataError('cannot decode %s (%s: %s); the file is damaged, replace it' % (path, type(error).__name__, error))


def _read_ends(path):
    try:
        with open(path, 'rb') as stream:
            head = stream.read(33)
            size = stream.seek(0, os.SEEK_END)
            stream.seek(max(0, size - _TAIL_BYTES))
            tail = stream.read()
    except FileNotFoundError:
        raise DataError('%s does not exist; check the path' % path) from None
    except IsADirectoryError:
        raise DataError('%s is a folder, not an image file' % path) from None
    except PermissionError:
        raise DataError('%s cannot be read (permission denied); make it readable (chmod a+r)' % path) from None
    except OSError as error:
        raise DataError('cannot read %s: %s' % (path, error)) from None
    return head, tail, size


def _pillow_header(path):
    try:
        with Image.open(path) as image:
            width, height = image.size
            mode = image.mode
    except DECODE_ERRORS as error:
        raise DataError(
            'cannot read %s (%s: %s); the file is damaged or not an image, replace it'
            % (path, type(error).__name__, error)
        ) from None
    kind, dtype = _PILLOW_KINDS.get(mode, (mode, mode))
    return Header(width, height, kind, dtype)


def _tiff_header(path):
    rasterio = import_rasterio()
    try:
        with rasterio.open(path) as dataset:
            count = dataset.count
            return Header(dataset.width, dataset.height, _TIFF_KINDS.get(count, '%d-band' % count), dataset.dtypes[0])
    except rasterio.errors.RasterioIOError as error:
        raise DataError('cannot read %s (%s); the file is damaged or not a TIFF, replace it' % (path, error)) from None


def read_header(path):
    """Check a file from its first and last bytes and its header, without decoding the pixels.

    Args:
        path: a ``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.tif`` or ``.tiff`` file (any case).

    Returns:
        Header: the size and pixel format.

    Raises:
        DataError: the extension is not supported, the file is missing, unreadable, empty, not in
        the format of its extension, truncated (PNG, JPEG), or its header is damaged.
    """
    extension = os.path.splitext(path)[1].lower()
    if extension not in IMAGE_EXTENSIONS:
        raise DataError(
            '%s: the extension %r is not supported; convert the file to PNG, JPEG, BMP or GeoTIFF (%s)'
            % (path, extension, ' '.join(IMAGE_EXTENSIONS))
        )
    head, tail, size = _read_ends(path)
    if size == 0:
        raise DataError('%s is empty (0 bytes); copy or extract the file again' % path)
    if not head.startswith(_STARTS[extension]):
        raise DataError(
            '%s is not a %s file (it starts with %r); convert it to %s or give it the extension of its '
            'format' % (path, _FORMAT_NAMES[extension], head[:8], _FORMAT_NAMES[extension])
        )
    if extension in _ENDS and _ENDS[extension] not in tail:
        raise DataError(
            '%s is truncated (no %s end marker in its %d bytes); copy or extract the file again'
            % (path, _FORMAT_NAMES[extension], size)
        )
    if extension == '.png':
        if len(head) < 33 or head[12:16] != b'IHDR':
            raise DataError('%s has a damaged PNG header; replace the file' % path)
        width, height = int.from_bytes(head[16:20], 'big'), int.from_bytes(head[20:24], 'big')
        kind = _PNG_KINDS.get(head[25], 'unknown')
        return Header(width, height, kind, 'uint16' if head[24] > 8 else 'uint8')
    if extension in GEOTIFF_EXTENSIONS:
        return _tiff_header(path)
    return _pillow_header(path)


def check_image_header(path, header):
    """Check that a file's pixel format can be used as an image.

    Args:
        path: the file, for the message.
        header: its :class:`Header`.

    Raises:
        DataError: the samples are not 8-bit.
    """
    if header.dtype != 'uint8':
        raise DataError(
            '%s is a %s %s image; convert it to 8-bit RGB (values 0..255)'
            % (path, depth_name(header.dtype), header.kind)
        )


class Closable:
    """``with obj:`` calls ``obj.close()`` on the way out."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Release what the object holds."""


class RasterImage(Closable):
    """An image opened for reading by rows. Use :func:`open_image` or :class:`ArrayImage`.

    Attributes:
        path: the file (``'<array>'`` for an in-memory image).
        height, width: the size in pixels.
        profile: the rasterio profile of a TIFF (CRS, transform), None otherwise.
    """

    path = None
    height = 0
    width = 0
    profile = None

    @property
    def geotiff(self):
        """bool: whether the image is read from a TIFF/GeoTIFF file."""
        return self.profile is not None

    def load(self):
        """Decode what must be decoded before :meth:`read_rows` (a whole PNG, JPEG or BMP).

        Returns:
            RasterImage: self.

        Raises:
            DataError: the file is gone or damaged.
        """
        return self

    def read_rows(self, y1, y2):
        """Read rows ``y1`` (included) to ``y2`` (excluded).

        Args:
            y1, y2: row range, ``0 <= y1 <= y2 <= height``.

        Returns:
            np.ndarray: ``(y2 - y1, W, 3)`` uint8 RGB.

        Raises:
            DataError: the file is gone or damaged.
        """
        raise NotImplementedError

    def read(self):
        """Read the whole image.

        Returns:
            np.ndarray: ``(H, W, 3)`` uint8 RGB.

        Raises:
            DataError: the file is gone or damaged.
        """
        return self.read_rows(0, self.height)


def to_rgb(pixels, path):
    """Turn decoded pixels into three 8-bit channels, per the module's rules.

    Args:
        pixels: ``(H, W)`` or ``(H, W, C)`` uint8 array.
        path: the file, for the message.

    Returns:
        np.ndarray: ``(H, W, 3)`` uint8.

    Raises:
        DataError: the pixels are not uint8.
    """
    if pixels.dtype != np.uint8:
        raise DataError('%s has %s pixels; convert it to 8-bit RGB (values 0..255)' % (path, pixels.dtype))
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if pixels.shape[2] in (1, 2):
        return np.repeat(pixels[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(pixels[:, :, :3])


class ArrayImage(RasterImage):
    """An in-memory image seen as a :class:`RasterImage`.

    Args:
        pixels: ``(H, W)`` or ``(H, W, C)`` uint8 array.
        path: a name for messages.

    Raises:
        DataError: the array is not 2-D or 3-D uint8.
    """

    def __init__(self, pixels, path='<array>'):
        pixels = np.asarray(pixels)
        if pixels.ndim not in (2, 3):
            raise DataError('%s: expected an (H, W) or (H, W, C) image, got shape %s' % (path, pixels.shape))
        self.pixels = to_rgb(pixels, path)
        self.path = path
        self.height, self.width = self.pixels.shape[:2]

    def read_rows(self, y1, y2):
        """Rows ``y1:y2`` of the array, ``(y2 - y1, W, 3)`` uint8."""
        return self.pixels[y1:y2]


def decode_pillow(path, mode):
    """Decode a whole file with Pillow.

    Args:
        path: a PNG, JPEG or BMP file.
        mode: the Pillow mode to convert to (``'RGB'``), or None to keep the file's values (a
            palette PNG gives its indices).

    Returns:
        np.ndarray: ``(H, W, 3)`` uint8 for ``mode='RGB'``, else the file's ``(H, W[, C])`` values.

    Raises:
        DataError: the file is gone, unreadable or damaged.
    """
    try:
        with Image.open(path) as image:
            if mode is not None and image.mode != mode:
                image = image.convert(mode)
            return np.asarray(image)
    except DECODE_ERRORS as error:
        raise decode_error(path, error) from None


class PillowImage(RasterImage):
    """A PNG, JPEG or BMP image: its header is checked when opened, its pixels decoded by :meth:`load`.

    Args:
        path: the file.
        header: its checked :class:`Header`.
    """

    def __init__(self, path, header):
        self.path = path
        self.width, self.height = header.width, header.height
        self._pixels = None

    def load(self):
        """Decode the whole file (once); returns self."""
        if self._pixels is None:
            self._pixels = to_rgb(decode_pillow(self.path, 'RGB'), self.path)
        return self

    def read_rows(self, y1, y2):
        """Rows ``y1:y2``, ``(y2 - y1, W, 3)`` uint8 (the file is decoded on first use)."""
        self.load()
        return self._pixels[y1:y2]

    def close(self):
        """Release the decoded pixels."""
        self._pixels = None


class TiffBands(Closable):
    """Some bands of a TIFF file read by rows through rasterio.

    Args:
        path: the file.
        bands: 1-based band numbers to read, in order.

    Attributes:
        path, height, width: the file and its size.
        profile (dict): the rasterio profile (CRS, transform, data type...).

    Raises:
        DataError: the file is gone or cannot be opened.
    """

    def __init__(self, path, bands):
        rasterio = import_rasterio()
        self.path = path
        self.bands = list(bands)
        if not os.path.exists(path):
            raise vanished_error(path)
        try:
            self._dataset = rasterio.open(path)
        except rasterio.errors.RasterioIOError as error:
            raise DataError(
                'cannot read %s (%s); the file is damaged or not a TIFF, replace it' % (path, error)
            ) from None
        self.height, self.width = self._dataset.height, self._dataset.width
        self.profile = dict(self._dataset.profile)

    def read_rows(self, y1, y2):
        """Read rows ``y1:y2`` of the bands.

        Returns:
            np.ndarray: ``(y2 - y1, W, len(bands))`` in the file's data type.

        Raises:
            DataError: the rows cannot be decoded.
        """
        window = import_rasterio().windows.Window(0, y1, self.width, y2 - y1)
        try:
            values = self._dataset.read(self.bands, window=window)
        except Exception as error:  # rasterio raises several classes for corrupt blocks
            raise DataError(
                'cannot read rows %d..%d of %s (%s: %s); the file is damaged, replace it'
                % (y1, y2, self.path, type(error).__name__, error)
            ) from None
        return np.ascontiguousarray(values.transpose(1, 2, 0))

    def close(self):
        """Close the file."""
        self._dataset.close()


class TiffImage(RasterImage):
    """A TIFF/GeoTIFF image read lazily by rows; ``profile`` keeps its CRS and transform.

    Args:
        path: the file.
        header: its checked :class:`Header` (8-bit samples).
    """

    def __init__(self, path, header):
        bands = [1, 1, 1] if header.kind in ('greyscale', 'greyscale+alpha') else [1, 2, 3]
        self._bands = TiffBands(path, bands)
        self.path = path
        self.height, self.width = self._bands.height, self._bands.width
        self.profile = self._bands.profile

    def read_rows(self, y1, y2):
        """Rows ``y1:y2``, ``(y2 - y1, W, 3)`` uint8."""
        return self._bands.read_rows(y1, y2)

    def close(self):
        """Close the file."""
        self._bands.close()


def open_image(path):
    """Check an image file's header and open it for reading by rows.

    Args:
        path: a ``.png/.jpg/.jpeg/.bmp`` file (decoded whole by :meth:`RasterImage.load`) or a
            ``.tif/.tiff`` file (read lazily).

    Returns:
        RasterImage: with ``height``, ``width``, ``profile`` (TIFF) and ``read_rows``.

    Raises:
        DataError: see :func:`read_header` and :func:`check_image_header`.
    """
    header = read_header(path)
    check_image_header(path, header)
    return TiffImage(path, header) if is_geotiff(path) else PillowImage(path, header)
