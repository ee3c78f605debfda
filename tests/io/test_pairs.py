import os

import numpy as np
import pytest
from PIL import Image

from simplecv.core.errors import DataError
from simplecv.io.pairs import SAME_NAME, ImagePair, MaskNaming, find_images, find_mask, list_pairs

NAMING = MaskNaming(color=('_color',), label=('_label', ''), not_images=('_color', '_label'))


def _touch(folder, names):
    os.makedirs(folder, exist_ok=True)
    for name in names:
        open(os.path.join(folder, name), 'wb').close()


def test_images_are_listed_by_name_with_masks_keeping_the_image_extension(tmp_path):
    _touch(tmp_path / 'images', ['b.TIF', 'a.jpg', 'c.png', 'a_label.jpg', 'a_color.jpg', 'notes.txt'])
    _touch(tmp_path / 'masks', ['b_color.TIF', 'a_color.jpg', 'a_label.jpg', 'b.TIF'])
    images = find_images(str(tmp_path / 'images'), NAMING)
    assert [os.path.basename(p) for p in images] == ['a.jpg', 'b.TIF', 'c.png']
    masks = str(tmp_path / 'masks')
    assert [os.path.basename(find_mask(p, masks, 'color', NAMING)) for p in images[:2]] == [
        'a_color.jpg',
        'b_color.TIF',
    ]
    assert [os.path.basename(find_mask(p, masks, 'label', NAMING)) for p in images[:2]] == ['a_label.jpg', 'b.TIF']
    with pytest.raises(DataError, match=r"c.png has no mask: expected .*c_color.png; .*mask_format='label'"):
        find_mask(images[2], masks, 'color', NAMING)
    with pytest.raises(DataError, match=r'c.png has no mask: expected .*c_label.png or .*masks/c.png$'):
        find_mask(images[2], masks, 'label', NAMING)


def test_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(DataError, match='image_dir .*nowhere is not a folder'):
        find_images(str(tmp_path / 'nowhere'))
    _touch(tmp_path / 'docs', ['notes.txt', 'x.gif'])
    message = r'no <name>.png\|.* images in .*docs \(it holds 2 other files: notes.txt, x.gif\)'
    with pytest.raises(DataError, match=message):
        find_images(str(tmp_path / 'docs'), SAME_NAME)
    with pytest.raises(DataError, match='mask_dir .*no_masks is not a folder'):
        list_pairs(str(tmp_path / 'docs'), str(tmp_path / 'no_masks'))


def test_pairs_are_checked_when_listed_and_read_whole(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, (6, 7)).astype(np.uint8)
    os.makedirs(tmp_path / 'images')
    os.makedirs(tmp_path / 'masks')
    Image.fromarray(image).save(tmp_path / 'images' / 'x.png')
    Image.fromarray(labels).save(tmp_path / 'masks' / 'x.png')
    (pair,) = list_pairs(str(tmp_path / 'images'), str(tmp_path / 'masks'), 'label', num_classes=4)
    assert (pair.name, pair.height, pair.width, pair.geotiff) == ('x', 6, 7, False)
    pixels, read = pair.read()
    np.testing.assert_array_equal(pixels, image)
    np.testing.assert_array_equal(read, labels)
    opened_image, opened_mask = ImagePair(pair.image_path).open()
    assert opened_mask is None
    np.testing.assert_array_equal(opened_image.read_rows(2, 4), image[2:4])
    Image.fromarray(labels[:, :5]).save(tmp_path / 'masks' / 'x.png')
    with pytest.raises(DataError, match=r'x.png is 7x6 but its mask .*x.png is 5x6 \(width x height\)'):
        list_pairs(str(tmp_path / 'images'), str(tmp_path / 'masks'), 'label')
