"""Data set errors: missing folders, damaged files found at read time; pixel formats the data set converts.

The checks shared with evaluation and inference are tested once for the three in tests/io/test_same_errors.py.
"""

import os

import numpy as np
import pytest

from data.isaid import ISAIDSegmmDataset
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
    with pytest.raises(DataError, match=r'no <name>.png\|.* images in .*images'):
        ISAIDSegmmDataset(str(tmp_path / 'images'), str(tmp_path))


def _corrupt_middle(path):
    data = bytearray(open(path, 'rb').read())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
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


def test_label_mask_with_ignore_accepted(good_split, write_png):
    label = good_split[3].copy()
    label[:2] = 255
    write_png(os.path.join(good_split[1], 'P0007_label.png'), label.astype(np.uint16))
    _, read = ISAIDSegmmDataset(*good_split[:2], PATCH, mask_format='label', verify='decode').read(0)
    assert read.dtype == np.uint8
    np.testing.assert_array_equal(read, label[:32, :32])
