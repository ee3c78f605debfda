"""FactSeg's losses: the joint-probability loss with SOM or OHEM sampling, and the official alternatives.

Notation (shapes): ``fg_logits`` s ``[N, C, H, W]`` (class logits of the foreground-activation
branch), ``bi_logits`` b ``[N, 1, H, W]`` (binary foreground logit), ``target`` y ``[N, H, W]``
int64 with values ``0..C-1`` and ``ignore_index``.

Joint probability (paper Eq. 6–8; official ``JointLoss``): with q = σ(b) and c = softmax(s),
``p_0 ∝ (1 - q)·c_0`` and ``p_k ∝ q·c_k`` for k ≥ 1, normalised over k.
"""

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from simplecv.core.errors import ConfigError
from simplecv.module import export_ops


def _as_float32(x):
    # The loss chain runs in fp32 under AMP, as in apex O1 (interpolate outputs are fp32).
    return x.astype('float32') if x.dtype in (paddle.float16, paddle.bfloat16) else x


def log_softmax(logits, axis=1, logsumexp='native'):
    """``logits - logsumexp(logits)``: torch's ``log_softmax``, exact in the tails.

    Paddle's CPU ``softmax``/``log_softmax`` kernels clip ``x - max`` at -64 (a logit gap of 800
    gives -64 instead of -800), which changes the loss of confidently wrong pixels and the fused
    probabilities wherever both branches are tiny; ``logsumexp`` has no such clip.

    The normaliser is expanded to the full shape before the subtraction: the same numbers, but
    Paddle's CPU kernels for a same-shape subtraction and its gradient are about twice as fast
    as for a broadcast along the class axis.

    Args:
        logits: ``[N, C, H, W]`` (any shape with ``axis``).
        axis: the class axis.
        logsumexp: ``'native'`` or ``'elementwise'`` (:func:`simplecv.module.export_ops.logsumexp`;
            the latter for a oneDNN export).

    Returns:
        Tensor: log-probabilities, the shape of ``logits``.
    """
    normaliser = export_ops.logsumexp(logits, axis=axis, keepdim=True, implementation=logsumexp)
    return logits - normaliser.expand_as(logits)


def joint_probability(fg_logits, bi_logits, logsumexp='native'):
    """Fused class probabilities ``[N, C, H, W]`` that sum to 1 over axis 1.

    Equal to the official ``joint / Z`` (computed as ``exp`` of :func:`joint_log_probability`,
    which avoids Paddle's softmax clipping and fp32 underflow).

    Args:
        fg_logits: ``[N, C, H, W]`` class logits.
        bi_logits: ``[N, 1, H, W]`` foreground logit.
        logsumexp: ``'native'`` or ``'elementwise'`` (see :func:`log_softmax`).

    Returns:
        Tensor: ``[N, C, H, W]`` probabilities.

    Differences from the official code: the normaliser keeps its class axis (``keepdim``), so
    the result is right for any batch size; the official ``Z`` broadcasts correctly only for N=1.
    """
    return paddle.exp(joint_log_probability(fg_logits, bi_logits, logsumexp))


def joint_log_probability(fg_logits, bi_logits, logsumexp='native'):
    """``log p`` of :func:`joint_probability`, computed in log space, ``[N, C, H, W]``.

    Mathematically equal to the official ``log(joint / Z)``; it stays finite where the official
    fp32 form takes ``log(0)`` (σ(b) rounds to 1 for b ≳ 16.7, softmax underflows), which there
    gives an infinite loss or NaN gradients.

    Args:
        fg_logits: ``[N, C, H, W]`` class logits.
        bi_logits: ``[N, 1, H, W]`` foreground logit.
        logsumexp: ``'native'`` or ``'elementwise'`` (see :func:`log_softmax`).

    Returns:
        Tensor: ``[N, C, H, W]`` log-probabilities.
    """
    log_class = log_softmax(fg_logits, axis=1, logsumexp=logsumexp)
    # [log σ(-b), log σ(b), ..., log σ(b)] + log c: one same-shape add instead of two broadcast
    # adds on slices of log c (identical numbers and gradients; 1.8 s -> 1.0 s for forward and
    # backward of the loss on 2x16x512x512 on 2 CPU cores).
    log_foreground = F.log_sigmoid(bi_logits)
    offsets = paddle.concat(
        [F.log_sigmoid(-bi_logits), log_foreground.expand([-1, fg_logits.shape[1] - 1, -1, -1])], axis=1
    )
    log_joint = offsets + log_class
    normaliser = export_ops.logsumexp(log_joint, axis=1, keepdim=True, implementation=logsumexp)
    return log_joint - normaliser.expand_as(log_joint)


