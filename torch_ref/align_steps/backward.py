"""Step ``backward``: ten optimizer steps of the real training recipe give the same run in both frameworks.

Paddle side: the project's own pieces, built by ``simplecv.engine.build.build_trainer`` (as
``apex_train.py`` builds them) from the optimizer block of ``configs/isaid/factseg.py`` (SGD with
momentum 0.9 and weight decay 1e-4 on every parameter, ``ClipGradByGlobalNorm(35)``) and its
``poly`` schedule (power 0.9, with the official one-step lag), and each iteration run by
``simplecv.core.trainer.Trainer.run_step``. Reference: the official iteration in torch
(:class:`common.OfficialTrainLoop`: ``torch.optim.SGD``, ``clip_grad_norm_(35)`` after the backward
pass, learning rate set after the step from the pre-increment step count).

Setup: the model of ``configs/isaid/factseg_demo.py`` (ResNet-18 with narrower FPNs and
decoders, to keep CI fast; ``--full``: the official ResNet-50 at 896x896), in float64, train
mode (BatchNorm on batch statistics, running statistics updated), batch ``2x3x64x64`` of
N(0, 1) inputs, a new batch every iteration. The schedule's ``max_iters`` is twice the number
of iterations, so that the learning rate falls visibly and the lag matters (with the official
60k, dropping the lag would change the rate by 1.5e-5 relative only).

Clipping is exercised on purpose: the loss is multiplied by a factor chosen from the gradient
norm ``g0`` of the first batch (on a copy of the reference): ``s = 2 * 35 / g0`` on even
iterations (global norm about twice the limit: clipped) and ``s / 4`` on odd ones (about half
the limit: not clipped), on both sides. The step fails unless at least one iteration was
clipped and one was not. The schedule's base rate is the official 0.007 divided by ``s``, so
that updates keep the size of official ones; with 0.007 itself every clipped step would move
the weights by 35 x 0.007 in norm, about 13 times a natural step, and such runs are chaotic
(the two sides ended 3e-3 apart in the weights for two of five seeds).

``--full`` (the official ResNet-50 at 896x896) resets the Paddle weights to the reference's
after every iteration (the optimizer states, momentum buffers and BN statistics are left
alone), so each iteration starts both sides from the same weights. A free-running comparison
at that size measures the chaos of the run, not the port: two torch float64 runs whose weights
differ by 1e-10 (relative) end 10 iterations apart by 2.4e-4 in the weights, 2.9e-4 in the
last loss and 2e-3 in the BN running means at 896x896 (1e-3, 7e-4 and 1e-2 at 256x256), and
Paddle's free run ends that far from torch's too. ReLU kinks and max-pool switches make the
gradient discontinuous (at 896x896 two torch runs 1e-10 apart have gradient norms 5e-6 apart
after one step even at 1/100 of the rate), and the official step size amplifies each jump.
Checking one step at a time keeps everything the chain has to prove (momentum, decay, clip,
the lagged rate and BN statistics carried over ten iterations) and leaves out the chaos.

Labels: random classes on 8% of the pixels, the rest 255 (ignored), i.e. fewer valid pixels
than SOM keeps (``int(0.1 N)``). SOM then averages every valid pixel: the loss stays the
official SOM (ignored pixels counted in N, zero losses masked) but has no top-K boundary,
where the gradient is discontinuous (which pixel is the K-th depends on the last bits of the
losses). The ``loss`` step checks SOM's selection and its gradients directly.

Compared (largest relative difference <= 1e-4 per quantity):

- per iteration: ``loss`` (unscaled) and ``lr`` (the learning rate used);
- per iteration: ``updates/iterNN``, the change of the weights in that iteration (each
  side's own, on a fixed random sample of 200,000 weights; relative L2). A wrong momentum,
  decay, clip or rate changes the updates by their own size, however small they are next to
  the weights;
- after the run: ``weights`` (all trainable parameters, concatenated; relative L2) and
  ``bn_running_means`` (all BatchNorm running means, concatenated).

Reported as notes, not checked: the gradient norms before clipping, the update of the worst
single tensor and the running variances. Running variances differ by design: Paddle's CPU
kernel updates them with the biased batch variance, torch with the unbiased one (spec §10.5).
"""

