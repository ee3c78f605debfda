"""simplecv.module.upsample: bilinear align_corners=True, exact in float64, Paddle's kernel otherwise."""

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from simplecv.module import upsample


def _numpy_bilinear(x, scale):
    """Float64 reference: output i reads source i * (n_in - 1) / (n_out - 1) (align_corners=True)."""

    def axis_matrix(n_in):
        n_out = int(np.floor(n_in * scale))
        matrix = np.zeros((n_out, n_in))
        for i in range(n_out):
            source = i * (n_in - 1) / (n_out - 1)
            low = min(int(source), n_in - 1)
            matrix[i, low] += 1 - (source - low)
            matrix[i, min(low + 1, n_in - 1)] += source - low
        return matrix

    return np.einsum('ph,nchw,qw->ncpq', axis_matrix(x.shape[2]), x, axis_matrix(x.shape[3]))


@pytest.mark.parametrize('shape, scale', [((2, 3, 5, 7), 2), ((1, 2, 9, 4), 4.0), ((1, 1, 1, 3), 2)])
def test_float64_is_exact(shape, scale):
    x = np.random.RandomState(0).standard_normal(shape)
    got = upsample.bilinear(paddle.to_tensor(x), scale)
    assert got.dtype == paddle.float64
    expected = _numpy_bilinear(x, scale)
    assert got.shape == list(expected.shape)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-14)


def test_float64_is_more_exact_than_paddles_kernel():
    """The reason for the module: Paddle's kernel uses single-precision weights even in float64."""
    x = np.random.RandomState(1).standard_normal((1, 2, 57, 57))
    expected = _numpy_bilinear(x, 4.0)
    kernel = F.interpolate(paddle.to_tensor(x), scale_factor=4.0, mode='bilinear', align_corners=True).numpy()
    ours = upsample.bilinear(paddle.to_tensor(x), 4.0).numpy()
    assert np.abs(kernel - expected).max() > 1e-8
    assert np.abs(ours - expected).max() < 1e-13


def test_float64_gradient_is_the_transposed_interpolation():
    x = np.random.RandomState(2).standard_normal((1, 2, 6, 5))
    weight = np.random.RandomState(3).standard_normal((1, 2, 12, 10))
    tensor = paddle.to_tensor(x, stop_gradient=False)
    (upsample.bilinear(tensor, 2) * paddle.to_tensor(weight)).sum().backward()
    # d/dx sum(w * A x B^T) = A^T w B, read off the reference by linearity (one basis input at a time).
    expected = np.zeros_like(x)
    for index in np.ndindex(*x.shape):
        basis = np.zeros_like(x)
        basis[index] = 1.0
        expected[index] = (_numpy_bilinear(basis, 2) * weight).sum()
    np.testing.assert_allclose(tensor.grad.numpy(), expected, rtol=0, atol=1e-13)


def test_float32_uses_paddles_kernel():
    x = paddle.to_tensor(np.random.RandomState(4).standard_normal((2, 3, 8, 8)).astype(np.float32))
    expected = F.interpolate(x, scale_factor=2, mode='bilinear', align_corners=True).numpy()
    np.testing.assert_array_equal(upsample.bilinear(x, 2).numpy(), expected)
    np.testing.assert_array_equal(upsample.UpsampleBilinear(2)(x).numpy(), expected)


def test_matches_torch_in_float64():
    torch = pytest.importorskip('torch')
    x = np.random.RandomState(5).standard_normal((2, 3, 14, 11))
    expected = torch.nn.UpsamplingBilinear2d(scale_factor=2)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(upsample.UpsampleBilinear(2)(paddle.to_tensor(x)).numpy(), expected, rtol=0, atol=1e-14)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(x), scale_factor=4.0, mode='bilinear', align_corners=True
    ).numpy()
    np.testing.assert_allclose(upsample.bilinear(paddle.to_tensor(x), 4.0).numpy(), expected, rtol=0, atol=1e-14)


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
def test_nearest_2x_is_bit_identical_to_paddle_kernel(dtype):
    paddle.seed(3)
    x = paddle.randn([2, 3, 5, 7]).astype(dtype)
    grad_out = paddle.randn([2, 3, 10, 14]).astype(dtype)
    results = []
    for fn in (upsample.nearest_2x, lambda t: F.interpolate(t, scale_factor=2, mode='nearest')):
        leaf = x.clone()
        leaf.stop_gradient = False
        out = fn(leaf)
        out.backward(grad_out)
        results.append((out.numpy(), leaf.grad.numpy()))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_array_equal(results[0][0][:, :, 1::2, ::2], x.numpy())


def test_nearest_2x_in_a_static_graph():
    x = paddle.randn([1, 2, 4, 3])
    static = paddle.jit.to_static(
        upsample.nearest_2x, full_graph=True, input_spec=[paddle.static.InputSpec([None, 2, None, None], 'float32')]
    )
    np.testing.assert_array_equal(static(x).numpy(), np.repeat(np.repeat(x.numpy(), 2, axis=2), 2, axis=3))
