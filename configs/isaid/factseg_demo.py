"""A CPU-sized FactSeg on the generated demo data (``python -m data.demo --out demo_data``).

Same model family and training recipe as ``isaid.factseg`` (joint loss with SOM, SGD with
momentum and weight decay on all parameters, global-norm clipping, poly learning rate with the
official one-step lag), scaled down to learn visibly in about five minutes on two CPU cores:
ResNet-18 trained from scratch (no ImageNet file needed), 64-channel FPNs, 32-channel decoders,
128-pixel patches, batch 8, a learning rate of 0.03 (from-scratch training over few steps) and
300 steps. Evaluate with 256-pixel windows at stride 128 (``tools/run_demo.py`` does).
"""
from data.isaid import RemoveColorMap
from simplecv.api.preprocess import comm, segm

PATCH = 128
BRANCH = dict(
    fpn=dict(in_channels_list=[64, 128, 256, 512], out_channels=64),
    assymetric_decoder=dict(in_channels=64, out_channels=32, in_feat_output_strides=(4, 8, 16, 32),
                            out_feat_output_stride=4),
    out_channels=32,
)

config = dict(
    model=dict(
        type='FactSeg',
        params=dict(
            resnet_encoder=dict(
                resnet_type='resnet18',
                include_conv5=True,
                batchnorm_trainable=True,
                pretrained=False,
                freeze_at=0,
                output_stride=32,
            ),
            foreground=BRANCH,
            binary=BRANCH,
            loss=dict(
                joint_loss=dict(
                    sample='SOM',
                    ratio=0.1,
                    ignore_index=255,
                ),
            ),
            num_classes=16,
        ),
    ),
    data=dict(
        train=dict(
            type='ISAIDSegmmDataLoader',
            params=dict(
                image_dir='./demo_data/train/images',
                mask_dir='./demo_data/train/masks',
                patch_config=dict(
                    patch_size=PATCH,
                    stride=PATCH,
                ),
                transforms=[
                    RemoveColorMap(),
                    segm.RandomHorizontalFlip(0.5),
                    segm.RandomVerticalFlip(0.5),
                    segm.RandomRotate90K((0, 1, 2, 3)),
                    segm.FixedPad((PATCH, PATCH), 255),
                    segm.ToTensor(True),
                    comm.THMeanStdNormalize((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
                ],
                batch_size=8,
                num_workers=0,
                training=True,
            ),
        ),
    ),
    optimizer=dict(
        type='sgd',
        params=dict(
            momentum=0.9,
            weight_decay=0.0001,
        ),
        grad_clip=dict(
            max_norm=35,
            norm_type=2,
        ),
    ),
    learning_rate=dict(
        type='poly',
        params=dict(
            base_lr=0.03,
            power=0.9,
            max_iters=300,
        ),
    ),
    train=dict(
        forward_times=1,
        num_iters=300,
        apex_sync_bn=True,
        log_interval_step=10,
        tensorboard_interval_step=10,
        save_ckpt_interval_iter=100,
    ),
    test=dict(),
)
