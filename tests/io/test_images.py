import numpy as np
import pytest
from PIL import Image

from simplecv.core.errors import DataError
from simplecv.io.images import ArrayImage, open_image, read_header
from simplecv.io.writers import GeoTiffLabelWriter

COLORS = [(0, 0, 0), (0, 0, 63), (0, 191, 127)]


def test_geotiff_is_read_lazily_by_rows_and_prediction_keeps_transform_and_crs(tmp_path, write_geotiff):
    import rasterio
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    rng = np.random.RandomState(0)
    bands = rng.randint(0, 256, (4, 300, 270))  # RGB + a fourth band that is dropped
    transform = from_origin(431000.0, 4581000.0, 0.3, 0.3)
    path = write_geotiff(tmp_path / 'scene.tif', bands, transform=transform)
    with open_image(path) as image:
        assert (image.height, image.width) == (300, 270) and image.geotiff
        np.testing.assert_array_equal(image.read_rows(100, 140), bands[:3, 100:140].transpose(1, 2, 0))
        out = str(tmp_path / 'out' / 'scene.tif')
        labels = rng.randint(0, 3, (300, 270)).astype(np.uint8)
        with GeoTiffLabelWriter(out, 300, 270, image.profile, COLORS) as writer:
            for y in range(0, 300, 64):
                writer.write_rows(y, labels[y : y + 64])
    with rasterio.open(out) as result:
        assert result.crs == CRS.from_epsg(32633) and result.transform == transform
        assert result.count == 1 and result.dtypes[0] == 'uint8'
        np.testing.assert_array_equal(result.read(1), labels)
        assert result.colormap(1)[2] == (0, 191, 127, 255)


def test_single_band_geotiff_is_repeated_and_16_bit_is_refused(tmp_path, write_geotiff):
    grey = np.random.RandomState(1).randint(0, 256, (1, 40, 50))
    with open_image(write_geotiff(tmp_path / 'grey.tif', grey)) as image:
        np.testing.assert_array_equal(image.read_rows(0, 40), np.repeat(grey[0][:, :, None], 3, 2))
    with pytest.raises(DataError, match='deep.tif is a 16-bit greyscale image; convert it to 8-bit RGB'):
        open_image(write_geotiff(tmp_path / 'deep.tif', grey, dtype='uint16'))


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


@pytest.mark.parametrize('extension', ['.jpg', '.bmp'])
def test_jpeg_and_bmp_decode_as_pillow_does(tmp_path, extension):
    rgb = np.random.RandomState(5).randint(0, 256, (24, 36, 3)).astype(np.uint8)
    path = str(tmp_path / ('x' + extension))
    Image.fromarray(rgb).save(path)
    header = read_header(path)
    assert (header.width, header.height, header.kind, header.dtype) == (36, 24, 'RGB', 'uint8')
    with open_image(path) as image:
        np.testing.assert_array_equal(image.read(), np.asarray(Image.open(path).convert('RGB')))
        np.testing.assert_array_equal(image.read_rows(5, 9), image.read()[5:9])


def test_png_header_gives_size_and_format_without_decoding(tmp_path):
    Image.fromarray(np.zeros((7, 9), np.uint16)).save(tmp_path / 'deep.png')
    Image.fromarray(np.zeros((7, 9, 4), np.uint8)).save(tmp_path / 'rgba.png')
    assert tuple(read_header(str(tmp_path / 'deep.png'))) == (9, 7, 'greyscale', 'uint16')
    assert tuple(read_header(str(tmp_path / 'rgba.png'))) == (9, 7, 'RGBA', 'uint8')


@pytest.mark.parametrize('extension', ['.png', '.jpg'])
def test_truncated_files_are_caught_from_the_header(tmp_path, extension):
    path = tmp_path / ('cut' + extension)
    Image.fromarray(np.random.RandomState(6).randint(0, 256, (64, 64, 3)).astype(np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        DataError, match=r'cut%s is truncated .*%d bytes.*copy or extract the file again' % (extension, len(data) // 2)
    ):
        open_image(str(path))


def test_unreadable_and_unsupported_files_are_clear_errors(tmp_path):
    (tmp_path / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\nnot really')
    with pytest.raises(DataError, match='broken.png is truncated'):
        open_image(str(tmp_path / 'broken.png'))
    (tmp_path / 'text.png').write_bytes(b'hello, world')
    with pytest.raises(DataError, match="text.png is not a PNG file .*b'hello, w'.*convert it to PNG"):
        open_image(str(tmp_path / 'text.png'))
    (tmp_path / 'empty.jpg').write_bytes(b'')
    with pytest.raises(DataError, match='empty.jpg is empty'):
        open_image(str(tmp_path / 'empty.jpg'))
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(tmp_path / 'deep.png')
    with pytest.raises(DataError, match='deep.png is a 16-bit greyscale image; convert it to 8-bit RGB'):
        open_image(str(tmp_path / 'deep.png'))
    with pytest.raises(DataError, match='missing.png does not exist'):
        open_image(str(tmp_path / 'missing.png'))
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / 'x.gif')
    with pytest.raises(DataError, match="x.gif: the extension '.gif' is not supported; convert"):
        open_image(str(tmp_path / 'x.gif'))


def test_file_removed_after_opening_is_named(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / 'gone.png')
    image = open_image(str(tmp_path / 'gone.png'))
    (tmp_path / 'gone.png').unlink()
    with pytest.raises(DataError, match='gone.png no longer exists .*restore it'):
        image.load()


def test_array_image_is_read_by_rows():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    image = ArrayImage(grey)
    np.testing.assert_array_equal(image.read_rows(1, 3), np.repeat(grey[1:3, :, None], 3, 2))
    with pytest.raises(DataError, match='float32 pixels'):
        ArrayImage(grey.astype(np.float32))
