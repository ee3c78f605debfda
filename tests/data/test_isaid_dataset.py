import os
import random
import subprocess
import sys

import numpy as np
import paddle
import pytest
from PIL import Image

from data.isaid import (
    COLOR_MAP,
    COLOR_MASK_SUFFIX,
    ISAIDSegmmDataLoader,
    ISAIDSegmmDataset,
    RemoveColorMap,
    decode_color_mask,
    train_transforms,
)
from simplecv.api.preprocess import comm, segm
from simplecv.core.config import import_config
from simplecv.core.errors import ConfigError
from simplecv.core.registry import DATALOADER
from simplecv.data.sliding_window import sliding_window

PATCH = dict(patch_size=64, stride=48)


def _train_transforms(size=64, decoder=None):
    transforms = train_transforms(size)
    if decoder is not None:
        transforms[0] = decoder
    return transforms


def _files(image_dir):
    return sorted(f for f in os.listdir(image_dir) if f.endswith('.png'))


def test_index_is_all_windows_of_sorted_images(demo_split):
    image_dir, mask_dir = demo_split
    dataset = ISAIDSegmmDataset(image_dir, mask_dir, PATCH)
    names = _files(image_dir)
    assert [os.path.basename(p) for p, _ in dataset.files] == names
    assert [os.path.basename(m) for _, m in dataset.files] == [n[:-4] + COLOR_MASK_SUFFIX for n in names]
    per_image = sliding_window((160, 200), (64, 64), 48)
    assert len(dataset) == 2 * len(per_image)
    np.testing.assert_array_equal(dataset.windows[: len(per_image), 1:], per_image)
    assert (dataset.windows[len(per_image) :, 0] == 1).all()


def test_read_crops_the_files_and_decodes_colours(demo_split):
    image_dir, mask_dir = demo_split
    dataset = ISAIDSegmmDataset(image_dir, mask_dir, PATCH, cache_mb=0)
    index = len(dataset) - 1
    _, x1, y1, x2, y2 = dataset.windows[index]
    image_path, mask_path = dataset.files[1]
    image, label = dataset.read(index)
    np.testing.assert_array_equal(image, np.asarray(Image.open(image_path))[y1:y2, x1:x2])
    expected = decode_color_mask(np.asarray(Image.open(mask_path))[y1:y2, x1:x2])
    np.testing.assert_array_equal(label, expected)
    assert len(np.unique(label)) > 1


def test_cache_gives_the_same_read_only_arrays(demo_split):
    cached = ISAIDSegmmDataset(*demo_split, PATCH, cache_mb=64)
    uncached = ISAIDSegmmDataset(*demo_split, PATCH, cache_mb=0)
    for index in (0, 5, len(cached) - 1, 0):
        for a, b in zip(cached.read(index), uncached.read(index), strict=True):
            np.testing.assert_array_equal(a, b)
    image, _ = cached.read(0)
    with pytest.raises(ValueError):
        image[0, 0, 0] = 1


def test_item_types_and_seeded_determinism(demo_split):
    dataset = ISAIDSegmmDataset(*demo_split, PATCH, _train_transforms())
    image, target = dataset[(3, 1234)]
    assert image.dtype == np.float32 and image.shape == (3, 64, 64)
    assert target['cls'].dtype == np.int64 and target['cls'].shape == (64, 64)
    again_image, again_target = dataset[(3, 1234)]
    np.testing.assert_array_equal(image, again_image)
    np.testing.assert_array_equal(target['cls'], again_target['cls'])
    variants = {dataset[(3, seed)][1]['cls'].tobytes() for seed in range(16)}
    assert len(variants) > 4


def test_seeding_leaves_the_global_generators_alone(demo_split):
    dataset = ISAIDSegmmDataset(*demo_split, PATCH, _train_transforms())
    random.seed(5)
    np.random.seed(5)
    expected = (random.random(), np.random.rand())
    random.seed(5)
    np.random.seed(5)
    dataset[(0, 99)]
    assert (random.random(), np.random.rand()) == expected


def test_augmented_item_matches_the_raw_patch_under_its_transform(demo_split):
    dataset = ISAIDSegmmDataset(*demo_split, PATCH, _train_transforms())
    raw_image, raw_label = dataset.read(2)
    _, target = dataset[(2, 7)]
    random.seed(7)
    expected = comm.Compose(
        [segm.RandomHorizontalFlip(0.5), segm.RandomVerticalFlip(0.5), segm.RandomRotate90K((0, 1, 2, 3))]
    )(raw_image, raw_label)[1]
    np.testing.assert_array_equal(target['cls'], expected)


