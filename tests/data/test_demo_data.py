import os
import time

import numpy as np
import pytest
from PIL import Image

from data import demo
from data.isaid import COLOR_MAP, COLOR_MASK_SUFFIX, ISAIDSegmmDataset, decode_color_mask


def _read_all(root):
    out = {}
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = os.path.join(folder, name)
            out[os.path.relpath(path, root)] = open(path, 'rb').read()
    return out


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    for name, seed in (('a', 0), ('b', 0), ('c', 1)):
        demo.generate_demo_dataset(str(tmp_path / name), num_train=2, num_val=1, size=(96, 128), seed=seed)
    a, b, c = (_read_all(str(tmp_path / n)) for n in 'abc')
    assert sorted(a) == [
        'train/images/demo_train_0000.png',
        'train/images/demo_train_0001.png',
        'train/masks/demo_train_0000' + COLOR_MASK_SUFFIX,
        'train/masks/demo_train_0001' + COLOR_MASK_SUFFIX,
        'val/images/demo_val_0000.png',
        'val/masks/demo_val_0000' + COLOR_MASK_SUFFIX,
    ]
    assert a == b
    assert all(a[k] != c[k] for k in a if '/images/' in k)


def test_scenes_hold_every_class_in_table_colours_and_load(tmp_path):
    start = time.perf_counter()
    folders = demo.generate_demo_dataset(str(tmp_path), num_train=3, num_val=1, size=(512, 512), seed=0)
    assert time.perf_counter() - start < 4.0
    seen = set()
    table = {tuple(c) for c in COLOR_MAP}
    for name in os.listdir(folders['train'][1]):
        mask = np.asarray(Image.open(os.path.join(folders['train'][1], name)))
        assert {tuple(c) for c in np.unique(mask.reshape(-1, 3), axis=0)} <= table
        label = decode_color_mask(mask)
        counts = np.bincount(label.ravel(), minlength=16)
        assert counts[0] > 0.5 * label.size  # mostly background, as in iSAID
        assert counts[9] > 100  # many small vehicles
        seen |= set(np.flatnonzero(counts).tolist())
    assert seen == set(range(16))
    dataset = ISAIDSegmmDataset(*folders['train'], dict(patch_size=256, stride=128), verify='decode')
    assert len(dataset) == 3 * 9


def test_classes_look_different():
    # Each class has its own colour signature, so a small model can tell them apart.
    image, label = demo.render_sample(np.random.default_rng(5), (512, 512))
    means = {c: image[label == c].mean(axis=0) for c in np.unique(label) if c}
    colours = np.stack(list(means.values()))
    distances = np.linalg.norm(colours[:, None] - colours[None], axis=-1) + np.eye(len(colours)) * 1e3
    assert distances.min() > 5


def test_command_line(tmp_path, capsys):
    demo.main(['--out', str(tmp_path), '--num-train', '1', '--num-val', '1', '--size', '64', '80'])
    assert 'train: image_dir=' in capsys.readouterr().out
    assert Image.open(str(tmp_path / 'val' / 'images' / 'demo_val_0000.png')).size == (80, 64)


def test_too_small_size_refused(tmp_path):
    with pytest.raises(ValueError, match='at least 32x32'):
        demo.generate_demo_dataset(str(tmp_path), 1, 0, size=(16, 64))
