"""Derived configs: ``derive`` and the demo config derived from the official one."""

import pytest

from data.isaid import RemoveColorMap
from simplecv.api.preprocess import comm, segm
from simplecv.core.config import AttrDict, Replace, derive, import_config
from simplecv.core.errors import ConfigError

NORMALIZE = ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
DEMO_BRANCH = dict(
    fpn=dict(in_channels_list=[64, 128, 256, 512], out_channels=64),
    assymetric_decoder=dict(
        in_channels=64, out_channels=32, in_feat_output_strides=(4, 8, 16, 32), out_feat_output_stride=4
    ),
    out_channels=32,
)
# configs/isaid/factseg_demo.py as it was written out in full before it was derived from isaid.factseg.
DEMO_BEFORE_DERIVE = dict(
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
            foreground=DEMO_BRANCH,
            binary=DEMO_BRANCH,
            loss=dict(joint_loss=dict(sample='SOM', ratio=0.1, ignore_index=255)),
            num_classes=16,
        ),
    ),
    data=dict(
        train=dict(
            type='ISAIDSegmmDataLoader',
            params=dict(
                image_dir='./demo_data/train/images',
                mask_dir='./demo_data/train/masks',
                patch_config=dict(patch_size=128, stride=128),
                transforms=[
                    RemoveColorMap(),
                    segm.RandomHorizontalFlip(0.5),
                    segm.RandomVerticalFlip(0.5),
                    segm.RandomRotate90K((0, 1, 2, 3)),
                    segm.FixedPad((128, 128), 255),
                    segm.ToTensor(True),
                    comm.THMeanStdNormalize(*NORMALIZE),
                ],
                batch_size=8,
                num_workers=0,
                training=True,
            ),
        )
    ),
    optimizer=dict(
        type='sgd', params=dict(momentum=0.9, weight_decay=0.0001), grad_clip=dict(max_norm=35, norm_type=2)
    ),
    learning_rate=dict(type='poly', params=dict(base_lr=0.03, power=0.9, max_iters=300)),
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
# What the demo gains by deriving: official keys at the model's default values, data.test and its
# in-training evaluation.
DEMO_ADDED = {
    'train.eval_interval_iter': 100,
    'model.params.resnet_encoder.with_cp': (False, False, False, False),
    'model.params.resnet_encoder.stem3_3x3': False,
    'model.params.fbattention': dict(atttention=False, encode_channel=128),
    'data.test': dict(
        type='ISAIDSegmmDataLoader',
        params=dict(
            image_dir='./demo_data/val/images',
            mask_dir='./demo_data/val/masks',
            patch_config=dict(patch_size=256, stride=128),
            transforms=[
                RemoveColorMap(),
                segm.DivisiblePad(32, 255),
                segm.ToTensor(True),
                comm.THMeanStdNormalize(*NORMALIZE),
            ],
            batch_size=1,
            num_workers=0,
            training=False,
        ),
    ),
}


def _plain(value):
    """Comparable form: dicts and sequences recursively, transforms as ``(class, public attributes)``."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item) for item in value)
    if hasattr(value, '__dict__'):
        return type(value), {k: _plain(v) for k, v in vars(value).items() if not k.startswith('_')}
    return value


def _leaves(tree, prefix=''):
    if isinstance(tree, dict) and tree:
        for key, value in tree.items():
            yield from _leaves(value, prefix + key + '.')
    else:
        yield prefix[:-1], tree


def test_demo_config_keeps_every_value_it_had_and_adds_only_the_listed_keys():
    demo = _plain(import_config('isaid.factseg_demo'))
    expected = _plain(DEMO_BEFORE_DERIVE)
    for path, value in DEMO_ADDED.items():
        node = expected
        *parents, last = path.split('.')
        for part in parents:
            node = node[part]
        node[last] = _plain(value)
    assert dict(_leaves(demo)) == dict(_leaves(expected))


def test_demo_additions_are_the_model_defaults():
    from module.factseg import FactSeg

    defaults = FactSeg.default_config()
    assert defaults['fbattention'] == DEMO_ADDED['model.params.fbattention']
    for key in ('with_cp', 'stem3_3x3'):
        assert defaults['resnet_encoder'][key] == DEMO_ADDED['model.params.resnet_encoder.' + key]


def test_official_config_is_unchanged_by_deriving_from_it():
    before = _plain(import_config('isaid.factseg'))
    import_config('isaid.factseg_demo')
    assert _plain(import_config('isaid.factseg')) == before


def test_derive_merges_nested_values_and_leaves_the_base_alone():
    base = AttrDict(a=dict(b=1, c=dict(d=2, e=3)), f=[1, 2], g=dict(h=1, i=2))
    derived = derive(base, dict(a=dict(c=dict(e=30)), f=[9], g=Replace(dict(new=1))))
    assert derived == dict(a=dict(b=1, c=dict(d=2, e=30)), f=[9], g=dict(new=1))
    assert base == dict(a=dict(b=1, c=dict(d=2, e=3)), f=[1, 2], g=dict(h=1, i=2))
    assert derived.a.c.e == 30 and derived.a is not base.a


@pytest.mark.parametrize(
    'overrides, path, closest',
    [
        (dict(trian=dict(num_iters=1)), 'trian', 'train'),
        (dict(train=dict(num_iterz=1)), 'train.num_iterz', 'train.num_iters'),
        (
            dict(model=dict(params=dict(resnet_encoder=Replace(dict()), num_clases=3))),
            'model.params.num_clases',
            'model.params.num_classes',
        ),
    ],
)
def test_derive_rejects_keys_the_base_does_not_have(overrides, path, closest):
    base = import_config('isaid.factseg')
    with pytest.raises(
        ConfigError,
        match=r"unknown config key '%s'; did you mean '%s'\?.*derived config"
        % (path.replace('.', r'\.'), closest.replace('.', r'\.')),
    ):
        derive(base, overrides)
