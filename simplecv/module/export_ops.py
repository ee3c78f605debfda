"""Interpolation and ``logsumexp`` in two implementations, chosen per layer: native or export-friendly.

Layers that interpolate hold an ``interpolation`` attribute and layers that compute
``logsumexp`` hold a ``logsumexp`` attribute; their ``forward`` passes it to :func:`interpolate`
or :func:`logsumexp` here. Both default to ``'native'`` (Paddle's own kernels: what training,
evaluation and the float64 alignment use, bit for bit). An exporter that targets Paddle
Inference with oneDNN on CPU calls :func:`set_export_ops` on its copy of the model with
``interpolation='matmul', logsumexp='elementwise'``; nothing in Paddle is replaced.

Why the export needs other forms (Paddle 3.3.1, PIR executor):

1. ``bilinear_interp`` / ``nearest_interp`` cannot run as oneDNN ops: the oneDNN instruction
   cannot convert their ``scale`` attribute (``ArrayAttribute<DoubleAttribute>``) and raises
   ``NotImplementedError``, whether the op was built with ``scale_factor`` or ``size``, and
   ``Config.set_onednn_op`` does not keep them off oneDNN.
2. The exact matrix form of interpolation, ``A_h @ X @ A_w^T`` on 4-D ``X``, gives wrong
   numbers under oneDNN: the oneDNN convolution leaves its output in a channels-last
   (``acdb``) memory layout, and the oneDNN ``matmul`` that follows reads that memory as if it
   were plain NCHW (no reorder is inserted). Checked on ``conv -> matmul`` pairs: the wrong
   result equals ``A @ reinterpret_nchw(nhwc_memory)`` to 2e-6, and an element-wise op or a
   ``reshape`` before the matmul makes it right.

So :func:`matmul_interpolate` first *reshapes* ``X`` to 2-D (the reshape reorders to plain
layout) and then applies the interpolation matrices as 2-D / batched matmuls. Its weights
repeat the float32 arithmetic of Paddle's CPU kernels; it equals ``F.interpolate`` within a
few float32 ulps. :func:`elementwise_logsumexp` is ``paddle.logsumexp`` as oneDNN element-wise
ops (Paddle's plain CPU loop cost 0.3 s per ``16 x 896 x 896`` call in the exported FactSeg).
"""

import numpy as np
import paddle
import paddle.nn.functional as F

INTERPOLATIONS = ('native', 'matmul')
LOGSUMEXPS = ('native', 'elementwise')


def _interp_weights(n_in, n_out, mode, align_corners, align_mode):
    """``(n_out, n_in)`` float32 matrix of Paddle's CPU interpolation along one axis."""
    one = np.float32(1.0)
    k = np.arange(n_out, dtype=np.float32)
    weights = np.zeros((n_out, n_in), dtype=np.float32)
    rows = np.arange(n_out)
    if mode == 'nearest':
        if align_corners:
            ratio = np.float32(n_in - 1) / np.float32(n_out - 1) if n_out > 1 else np.float32(0)
            src = np.floor(ratio * k + np.float32(0.5)).astype(np.int64)
        else:
            ratio = np.float32(n_in) / np.float32(n_out)
            src = np.floor(ratio * k).astype(np.int64)
        weights[rows, np.minimum(src, n_in - 1)] = 1
        return weights
    if n_out > 1 and align_corners:
        ratio = np.float32(n_in - 1) / np.float32(n_out - 1)
    elif n_out > 1:
        ratio = np.float32(n_in) / np.float32(n_out)
    else:
        ratio = np.float32(0)
    if align_corners or align_mode == 1:
        src = ratio * k
    else:
        src = np.maximum(ratio * (k + np.float32(0.5)) - np.float32(0.5), np.float32(0))
    low = np.minimum(src.astype(np.int64), n_in - 1)
    high = np.minimum(low + 1, n_in - 1)
    frac = (src - low.astype(np.float32)).astype(np.float32)
    np.add.at(weights, (rows, low), one - frac)
    np.add.at(weights, (rows, high), frac)
    return weights


def _static_hw(x):
    shape = list(x.shape)
    if len(shape) != 4 or any(not isinstance(v, int) or v <= 0 for v in shape):
        raise NotImplementedError('matmul_interpolate needs a 4-D input of known shape, got %s' % (shape,))
    return shape


def _interp_matrix(n_in, n_out, mode, align_corners, align_mode):
    """The ``(n_out, n_in)`` matrix of :func:`_interp_weights` built in the graph from two columns.

    Each row has at most two non-zeros, so the program stores their positions and weights
    (``2 * n_out`` numbers) and rebuilds the matrix with ``one_hot``; a dense constant would put
    ``n_out * n_in`` float64 numbers into the program file (31 MB for FactSeg-R50 at 896, most
    of the 7 s it took Paddle Inference to load it). ``one_hot(low) * (1 - f) + one_hot(high) * f``
    is bit-identical to :func:`_interp_weights` (products with 0 and 1 are exact, and where
    ``low == high`` the sum ``(1 - f) + f`` is the one ``np.add.at`` makes).
    """
    dense = _interp_weights(n_in, n_out, mode, align_corners, align_mode)
    rows = np.arange(n_out)
    low = dense.argmax(axis=1)
    first = dense[rows, low].copy()
    rest = dense.copy()
    rest[rows, low] = 0
    high = np.where(rest.any(axis=1), rest.argmax(axis=1), low)
    second = rest[rows, high]
    matrix = F.one_hot(paddle.to_tensor(low), n_in) * paddle.to_tensor(first).unsqueeze(1) + F.one_hot(
        paddle.to_tensor(high), n_in
    ) * paddle.to_tensor(second).unsqueeze(1)
    return matrix


