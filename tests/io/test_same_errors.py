"""The same bad file gives the same one-line DataError in training, in evaluation (isaid_eval.py, the
in-training evaluation) and in tools/infer.py."""

import os

import numpy as np
import pytest
from PIL import Image

from data.isaid import COLOR_MAP, ISAIDSegmmDataLoader, ISAIDSegmmDataset
from simplecv.core.errors import DataError
from tools import infer

PALETTE = np.asarray(COLOR_MAP, dtype=np.uint8)
HEIGHT, WIDTH = 40, 50


def _save(path, array, **kwargs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def _split(root, image_ext='.png', mask_format='color'):
    """A one-image split ``root/images``, ``root/masks``; returns (image path, mask path)."""
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    label = rng.integers(0, 16, (HEIGHT, WIDTH)).astype(np.uint8)
    image_path = _save(os.path.join(root, 'images', 'P0001' + image_ext), image)
    if mask_format == 'color':
        mask_path = _save(os.path.join(root, 'masks', 'P0001_instance_color_RGB' + image_ext), PALETTE[label])
    else:
        mask_path = _save(os.path.join(root, 'masks', 'P0001_label' + image_ext), label)
    return image_path, mask_path


def _cut(path, keep=0.5):
    data = open(path, 'rb').read()
    open(path, 'wb').write(data[: int(len(data) * keep)])


def _zero_middle(path):
    data = bytearray(open(path, 'rb').read())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
    open(path, 'wb').write(bytes(data))


def truncated_png(image, mask):
    _cut(image)
    return 'color', 'is truncated', image


def truncated_jpeg(image, mask):
    _cut(image)
    return 'color', 'is truncated', image


def jpeg_named_png(image, mask):
    Image.open(image).convert('RGB').save(image, format='JPEG')
    return 'color', 'is not a PNG file', image


def mask_size_differs(image, mask):
    _save(mask, np.zeros((HEIGHT, WIDTH + 1, 3), np.uint8))
    return 'color', 'is 50x40 but its mask', image


def missing_mask(image, mask):
    os.remove(mask)
    return 'color', 'has no mask', image


def image_16_bit(image, mask):
    _save(image, np.full((HEIGHT, WIDTH), 300, np.uint16))
    return 'color', '16-bit greyscale image', image


def tiff_16_bit(image, mask):
    import rasterio

    with rasterio.open(image, 'w', driver='GTiff', height=HEIGHT, width=WIDTH, count=3, dtype='uint16') as dst:
        dst.write(np.full((3, HEIGHT, WIDTH), 300, np.uint16))
    return 'color', '16-bit RGB image', image


def corrupt_image(image, mask):
    _zero_middle(image)
    return 'color', 'cannot decode', image


def unsupported_extension(image, mask):
    Image.open(image).save(image[: -len('.png')] + '.gif')
    os.remove(image)
    return 'color', 'no <name>.png|', os.path.dirname(image)


def single_channel_colour_mask(image, mask):
    _save(mask, np.zeros((HEIGHT, WIDTH), np.uint8))
    return 'color', 'single-channel mask', mask


def label_values_outside_the_table(image, mask):
    label = np.array(Image.open(mask))
    label[3, 4], label[0, 0] = 16, 200
    _save(mask, label)
    return 'label', 'holds label values [16, 200] outside 0..15 and 255', mask


FAULTS = [
    (truncated_png, '.png', 'color'),
    (truncated_jpeg, '.jpg', 'color'),
    (jpeg_named_png, '.png', 'color'),
    (mask_size_differs, '.png', 'color'),
    (missing_mask, '.png', 'color'),
    (image_16_bit, '.png', 'color'),
    (tiff_16_bit, '.tif', 'color'),
    (corrupt_image, '.png', 'color'),
    (unsupported_extension, '.png', 'color'),
    (single_channel_colour_mask, '.png', 'color'),
    (label_values_outside_the_table, '.png', 'label'),
]
MASK_FAULTS = (mask_size_differs, missing_mask, single_channel_colour_mask, label_values_outside_the_table)


def _message(read):
    with pytest.raises(DataError) as caught:
        read()
    return str(caught.value)


def _training(image_dir, mask_dir, mask_format):
    dataset = ISAIDSegmmDataset(
        image_dir, mask_dir, dict(patch_size=32, stride=16), mask_format=mask_format, cache_mb=0
    )
    dataset.read(0)


def _evaluation(image_dir, mask_dir, mask_format):
    items = ISAIDSegmmDataLoader.evaluation_items(dict(image_dir=image_dir, mask_dir=mask_dir, mask_format=mask_format))
    image, mask = items[0].open()
    if mask is not None:
        mask.read()


def _inference(image_dir):
    pairs = infer.list_images(image_dir)
    pairs[0].open()[0].read()


@pytest.mark.parametrize('fault, extension, mask_format', FAULTS, ids=[f[0].__name__ for f in FAULTS])
def test_same_message_in_training_evaluation_and_inference(tmp_path, fault, extension, mask_format):
    if extension == '.tif':
        pytest.importorskip('rasterio')
    image, mask = _split(str(tmp_path), extension, mask_format)
    mask_format, fragment, culprit = fault(image, mask)
    image_dir, mask_dir = str(tmp_path / 'images'), str(tmp_path / 'masks')
    training = _message(lambda: _training(image_dir, mask_dir, mask_format))
    assert fragment in training and os.path.basename(culprit) in training and '\n' not in training
    assert ';' in training  # every message goes on to say what to do
    assert _message(lambda: _evaluation(image_dir, mask_dir, mask_format)) == training
    if fault not in MASK_FAULTS:
        assert _message(lambda: _inference(image_dir)) == training


@pytest.mark.parametrize('extension', ['.png', '.jpg', '.bmp', '.tif'])
def test_good_files_read_alike_in_the_three_ways(tmp_path, extension):
    if extension == '.tif':
        pytest.importorskip('rasterio')
    image, mask = _split(str(tmp_path), extension)
    image_dir, mask_dir = str(tmp_path / 'images'), str(tmp_path / 'masks')
    dataset = ISAIDSegmmDataset(image_dir, mask_dir, dict(patch_size=HEIGHT, stride=WIDTH))
    pixels, labels = dataset.read(0)
    decoded = np.asarray(Image.open(image).convert('RGB'))
    np.testing.assert_array_equal(pixels, decoded[:, :HEIGHT])
    item_image, item_mask = ISAIDSegmmDataLoader.evaluation_items(
        dict(image_dir=image_dir, mask_dir=mask_dir, mask_format='color')
    )[0].open()
    np.testing.assert_array_equal(item_image.read()[:, :HEIGHT], pixels)
    np.testing.assert_array_equal(item_mask.read()[:, :HEIGHT], labels)
    np.testing.assert_array_equal(infer.list_images(image_dir)[0].open()[0].read(), decoded)


def test_file_removed_after_listing_same_message(tmp_path):
    image, mask = _split(str(tmp_path))
    image_dir, mask_dir = str(tmp_path / 'images'), str(tmp_path / 'masks')
    dataset = ISAIDSegmmDataset(image_dir, mask_dir, dict(patch_size=32, stride=16), cache_mb=0)
    items = ISAIDSegmmDataLoader.evaluation_items(dict(image_dir=image_dir, mask_dir=mask_dir, mask_format='color'))
    pairs = infer.list_images(image_dir)
    os.remove(image)
    training = _message(lambda: dataset.read(0))
    assert training.startswith('%s no longer exists' % image) and 'restore it' in training
    assert _message(items[0].open) == _message(pairs[0].open) == training
