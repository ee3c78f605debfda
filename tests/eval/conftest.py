"""Fixtures for the evaluator tests: a tiny FactSeg and small fake models."""

import logging

import numpy as np
import paddle
import pytest

from module.factseg import FactSeg

# KEY VALUE overrides that turn configs/isaid/factseg.py into a tiny ResNet-18 FactSeg.
TINY_OPTS = [
    'model.params.resnet_encoder.resnet_type',
    'resnet18',
    'model.params.foreground.fpn.in_channels_list',
    '[64, 128, 256, 512]',
    'model.params.binary.fpn.in_channels_list',
    '[64, 128, 256, 512]',
    'model.params.foreground.fpn.out_channels',
    '16',
    'model.params.binary.fpn.out_channels',
    '16',
    'model.params.foreground.assymetric_decoder.in_channels',
    '16',
    'model.params.binary.assymetric_decoder.in_channels',
    '16',
    'model.params.foreground.assymetric_decoder.out_channels',
    '16',
    'model.params.binary.assymetric_decoder.out_channels',
    '16',
    'model.params.foreground.out_channels',
    '16',
    'model.params.binary.out_channels',
    '16',
]


@pytest.fixture(scope='module')
def tiny_factseg():
    """A tiny FactSeg in eval mode with seeded random weights and confident logits."""
    branch = dict(
        fpn=dict(in_channels_list=[64, 128, 256, 512], out_channels=16),
        assymetric_decoder=dict(in_channels=16, out_channels=16),
        out_channels=16,
    )
    paddle.seed(7)
    model = FactSeg(
        dict(
            resnet_encoder=dict(resnet_type='resnet18', pretrained=False),
            foreground=branch,
            binary=branch,
            num_classes=16,
            loss=dict(joint_loss=dict(sample='SOM', ratio=0.1, ignore_index=255)),
        )
    )
    model.eval()
    with paddle.no_grad():  # sharper probabilities than at initialisation, so labels vary
        model.fg_cls.weight.set_value(model.fg_cls.weight * 200)
    return model


class PixelModel(paddle.nn.Layer):
    """Per-pixel softmax of a 1x1 convolution: shift- and flip-equivariant, 16 classes."""

    def __init__(self, num_classes=16, seed=0):
        super().__init__()
        paddle.seed(seed)
        self.conv = paddle.nn.Conv2D(3, num_classes, 1)
        self.eval()

    def forward(self, x):
        return paddle.nn.functional.softmax(self.conv(x) * 3, axis=1)


@pytest.fixture
def factseg_log(caplog):
    """``caplog`` that also sees the project logger (which does not propagate to the root)."""
    logger = logging.getLogger('factseg')
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger='factseg')
    yield caplog
    logger.removeHandler(caplog.handler)


@pytest.fixture
def random_image():
    def make(height, width, seed=0, channels=3):
        shape = (height, width) if channels is None else (height, width, channels)
        return np.random.RandomState(seed).randint(0, 256, shape).astype(np.uint8)

    return make
