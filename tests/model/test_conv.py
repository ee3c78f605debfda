"""simplecv.module.conv.Conv2D computes exactly what paddle.nn.Conv2D computes, faster."""

import numpy as np
import paddle
import pytest

from simplecv.module.conv import Conv2D, add_channel_bias


def _twins(kernel_size, stride, padding, dilation, groups, bias):
    paddle.seed(0)
    fast = Conv2D(
        8,
        12,
        kernel_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias_attr=None if bias else False,
    )
    stock = paddle.nn.Conv2D(
        8,
        12,
        kernel_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias_attr=None if bias else False,
    )
    if bias:
        fast.bias.set_value(paddle.randn([12]))
    stock.set_state_dict(fast.state_dict())
    return fast, stock


def _run(layer, x, grad_out):
    x = x.clone()
    x.stop_gradient = False
    out = layer(x)
    out.backward(grad_out)
    grads = {name: p.grad.numpy() for name, p in layer.named_parameters()}
    return out.numpy(), x.grad.numpy(), grads


@pytest.mark.parametrize(
    'kernel_size,stride,padding,dilation,groups,bias',
    [
        (1, 1, 0, 1, 1, True),
        (3, 1, 1, 1, 1, True),
        (3, 2, 1, 1, 1, True),
        (3, 1, 2, 2, 2, True),
        (3, 1, 1, 1, 1, False),
    ],
)
def test_bit_identical_to_paddle_conv(kernel_size, stride, padding, dilation, groups, bias):
    fast, stock = _twins(kernel_size, stride, padding, dilation, groups, bias)
    assert list(fast.state_dict()) == list(stock.state_dict())
    x = paddle.randn([3, 8, 13, 11])
    grad_out = paddle.randn(stock(x).shape)
    out_fast, dx_fast, grads_fast = _run(fast, x, grad_out)
    out_stock, dx_stock, grads_stock = _run(stock, x, grad_out)
    np.testing.assert_array_equal(out_fast, out_stock)
    np.testing.assert_array_equal(dx_fast, dx_stock)
    assert sorted(grads_fast) == sorted(grads_stock)
    for name in grads_stock:
        np.testing.assert_array_equal(grads_fast[name], grads_stock[name])


def test_add_channel_bias_matches_broadcast():
    x = paddle.randn([2, 5, 4, 6])
    bias = paddle.randn([5])
    np.testing.assert_array_equal(add_channel_bias(x, bias).numpy(), (x.numpy() + bias.numpy()[None, :, None, None]))


def test_static_graph_gives_the_same_output():
    fast, stock = _twins(3, 1, 1, 1, 1, True)
    fast.eval()
    x = paddle.randn([2, 8, 16, 16])
    static = paddle.jit.to_static(
        fast, input_spec=[paddle.static.InputSpec([None, 8, None, None], 'float32')], full_graph=True
    )
    np.testing.assert_allclose(static(x).numpy(), stock(x).numpy(), rtol=1e-6, atol=1e-6)
