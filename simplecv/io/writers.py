"""Writing label maps: palette PNG (labels shown in colours), plain label PNG, GeoTIFF by rows."""

import os

import numpy as np
from PIL import Image

from simplecv.core.errors import DataError
from simplecv.io.images import Closable, import_rasterio


def palette_bytes(colors):
    """Flatten colours to the 768 values that ``PIL.Image.putpalette`` expects.

    Args:
        colors: RGB triples, at most 256.

    Returns:
        list: 768 ints, zero-padded.
    """
    flat = [int(v) for color in colors for v in color]
    return flat + [0] * (768 - len(flat))


def _make_parent(path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def save_palette_png(path, label, colors):
    """Write a label map as a palette ('P') PNG: pixel values are the labels, shown in ``colors``.

    Reading the file back with Pillow gives the labels, and image viewers show the colours.

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
    """Write a label map as a single-channel 8-bit PNG (values are class indices).

    Args:
        path: output ``.png`` path (folders are created).
        label: ``(H, W)`` integer labels 0..255.
    """
    _make_parent(path)
    Image.fromarray(np.asarray(label, dtype=np.uint8), mode='L').save(path)


class GeoTiffLabelWriter(Closable):
    """Write a label map to a single-band uint8 GeoTIFF row band by row band, keeping georeference.

    Args:
        path: output ``.tif`` path (folders are created).
        height, width: size of the map.
        profile: the input's rasterio profile (its ``crs`` and ``transform`` are kept), or None.
        colors: optional RGB triples written as the band's colour table.

    Raises:
        DataError: the file cannot be created.
    """

    def __init__(self, path, height, width, profile=None, colors=None):
        rasterio = import_rasterio()
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
        """Write labels starting at row ``y1``.

        Args:
            y1: the first row.
            labels: ``(rows, W)`` integer labels 0..255.
        """
        labels = np.asarray(labels, dtype=np.uint8)
        window = import_rasterio().windows.Window(0, y1, self.width, labels.shape[0])
        self._dataset.write(labels, 1, window=window)

    def close(self):
        """Close the file (flushes it)."""
        self._dataset.close()
