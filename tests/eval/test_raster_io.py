import numpy as np
import pytest
from PIL import Image

from simplecv.core.errors import DataError
from simplecv.util.raster_io import (GeoTiffLabelWriter, LabelMask, open_image, save_label_png,
                                     save_palette_png)

rasterio = pytest.importorskip('rasterio')
from rasterio.crs import CRS  # noqa: E402
from rasterio.transform import from_origin  # noqa: E402

COLORS = [(0, 0, 0), (0, 0, 63), (0, 191, 127)]


def write_geotiff(path, bands, dtype='uint8', crs='EPSG:32633', transform=None):
    transform = transform or from_origin(500000, 4200000, 0.5, 0.5)
    bands = np.asarray(bands)
    with rasterio.open(path, 'w', driver='GTiff', height=bands.shape[1], width=bands.shape[2],
                       count=bands.shape[0], dtype=dtype, crs=crs, transform=transform) as dst:
        dst.write(bands.astype(dtype))
    return str(path)


def test_geotiff_is_read_lazily_by_rows_and_prediction_keeps_transform_and_crs(tmp_path):
    rng = np.random.RandomState(0)
    bands = rng.randint(0, 256, (4, 300, 270))   # RGB + a fourth band that is dropped
    transform = from_origin(431000.0, 4581000.0, 0.3, 0.3)
    path = write_geotiff(tmp_path / 'scene.tif', bands, transform=transform)
    with open_image(path) as image:
        assert (image.height, image.width) == (300, 270)
        np.testing.assert_array_equal(image.read_rows(100, 140), bands[:3, 100:140].transpose(1, 2, 0))
        out = str(tmp_path / 'out' / 'scene.tif')
        labels = rng.randint(0, 3, (300, 270)).astype(np.uint8)
        with GeoTiffLabelWriter(out, 300, 270, image.profile, COLORS) as writer:
            for y in range(0, 300, 64):
                writer.write_rows(y, labels[y:y + 64])
    with rasterio.open(out) as result:
        assert result.crs == CRS.from_epsg(32633) and result.transform == transform
        assert result.count == 1 and result.dtypes[0] == 'uint8'
        np.testing.assert_array_equal(result.read(1), labels)
        assert result.colormap(1)[2] == (0, 191, 127, 255)


def test_single_band_geotiff_is_repeated_and_16_bit_is_refused(tmp_path):
    grey = np.random.RandomState(1).randint(0, 256, (1, 40, 50))
    with open_image(write_geotiff(tmp_path / 'grey.tif', grey)) as image:
        np.testing.assert_array_equal(image.read_rows(0, 40), np.repeat(grey[0][:, :, None], 3, 2))
    with pytest.raises(DataError, match='uint16 pixels.*convert it to 8-bit'):
        open_image(write_geotiff(tmp_path / 'deep.tif', grey, dtype='uint16'))


def test_label_geotiff_mask_reads_by_rows(tmp_path):
    labels = np.random.RandomState(2).randint(0, 16, (1, 30, 20))
    labels[0, 0, 0] = 255
    mask = LabelMask(write_geotiff(tmp_path / 'm.tif', labels), 'label')
    np.testing.assert_array_equal(mask.read_rows(0, 30), labels[0])


@pytest.mark.parametrize('mode, channels', [('L', None), ('LA', 2), ('RGBA', 4), ('P', None)])
def test_png_pixel_formats_become_rgb(tmp_path, mode, channels):
    rgb = np.random.RandomState(3).randint(0, 256, (20, 30, 3)).astype(np.uint8)
    if mode == 'P':
        source = Image.fromarray(rgb).convert('P')
        expected = np.asarray(source.convert('RGB'))
    elif mode == 'RGBA':
        source = Image.fromarray(np.concatenate([rgb, rgb[:, :, :1]], 2), 'RGBA')
        expected = rgb
    else:
        grey = rgb[:, :, 0]
        source = Image.fromarray(grey if channels is None else np.stack([grey, grey], 2), mode)
        expected = np.repeat(grey[:, :, None], 3, 2)
    source.save(tmp_path / 'x.png')
    with open_image(str(tmp_path / 'x.png')).load() as image:
        np.testing.assert_array_equal(image.read_rows(0, 20), expected)


def test_unreadable_and_16_bit_pngs_are_clear_errors(tmp_path):
    (tmp_path / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\nnot really')
    with pytest.raises(DataError, match='broken.png.*damaged'):
        open_image(str(tmp_path / 'broken.png'))
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(tmp_path / 'deep.png')
    with pytest.raises(DataError, match='deep.png.*not 8-bit'):
        open_image(str(tmp_path / 'deep.png'))
    with pytest.raises(DataError, match='does not exist'):
        open_image(str(tmp_path / 'missing.png'))


def test_palette_png_holds_labels_and_shows_colours(tmp_path):
    labels = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    save_palette_png(str(tmp_path / 'p.png'), labels, COLORS)
    save_label_png(str(tmp_path / 'l.png'), labels)
    with Image.open(tmp_path / 'p.png') as image:
        assert image.mode == 'P'
        np.testing.assert_array_equal(np.asarray(image), labels)
        np.testing.assert_array_equal(np.asarray(image.convert('RGB'))[1, 0], COLORS[2])
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / 'l.png')), labels)
    mask = LabelMask(str(tmp_path / 'p.png'), 'label')   # palette PNGs read as their indices
    np.testing.assert_array_equal(mask.read_rows(0, 2), labels)
