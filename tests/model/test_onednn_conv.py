"""The oneDNN route of simplecv.module.conv.Conv2D matches Paddle's convolution to float rounding, and falls back."""

import warnings

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from simplecv.module import conv as conv_module, onednn_conv
from simplecv.module.conv import Conv2D

needs_extension = pytest.mark.skipif(
    onednn_conv.load_extension() is None, reason='oneDNN extension unavailable: %s' % onednn_conv.unavailable_reason()
)

# Float rounding of sums over up to a few hundred terms (relative to the largest magnitude).
RTOL = 2e-5


def _close(actual, expected):
    actual, expected = np.asarray(actual, 'float64'), np.asarray(expected, 'float64')
    assert actual.shape == expected.shape
    assert np.abs(actual - expected).max() <= RTOL * np.abs(expected).max()


def _grads(fn, x, weight, bias, grad_out):
    inputs = [t for t in (x, weight, bias) if t is not None]
    out = fn(x, weight, bias)
    return [out] + list(paddle.grad([out], inputs, [grad_out]))


@needs_extension
@pytest.mark.parametrize(
    'kernel,stride,padding,dilation,bias',
    [
        (3, 1, 1, 1, True),
        (3, 1, 1, 1, False),
        (3, 2, 1, 1, True),
        (3, 1, 2, 2, False),
        (1, 1, 0, 1, True),
        (1, 2, 0, 1, False),
        (7, 2, 3, 1, False),
        ((3, 5), (1, 2), (1, 2), (2, 1), True),
        (5, 3, 0, 1, True),
    ],
)
def test_matches_paddle_conv(kernel, stride, padding, dilation, bias):
    paddle.seed(0)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = paddle.randn([2, 5, 19, 17])
    weight = paddle.randn([6, 5, kh, kw])
    b = paddle.randn([6]) if bias else None
    for t in (x, weight, b):
        if t is not None:
            t.stop_gradient = False
    ours = lambda x, w, b: onednn_conv.conv2d(x, w, b, stride, padding, dilation)  # noqa: E731
    stock = lambda x, w, b: F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation)  # noqa: E731
    grad_out = paddle.randn(stock(x, weight, b).shape)
    for actual, expected in zip(_grads(ours, x, weight, b, grad_out), _grads(stock, x, weight, b, grad_out)):
        _close(actual.numpy(), expected.numpy())


@needs_extension
def test_input_without_gradient_and_frozen_bias():
    paddle.seed(1)
    x = paddle.randn([1, 3, 16, 16])  # stop_gradient, like the image into the stem
    weight = paddle.randn([4, 3, 3, 3])
    bias = paddle.randn([4])
    weight.stop_gradient = False
    out = onednn_conv.conv2d(x, weight, bias, 1, 1)
    out.sum().backward()
    assert x.grad is None and bias.grad is None
    _close(out.numpy(), F.conv2d(x, weight, bias, padding=1).numpy())
    _close(weight.grad.numpy(), paddle.grad([F.conv2d(x, weight, bias, padding=1).sum()], [weight])[0].numpy())


@needs_extension
def test_conv2d_layer_routes_by_switch_and_shape(monkeypatch):
    paddle.seed(2)
    layer = Conv2D(4, 6, 3, padding=1)
    big = paddle.randn([1, 4, 64, 64])
    small = paddle.randn([1, 4, 13, 11])
    monkeypatch.setenv(conv_module.ONEDNN_ENV, '1')
    assert layer.use_onednn(big) and not layer.use_onednn(small)
    assert not Conv2D(4, 6, 1).use_onednn(big)
    assert not Conv2D(4, 6, 3, padding=1, groups=2).use_onednn(big)
    layer.eval()  # evaluation keeps Paddle's convolution (the reference exported programs are checked against)
    assert not layer.use_onednn(big)
    layer.train()
    fast = layer(big)
    monkeypatch.setenv(conv_module.ONEDNN_ENV, '0')
    assert not layer.use_onednn(big)
    _close(fast.numpy(), layer(big).numpy())


@needs_extension
def test_conv2d_layer_gradients_through_onednn(monkeypatch):
    paddle.seed(3)
    layer = Conv2D(4, 6, 3, stride=1, padding=2, dilation=2)
    x = paddle.randn([2, 4, 64, 66])
    x.stop_gradient = False
    results = {}
    for switch in ('1', '0'):
        monkeypatch.setenv(conv_module.ONEDNN_ENV, switch)
        layer.clear_gradients()
        out = layer(x)
        (out * out).sum().backward()
        results[switch] = [
            out.numpy(),
            paddle.grad([(layer(x) ** 2).sum()], [x])[0].numpy(),
            layer.weight.grad.numpy(),
            layer.bias.grad.numpy(),
        ]
    for actual, expected in zip(results['1'], results['0']):
        _close(actual, expected)


def test_fallback_when_the_build_is_impossible(monkeypatch):
    monkeypatch.setattr(onednn_conv, '_state', {'tried': False, 'module': None, 'reason': None, 'quiet': False})
    monkeypatch.setattr(onednn_conv, 'find_headers', lambda version: None)
    monkeypatch.setenv(conv_module.ONEDNN_ENV, '1')
    layer = Conv2D(4, 6, 3, padding=1)
    x = paddle.randn([1, 4, 64, 64])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        out = layer(x)
        layer(x)
    messages = [str(w.message) for w in caught if 'oneDNN convolution unavailable' in str(w.message)]
    assert len(messages) == 1 and 'headers' in messages[0]
    assert not layer.use_onednn(x)
    np.testing.assert_array_equal(out.numpy(), paddle.nn.Conv2D.forward(layer, x).numpy())
    with pytest.raises(RuntimeError, match='unavailable'):
        onednn_conv.conv2d(x, layer.weight)


def test_fallback_when_the_compiler_is_missing(monkeypatch):
    monkeypatch.setattr(onednn_conv, '_state', {'tried': False, 'module': None, 'reason': None, 'quiet': False})
    monkeypatch.setenv('CXX', 'no-such-compiler-factseg')
    with pytest.warns(RuntimeWarning, match='no C\\+\\+ compiler'):
        assert onednn_conv.load_extension() is None
