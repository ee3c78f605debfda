"""The export-friendly ops and their explicit selection on a model's layers."""

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from module.factseg import FactSeg
from simplecv.module import export_ops

BRANCH = dict(
    fpn=dict(in_channels_list=[64, 128, 256, 512], out_channels=8),
    assymetric_decoder=dict(in_channels=8, out_channels=8),
    out_channels=8,
)


def _tiny_factseg(loss):
    paddle.seed(3)
    model = FactSeg(
        dict(
            resnet_encoder=dict(resnet_type='resnet18', pretrained=False),
            foreground=BRANCH,
            binary=BRANCH,
            num_classes=5,
            loss=loss,
        )
    )
    return model.eval()


@pytest.mark.parametrize(
    'kwargs',
    [
        dict(scale_factor=4.0, mode='bilinear', align_corners=True),
        dict(scale_factor=2, mode='bilinear', align_corners=True),
        dict(size=[13, 7], mode='bilinear', align_corners=True),
        dict(scale_factor=2, mode='nearest'),
        dict(size=[10, 9], mode='nearest'),
        dict(scale_factor=2, mode='bilinear', align_corners=False),
    ],
)
def test_matmul_interpolate_equals_paddle_interpolate(kwargs):
    x = paddle.to_tensor(np.random.RandomState(0).randn(2, 3, 5, 6).astype(np.float32))
    expected = F.interpolate(x, **kwargs).numpy()
    got = export_ops.interpolate(x, 'matmul', **kwargs).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)
    np.testing.assert_array_equal(export_ops.interpolate(x, 'native', **kwargs).numpy(), expected)


@pytest.mark.parametrize('keepdim', [True, False])
def test_elementwise_logsumexp_equals_paddle_logsumexp(keepdim):
    x = paddle.to_tensor(np.random.RandomState(1).randn(2, 5, 4, 3).astype(np.float32) * 30)
    expected = paddle.logsumexp(x, axis=1, keepdim=keepdim).numpy()
    got = export_ops.logsumexp(x, axis=1, keepdim=keepdim, implementation='elementwise').numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(export_ops.logsumexp(x, axis=1, keepdim=keepdim).numpy(), expected)


def test_unknown_implementations_are_refused():
    x = paddle.ones([1, 1, 2, 2])
    with pytest.raises(ValueError, match='interpolation must be one of'):
        export_ops.interpolate(x, 'cubic', scale_factor=2)
    with pytest.raises(ValueError, match='logsumexp must be one of'):
        export_ops.logsumexp(x, axis=1, implementation='fast')
    with pytest.raises(ValueError, match='interpolation must be one of'):
        export_ops.set_export_ops(paddle.nn.Identity(), interpolation='cubic')


def test_set_export_ops_switches_every_layer_and_leaves_paddle_alone():
    model = _tiny_factseg(dict(joint_loss=dict(sample='SOM', ratio=0.1, ignore_index=255)))
    layers = [model] + model.sublayers()
    assert {layer.interpolation for layer in layers if hasattr(layer, 'interpolation')} == {'native'}
    interpolate, logsumexp = F.interpolate, paddle.logsumexp
    changed = export_ops.set_export_ops(model, interpolation='matmul', logsumexp='elementwise')
    # FactSeg itself, two FPNs and the decoders' upsampling layers (3 + 2 + 1 per decoder)
    assert changed == 1 + 2 + 2 * 6
    assert {layer.interpolation for layer in layers if hasattr(layer, 'interpolation')} == {'matmul'}
    assert model.logsumexp == 'elementwise'
    assert F.interpolate is interpolate and paddle.logsumexp is logsumexp


@pytest.mark.parametrize('loss', [dict(joint_loss=dict(sample='SOM', ratio=0.1, ignore_index=255)), dict()])
def test_export_ops_give_the_native_probabilities_within_float32_rounding(loss):
    model = _tiny_factseg(loss)
    x = paddle.to_tensor(np.random.RandomState(2).randn(2, 3, 64, 96).astype(np.float32))
    with paddle.no_grad():
        native = model(x).numpy()
        export_ops.set_export_ops(model, interpolation='matmul', logsumexp='elementwise')
        exported_form = model(x).numpy()
        export_ops.set_export_ops(model)
        again = model(x).numpy()
    np.testing.assert_allclose(exported_form, native, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(again, native)
