"""Step ``loss``: the training losses and their gradients on the same logits and labels.

Inputs (float32): class logits ``2x16xSxS`` and foreground logits ``2x1xSxS`` drawn from
N(0, 2^2), labels uniform over the 16 classes with 10% of the pixels and one block set to 255
(ignored); S = 128 (``--full``: 896).

Variants:

- ``joint_som``: ``JointLoss(sample='SOM', ratio=0.1)``, the configured FactSeg loss;
- ``joint_som_groups2``: SOM per half batch (the official 2 GPUs x 4 images);
- ``joint_ohem``: ``JointLoss(sample='OHEM', ratio=0.7)`` with ``ohem_min_kept`` set so that the
  kept-pixel threshold is decided by the sorted probabilities (the official ``OHEM`` branch
  calls an undefined function; both sides implement the rule of the official
  ``ohem_cross_entropy``);
- ``ce_som``, ``ohem_ce``, ``ce``: the official non-joint paths of ``FactSeg.cls_loss`` with
  ``loss.som=0.1``, ``loss.ohem`` and neither: binary cross-entropy on the foreground logit plus
  cross-entropy with SOM, OHEM-weighted cross-entropy (official ``min_kept=100000`` per image)
  or plain cross-entropy; each loss term separately;
- ``ohem_cross_entropy``: the function itself with a small ``min_kept`` so that its threshold
  rule is active at the small size too;
- ``joint_som_wide``, ``ce_som_wide`` and ``fusion_wide/prob`` (the eval-mode fused
  probabilities, ``joint_probability``): logits 20 times wider, N(0, 40^2), so that class
  logits lie more than 64 apart and foreground logits below -64, as a confident model gives.
  Paddle's CPU ``softmax``/``log_softmax`` kernels clip ``x - max`` at -64; a port that uses
  them gets these wrong. Float64 only (the official float32 ``log(p)`` is infinite there), and
  foreground logits capped at 5, because the reference's ``1 - sigmoid(b)`` loses digits as
  ``b`` grows (1e-3 relative at b = 30 in float64, exactly 0 above 36.7).

Compared (mean absolute difference <= 1e-6 each): the loss values in float64, and the
gradients with respect to both logit maps in float32 and float64 (float64 only for the wide
variants). The float32 values are notes: the losses are sums of thousands of terms around 3-8,
where one float32 rounding step is already ~5e-7 and the summation order differs between the
frameworks. Gradients are multiplied by the number of pixels so that their entries are O(1)
(a gradient of a mean over P pixels is O(1/P) per entry, which would make 1e-6 meaningless).
"""

import numpy as np
import paddle
import torch

from module import loss as paddle_loss
from torch_ref import reference
from torch_ref.align_steps import common

NAME = 'loss'
THRESHOLD = 1e-6
SMALL_SIZE = 128
FULL_SIZE = 896
BATCH = 2
NUM_CLASSES = 16
IGNORE_INDEX = 255
IGNORED_FRACTION = 0.1
SOM_RATIO = 0.1
OHEM_THRESH = 0.7
WIDE_SCALE = 20.0
WIDE_BI_MAX = 5.0


