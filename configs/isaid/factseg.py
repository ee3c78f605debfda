"""FactSeg-R50 on iSAID with the official settings (every official key, official spellings).

Port-specific values: ``resnet_encoder.pretrained`` names a local file (convert torchvision's
``resnet50-19c8e357.pth`` with ``python torch_ref/convert.py resnet50 --src resnet50-19c8e357.pth
--dst pretrained/resnet50.pdparams``); evaluation and inference never read it.
"""

from data.isaid import IMAGENET_MEAN, IMAGENET_STD, RemoveColorMap, train_transforms
from simplecv.api.preprocess import comm, segm

# The training length, which the poly schedule's max_iters follows.
NUM_ITERS = 60000


def branch():
    """The layout both branches share (``foreground`` and ``binary``), a new dict for each."""
    return dict(
        fpn=dict(
            in_channels_list=[256, 512, 1024, 2048],
            out_channels=256,
        ),
        assymetric_decoder=dict(
            in_channels=256,
            out_channels=128,
            in_feat_output_strides=(4, 8, 16, 32),
            out_feat_output_stride=4,
        ),
    )


def isaid_split(split, **params):
    """An ``ISAIDSegmmDataLoader`` section over ``./isaid_segm/<split>`` with the official windows (896, stride 512).

    Args:
        split: the folder of the split (``'train'``, ``'val'``).
        **params: the rest of the loader's ``params``, in order.
    """
    return dict(
        type='ISAIDSegmmDataLoader',
        params=dict(
            image_dir='./isaid_segm/%s/images' % split,
            mask_dir='./isaid_segm/%s/masks' % split,
            patch_config=dict(
                patch_size=896,
                stride=512,
            ),
            **params,
        ),
    )


config = dict(
    model=dict(
        type='FactSeg',
        params=dict(
            resnet_encoder=dict(
                resnet_type='resnet50',
                include_conv5=True,
                batchnorm_trainable=True,
                pretrained='pretrained/resnet50.pdparams',
                freeze_at=0,
                # 8, 16 or 32
                output_stride=32,
                with_cp=(False, False, False, False),
                stem3_3x3=False,
            ),
            foreground=branch(),
            binary=branch(),
            fbattention=dict(
                atttention=False,
                encode_channel=128,
            ),
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
        train=isaid_split(
            'train',
            # RemoveColorMap, random flips and 90-degree rotations, FixedPad to 896, ToTensor, ImageNet mean/std
            transforms=train_transforms(896),
            batch_size=4,
            num_workers=2,
            training=True,
        ),
        test=isaid_split(
            'val',
            transforms=[
                RemoveColorMap(),
                segm.DivisiblePad(32, 255),
                segm.ToTensor(True),
                comm.THMeanStdNormalize(IMAGENET_MEAN, IMAGENET_STD),
            ],
            batch_size=1,
            num_workers=0,
            training=False,
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
            base_lr=0.007,
            power=0.9,
            max_iters=NUM_ITERS,
        ),
    ),
    train=dict(
        forward_times=1,
        num_iters=NUM_ITERS,
        eval_per_epoch=False,
        summary_grads=False,
        summary_weights=False,
        distributed=True,
        apex_sync_bn=True,
        sync_bn=False,
        eval_after_train=False,
        log_interval_step=50,
        save_ckpt_interval_epoch=10,
    ),
    test=dict(),
)
