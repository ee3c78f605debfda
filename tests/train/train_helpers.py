"""Small models and data for the training-engine tests (imported by the tests and the 2-process worker)."""

import numpy as np
import paddle
import paddle.nn.functional as F

from simplecv.core.config import AttrDict
from simplecv.data.sampler import StepBatchSampler
from simplecv.engine.build import build_trainer

NUM_SAMPLES, GLOBAL_BATCH = 16, 4  # the data-parallel test: 2 processes x 2 samples
SGD_BLOCK = dict(type='sgd', params=dict(momentum=0.9, weight_decay=0.0001), grad_clip=dict(max_norm=35, norm_type=2))


class TinySegmenter(paddle.nn.Layer):
    """conv-BN-ReLU-conv with a pixel-wise cross-entropy loss: ``model(x, {'cls': y}) -> {'ce_loss': t}``."""

    def __init__(self, num_classes=3, batch_norm=True):
        super().__init__()
        self.conv1 = paddle.nn.Conv2D(3, 8, 3, padding=1)
        self.norm = paddle.nn.BatchNorm2D(8) if batch_norm else paddle.nn.Identity()
        self.conv2 = paddle.nn.Conv2D(8, num_classes, 1)

    def forward(self, x, y):
        logits = self.conv2(F.relu(self.norm(self.conv1(x))))
        return {'ce_loss': F.cross_entropy(logits, y['cls'].unsqueeze(1), axis=1, ignore_index=255)}


class TinyDataset(paddle.io.Dataset):
    """Images whose class is a colour threshold, flipped at random with NumPy (seeded per sample)."""

    def __init__(self, num_samples=10, size=8):
        rng = np.random.RandomState(0)
        self.images = rng.rand(num_samples, 3, size, size).astype('float32')
        self.labels = (self.images[:, 0] > 0.5).astype('int64') + (self.images[:, 1] > 0.7).astype('int64')

    def __len__(self):
        return len(self.images)

    def __getitem__(self, key):
        index, seed = key
        image, label = self.images[index], self.labels[index]
        if np.random.RandomState(seed).rand() < 0.5:
            image, label = image[:, :, ::-1], label[:, ::-1]
        return np.ascontiguousarray(image), np.ascontiguousarray(label)


def collate(samples):
    return np.stack([s[0] for s in samples]), {'cls': np.stack([s[1] for s in samples])}


def tiny_loader(num_samples=10, batch_size=4, rank=0, world_size=1):
    """A data loader with :class:`StepBatchSampler` (so it can resume) over :class:`TinyDataset`."""
    sampler = StepBatchSampler(num_samples, batch_size, seed=7, rank=rank, world_size=world_size)
    return paddle.io.DataLoader(
        TinyDataset(num_samples), batch_sampler=sampler, collate_fn=collate, num_workers=0, return_list=True
    )


def tiny_trainer(num_iters, hooks=(), batch_norm=True, amp_level='O0', lr=0.1, seed=0):
    """A trainer for :class:`TinySegmenter` built as ``apex_train.py`` builds it: official optimizer, poly schedule."""
    paddle.seed(seed)
    model = TinySegmenter(batch_norm=batch_norm)
    config = AttrDict(
        learning_rate=dict(type='poly', params=dict(base_lr=lr, power=0.9, max_iters=num_iters)),
        optimizer=SGD_BLOCK,
        train=dict(num_iters=num_iters),
    )
    return build_trainer(config, model, hooks, opt_level=amp_level)


def parameters_of(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


TINY_CONFIG = '''"""The demo config at test size (written by the training tests)."""
from data.isaid import RemoveColorMap
from simplecv.api.preprocess import comm, segm
from simplecv.core.config import import_config

PATCH = {patch}
config = import_config('isaid.factseg_demo').to_dict()
branch = dict(fpn=dict(in_channels_list=[64, 128, 256, 512], out_channels=16),
              assymetric_decoder=dict(in_channels=16, out_channels=8), out_channels=8)
config['model']['params'].update(foreground=branch, binary=branch)
config['data']['train']['params'].update(
    image_dir={image_dir!r}, mask_dir={mask_dir!r}, batch_size={batch_size},
    patch_config=dict(patch_size=PATCH, stride=PATCH),
    transforms=[RemoveColorMap(), segm.RandomHorizontalFlip(0.5), segm.RandomVerticalFlip(0.5),
                segm.RandomRotate90K((0, 1, 2, 3)), segm.FixedPad((PATCH, PATCH), 255), segm.ToTensor(True),
                comm.THMeanStdNormalize((123.675, 116.28, 103.53), (58.395, 57.12, 57.375))])
config['learning_rate']['params'].update(max_iters={num_iters})
config['train'].update(num_iters={num_iters}, log_interval_step=1, save_ckpt_interval_iter={save_every},
                       eval_interval_iter={eval_every}, eval_after_train={eval_after_train})
config['data']['test']['params'].update(image_dir={val_image_dir!r}, mask_dir={val_mask_dir!r},
                                        patch_config=dict(patch_size=PATCH, stride=PATCH // 2))
'''


def write_tiny_config(
    folder,
    num_iters=6,
    batch_size=2,
    patch=64,
    num_images=2,
    image_size=128,
    save_every=0,
    eval_every=0,
    eval_after_train=False,
    num_val=1,
):
    """Write demo data (``num_images`` training, ``num_val`` validation images) and a test-sized demo config.

    The validation split is ``data.test`` (windows of ``patch`` at stride ``patch // 2``), evaluated
    every ``eval_every`` steps (0: never) and after training when ``eval_after_train``. Returns
    the config path.
    """
    from data.demo import generate_demo_dataset

    folders = generate_demo_dataset(str(folder / 'data'), num_images, num_val, (image_size, image_size), seed=1)
    (image_dir, mask_dir), (val_image_dir, val_mask_dir) = folders['train'], folders['val']
    path = folder / 'tiny_demo.py'
    path.write_text(
        TINY_CONFIG.format(
            patch=patch,
            image_dir=image_dir,
            mask_dir=mask_dir,
            batch_size=batch_size,
            num_iters=num_iters,
            save_every=save_every,
            eval_every=eval_every,
            eval_after_train=eval_after_train,
            val_image_dir=val_image_dir,
            val_mask_dir=val_mask_dir,
        )
    )
    return str(path)
