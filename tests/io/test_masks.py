import numpy as np
import pytest
from PIL import Image

from simplecv.core.errors import ConfigError, DataError
from simplecv.io.masks import open_mask
from simplecv.io.writers import save_palette_png

COLORS = np.array([(0, 0, 0), (0, 0, 63), (0, 191, 127)], dtype=np.uint8)


def decode_colors(pixels, path):
    """A colour decoder for the tests: the index of each pixel's colour in COLORS, 255 elsewhere."""
    match = (pixels[:, :, None, :] == COLORS[None, None]).all(axis=3)
    return np.where(match.any(axis=2), match.argmax(axis=2), 255).astype(np.uint8)


def test_label_geotiff_mask_reads_by_rows(tmp_path, write_geotiff):
    labels = np.random.RandomState(2).randint(0, 16, (1, 30, 20))
    labels[0, 0, 0] = 255
    with open_mask(write_geotiff(tmp_path / 'm.tif', labels, dtype='uint16'), 'label', num_classes=16) as mask:
        np.testing.assert_array_equal(mask.read_rows(0, 30), labels[0])
        np.testing.assert_array_equal(mask.read_rows(7, 9), labels[0, 7:9])


def test_colour_geotiff_mask_is_decoded_by_rows(tmp_path, write_geotiff):
    labels = np.random.RandomState(3).randint(0, 3, (30, 20))
    with open_mask(
        write_geotiff(tmp_path / 'c.tif', COLORS[labels].transpose(2, 0, 1)), 'color', decode_colors
    ) as mask:
        np.testing.assert_array_equal(mask.read_rows(4, 17), labels[4:17])


def test_colour_png_mask_goes_through_the_decoder(tmp_path):
    labels = np.random.RandomState(4).randint(0, 3, (12, 10))
    colours = COLORS[labels].copy()
    colours[0, 0] = (9, 9, 9)
    Image.fromarray(colours).save(tmp_path / 'c.png')
    expected = labels.copy()
    expected[0, 0] = 255
    np.testing.assert_array_equal(open_mask(str(tmp_path / 'c.png'), 'color', decode_colors).read(), expected)
    with pytest.raises(ConfigError, match='needs a colour decoder'):
        open_mask(str(tmp_path / 'c.png'), 'color')
    with pytest.raises(ConfigError, match="mask_format must be 'color' or 'label', got 'rgb'"):
        open_mask(str(tmp_path / 'c.png'), 'rgb')


def test_palette_png_label_mask_is_read_as_its_indices(tmp_path):
    labels = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    save_palette_png(str(tmp_path / 'p.png'), labels, COLORS)
    np.testing.assert_array_equal(open_mask(str(tmp_path / 'p.png'), 'label').read_rows(0, 2), labels)


def test_16_bit_label_png_with_ignore_is_accepted_and_values_outside_the_table_refused(tmp_path):
    labels = np.random.RandomState(5).randint(0, 16, (8, 9)).astype(np.uint16)
    labels[:2] = 255
    Image.fromarray(labels).save(tmp_path / 'l.png')
    read = open_mask(str(tmp_path / 'l.png'), 'label', num_classes=16).read()
    assert read.dtype == np.uint8
    np.testing.assert_array_equal(read, labels)
    labels[3, 4], labels[5, 5] = 16, 300
    Image.fromarray(labels).save(tmp_path / 'l.png')
    mask = open_mask(str(tmp_path / 'l.png'), 'label', num_classes=16)
    with pytest.raises(DataError, match=r'l.png holds label values \[16, 300\] outside 0..15 and 255; relabel'):
        mask.read()


def test_mask_pixel_format_must_fit_the_mask_format(tmp_path):
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(tmp_path / 'grey.png')
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / 'rgb.png')
    with pytest.raises(DataError, match="grey.png is a single-channel mask, not a colour mask.*mask_format='label'"):
        open_mask(str(tmp_path / 'grey.png'), 'color', decode_colors)
    with pytest.raises(DataError, match="rgb.png is a RGB mask, not a single-channel label mask.*mask_format='color'"):
        open_mask(str(tmp_path / 'rgb.png'), 'label')
