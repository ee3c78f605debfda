"""Bilinear upsampling with ``align_corners=True``, exact in float64; fast nearest x2 for training.

torch's ``nn.UpsamplingBilinear2d`` and ``F.interpolate(..., mode='bilinear', align_corners=True)``
map output index ``i`` to source coordinate ``i * (n_in - 1) / (n_out - 1)``. Paddle's
``F.interpolate`` does the same, but its CPU and GPU kernels compute that ratio and the
interpolation weights in single precision whatever the tensor's dtype. In float32 this is
invisible; in float64 it leaves differences of ~3e-6 in the outputs, and the parameter
gradients of a FactSeg model behind three cascaded upsamplings then differ from torch's float64
ones by up to 1.7e-4 relative (measured on the official ResNet-50 at 256x256) instead of 1.5e-10,
which hides any real difference a float64 alignment check is meant to find.

So float64 tensors are interpolated here in float64 (two gathers and linear blends, the same
arithmetic as torch's kernel); every other dtype goes to Paddle's kernel, or, when the caller
passes ``interpolation='matmul'`` (set on the layers by
:func:`simplecv.module.export_ops.set_export_ops` for a oneDNN export), to
:func:`simplecv.module.export_ops.matmul_interpolate`.
"""

import numpy as np
import paddle
import paddle.nn as nn
from paddle.autograd import PyLayer

from simplecv.module import export_ops


def _source_positions(n_in, n_out):
    """``(low, high, fraction)`` along one axis: output ``i`` = ``(1 - f) * x[low] + f * x[high]``."""
    ratio = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    source = np.arange(n_out, dtype=np.float64) * ratio
    low = np.minimum(np.floor(source).astype(np.int64), n_in - 1)
    high = np.minimum(low + 1, n_in - 1)
    return low, high, source - low


def _blend_axis(x, axis, n_out):
    low, high, fraction = _source_positions(x.shape[axis], n_out)
    shape = [1] * len(x.shape)
    shape[axis] = n_out
    weight = paddle.to_tensor(fraction.reshape(shape), dtype=x.dtype)
    below = paddle.index_select(x, paddle.to_tensor(low), axis=axis)
    above = paddle.index_select(x, paddle.to_tensor(high), axis=axis)
    return below * (1.0 - weight) + above * weight


def bilinear(x, scale_factor, interpolation='native'):
    """Upsample ``[N, C, H, W]`` to ``[N, C, floor(H * s), floor(W * s)]``, bilinear, align_corners=True.

    Args:
        x: a 4-D NCHW tensor.
        scale_factor: ``s``, a number (the same on both axes).
        interpolation: ``'native'`` (Paddle's kernel) or ``'matmul'`` (the oneDNN-exportable
            form, :func:`simplecv.module.export_ops.matmul_interpolate`); float64 ignores it.

    Returns:
        The upsampled tensor, same dtype. Float64 inputs are interpolated in float64 (see the
        module docstring).
    """
    if x.dtype != paddle.float64:
        return export_ops.interpolate(x, interpolation, scale_factor=scale_factor, mode='bilinear', align_corners=True)
    height, width = x.shape[2:]
    out = _blend_axis(x, 2, int(np.floor(height * scale_factor)))
    return _blend_axis(out, 3, int(np.floor(width * scale_factor)))


class UpsampleBilinear(nn.Layer):
    """Layer form of :func:`bilinear` (torch's ``nn.UpsamplingBilinear2d(scale_factor=s)``).

    Args:
        scale_factor: ``s``, a number.
        interpolation: ``'native'`` or ``'matmul'``, as :func:`bilinear`; an exporter changes it
            with :func:`simplecv.module.export_ops.set_export_ops`.

    Shape: ``[N, C, H, W] -> [N, C, floor(H * s), floor(W * s)]``.
    """

    def __init__(self, scale_factor, interpolation='native'):
        super().__init__()
        self.scale_factor = scale_factor
        self.interpolation = interpolation

    def forward(self, x):
        """``[N, C, H, W] -> [N, C, floor(H * s), floor(W * s)]`` (:func:`bilinear`)."""
        return bilinear(x, self.scale_factor, self.interpolation)

    def extra_repr(self):
        """The line shown in the layer's ``repr``: the scale factor and corner alignment."""
        return 'scale_factor=%s, align_corners=True' % (self.scale_factor,)


class _Nearest2x(PyLayer):
    """Nearest x2 as a tile; the gradient adds each 2x2 block in the order of Paddle's kernel."""

    @staticmethod
    def forward(ctx, x):
        """``[N, C, H, W] -> [N, C, 2H, 2W]``, each pixel repeated in a 2x2 block."""
        n, c, h, w = x.shape
        return paddle.tile(x.reshape([n, c, h, 1, w, 1]), [1, 1, 1, 2, 1, 2]).reshape([n, c, 2 * h, 2 * w])

    @staticmethod
    def backward(ctx, grad):
        """``[N, C, 2H, 2W] -> [N, C, H, W]``: each 2x2 block summed in the order of Paddle's kernel."""
        n, c, h2, w2 = grad.shape
        columns = paddle.unbind(grad.reshape([n, c, h2 // 2, 2, w2 // 2, 2]), axis=5)
        (top_left, bottom_left), (top_right, bottom_right) = (paddle.unbind(v, axis=3) for v in columns)
        # Paddle's nearest_interp_grad visits output pixels row by row: ((tl + tr) + bl) + br.
        return ((top_left + top_right) + bottom_left) + bottom_right


def nearest_2x(x, interpolation='native'):
    """Upsample ``[N, C, H, W]`` to ``[N, C, 2H, 2W]`` by repeating pixels (``F.interpolate(x, scale_factor=2)``).

    In dygraph the repeat is a tile with a hand-written gradient: the same values and
    bit-identical gradients as Paddle's ``nearest_interp`` kernel, whose CPU forward and backward
    are about twice as slow (2x256x64x64 on 2 CPU cores). Static graphs (export) use the kernel,
    or its matmul form with ``interpolation='matmul'``.

    Args:
        x: a 4-D NCHW tensor.
        interpolation: ``'native'`` or ``'matmul'`` (see :func:`bilinear`).

    Returns:
        The ``[N, C, 2H, 2W]`` tensor.
    """
    if interpolation == 'native' and paddle.in_dynamic_mode():
        return _Nearest2x.apply(x)
    return export_ops.interpolate(x, interpolation, scale_factor=2, mode='nearest')
