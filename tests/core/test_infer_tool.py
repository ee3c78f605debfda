import numpy as np
import paddle
import pytest

from simplecv.api.infer_tool import build_and_load_from_file, build_from_file
from simplecv.core.errors import CheckpointError, ConfigError

TINY = [
    'model.params.resnet_encoder.resnet_type',
    'resnet18',
    'model.params.foreground.fpn.in_channels_list',
    '[64, 128, 256, 512]',
    'model.params.binary.fpn.in_channels_list',
    '[64, 128, 256, 512]',
    'model.params.foreground.fpn.out_channels',
    '32',
    'model.params.binary.fpn.out_channels',
    '32',
    'model.params.foreground.assymetric_decoder.in_channels',
    '32',
    'model.params.binary.assymetric_decoder.in_channels',
    '32',
]


def test_build_from_file_needs_no_backbone_file_and_is_in_eval_mode():
    # configs/isaid/factseg.py names pretrained/resnet50.pdparams, which does not exist here.
    model = build_from_file('isaid.factseg', TINY)
    assert not model.training
    with paddle.no_grad():
        prob = model(paddle.randn([2, 3, 64, 64]))
    np.testing.assert_allclose(prob.sum(axis=1).numpy(), 1.0, atol=1e-5)


@pytest.mark.parametrize('layout', ['simplecv', 'bare'])
def test_build_and_load_restores_weights_and_step(tmp_path, layout):
    source = build_from_file('isaid.factseg', TINY)
    state = {k: v.numpy() + 0.5 for k, v in source.state_dict().items()}
    path = str(tmp_path / 'model.pdparams')
    paddle.save({'model': state, 'global_step': 1234} if layout == 'simplecv' else state, path)
    model, step = build_and_load_from_file('isaid.factseg', path, TINY)
    assert step == (1234 if layout == 'simplecv' else 0) and not model.training
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), state[key])


def test_foreign_or_missing_checkpoints_are_clear_errors(tmp_path):
    full = build_from_file('isaid.factseg')  # ResNet-50: keys of another shape for the tiny model
    path = str(tmp_path / 'r50.pdparams')
    paddle.save({'model': full.state_dict(), 'global_step': 1}, path)
    with pytest.raises(CheckpointError, match=r'r50\.pdparams does not match the model: .*keys of another shape'):
        build_and_load_from_file('isaid.factseg', path, TINY)
    with pytest.raises(CheckpointError, match='nothing.pdparams'):
        build_and_load_from_file('isaid.factseg', str(tmp_path / 'nothing.pdparams'), TINY)
    with pytest.raises(ConfigError, match='no config'):
        build_from_file('isaid.nope')