def _write_label_variant(mask_dir, out_dir, suffix, mode):
    os.makedirs(out_dir, exist_ok=True)
    for name in os.listdir(mask_dir):
        label = decode_color_mask(np.asarray(Image.open(os.path.join(mask_dir, name))))
        stem = name[: -len(COLOR_MASK_SUFFIX)]
        image = Image.fromarray(label)
        if mode == 'P':
            image = image.convert('P')
            image.putpalette(np.asarray(COLOR_MAP, np.uint8).ravel().tolist())
        image.save(os.path.join(out_dir, stem + suffix))


@pytest.mark.parametrize('suffix, mode', [('_label.png', 'L'), ('.png', 'L'), ('_label.png', 'P')])
def test_label_masks_read_like_colour_masks(demo_split, tmp_path, suffix, mode):
    image_dir, mask_dir = demo_split
    label_dir = str(tmp_path / 'labels')
    _write_label_variant(mask_dir, label_dir, suffix, mode)
    color = ISAIDSegmmDataset(image_dir, mask_dir, PATCH, _train_transforms())
    label = ISAIDSegmmDataset(image_dir, label_dir, PATCH, _train_transforms(), mask_format='label')
    assert len(color) == len(label)
    for key in ((0, 11), (len(color) - 1, 12)):
        np.testing.assert_array_equal(color[key][1]['cls'], label[key][1]['cls'])
        np.testing.assert_array_equal(color[key][0], label[key][0])


def test_unknown_colours_are_logged_once_per_file(tmp_path, write_pair, data_warnings):
    label = np.zeros((40, 60), np.uint8)
    label[:5, :5] = 1
    image_dir, mask_dir = write_pair(str(tmp_path), 'P0001', np.zeros((40, 60, 3), np.uint8), label)
    mask_path = os.path.join(mask_dir, 'P0001' + COLOR_MASK_SUFFIX)
    mask = np.asarray(Image.open(mask_path)).copy()
    mask[:5, :5] = (189, 0, 0)
    Image.fromarray(mask).save(mask_path)
    dataset = ISAIDSegmmDataset(image_dir, mask_dir, dict(patch_size=32, stride=16), cache_mb=0)
    labels = [dataset.read(i)[1] for i in range(len(dataset))]
    assert len(data_warnings) == 1
    assert 'P0001_instance_color_RGB.png' in data_warnings[0] and '25 pixels' in data_warnings[0]
    assert '(189, 0, 0)' in data_warnings[0] and 'ignore' in data_warnings[0]
    assert labels[0][0, 0] == 255
    official = ISAIDSegmmDataset(
        image_dir,
        mask_dir,
        dict(patch_size=32, stride=16),
        [RemoveColorMap(unknown='background', match='hash'), segm.ToTensor()],
    )
    assert official.read(0)[1][0, 0] == 1  # the hash collision with ship
    assert official.color_decoder.unknown == 'background'


def test_image_and_mask_may_share_a_folder(tmp_path, write_pair, write_png):
    image_dir, mask_dir = write_pair(
        str(tmp_path), 'P0002', np.zeros((20, 30, 3), np.uint8), np.ones((20, 30), np.uint8)
    )
    os.rename(os.path.join(mask_dir, 'P0002' + COLOR_MASK_SUFFIX), os.path.join(image_dir, 'P0002' + COLOR_MASK_SUFFIX))
    write_png(os.path.join(image_dir, 'P0002_instance_id_RGB.png'), np.zeros((20, 30, 3), np.uint8))
    dataset = ISAIDSegmmDataset(image_dir, image_dir, dict(patch_size=32, stride=16))
    assert len(dataset.files) == 1 and (dataset.read(0)[1] == 1).all()


def test_missing_to_tensor_is_reported(demo_split):
    dataset = ISAIDSegmmDataset(*demo_split, PATCH, [RemoveColorMap()])
    with pytest.raises(ConfigError, match='ToTensor'):
        dataset[0]


