"""Bilinear upsampling with ``align_corners=True``, exact in float64.

torch's ``nn.UpsamplingBilinear2d`` and ``F.interpolate(..., mode='bilinear', align_corners=True)``
map output index ``i`` to source coordinate ``i * (n_in - 1) / (n_out - 1)``. Paddle's
``F.interpolate`` does the same, but its CPU and GPU kernels compute that ratio and the
interpolation weights in single precision whatever the tensor's dtype. In float32 this is
invisible; in float64 it leaves differences of ~3e-6 in the outputs, and the parameter
gradients of a FactSeg model behind three cascaded upsamplings then differ from torch's float64
ones by up to 1.7e-4 relative (measured on the official ResNet-50 at 256x256) instead of 1.5e-10,
which hides any real difference a float64 alignment check is meant to find.

So float64 tensors are interpolated here in float64 (two gathers and linear blends, the same
arithmetic as torch's kernel); every other dtype goes to Paddle's kernel through
``paddle.nn.functional.interpolate`` (looked up at call time, so
:func:`simplecv.inference.fast_path.onednn_safe_interpolate` still replaces it when exporting).
"""
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F


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


def bilinear(x, scale_factor):
    """Upsample ``[N, C, H, W]`` to ``[N, C, floor(H * s), floor(W * s)]``, bilinear, align_corners=True.

    Args:
        x: a 4-D NCHW tensor.
        scale_factor: ``s``, a number (the same on both axes).

    Returns:
        The upsampled tensor, same dtype. Float64 inputs are interpolated in float64 (see the
        module docstring); others by ``paddle.nn.functional.interpolate``.
    """
    if x.dtype != paddle.float64:
        return F.interpolate(x, scale_factor=scale_factor, mode='bilinear', align_corners=True)
    height, width = x.shape[2:]
    out = _blend_axis(x, 2, int(np.floor(height * scale_factor)))
    return _blend_axis(out, 3, int(np.floor(width * scale_factor)))


class UpsampleBilinear(nn.Layer):
    """Layer form of :func:`bilinear` (torch's ``nn.UpsamplingBilinear2d(scale_factor=s)``).

    Shape: ``[N, C, H, W] -> [N, C, floor(H * s), floor(W * s)]``.
    """

    def __init__(self, scale_factor):
        super().__init__()
        self.scale_factor = scale_factor

    def forward(self, x):
        return bilinear(x, self.scale_factor)

    def extra_repr(self):
        return 'scale_factor=%s, align_corners=True' % (self.scale_factor,)
