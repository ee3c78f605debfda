"""Step ``forward``: the same weights and input give the same outputs in Paddle and in the reference.

Model: the official ResNet-50 FactSeg (``configs/isaid/factseg.py``) with random weights and
random BatchNorm statistics (:func:`common.make_twin_models`), input ``2x3x128x128`` (``--full``:
``2x3x896x896``) drawn from N(0, 1), like normalised images.

Compared (mean absolute difference <= 1e-6 each), with both models cast to float64:
``eval_prob_fp64`` (eval-mode fused class probabilities: the converted running statistics at
work) and the train-mode logits of both branches, ``train_fg_logits_fp64`` and
``train_bi_logits_fp64`` (BatchNorm on batch statistics).

The float32 outputs are reported as notes, next to the reference's own float32-vs-float64
difference, because random weights with random running statistics put them where float32
cannot resolve 1e-6: eval-mode logits reach 15-60, so the fused probabilities involve
``1 - sigmoid(b)`` near 1e-6 (the official formula then loses ~1e-4 in float32, seed 1) and
values in the denormal range, where the frameworks' float32 kernels differ (Paddle's
``sigmoid(-100)`` is 0, torch's 3.7e-44; seed 2); train-mode
logits are ill-conditioned at random initialisation (reference float32 vs float64: ~1e-5).
A trained model is far from both regimes; ``python torch_ref/align.py --seed N`` shows them.
"""

import copy

import numpy as np
import paddle
import torch

from torch_ref.align_steps import common

NAME = 'forward'
THRESHOLD = 1e-6
SMALL_SIZE = 128
FULL_SIZE = 896
BATCH = 2


def _paddle_outputs(model, x, dtype):
    with paddle.no_grad():
        model.eval()
        prob = model(common.as_paddle(x, dtype)).numpy()
        fg, bi = (t.numpy() for t in model.logits(common.as_paddle(x, dtype)))
        model.train()
        train_fg, train_bi = (t.numpy() for t in model.logits(common.as_paddle(x, dtype)))
    return prob, fg, bi, train_fg, train_bi


def _torch_outputs(model, x, dtype):
    with torch.no_grad():
        model.eval()
        tx = torch.from_numpy(x.astype(dtype))
        prob = model(tx).numpy()
        fg, bi = (t.numpy() for t in model.logits(tx))
        model.train()
        train_fg, train_bi = (t.numpy() for t in model.logits(tx))
    return prob, fg, bi, train_fg, train_bi


def _relative(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def run(out_dir, options):
    """Run the step; see the module docstring. Returns a :class:`common.StepResult`."""
    common.prepare_torch()
    size = FULL_SIZE if options.full else SMALL_SIZE
    x = np.random.RandomState(options.seed).standard_normal((BATCH, 3, size, size)).astype('float32')
    torch_model, paddle_model = common.make_twin_models(common.official_params(), options.seed)
    # Copies made before any train-mode pass, which would update the running statistics.
    twins = {
        'float32': (torch_model, paddle_model),
        'float64': (copy.deepcopy(torch_model).double(), copy.deepcopy(paddle_model).to(dtype='float64')),
    }
    outputs = {dtype: (_paddle_outputs(p, x, dtype), _torch_outputs(t, x, dtype)) for dtype, (t, p) in twins.items()}
    (p32, t32), (p64, t64) = outputs['float32'], outputs['float64']
    paddle_data = dict(eval_prob_fp64=p64[0], train_fg_logits_fp64=p64[3], train_bi_logits_fp64=p64[4])
    torch_data = dict(eval_prob_fp64=t64[0], train_fg_logits_fp64=t64[3], train_bi_logits_fp64=t64[4])
    notes = ['input %dx3x%dx%d, official ResNet-50 FactSeg, random weights and BN statistics' % (BATCH, size, size)]
    for index, key in enumerate(
        ('eval probabilities', 'eval fg logits', 'eval bi logits', 'train fg logits', 'train bi logits')
    ):
        notes.append(
            'float32 %s: mean abs diff %.3g (reference float32 vs float64: %.3g; mean |value| %.3g)'
            % (
                key,
                np.abs(p32[index] - t32[index]).mean(),
                np.abs(t32[index] - t64[index]).mean(),
                np.abs(t64[index]).mean(),
            )
        )
    for index, key in ((1, 'eval fg logits'), (2, 'eval bi logits')):
        notes.append(
            'float64 %s: mean abs diff %.3g, relative L2 %.3g'
            % (key, np.abs(p64[index] - t64[index]).mean(), _relative(p64[index], t64[index]))
        )
    return common.compare(NAME, out_dir, paddle_data, torch_data, THRESHOLD, notes=notes)
