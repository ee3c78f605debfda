"""Step ``train``: a short training on demo data gives the same loss curve in both frameworks.

Data: generated demo images (``data.demo``; two 256x256 train images, ``--full``: two
1024x1024) read by the project's real pipeline, ``ISAIDSegmmDataLoader`` with the transforms of
``configs/isaid/factseg_demo.py`` (colour decoding, random flips and 90-degree rotations, pad,
normalisation) on 128-pixel patches (``--full``: 896, stride 512), batch 2, and the seeded
``StepBatchSampler`` (epoch order and per-sample augmentation seeds fixed). The Paddle run
consumes the loader; every batch it receives is recorded, and the reference trains on exactly
those arrays, in the same order.

Paddle side: ``simplecv.core.trainer.Trainer.train`` with the trainer built by
``simplecv.engine.build.build_trainer`` from the demo config (SGD, momentum 0.9, weight decay 1e-4, global-norm clip
35, poly with the one-step lag; ``max_iters`` = the run's length). Reference: the official
iteration in torch (:class:`common.OfficialTrainLoop`). Model: the demo config's (``--full``:
the official ResNet-50), float32, the twin weights of :func:`common.make_twin_models`.

Compared (largest relative difference <= 0.5% per quantity): the loss curve as the official
SimpleCV logger reports it every ``LOG_INTERVAL`` steps (the mean of the last 100 step losses,
``SmoothedValue(100)``), and the learning rate of every step. The per-step losses are
reported as notes.

Learning rate: 2e-4 instead of the demo config's 0.03. Training from random weights is
chaotic: the two runs start 1e-7 apart (float32 rounding) and each step can move a pixel
across SOM's top-K boundary or a unit across a ReLU kink in one run and not in the other, so
the per-step losses drift apart by ~1e-3 within 10-20 steps whatever the learning rate (two
float32 torch runs whose weights differ by 1e-6 relative do the same). The logged mean is what
stays comparable, and its spread grows with the rate: over seeds 0-7 the largest logged-loss
difference was 0.12% at 2e-4, 0.43% at 5e-4 and 0.37% at 1e-3, against the 0.5% limit.
"""

import os

import numpy as np

from torch_ref.align_steps import common

NAME = 'train'
THRESHOLD = 5e-3
ITERATIONS = 20
LOG_INTERVAL = 5
SMOOTH_WINDOW = 100
BASE_LR = 0.0002
BATCH = 2
SMALL = dict(image_size=256, patch_size=128, stride=128)
FULL = dict(image_size=1024, patch_size=896, stride=512)


def logged_losses(losses, interval=LOG_INTERVAL, window=SMOOTH_WINDOW):
    """The official logger's values: at steps ``interval, 2 interval, ...`` the mean of the last ``window`` losses."""
    return np.array(
        [np.mean(losses[max(0, step - window) : step]) for step in range(interval, len(losses) + 1, interval)]
    )


class _RecordingLoader:
    """Iterate a data loader and keep a NumPy copy of every batch handed out."""

    def __init__(self, loader):
        self.loader = loader
        self.batch_sampler = loader.batch_sampler
        self.batches = []

    def __iter__(self):
        for images, targets in self.loader:
            self.batches.append((images.numpy().copy(), targets['cls'].numpy().copy()))
            yield images, targets


def _build_loader(config, folders, sizes):
    from simplecv.api.preprocess import segm
    from simplecv.core.registry import DATALOADER, populate

    populate()
    params = dict(config.data.train.params)
    patch = sizes['patch_size']
    params.update(
        image_dir=folders['train'][0],
        mask_dir=folders['train'][1],
        batch_size=BATCH,
        num_workers=0,
        patch_config=dict(patch_size=patch, stride=sizes['stride']),
        transforms=[
            segm.FixedPad((patch, patch), 255) if isinstance(t, segm.FixedPad) else t for t in params['transforms']
        ],
    )
    return DATALOADER[config.data.train.type](params)


def run(out_dir, options):
    """Run the step; see the module docstring. Returns a :class:`common.StepResult`."""
    from data.demo import generate_demo_dataset
    from simplecv.core.config import import_config
    from simplecv.core.trainer import HookBase
    from simplecv.engine.build import build_trainer

    common.prepare_torch()
    sizes = FULL if options.full else SMALL
    config = import_config('isaid.factseg_demo')
    folders = generate_demo_dataset(
        os.path.join(out_dir, 'train_data'), num_train=2, num_val=0, size=(sizes['image_size'],) * 2, seed=options.seed
    )
    loader = _RecordingLoader(_build_loader(config, folders, sizes))
    params = common.official_params() if options.full else common.demo_params()
    torch_model, paddle_model = common.make_twin_models(params, options.seed)

    config.learning_rate.params.update(base_lr=BASE_LR, max_iters=ITERATIONS)
    config.train.num_iters = ITERATIONS
    paddle_losses, paddle_lrs = [], []

    class Recorder(HookBase):
        def after_step(self, trainer):
            paddle_losses.append(trainer.last_step.total_loss)
            paddle_lrs.append(trainer.last_step.lr)

    build_trainer(config, paddle_model, hooks=[Recorder()]).train(loader)

    loop = common.OfficialTrainLoop.from_config(torch_model, config)
    torch_losses, torch_lrs = [], []
    for images, labels in loader.batches:
        loss, lr, _ = loop.step(images, labels)
        torch_losses.append(loss)
        torch_lrs.append(lr)

    paddle_data = dict(logged_loss=logged_losses(paddle_losses), lr=np.array(paddle_lrs))
    torch_data = dict(logged_loss=logged_losses(torch_losses), lr=np.array(torch_lrs))
    step_diff = np.abs(np.array(paddle_losses) - np.array(torch_losses)) / np.array(torch_losses)
    num_patches = len(loader.loader.dataset)
    notes = [
        '%d steps on %d demo patches of %d px (%d epochs), batch %d, %s, base lr %g'
        % (
            ITERATIONS,
            num_patches,
            sizes['patch_size'],
            -(-ITERATIONS * BATCH // num_patches),
            BATCH,
            'official ResNet-50' if options.full else 'factseg_demo model',
            BASE_LR,
        ),
        'logged losses (reference, every %d steps): %s'
        % (LOG_INTERVAL, ['%.6f' % v for v in torch_data['logged_loss']]),
        'not checked: per-step loss relative diff %s' % ['%.1e' % v for v in step_diff],
    ]
    return common.compare(NAME, out_dir, paddle_data, torch_data, THRESHOLD, method='max', notes=notes)
