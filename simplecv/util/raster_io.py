"""Reading images and masks row band by row band, and writing label maps, for PNG and GeoTIFF.

PNG, JPEG and BMP files are decoded whole with Pillow (these formats cannot be read in parts).
GeoTIFF files are read lazily through rasterio (which ships GDAL in its wheel): only the rows
asked for are decoded, so an image larger than memory can be evaluated. Predicted label maps of
a GeoTIFF are written as a single-band uint8 GeoTIFF with the input's CRS and transform and the
palette as its colour table, row band by row band.

Pixel formats, for images:

- RGB is used as it is; greyscale is repeated to three channels (as the official evaluator
  does); RGBA and greyscale+alpha drop the alpha channel; palette images are expanded to RGB;
- GeoTIFFs: one band is repeated to three, two bands (grey+alpha) use the first, three or more
  use bands 1-3 (a fourth band, usually alpha or near infrared, is dropped);
- anything that is not 8-bit (16-bit PNG, uint16 or float GeoTIFF) raises :class:`DataError`:
  the model expects 0..255 values, so convert such images first.
"""
import os
import zlib

import numpy as np
from PIL import Image

from simplecv.core.errors import DataError

GEOTIFF_EXTENSIONS = ('.tif', '.tiff')
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp') + GEOTIFF_EXTENSIONS

# The Pillow errors that mean "this file is damaged or not an image".
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, zlib.error, Image.DecompressionBombError)
Image.MAX_IMAGE_PIXELS = None  # aerial images are legitimately huge; sizes are checked by the caller


def is_geotiff(path):
    """Whether ``path`` has a GeoTIFF extension (``.tif`` or ``.tiff``)."""
    return path.lower().endswith(GEOTIFF_EXTENSIONS)


def _rasterio():
    try:
        import rasterio
    except ImportError:  # pragma: no cover - rasterio is a requirement
        raise DataError('reading GeoTIFF files needs rasterio: pip install rasterio') from None
    return rasterio