import numpy as np

from simplecv.core.config import import_config
from torch_ref.align_steps import common

NAME = 'backward'
THRESHOLD = 1e-4
ITERATIONS = 10
SMALL_SIZE = 64
FULL_SIZE = 896
BATCH = 2
VALID_FRACTION = 0.08
CLIP_FACTORS = (2.0, 0.5)
DTYPE = 'float64'
UPDATE_SAMPLE = 200000


def make_batches(size, count, seed):
    """``count`` batches ``(images (2,3,S,S) float64, labels (2,S,S) int64)`` (see the module docstring)."""
    rng = np.random.RandomState(seed)
    batches = []
    for _ in range(count):
        images = rng.standard_normal((BATCH, 3, size, size))
        labels = np.full(BATCH * size * size, 255, dtype=np.int64)
        valid = rng.permutation(labels.size)[: int(VALID_FRACTION * labels.size)]
        labels[valid] = rng.randint(0, 16, size=valid.size)
        batches.append((images, labels.reshape(BATCH, size, size)))
    return batches


def resynced(options):
    """Whether the Paddle weights are reset to the reference's after every iteration (``--full``)."""
    return options.full


def _scaled(model):
    """The Paddle model with every loss multiplied by its ``scale`` attribute (a wrapper sharing the parameters)."""
    import paddle

    class ScaledLoss(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.model = model
            self.scale = 1.0

        def forward(self, images, targets):
            return {k: v * self.scale if k.endswith('loss') else v for k, v in self.model(images, targets).items()}

    return ScaledLoss()


def run(out_dir, options):
    """Run the step; see the module docstring. Returns a :class:`common.StepResult`."""
    from simplecv.engine.build import build_trainer

    common.prepare_torch()
    params = common.official_params() if options.full else common.demo_params()
    size = FULL_SIZE if options.full else SMALL_SIZE
    config = import_config('isaid.factseg')
    lr_config = config.learning_rate.params
    torch_model, paddle_model = common.make_twin_models(params, options.seed, DTYPE)
    batches = make_batches(size, ITERATIONS, options.seed)
    max_norm = float(config.optimizer.grad_clip.max_norm)
    first_norm = common.gradient_norm(torch_model, *batches[0])
    scales = [CLIP_FACTORS[i % len(CLIP_FACTORS)] * max_norm / first_norm for i in range(ITERATIONS)]
    lr_config.update(base_lr=lr_config.base_lr / scales[0], max_iters=2 * ITERATIONS)
    config.train.num_iters = ITERATIONS
    before = common.torch_state(torch_model)

    wrapped = _scaled(paddle_model)
    trainer = build_trainer(config, wrapped)
    wrapped.train()
    loop = common.OfficialTrainLoop.from_config(torch_model, config)
    weight_names = [name for name, p in paddle_model.named_parameters() if not p.stop_gradient]
    resync = resynced(options)
    sample = np.sort(
        np.random.RandomState(options.seed).permutation(sum(before[name].size for name in weight_names))[:UPDATE_SAMPLE]
    )

    series = {side: {'loss': [], 'lr': [], 'grad_norm': []} for side in ('paddle', 'torch')}
    updates = {'paddle': {}, 'torch': {}}
    torch_start = _concatenate(before, weight_names)[sample]
    paddle_start = _concatenate(common.paddle_state(paddle_model), weight_names)[sample]
    for index, ((images, labels), scale) in enumerate(zip(batches, scales)):
        wrapped.scale = scale
        result = trainer.run_step((common.as_paddle(images), {'cls': common.as_paddle(labels)}))
        for key, value in (
            ('loss', sum(result.losses.values()) / scale),
            ('lr', result.lr),
            ('grad_norm', result.grad_norm),
        ):
            series['paddle'][key].append(value)
        for key, value in zip(('loss', 'lr', 'grad_norm'), loop.step(images, labels, loss_scale=scale)):
            series['torch'][key].append(value)
        torch_now = common.torch_state(torch_model)
        paddle_end = _concatenate(common.paddle_state(paddle_model), weight_names)[sample]
        torch_end = _concatenate(torch_now, weight_names)[sample]
        key = 'updates/iter%02d' % index
        updates['paddle'][key] = paddle_end - paddle_start
        updates['torch'][key] = torch_end - torch_start
        if resync and index + 1 < len(batches):
            _copy_weights(paddle_model, torch_now, weight_names)
            paddle_end = torch_end
        paddle_start, torch_start = paddle_end, torch_end

    paddle_series, torch_series = series['paddle'], series['torch']
    paddle_after, torch_after = common.paddle_state(paddle_model), common.torch_state(torch_model)
    groups = {'weights': weight_names, 'bn_running_means': [k for k in torch_after if k.endswith('._mean')]}
    paddle_data = {k: np.asarray(v) for k, v in paddle_series.items() if k != 'grad_norm'}
    torch_data = {k: np.asarray(v) for k, v in torch_series.items() if k != 'grad_norm'}
    for group, keys in groups.items():
        paddle_data[group] = _concatenate(paddle_after, keys)
        torch_data[group] = _concatenate(torch_after, keys)
    paddle_data.update(updates['paddle'])
    torch_data.update(updates['torch'])

    norms = np.asarray(torch_series['grad_norm'])
    clipped = [i for i, n in enumerate(norms) if n > max_norm]
    precondition = None
    if not clipped or len(clipped) == len(norms):
        precondition = (
            'gradient clipping was not exercised both ways: iterations clipped %s of %d (global '
            'norms %s)' % (clipped, len(norms), np.round(norms, 2).tolist())
        )
    notes = [
        '%d iterations, %s, batch %dx3x%dx%d, %s, loss x %s, base learning rate %.4g, %s'
        % (
            ITERATIONS,
            'official ResNet-50' if options.full else 'factseg_demo model',
            BATCH,
            size,
            size,
            DTYPE,
            ' / '.join('%.4g' % v for v in scales[: len(CLIP_FACTORS)]),
            lr_config.base_lr,
            "Paddle weights reset to the reference's after every iteration" if resync else 'free-running',
        ),
        'global gradient norms (reference, before clipping, limit %g): %s; clipped iterations %s'
        % (max_norm, np.round(norms, 2).tolist(), clipped),
        'learning rates: %s' % ['%.6g' % v for v in torch_series['lr']],
        'losses: %s' % ['%.8g' % v for v in torch_series['loss']],
    ] + _unchecked_notes(paddle_series, torch_series, paddle_after, torch_after, before, groups)
    return common.compare(
        NAME,
        out_dir,
        paddle_data,
        torch_data,
        THRESHOLD,
        method='max',
        l2_keys=list(groups) + list(updates['torch']),
        notes=notes,
        precondition=precondition,
    )


def _copy_weights(paddle_model, state, names):
    """Set the Paddle parameters ``names`` to the values of ``state`` (``{paddle_name: ndarray}``)."""
    parameters = dict(paddle_model.named_parameters())
    for name in names:
        parameters[name].set_value(state[name])


def _concatenate(state, keys, base=None):
    return np.concatenate([(state[k] - (base[k] if base else 0)).ravel() for k in keys])


def _relative(a, b):
    scale = np.linalg.norm(b)
    return np.linalg.norm(a - b) / (scale if scale > 0 else 1.0)


def _unchecked_notes(paddle_series, torch_series, paddle_after, torch_after, before, groups):
    """Reported, not checked: gradient norms, the worst single tensor's update, BN running variances."""
    grad = np.abs(np.subtract(paddle_series['grad_norm'], torch_series['grad_norm'])) / np.asarray(
        torch_series['grad_norm']
    )
    tensors = sorted((_relative(paddle_after[k] - before[k], torch_after[k] - before[k]), k) for k in groups['weights'])
    variances = [k for k in torch_after if k.endswith('._variance')]
    variance = max((_relative(paddle_after[k] - before[k], torch_after[k] - before[k]) for k in variances), default=0.0)
    return [
        'not checked: gradient norm before clipping, relative diff per iteration %s' % ['%.1e' % v for v in grad],
        'not checked: update (after - before) of the worst single tensor, %s: relative L2 %.3g'
        % (tensors[-1][1], tensors[-1][0]),
        'not checked: BN running variance updates differ by up to %.3g relative (biased vs unbiased batch '
        'variance)' % variance,
    ]