@paddle.jit.not_to_static
def matmul_interpolate(
    x, size=None, scale_factor=None, mode='nearest', align_corners=False, align_mode=0, data_format='NCHW'
):
    """``F.interpolate`` for 4-D NCHW ``nearest``/``bilinear`` as two matmuls (oneDNN export).

    Not converted by ``paddle.jit.to_static``: it has no tensor-dependent control flow (the
    shapes are static), so it runs as Python and adds its ops to the program being traced.

    Args:
        x: ``(N, C, H, W)`` tensor of static shape.
        size, scale_factor, mode, align_corners, align_mode, data_format: as
            :func:`paddle.nn.functional.interpolate`.

    Returns:
        Tensor: ``(N, C, H_out, W_out)``.

    Raises:
        NotImplementedError: another mode or layout, or a dynamic shape.
    """
    if data_format != 'NCHW' or mode not in ('nearest', 'bilinear'):
        raise NotImplementedError('matmul_interpolate supports NCHW nearest/bilinear, got %s %s' % (data_format, mode))
    n, c, h, w = _static_hw(x)
    if size is not None:
        out_h, out_w = (int(v) for v in size)
    else:
        scale = scale_factor if isinstance(scale_factor, (list, tuple)) else (scale_factor, scale_factor)
        out_h, out_w = int(h * float(scale[0])), int(w * float(scale[1]))
    weights_h = _interp_matrix(h, out_h, mode, align_corners, align_mode)
    weights_w_t = _interp_matrix(w, out_w, mode, align_corners, align_mode).t()
    # The reshape comes first on purpose: it turns a oneDNN (channels-last) tensor into a plain
    # one, which oneDNN's matmul needs (see the module docstring).
    rows = paddle.matmul(x.reshape([n * c * h, w]), weights_w_t)
    rows = rows.reshape([n * c, h, out_w])
    cols = paddle.matmul(weights_h.unsqueeze(0).expand([n * c, out_h, h]), rows)
    return cols.reshape([n, c, out_h, out_w])


@paddle.jit.not_to_static
def elementwise_logsumexp(x, axis=None, keepdim=False):
    """``paddle.logsumexp`` as ``m + log(sum(exp(x - m)))`` with ``m = max(x)`` (oneDNN element-wise ops).

    The same formula as Paddle's CPU kernel. Not converted by ``paddle.jit.to_static`` (no
    control flow on tensors).

    Args:
        x: a float tensor.
        axis: the reduced axis (int) or None for all.
        keepdim: keep the reduced axis with size 1.

    Returns:
        Tensor: ``x``'s shape without ``axis`` (with it as 1 when ``keepdim``).
    """
    top = paddle.max(x, axis=axis, keepdim=True)
    out = top + paddle.log(paddle.sum(paddle.exp(x - top), axis=axis, keepdim=True))
    return out if keepdim else out.squeeze(axis)


def interpolate(x, interpolation='native', **kwargs):
    """Interpolate ``x`` with the chosen implementation.

    Args:
        x: ``(N, C, H, W)`` tensor.
        interpolation: ``'native'`` for :func:`paddle.nn.functional.interpolate`, ``'matmul'``
            for :func:`matmul_interpolate` (static shapes, nearest/bilinear only).
        **kwargs: ``size``, ``scale_factor``, ``mode``, ``align_corners``, ``align_mode`` as
            :func:`paddle.nn.functional.interpolate`.

    Returns:
        Tensor: ``(N, C, H_out, W_out)``.

    Raises:
        ValueError: an unknown ``interpolation``.
    """
    if interpolation == 'native':
        return F.interpolate(x, **kwargs)
    if interpolation == 'matmul':
        return matmul_interpolate(x, **kwargs)
    raise ValueError('interpolation must be one of %s, got %r' % (INTERPOLATIONS, interpolation))


def logsumexp(x, axis=None, keepdim=False, implementation='native'):
    """``log(sum(exp(x), axis))`` with the chosen implementation.

    Args:
        x: a float tensor.
        axis: the reduced axis (int) or None for all.
        keepdim: keep the reduced axis with size 1.
        implementation: ``'native'`` for :func:`paddle.logsumexp`, ``'elementwise'`` for
            :func:`elementwise_logsumexp`.

    Returns:
        Tensor: ``x``'s shape without ``axis`` (with it as 1 when ``keepdim``).

    Raises:
        ValueError: an unknown ``implementation``.
    """
    if implementation == 'native':
        return paddle.logsumexp(x, axis=axis, keepdim=keepdim)
    if implementation == 'elementwise':
        return elementwise_logsumexp(x, axis=axis, keepdim=keepdim)
    raise ValueError('logsumexp must be one of %s, got %r' % (LOGSUMEXPS, implementation))


def set_export_ops(model, interpolation='native', logsumexp='native'):
    """Set the ``interpolation`` / ``logsumexp`` attribute of every layer of ``model`` that has one.

    Args:
        model: a ``paddle.nn.Layer``; it is changed in place (exporters call this on a copy).
        interpolation: one of :data:`INTERPOLATIONS`.
        logsumexp: one of :data:`LOGSUMEXPS`.

    Returns:
        int: the number of layers changed.

    Raises:
        ValueError: an unknown value.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError('interpolation must be one of %s, got %r' % (INTERPOLATIONS, interpolation))
    if logsumexp not in LOGSUMEXPS:
        raise ValueError('logsumexp must be one of %s, got %r' % (LOGSUMEXPS, logsumexp))
    changed = 0
    for layer in [model] + model.sublayers():
        found = False
        for name, value in (('interpolation', interpolation), ('logsumexp', logsumexp)):
            if isinstance(getattr(layer, name, None), str):
                setattr(layer, name, value)
                found = True
        changed += found
    return changed
