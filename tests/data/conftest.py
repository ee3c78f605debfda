"""Fixtures for the data tests: a tiny synthetic iSAID split and PNG writers."""

import logging
import os

import numpy as np
import pytest
from PIL import Image

from data.demo import generate_demo_dataset
from data.isaid import COLOR_MAP, COLOR_MASK_SUFFIX

PALETTE = np.asarray(COLOR_MAP, dtype=np.uint8)


def _write_png(path, array, mode=None):
    """Write ``array`` as a PNG (``mode`` as for ``Image.fromarray``) and return the path."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = Image.fromarray(array) if mode is None else Image.fromarray(array, mode)
    image.save(path)
    return path


def _write_pair(root, name, image, label):
    """Write ``root/images/<name>.png`` and its iSAID colour mask; return both folders."""
    image_dir, mask_dir = os.path.join(root, 'images'), os.path.join(root, 'masks')
    _write_png(os.path.join(image_dir, name + '.png'), image)
    _write_png(os.path.join(mask_dir, name + COLOR_MASK_SUFFIX), PALETTE[label])
    return image_dir, mask_dir


@pytest.fixture
def write_png():
    """``write_png(path, array, mode=None) -> path``."""
    return _write_png


@pytest.fixture
def write_pair():
    """``write_pair(root, name, image, label) -> (image_dir, mask_dir)`` in the iSAID layout."""
    return _write_pair


@pytest.fixture(scope='session')
def demo_split(tmp_path_factory):
    """A two-image training split of 160x200 synthetic images: ``(image_dir, mask_dir)``."""
    root = tmp_path_factory.mktemp('demo')
    return generate_demo_dataset(str(root), num_train=2, num_val=1, size=(160, 200), seed=3)['train']


@pytest.fixture
def random_pair():
    """A random ``(image (H, W, 3) uint8, label (H, W) uint8)`` pair of size 40x56."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    label = rng.integers(0, 16, (40, 56)).astype(np.uint8)
    return image, label


class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def data_warnings():
    """Collect the warnings logged by the data package (the project logger does not propagate)."""
    handler = _ListHandler()
    logger = logging.getLogger('factseg.data')
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)