def _to_rgb(pixels, path):
    """``(H, W)`` or ``(H, W, C)`` uint8 array -> ``(H, W, 3)`` uint8, per the module rules."""
    if pixels.dtype != np.uint8:
        raise DataError('%s has %s pixels; the model expects 8-bit images (0..255), convert it to '
                        '8-bit RGB first' % (path, pixels.dtype))
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if pixels.shape[2] in (1, 2):
        return np.repeat(pixels[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(pixels[:, :, :3])


class _ClosedOnExit:
    """``with obj:`` calls ``obj.close()`` on the way out."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RasterImage(_ClosedOnExit):
    """An image opened for reading by rows: ``read_rows(y1, y2)`` gives ``(y2-y1, W, 3)`` uint8.

    Use :func:`open_image`. Attributes: ``path``, ``height``, ``width``, ``profile`` (rasterio
    profile of a GeoTIFF, None otherwise).
    """

    path = None
    height = 0
    width = 0
    profile = None

    def load(self):
        """Decode what must be decoded before ``read_rows`` (the whole file for PNG); returns self."""
        return self

    def read_rows(self, y1, y2):
        raise NotImplementedError

    def close(self):
        """Release the decoded pixels or the open file."""


class ArrayImage(RasterImage):
    """An in-memory ``(H, W, 3)`` uint8 array seen as a :class:`RasterImage`."""

    def __init__(self, pixels, path='<array>'):
        pixels = np.asarray(pixels)
        if pixels.ndim not in (2, 3):
            raise DataError('%s: expected an (H, W) or (H, W, C) image, got shape %s' % (path, pixels.shape))
        self.pixels = _to_rgb(pixels, path)
        self.path = path
        self.height, self.width = self.pixels.shape[:2]

    def read_rows(self, y1, y2):
        return self.pixels[y1:y2]


class PillowImage(RasterImage):
    """A PNG/JPEG/BMP file: header read when opened, pixels decoded by :meth:`load`."""

    def __init__(self, path):
        self.path = path
        try:
            with Image.open(path) as image:
                self.width, self.height = image.size
                self.mode = image.mode
        except FileNotFoundError:
            raise DataError('%s does not exist' % path) from None
        except _DECODE_ERRORS as error:
            raise DataError('cannot read %s (%s: %s); the file is damaged or not an image, replace it'
                            % (path, type(error).__name__, error)) from None
        if self.mode not in ('1', 'L', 'LA', 'P', 'PA', 'RGB', 'RGBA', 'RGBX', 'CMYK', 'YCbCr'):
            raise DataError('%s has pixel mode %s (not 8-bit); convert it to 8-bit RGB first' % (path, self.mode))
        self._pixels = None

    def load(self):
        if self._pixels is None:
            try:
                with Image.open(self.path) as image:
                    if image.mode in ('1', 'P', 'PA', 'CMYK', 'YCbCr', 'RGBX'):
                        image = image.convert('RGB')
                    pixels = np.asarray(image)
            except _DECODE_ERRORS as error:
                raise DataError('cannot decode %s (%s: %s); the file is damaged, replace it'
                                % (self.path, type(error).__name__, error)) from None
            self._pixels = _to_rgb(pixels, self.path)
        return self

    def read_rows(self, y1, y2):
        self.load()
        return self._pixels[y1:y2]

    def close(self):
        self._pixels = None


class GeoTiffImage(RasterImage):
    """A GeoTIFF read lazily through rasterio; ``profile`` keeps its CRS and transform."""

    def __init__(self, path):
        rasterio = _rasterio()
        self.path = path
        try:
            self._dataset = rasterio.open(path)
        except rasterio.errors.RasterioIOError as error:
            raise DataError('cannot open %s: %s' % (path, error)) from None
        dataset = self._dataset
        if dataset.dtypes[0] != 'uint8':
            dataset.close()
            raise DataError('%s has %s pixels; the model expects 8-bit images (0..255), convert it '
                            'to 8-bit first (e.g. gdal_translate -ot Byte -scale)' % (path, dataset.dtypes[0]))
        self.height, self.width = dataset.height, dataset.width
        self.count = dataset.count
        self.profile = dict(dataset.profile)
        self._bands = [1, 1, 1] if dataset.count <= 2 else [1, 2, 3]

    def read_rows(self, y1, y2):
        window = _rasterio().windows.Window(0, y1, self.width, y2 - y1)
        try:
            bands = self._dataset.read(self._bands, window=window)
        except Exception as error:  # rasterio raises several classes for corrupt blocks
            raise DataError('cannot read rows %d..%d of %s (%s: %s); the file is damaged'
                            % (y1, y2, self.path, type(error).__name__, error)) from None
        return np.ascontiguousarray(bands.transpose(1, 2, 0))

    def close(self):
        self._dataset.close()


def open_image(path):
    """Open an image for reading by rows.

    Args:
        path: a ``.png/.jpg/.jpeg/.bmp`` file (decoded whole by :meth:`RasterImage.load`) or a
            ``.tif/.tiff`` GeoTIFF (read lazily).

    Returns:
        RasterImage

    Raises:
        DataError: the file is missing, unreadable or not 8-bit.
    """
    if not os.path.isfile(path):
        raise DataError('%s does not exist or is not a file' % path)
    return GeoTiffImage(path) if is_geotiff(path) else PillowImage(path)


class LabelMask:
    """A ground-truth mask read by rows: ``read_rows(y1, y2)`` gives ``(y2-y1, W)`` uint8 labels.

    Args:
        path: a PNG or GeoTIFF mask.
        mask_format: ``'color'`` (RGB colour mask, decoded by ``decode_color``) or ``'label'``
            (single-channel class indices; palette PNGs are read as their indices).
        decode_color: ``(H, W, 3) uint8 -> (H, W) uint8`` labels, for ``mask_format='color'``.
    """

    def __init__(self, path, mask_format, decode_color=None):
        if mask_format not in ('color', 'label'):
            raise ValueError("mask_format must be 'color' or 'label', got %r" % (mask_format,))
        if mask_format == 'color' and decode_color is None:
            raise ValueError("mask_format='color' needs decode_color")
        self.path = path
        self.mask_format = mask_format
        self.decode_color = decode_color
        self.geotiff = is_geotiff(path)
        self._labels = None
        self._source = None
        if self.geotiff:
            with self._open_geotiff() as source:
                self.height, self.width = source.height, source.width
            return
        try:
            with Image.open(path) as image:
                self.width, self.height = image.size
                mode = image.mode
        except FileNotFoundError:
            raise DataError('mask %s does not exist' % path) from None
        except _DECODE_ERRORS as error:
            raise DataError('cannot read mask %s (%s: %s); replace it' % (path, type(error).__name__, error)) from None
        if mask_format == 'label' and mode not in ('L', 'P'):
            raise DataError("mask %s has mode %s, not a single-channel label PNG; for colour masks use "
                            "--mask_format color" % (path, mode))
        if mask_format == 'color' and mode in ('L', 'I', 'I;16'):
            raise DataError("mask %s is single-channel, not a colour mask; for label PNGs use "
                            "--mask_format label" % path)

    def _open_geotiff(self):
        return GeoTiffImage(self.path) if self.mask_format == 'color' else _GeoTiffBand(self.path)

    def load(self):
        """Decode a PNG mask whole, or open a GeoTIFF mask for lazy reads; returns self."""
        if self.geotiff:
            if self._source is None:
                self._source = self._open_geotiff()
        elif self._labels is None:
            try:
                with Image.open(self.path) as image:
                    if self.mask_format == 'color':
                        pixels = _to_rgb(np.asarray(image.convert('RGB')), self.path)
                    else:
                        pixels = np.asarray(image)
            except _DECODE_ERRORS as error:
                raise DataError('cannot decode mask %s (%s: %s); replace it'
                                % (self.path, type(error).__name__, error)) from None
            self._labels = self._decode(pixels)
        return self

    def _decode(self, pixels):
        if self.mask_format == 'color':
            return self.decode_color(pixels)
        return np.asarray(pixels, dtype=np.uint8)

    def read_rows(self, y1, y2):
        self.load()
        if self.geotiff:
            return self._decode(self._source.read_rows(y1, y2))
        return self._labels[y1:y2]

    def close(self):
        """Release the decoded labels or the open file; a later read opens it again."""
        self._labels = None
        if self._source is not None:
            self._source.close()
            self._source = None


class _GeoTiffBand(_ClosedOnExit):
    """Band 1 of a GeoTIFF label mask, read by rows."""

    def __init__(self, path):
        rasterio = _rasterio()
        self.path = path
        try:
            self._dataset = rasterio.open(path)
        except rasterio.errors.RasterioIOError as error:
            raise DataError('cannot open mask %s: %s' % (path, error)) from None
        if self._dataset.dtypes[0] not in ('uint8', 'uint16', 'int16', 'int32'):
            raise DataError('mask %s has %s values; label masks hold integer class indices'
                            % (path, self._dataset.dtypes[0]))
        self.height, self.width = self._dataset.height, self._dataset.width

    def read_rows(self, y1, y2):
        window = _rasterio().windows.Window(0, y1, self.width, y2 - y1)
        values = self._dataset.read(1, window=window)
        if values.dtype != np.uint8:
            bad = (values < 0) | (values > 255)
            if bad.any():
                raise DataError('mask %s holds values %s outside 0..255'
                                % (self.path, np.unique(values[bad])[:10].tolist()))
        return values.astype(np.uint8)

    def close(self):
        self._dataset.close()


def palette_bytes(colors):
    """Flatten ``[(r, g, b), ...]`` to the 768-value list that ``PIL.Image.putpalette`` expects."""
    flat = [int(v) for color in colors for v in color]
    return flat + [0] * (768 - len(flat))


def save_palette_png(path, label, colors):
    """Write a label map as a palette ('P') PNG: pixel values are the labels, shown in ``colors``.

    This is the official visualisation format; reading the file back with Pillow gives the
    labels, and image viewers show the colours.

    Args:
        path: output ``.png`` path (folders are created).
        label: ``(H, W)`` integer labels 0..255.
        colors: RGB triples, index ``i`` is the colour of label ``i``.
    """
    _make_parent(path)
    image = Image.fromarray(np.asarray(label, dtype=np.uint8), mode='L').convert('P')
    image.putpalette(palette_bytes(colors))
    image.save(path)


def save_label_png(path, label):
    """Write a label map as a single-channel 8-bit PNG (values are class indices)."""
    _make_parent(path)
    Image.fromarray(np.asarray(label, dtype=np.uint8), mode='L').save(path)


def _make_parent(path):
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)


class GeoTiffLabelWriter(_ClosedOnExit):
    """Write a label map to a single-band uint8 GeoTIFF band by band, keeping georeference.

    Args:
        path: output ``.tif`` path.
        height, width: size of the map.
        profile: the input's rasterio profile (its ``crs`` and ``transform`` are kept), or None.
        colors: optional palette written as the band's colour table.
    """

    def __init__(self, path, height, width, profile=None, colors=None):
        rasterio = _rasterio()
        _make_parent(path)
        out = dict(driver='GTiff', dtype='uint8', count=1, height=height, width=width, compress='deflate')
        if profile is not None:
            out.update(crs=profile.get('crs'), transform=profile.get('transform'))
        if height >= 256 and width >= 256:
            out.update(tiled=True, blockxsize=256, blockysize=256)
        self.path = path
        self.width = width
        try:
            self._dataset = rasterio.open(path, 'w', **out)
        except rasterio.errors.RasterioIOError as error:
            raise DataError('cannot write %s: %s' % (path, error)) from None
        if colors is not None:
            self._dataset.write_colormap(1, {i: tuple(int(v) for v in c) + (255,) for i, c in enumerate(colors)})

    def write_rows(self, y1, labels):
        """Write ``(rows, W)`` labels starting at row ``y1``."""
        labels = np.asarray(labels, dtype=np.uint8)
        window = _rasterio().windows.Window(0, y1, self.width, labels.shape[0])
        self._dataset.write(labels, 1, window=window)

    def close(self):
        self._dataset.close()