def make_inputs(size, seed):
    """``(fg_logits (2,16,S,S), bi_logits (2,1,S,S)) float32`` and ``labels (2,S,S) int64``."""
    rng = np.random.RandomState(seed)
    fg = (2.0 * rng.standard_normal((BATCH, NUM_CLASSES, size, size))).astype('float32')
    bi = (2.0 * rng.standard_normal((BATCH, 1, size, size))).astype('float32')
    labels = rng.randint(0, NUM_CLASSES, size=(BATCH, size, size)).astype('int64')
    labels[rng.rand(BATCH, size, size) < IGNORED_FRACTION] = IGNORE_INDEX
    labels[:, : size // 8, : size // 8] = IGNORE_INDEX
    return fg, bi, labels


def _small_min_kept(size):
    # About a quarter of each image: the threshold comes from the sorted probabilities.
    return size * size // 4


def _variants(size):
    """``{name: (paddle_fn, torch_fn)}``; each fn maps ``(fg, bi, labels)`` to ``{term: scalar}``."""
    min_kept = _small_min_kept(size)

    def joint(**kwargs):
        p_loss, t_loss = paddle_loss.JointLoss(**kwargs), reference.JointLoss(**kwargs)
        return (lambda fg, bi, y: {'loss': p_loss(fg, bi, y)}, lambda fg, bi, y: {'loss': t_loss(fg, bi, y)})

    def separate(config):
        torch_config = dict(config, ignore_index=IGNORE_INDEX)
        return (
            lambda fg, bi, y: paddle_loss.separate_losses(fg, bi, y, config, IGNORE_INDEX),
            lambda fg, bi, y: reference.separate_losses(fg, bi, y, torch_config, NUM_CLASSES),
        )

    return {
        'joint_som': joint(ignore_index=IGNORE_INDEX, sample='SOM', ratio=SOM_RATIO),
        'joint_som_wide': joint(ignore_index=IGNORE_INDEX, sample='SOM', ratio=SOM_RATIO),
        'joint_som_groups2': joint(ignore_index=IGNORE_INDEX, sample='SOM', ratio=SOM_RATIO, som_groups=2),
        'joint_ohem': joint(ignore_index=IGNORE_INDEX, sample='OHEM', ratio=OHEM_THRESH, ohem_min_kept=min_kept),
        'ce_som': separate({'som': SOM_RATIO}),
        'ce_som_wide': separate({'som': SOM_RATIO}),
        'ohem_ce': separate({'ohem': True}),
        'ce': separate({}),
        'ohem_cross_entropy': (
            lambda fg, bi, y: {'loss': paddle_loss.ohem_cross_entropy(fg, y, IGNORE_INDEX, OHEM_THRESH, min_kept)},
            lambda fg, bi, y: {'loss': reference.ohem_cross_entropy(fg, y, IGNORE_INDEX, OHEM_THRESH, min_kept)},
        ),
    }


def _widen(fg, bi):
    """The ``_wide`` inputs (float64): both logit maps x ``WIDE_SCALE``, foreground logits capped at ``WIDE_BI_MAX``."""
    return WIDE_SCALE * fg.astype('float64'), np.minimum(WIDE_SCALE * bi.astype('float64'), WIDE_BI_MAX)


def _paddle_side(fn, fg, bi, labels):
    fg_t, bi_t = paddle.to_tensor(fg, stop_gradient=False), paddle.to_tensor(bi, stop_gradient=False)
    terms = fn(fg_t, bi_t, paddle.to_tensor(labels))
    grads = paddle.grad(paddle.add_n(list(terms.values())), [fg_t, bi_t], allow_unused=True)
    return {k: float(v) for k, v in terms.items()}, [
        np.zeros_like(a) if g is None else g.numpy() for g, a in zip(grads, (fg, bi))
    ]


def _torch_side(fn, fg, bi, labels):
    fg_t, bi_t = torch.tensor(fg, requires_grad=True), torch.tensor(bi, requires_grad=True)
    terms = fn(fg_t, bi_t, torch.from_numpy(labels))
    grads = torch.autograd.grad(sum(terms.values()), [fg_t, bi_t], allow_unused=True)
    return {k: float(v.detach()) for k, v in terms.items()}, [
        np.zeros_like(a) if g is None else g.numpy() for g, a in zip(grads, (fg, bi))
    ]


def run(out_dir, options):
    """Run the step; see the module docstring. Returns a :class:`common.StepResult`."""
    common.prepare_torch()
    size = FULL_SIZE if options.full else SMALL_SIZE
    fg32, bi32, labels = make_inputs(size, options.seed)
    scale = float(labels.size)
    paddle_data, torch_data, notes = {}, {}, []
    for name, (paddle_fn, torch_fn) in _variants(size).items():
        wide = name.endswith('_wide')
        values = {}
        for dtype in ('float64',) if wide else ('float32', 'float64'):
            fg, bi = _widen(fg32, bi32) if wide else (fg32.astype(dtype), bi32.astype(dtype))
            suffix = '_fp32' if dtype == 'float32' else '_fp64'
            for side, data, fn in (('paddle', paddle_data, paddle_fn), ('torch', torch_data, torch_fn)):
                terms, (grad_fg, grad_bi) = (_paddle_side if side == 'paddle' else _torch_side)(fn, fg, bi, labels)
                values[side, dtype] = terms
                if dtype == 'float64':
                    for term, value in terms.items():
                        data['%s/%s' % (name, term)] = np.array(value)
                data['%s/grad_fg_x_pixels%s' % (name, suffix)] = grad_fg * scale
                data['%s/grad_bi_x_pixels%s' % (name, suffix)] = grad_bi * scale
        for term, value in values['torch', 'float64'].items():
            line = '%s/%s = %.6f' % (name, term, value)
            if ('torch', 'float32') in values:
                diff = abs(values['paddle', 'float32'][term] - values['torch', 'float32'][term])
                line += '; float32 value: abs diff %.3g, relative %.3g' % (diff, diff / abs(value))
            notes.append(line)
    fg, bi = _widen(fg32, bi32)
    paddle_data['fusion_wide/prob'] = paddle_loss.joint_probability(paddle.to_tensor(fg), paddle.to_tensor(bi)).numpy()
    torch_data['fusion_wide/prob'] = reference.joint_probability(torch.from_numpy(fg), torch.from_numpy(bi)).numpy()
    notes.insert(
        0,
        'logits %dx%dx%dx%d, %.1f%% of the labels ignored; OHEM min_kept %d in joint_ohem and '
        'ohem_cross_entropy; *_wide: logits x %g'
        % (BATCH, NUM_CLASSES, size, size, 100.0 * (labels == IGNORE_INDEX).mean(), _small_min_kept(size), WIDE_SCALE),
    )
    return common.compare(NAME, out_dir, paddle_data, torch_data, THRESHOLD, notes=notes)