def pixel_nll(log_prob, target, ignore_index=255):
    """Per-pixel negative log-likelihood ``[N, H, W]``; exactly 0 (and no gradient) at ignored pixels.

    Args:
        log_prob: ``[N, C, H, W]`` log-probabilities.
        target: ``[N, H, W]`` integer labels.
        ignore_index: label value to ignore.
    """
    target = target.astype('int64')
    valid = target != ignore_index
    safe_target = paddle.where(valid, target, paddle.zeros_like(target))
    picked = paddle.take_along_axis(log_prob, safe_target.unsqueeze(1), axis=1).squeeze(1)
    return paddle.where(valid, -picked, paddle.zeros_like(picked))


def som(losses, ratio, groups=1):
    """Small-object mining: mean of the non-zero losses among the top ``ratio`` fraction.

    For each of ``groups`` consecutive chunks of the batch: ``K = int(ratio · numel)`` (ignored
    pixels count in ``numel``), take the K largest losses, and average those that are non-zero
    (``Σ top / (count(top ≠ 0) + 1e-6)``); the chunks' values are averaged. ``groups=2`` on a
    batch of 8 reproduces the official 2 GPUs × 4 images, where each GPU mines its own batch.
    A batch that does not split evenly (the last, partial batch of an epoch) is split as a
    distributed sampler would: the first chunks get one image more; with fewer images than
    groups, each image is its own chunk.

    Args:
        losses: ``[N, ...]`` non-negative per-pixel losses.
        ratio: fraction of pixels kept.
        groups: number of batch chunks mined separately.

    Returns:
        A scalar tensor.

    Ties at the K-th value may be broken differently than in torch; the value is the same, only
    which tied pixels receive gradient differs.
    """
    batch = losses.shape[0]
    groups = max(1, min(int(groups), batch))
    sizes = [batch // groups + (1 if index < batch % groups else 0) for index in range(groups)]
    chunks = paddle.split(losses, sizes, axis=0) if groups > 1 else [losses]
    values = [_som_single(chunk.reshape([-1]), ratio) for chunk in chunks]
    return values[0] if groups == 1 else paddle.stack(values).mean()


def _som_single(flat_losses, ratio):
    num_keep = int(ratio * flat_losses.shape[0])
    if num_keep < 1:
        raise ConfigError(
            'SOM keeps int(%g × %d) = 0 pixels; raise the ratio or the patch size' % (ratio, flat_losses.shape[0])
        )
    top, _ = paddle.topk(flat_losses, num_keep)
    nonzero = (top != 0).astype(top.dtype).sum()
    return top.sum() / (nonzero + 1e-6)


def ohem_weight(true_prob, valid, thresh, min_kept):
    """OHEM pixel weights ``[N, H, W]`` (1 for hard pixels, 0 otherwise), no gradient.

    A valid pixel is hard when its true-class probability is below
    ``max(thresh, sorted_prob[min(min_kept · N, n_valid - 1)])`` (the official
    ``ohem_cross_entropy`` rule).

    Args:
        true_prob: ``[N, H, W]`` probability of each pixel's true class.
        valid: ``[N, H, W]`` bool mask of non-ignored pixels.
        thresh: probability threshold.
        min_kept: pixels kept at least, per image.
    """
    with paddle.no_grad():
        valid_prob = paddle.masked_select(true_prob, valid)
        threshold = float(thresh)
        if valid_prob.shape[0] > 0:
            sorted_prob = paddle.sort(valid_prob)
            kth = min(int(min_kept) * true_prob.shape[0], valid_prob.shape[0] - 1)
            threshold = max(float(sorted_prob[kth]), threshold)
        hard = paddle.logical_and(valid, true_prob < threshold)
        return hard.astype(true_prob.dtype)


def ohem_cross_entropy(logits, target, ignore_index=255, thresh=0.7, min_kept=100000):
    """Official ``ohem_cross_entropy``: CE weighted by :func:`ohem_weight`, divided by the weight sum.

    Args:
        logits: ``[N, C, H, W]``; target: ``[N, H, W]``.

    Returns:
        A scalar tensor (NaN when no pixel is hard, as in the official code).
    """
    target = target.astype('int64')
    log_prob = log_softmax(logits, axis=1)
    losses = pixel_nll(log_prob, target, ignore_index)
    valid = target != ignore_index
    weight = ohem_weight(paddle.exp(-losses), valid, thresh, min_kept)
    return (losses * weight).sum() / weight.sum()


class JointLoss(nn.Layer):
    """Joint-probability NLL with small-object mining (``sample='SOM'``) or OHEM.

    Args:
        ignore_index: label ignored (loss 0, no gradient; still counted in SOM's pixel total).
        sample: ``'SOM'`` or ``'OHEM'``.
        ratio: SOM's kept fraction; for OHEM the probability threshold, as the official call
            ``ohem_weight(p, y, thresh=self.ratio)`` passes it.
        som_groups: SOM computed on this many equal batch chunks and averaged (see :func:`som`).
        ohem_min_kept: OHEM's minimum of hard pixels per image.

    Shape:
        ``forward(fg_logits [N,C,H,W], bi_logits [N,1,H,W], target [N,H,W]) -> scalar``.

    Differences from the official code: ``sample='OHEM'`` works (the official calls an undefined
    ``ohem_weight`` and raises NameError); log-probabilities are computed in log space
    (:func:`joint_log_probability`), finite where the official gives inf/NaN, equal elsewhere.
    """

    def __init__(self, ignore_index=255, sample='SOM', ratio=0.1, som_groups=1, ohem_min_kept=100000):
        super().__init__()
        if sample not in ('SOM', 'OHEM'):
            raise ConfigError("joint_loss.sample must be 'SOM' or 'OHEM', got %r" % (sample,))
        self.ignore_index = ignore_index
        self.sample = sample
        self.ratio = ratio
        self.som_groups = som_groups
        self.ohem_min_kept = ohem_min_kept

    def forward(self, fg_logits, bi_logits, target):
        """The sampled joint-probability NLL of a batch.

        Args:
            fg_logits: ``[N, C, H, W]`` class logits (fp16/bf16 are cast to fp32).
            bi_logits: ``[N, 1, H, W]`` foreground logit.
            target: ``[N, H, W]`` integer labels.

        Returns:
            Tensor: a scalar: :func:`som` of the per-pixel NLL, or with OHEM the NLL weighted by
            :func:`ohem_weight` over the weight sum (NaN when no pixel is hard, as officially).

        Raises:
            ConfigError: SOM keeps no pixel (``int(ratio · pixels) = 0``).
        """
        log_prob = joint_log_probability(_as_float32(fg_logits), _as_float32(bi_logits))
        losses = pixel_nll(log_prob, target, self.ignore_index)
        if self.sample == 'SOM':
            return som(losses, self.ratio, self.som_groups)
        valid = target.astype('int64') != self.ignore_index
        weight = ohem_weight(paddle.exp(-losses), valid, self.ratio, self.ohem_min_kept)
        return (losses * weight).sum() / weight.sum()


def separate_losses(fg_logits, bi_logits, target, loss_config, ignore_index=255):
    """The official non-joint path (``FactSeg.cls_loss``): BCE on the binary branch + a class loss.

    Args:
        fg_logits: ``[N, C, H, W]``; bi_logits: ``[N, 1, H, W]``; target: ``[N, H, W]``.
        loss_config: the model's ``loss`` section: ``ohem`` present → OHEM CE (``ohem_loss``);
            ``som`` (a ratio) present → CE with SOM (``som_cls_loss``); otherwise plain CE
            (``cls_loss``, the mean over all pixels, ignored ones counting as 0, as the official
            trainer averages the unreduced map).

    Returns:
        dict: the class loss and ``bce_loss`` (BCE-with-logits of foreground vs. background,
        mean over non-ignored pixels).

    Differences from the official code: SOM adds 1e-6 to its denominator (the official local
    ``som`` in factseg.py divides 0 by 0 when every kept loss is 0).
    """
    fg_logits, bi_logits = _as_float32(fg_logits), _as_float32(bi_logits)
    target = target.astype('int64')
    valid = target != ignore_index
    binary_target = (target > 0).astype(bi_logits.dtype)
    bce = F.binary_cross_entropy_with_logits(bi_logits.squeeze(1), binary_target, reduction='none')
    bce_loss = paddle.masked_select(bce, valid).mean()
    if 'ohem' in loss_config:
        return dict(ohem_loss=ohem_cross_entropy(fg_logits, target, ignore_index), bce_loss=bce_loss)
    ce = pixel_nll(log_softmax(fg_logits, axis=1), target, ignore_index)
    if 'som' in loss_config:
        return dict(som_cls_loss=som(ce, loss_config['som']), bce_loss=bce_loss)
    return dict(cls_loss=ce.mean(), bce_loss=bce_loss)
