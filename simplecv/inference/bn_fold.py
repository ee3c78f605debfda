"""Fold eval-mode BatchNorm layers into the convolutions that feed them (for export).

Paddle 3.3 traces ``BatchNorm2D`` into the in-place ``batch_norm_`` op, which the oneDNN
``conv2d_bn_onednn_fuse_pass`` does not match: in the exported FactSeg-R50 program all 67 of
them ran as separate oneDNN ops over full feature maps. Folding them before export does what
that pass would do:

``bn(conv(x, w) + b) = conv(x, w * s) + (b - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``

The pairs are found by running the model once on a small input and recording which
convolution's output tensor each BatchNorm receives; a pair is folded only if the folded copy
still gives the same output on that input (within float32 rounding), so an unusual layer
graph is left as it is rather than changed.
"""

import copy

import numpy as np
import paddle
import paddle.nn as nn

_CONVS = (nn.Conv2D,)
_NORMS = (nn.BatchNorm2D, nn.BatchNorm)


def _conv_bn_pairs(model, probe):
    """``[(conv_name, bn_name)]`` where the BatchNorm's input is the convolution's output."""
    produced = {}
    pairs = []
    hooks = []
    for name, layer in model.named_sublayers():
        if isinstance(layer, _CONVS):
            hooks.append(
                layer.register_forward_post_hook(
                    lambda layer, inputs, output, name=name: produced.__setitem__(id(output), name)
                )
            )
        elif isinstance(layer, _NORMS):
            hooks.append(
                layer.register_forward_pre_hook(
                    lambda layer, inputs, name=name: pairs.append((produced.get(id(inputs[0])), name))
                )
            )
    try:
        with paddle.no_grad():
            model(probe)
    finally:
        for hook in hooks:
            hook.remove()
    return [(conv, bn) for conv, bn in pairs if conv is not None]


def _parent(model, dotted):
    parent, _, child = dotted.rpartition('.')
    return (model if not parent else dict(model.named_sublayers())[parent]), child


def fold_batch_norms(model, probe_size=64, rtol=1e-4):
    """Return an eval-mode copy of ``model`` with every conv -> BatchNorm pair folded.

    Args:
        model: an eval-mode ``paddle.nn.Layer`` taking ``(N, 3, H, W)`` float32.
        probe_size: side of the random probe input used to find the pairs and check the copy.
        rtol: largest accepted difference of the copy's output, relative to the output's range.

    Returns:
        tuple: ``(folded model, number of folded pairs)``; the original model is unchanged.
        When the check fails, ``(model, 0)``.
    """
    probe = paddle.to_tensor(np.random.RandomState(0).randn(1, 3, probe_size, probe_size).astype(np.float32))
    pairs = _conv_bn_pairs(model, probe)
    if not pairs:
        return model, 0
    folded = copy.deepcopy(model)
    folded.eval()
    layers = dict(folded.named_sublayers())
    for conv_name, bn_name in pairs:
        conv, bn = layers[conv_name], layers[bn_name]
        stats = {key: value.numpy() for key, value in bn.state_dict().items()}
        # Paddle keeps epsilon only as ``_epsilon`` (no public accessor).
        scale = stats['weight'] / np.sqrt(stats['_variance'] + np.float32(bn._epsilon))
        weight = conv.weight.numpy() * scale.reshape(-1, 1, 1, 1)
        bias = conv.bias.numpy() if conv.bias is not None else np.zeros_like(scale)
        bias = (bias - stats['_mean']) * scale + stats['bias']
        conv.weight.set_value(weight.astype(np.float32))
        if conv.bias is None:
            conv.bias = conv.create_parameter([weight.shape[0]], is_bias=True)
        conv.bias.set_value(bias.astype(np.float32))
        parent, child = _parent(folded, bn_name)
        setattr(parent, child, nn.Identity())
    with paddle.no_grad():
        expected = model(probe).numpy()
        got = folded(probe).numpy()
    span = float(np.abs(expected).max()) or 1.0
    if not float(np.abs(got - expected).max()) <= rtol * span:
        return model, 0
    return folded, len(pairs)
