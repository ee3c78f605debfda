"""Every bad input is refused with a DataError that names the file (or folder) and the fix."""
import os

import numpy as np
import pytest
from PIL import Image

from data.isaid import COLOR_MASK_SUFFIX, ISAIDSegmmDataset
from simplecv.core.errors import DataError, FactSegError

PATCH = dict(patch_size=32, stride=16)


@pytest.fixture
def good_split(tmp_path, write_pair):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    label = rng.integers(0, 16, (40, 50)).astype(np.uint8)
    image_dir, mask_dir = write_pair(str(tmp_path), 'P0007', image, label)
    return image_dir, mask_dir, image, label


def _image_path(split):
    return os.path.join(split[0], 'P0007.png')


def _mask_path(split):
    return os.path.join(split[1], 'P0007' + COLOR_MASK_SUFFIX)


def test_data_error_is_a_factseg_error():
    assert issubclass(DataError, FactSegError)


def test_missing_image_folder(tmp_path):
    with pytest.raises(DataError, match='image_dir .*nowhere.* is not a folder'):
        ISAIDSegmmDataset(str(tmp_path / 'nowhere'), str(tmp_path))


def test_missing_mask_folder(good_split, tmp_path):
    with pytest.raises(DataError, match='mask_dir .*no_masks'):
        ISAIDSegmmDataset(good_split[0], str(tmp_path / 'no_masks'))


def test_empty_image_folder(tmp_path):
    (tmp_path / 'images').mkdir()
    (tmp_path / 'images' / 'notes.txt').write_text('x')
    with pytest.raises(DataError, match='no <name>.png images in .*images'):
        ISAIDSegmmDataset(str(tmp_path / 'images'), str(tmp_path))


def test_image_without_mask(good_split):
    os.remove(_mask_path(good_split))
    message = "P0007.png has no mask: expected .*P0007_instance_color_RGB.png.*mask_format='label'"
    with pytest.raises(DataError, match=message):
        ISAIDSegmmDataset(*good_split[:2], PATCH)


def test_image_without_label_mask(good_split):
    with pytest.raises(DataError, match='P0007.png has no mask: expected .*P0007_label.png or .*P0007.png'):
        ISAIDSegmmDataset(*good_split[:2], PATCH, mask_format='label')


def test_mask_size_differs(good_split, write_png):
    write_png(_mask_path(good_split), np.zeros((40, 51, 3), np.uint8))
    with pytest.raises(DataError, match='P0007.png is 50x40 but its mask .*P0007_instance_color_RGB.png is 51x40'):
        ISAIDSegmmDataset(*good_split[:2], PATCH)


def test_truncated_png_caught_when_building(good_split):
    data = open(_image_path(good_split), 'rb').read()
    open(_image_path(good_split), 'wb').write(data[:len(data) // 2])
    with pytest.raises(DataError, match='P0007.png is truncated'):
        ISAIDSegmmDataset(*good_split[:2], PATCH)


def test_not_a_png(good_split):
    Image.fromarray(good_split[2]).save(_image_path(good_split), format='JPEG')
    with pytest.raises(DataError, match='P0007.png is not a PNG file'):
        ISAIDSegmmDataset(*good_split[:2], PATCH)


def _corrupt_middle(path):
    data = bytearray(open(path, 'rb').read())
    data[len(data) // 2:len(data) // 2 + 64] = bytes(64)
    open(path, 'wb').write(bytes(data))


def test_damaged_data_caught_at_read_time_or_when_verifying(good_split):
    _corrupt_middle(_image_path(good_split))
    dataset = ISAIDSegmmDataset(*good_split[:2], PATCH, cache_mb=0)
    with pytest.raises(DataError, match='cannot decode .*P0007.png .*damaged'):
        dataset.read(0)
    with pytest.raises(DataError, match='cannot decode .*P0007.png'):
        ISAIDSegmmDataset(*good_split[:2], PATCH, verify='decode')


def test_greyscale_image_becomes_rgb(good_split, write_png):
    grey = good_split[2][..., 0]
    write_png(_image_path(good_split), grey)
    image, _ = ISAIDSegmmDataset(*good_split[:2], PATCH).read(0)
    assert image.shape == (32, 32, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], grey[:32, :32])


def test_rgba_image_drops_alpha(good_split, write_png):
    rgba = np.concatenate([good_split[2], np.full((40, 50, 1), 17, np.uint8)], axis=-1)
    write_png(_image_path(good_split), rgba)
    image, _ = ISAIDSegmmDataset(*good_split[:2], PATCH).read(0)
    np.testing.assert_array_equal(image, good_split[2][:32, :32])


def test_16_bit_image_refused(good_split, write_png):
    write_png(_image_path(good_split), np.full((40, 50), 300, np.uint16))
    with pytest.raises(DataError, match='P0007.png is a 16-bit greyscale image; convert it to 8-bit RGB'):
        ISAIDSegmmDataset(*good_split[:2], PATCH)


def test_single_channel_colour_mask_refused(good_split, write_png):
    write_png(_mask_path(good_split), good_split[3])
    with pytest.raises(DataError, match="P0007_instance_color_RGB.png is a single-channel mask.*mask_format='label'"):
        ISAIDSegmmDataset(*good_split[:2], PATCH)


def test_rgb_label_mask_refused(good_split, write_png):
    write_png(os.path.join(good_split[1], 'P0007_label.png'), np.zeros((40, 50, 3), np.uint8))
    with pytest.raises(DataError, match="P0007_label.png is a RGB mask.*mask_format='color'"):
        ISAIDSegmmDataset(*good_split[:2], PATCH, mask_format='label')


def test_label_values_out_of_range_refused(good_split, write_png):
    label = good_split[3].copy()
    label[3, 4] = 16
    label[0, 0] = 200
    write_png(os.path.join(good_split[1], 'P0007_label.png'), label)
    dataset = ISAIDSegmmDataset(*good_split[:2], PATCH, mask_format='label')
    with pytest.raises(DataError, match=r'P0007_label.png holds label values \[16, 200\] outside 0..15 and 255'):
        dataset.read(0)


def test_label_mask_with_ignore_accepted(good_split, write_png):
    label = good_split[3].copy()
    label[:2] = 255
    write_png(os.path.join(good_split[1], 'P0007_label.png'), label.astype(np.uint16))
    _, read = ISAIDSegmmDataset(*good_split[:2], PATCH, mask_format='label', verify='decode').read(0)
    assert read.dtype == np.uint8
    np.testing.assert_array_equal(read, label[:32, :32])


def test_find_pairs_other_extensions_keep_the_image_extension(tmp_path):
    from data.isaid_files import find_pairs

    for folder, names in (('images', ['b.TIF', 'a.jpg', 'c.png', 'a_label.jpg', 'notes.txt']),
                          ('masks', ['b_instance_color_RGB.TIF', 'a_instance_color_RGB.jpg'])):
        os.makedirs(tmp_path / folder, exist_ok=True)
        for name in names:
            (tmp_path / folder / name).write_bytes(b'')
    pairs = find_pairs(str(tmp_path / 'images'), str(tmp_path / 'masks'), extensions=('.jpg', '.tif'))
    assert [(os.path.basename(i), os.path.basename(m)) for i, m in pairs] == [
        ('a.jpg', 'a_instance_color_RGB.jpg'), ('b.TIF', 'b_instance_color_RGB.TIF')]
    with pytest.raises(DataError, match=r"c.png has no mask: expected .*c_instance_color_RGB.png"):
        find_pairs(str(tmp_path / 'images'), str(tmp_path / 'masks'), extensions=('.png',))
