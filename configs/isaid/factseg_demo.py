"""A CPU-sized FactSeg on the generated demo data (``python -m data.demo --out demo_data``).

Derived from ``isaid.factseg``: the same model family and training recipe (joint loss with SOM,
SGD with momentum and weight decay on all parameters, global-norm clipping, poly learning rate
with the official one-step lag); only what the demo changes is written below, to learn visibly
in about five minutes on two CPU cores: ResNet-18 trained from scratch (no ImageNet file
needed), 64-channel FPNs, 32-channel decoders, 128-pixel patches, batch 8, a learning rate of
0.03 (from-scratch training over few steps), 300 steps, and a ``train`` section of its own
(iteration-based logging and checkpoints, and an evaluation of the ``data.test`` validation split
every 100 steps, which keeps ``model-best.pdparams``); the branch sections are written whole.
Evaluate with 256-pixel windows at stride 128 (``data.test``; ``tools/run_demo.py`` does).
"""

from data.isaid import train_transforms
from simplecv.core.config import Replace, derive, import_config

BASE = import_config('isaid.factseg')
PATCH = 128
BRANCH = dict(
    fpn=dict(in_channels_list=[64, 128, 256, 512], out_channels=64),
    assymetric_decoder=dict(
        in_channels=64, out_channels=32, in_feat_output_strides=(4, 8, 16, 32), out_feat_output_stride=4
    ),
    out_channels=32,  # the official config leaves it to the model's default (128), so the branches are replaced
)

config = derive(
    BASE,
    dict(
        model=dict(
            params=dict(
                resnet_encoder=dict(
                    resnet_type='resnet18',
                    pretrained=False,
                ),
                foreground=Replace(BRANCH),
                binary=Replace(BRANCH),
            ),
        ),
        data=dict(
            train=dict(
                params=dict(
                    image_dir='./demo_data/train/images',
                    mask_dir='./demo_data/train/masks',
                    patch_config=dict(
                        patch_size=PATCH,
                        stride=PATCH,
                    ),
                    transforms=train_transforms(PATCH),  # the official ones, padding to the demo's patch
                    batch_size=8,
                    num_workers=0,
                ),
            ),
            test=dict(
                params=dict(
                    image_dir='./demo_data/val/images',
                    mask_dir='./demo_data/val/masks',
                    patch_config=dict(
                        patch_size=256,
                        stride=128,
                    ),
                ),
            ),
        ),
        learning_rate=dict(
            params=dict(
                base_lr=0.03,
                max_iters=300,
            ),
        ),
        train=Replace(
            dict(
                forward_times=1,
                num_iters=300,
                apex_sync_bn=True,
                log_interval_step=10,
                tensorboard_interval_step=10,
                save_ckpt_interval_iter=100,
                eval_interval_iter=100,
            )
        ),
    ),
)