def _loader_config(demo_split, **extra):
    image_dir, mask_dir = demo_split
    config = dict(
        image_dir=image_dir,
        mask_dir=mask_dir,
        patch_config=PATCH,
        transforms=_train_transforms(),
        batch_size=4,
        num_workers=0,
        training=True,
        seed=11,
    )
    config.update(extra)
    return config


def test_registered_loader_yields_paddle_batches(demo_split):
    loader = DATALOADER['ISAIDSegmmDataLoader'](_loader_config(demo_split))
    # The loader reads through simplecv.data.fail_fast.CaptureErrors, which forwards to the data set.
    assert isinstance(loader, paddle.io.DataLoader) and isinstance(loader.dataset.dataset, ISAIDSegmmDataset)
    # Iterators are always run to the end here: an abandoned one keeps a reader thread alive, and
    # a later fork of DataLoader workers can inherit a lock held by it.
    batches = list(loader)
    assert len(batches) == len(loader) == -(-len(loader.dataset) // 4)
    image, target = batches[0]
    assert isinstance(image, paddle.Tensor) and image.dtype == paddle.float32 and image.shape == [4, 3, 64, 64]
    assert target['cls'].dtype == paddle.int64 and target['cls'].shape == [4, 64, 64]
    values = set(np.unique(target['cls'].numpy()).tolist())
    assert values <= set(range(16)) | {255} and len(values) > 1


_WORKER_CHECK = """
import sys
import numpy as np
from data.isaid import ISAIDSegmmDataLoader, RemoveColorMap
from simplecv.api.preprocess import segm
batches = []
for workers in (0, 2):
    loader = ISAIDSegmmDataLoader(dict(
        image_dir=sys.argv[1], mask_dir=sys.argv[2], patch_config=dict(patch_size=64, stride=48),
        transforms=[RemoveColorMap(), segm.RandomHorizontalFlip(0.5), segm.RandomRotate90K((0, 1, 2, 3)),
                    segm.ToTensor(True)], batch_size=4, num_workers=workers, seed=11))
    batches.append([(x.numpy(), y['cls'].numpy()) for x, y in loader])
assert len(batches[0]) == len(batches[1]) == len(loader) == 6
for (x0, y0), (x1, y1) in zip(*batches, strict=True):
    assert np.array_equal(x0, x1) and np.array_equal(y0, y1)
print('same batches')
"""


def test_loader_batches_do_not_depend_on_worker_count(demo_split):
    # A fresh interpreter, so that no thread of another test is running when workers are forked.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run(
        [sys.executable, '-c', _WORKER_CHECK, *demo_split],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=root, OMP_NUM_THREADS='1'),
    )
    assert result.returncode == 0 and 'same batches' in result.stdout, result.stderr[-3000:]


def test_eval_loader_keeps_window_order(demo_split):
    loader = ISAIDSegmmDataLoader(
        _loader_config(demo_split, training=False, batch_size=1, transforms=[RemoveColorMap(), segm.ToTensor(True)])
    )
    labels = [target['cls'].numpy()[0] for _, target in loader]
    assert len(labels) == len(loader.dataset)
    for index in (0, len(labels) - 1):
        np.testing.assert_array_equal(labels[index], loader.dataset.read(index)[1])


@pytest.mark.parametrize(
    'extra, match',
    [
        (dict(batchsize=2), "did you mean 'ISAIDSegmmDataLoader.params.batch_size'"),
        (dict(patch_config=dict(patch_size=64, strides=8)), 'patch_config.strides'),
        (dict(batch_size=0), 'batch_size'),
        (dict(num_workers=-1), 'num_workers'),
        (dict(mask_format='rgb'), 'mask_format'),
        (dict(verify='crc'), 'verify'),
    ],
)
def test_loader_config_errors(demo_split, extra, match):
    with pytest.raises(ConfigError, match=match):
        ISAIDSegmmDataLoader(_loader_config(demo_split, **extra))


def test_official_config_builds_with_other_folders(demo_split):
    params = import_config('isaid.factseg').data.train.params
    params.update(dict(image_dir=demo_split[0], mask_dir=demo_split[1], batch_size=2, num_workers=0))
    loader = DATALOADER[import_config('isaid.factseg').data.train.type](params)
    ((image, target),) = list(loader)
    # Official transforms: the 160x200 images are single windows padded to 896.
    assert image.shape == [2, 3, 896, 896] and target['cls'].shape == [2, 896, 896]
    assert (target['cls'].numpy()[:, 200:] == 255).all()
