"""Shared test setup: deliberate CPU threading and small model configs."""

import os

os.environ.setdefault('OMP_NUM_THREADS', '2')

import pytest  # noqa: E402

import simplecv.util.mkl_env  # noqa: E402,F401  (before Paddle runs: MKL's AVX2 path on AMD CPUs)


def tiny_factseg_params(**loss):
    """``model.params`` of a small FactSeg (ResNet-18, narrow FPN/decoders) for fast tests."""
    branch = dict(
        fpn=dict(in_channels_list=[64, 128, 256, 512], out_channels=32),
        assymetric_decoder=dict(in_channels=32, out_channels=16),
        out_channels=16,
    )
    return dict(
        resnet_encoder=dict(resnet_type='resnet18', pretrained=False),
        foreground=branch,
        binary=branch,
        loss=loss or dict(joint_loss=dict(sample='SOM', ratio=0.1, ignore_index=255)),
        num_classes=16,
    )


@pytest.fixture(scope='session', autouse=True)
def program_cache_dir(tmp_path_factory):
    """Exported oneDNN programs go to a temporary cache, never into the user's cache dir."""
    path = str(tmp_path_factory.mktemp('program_cache'))
    previous = os.environ.get('FACTSEG_CACHE_DIR')
    os.environ['FACTSEG_CACHE_DIR'] = path
    yield path
    if previous is None:
        os.environ.pop('FACTSEG_CACHE_DIR', None)
    else:
        os.environ['FACTSEG_CACHE_DIR'] = previous


@pytest.fixture
def tiny_params():
    return tiny_factseg_params()
