"""torch_ref/convert.py: key rules, validation, error paths and a full checkpoint round trip."""

import os

import numpy as np
import pytest

torch = pytest.importorskip('torch')
paddle = pytest.importorskip('paddle')

from simplecv.core.errors import CheckpointError  # noqa: E402
from torch_ref import convert  # noqa: E402
from torch_ref.reference import FactSeg, ResNet, randomize_batchnorm_  # noqa: E402

SMALL_PARAMS = dict(
    resnet_encoder=dict(resnet_type='resnet18', pretrained=False),
    foreground=dict(
        fpn=dict(in_channels_list=[64, 128, 256, 512], out_channels=16),
        assymetric_decoder=dict(in_channels=16, out_channels=8),
        out_channels=8,
    ),
    binary=dict(
        fpn=dict(in_channels_list=[64, 128, 256, 512], out_channels=16),
        assymetric_decoder=dict(in_channels=16, out_channels=8),
        out_channels=8,
    ),
    loss=dict(joint_loss=dict(sample='SOM', ratio=0.1, ignore_index=255)),
    num_classes=16,
)

# A hand-written target table: one conv and one BN.
TINY_SHAPES = {
    'conv.weight': (2, 3, 1, 1),
    'bn.weight': (2,),
    'bn.bias': (2,),
    'bn._mean': (2,),
    'bn._variance': (2,),
}


def _tiny_torch_sd(prefix=''):
    gen = torch.Generator().manual_seed(0)
    sd = {
        'conv.weight': torch.randn(2, 3, 1, 1, generator=gen),
        'bn.weight': torch.randn(2, generator=gen),
        'bn.bias': torch.randn(2, generator=gen),
        'bn.running_mean': torch.randn(2, generator=gen),
        'bn.running_var': torch.rand(2, generator=gen),
        'bn.num_batches_tracked': torch.tensor(7),
    }
    return {prefix + k: v for k, v in sd.items()}


def _write_config(folder, params):
    path = os.path.join(folder, 'small_factseg.py')
    with open(path, 'w') as f:
        f.write('config = dict(model=dict(type="FactSeg", params=%r))\n' % (params,))
    return path


def test_paddle_key_rules():
    assert convert.paddle_key('bn1.running_mean') == 'bn1._mean'
    assert convert.paddle_key('layer1.0.downsample.1.running_var') == 'layer1.0.downsample.1._variance'
    assert convert.paddle_key('fg_decoder.blocks.3.2.1.num_batches_tracked') is None
    assert convert.paddle_key('fgfpn.fpn_inner1.weight') == 'fgfpn.fpn_inner1.weight'
    assert convert.paddle_key('running_mean') == '_mean'


def test_strip_ddp_prefix_only_leading():
    out = convert.strip_ddp_prefix({'module.a.b': 1, 'c.module.d': 2, 'e': 3})
    assert out == {'a.b': 1, 'c.module.d': 2, 'e': 3}


@pytest.mark.parametrize('prefix', ['', 'module.'])
def test_convert_tiny_state_dict(prefix):
    torch_sd = _tiny_torch_sd(prefix)
    paddle_sd, report = convert.convert_factseg_state_dict(torch_sd, TINY_SHAPES)
    assert report.ok, report.describe()
    assert sorted(paddle_sd) == sorted(TINY_SHAPES)
    assert report.dropped == ['bn.num_batches_tracked']
    np.testing.assert_array_equal(paddle_sd['bn._mean'], torch_sd[prefix + 'bn.running_mean'].numpy())
    np.testing.assert_array_equal(paddle_sd['bn._variance'], torch_sd[prefix + 'bn.running_var'].numpy())
    np.testing.assert_array_equal(paddle_sd['conv.weight'], torch_sd[prefix + 'conv.weight'].numpy())
    assert paddle_sd['conv.weight'].dtype == np.float32


def test_float64_and_float16_sources_become_float32():
    torch_sd = {k: (v.double() if v.is_floating_point() else v) for k, v in _tiny_torch_sd().items()}
    torch_sd['conv.weight'] = torch_sd['conv.weight'].half()
    paddle_sd, report = convert.convert_factseg_state_dict(torch_sd, TINY_SHAPES)
    assert report.ok
    assert {v.dtype for v in paddle_sd.values()} == {np.dtype('float32')}


def test_missing_unexpected_and_misshaped_keys_are_reported():
    torch_sd = _tiny_torch_sd('module.')
    del torch_sd['module.bn.bias']
    torch_sd['module.extra.weight'] = torch.zeros(1)
    torch_sd['module.conv.weight'] = torch.zeros(2, 3, 3, 3)
    torch_sd['module.note'] = 'not a tensor'
    _, report = convert.convert_factseg_state_dict(torch_sd, TINY_SHAPES)
    assert not report.ok
    assert report.missing == ['bn.bias']
    assert report.unexpected == ['extra.weight', 'note (a str, not a tensor)']
    assert report.mismatched == [('conv.weight', (2, 3, 1, 1), (2, 3, 3, 3))]
    with pytest.raises(
        CheckpointError,
        match=r'ck\.pth does not match.*missing 1/5 keys: bn\.bias.*'
        r'unexpected 2 keys: extra\.weight.*conv\.weight '
        r'\(model \(2, 3, 1, 1\), file \(2, 3, 3, 3\)\)',
    ):
        report.raise_if_failed('ck.pth')


def test_resnet_conversion_drops_fc_and_keeps_torchvision_names(tmp_path):
    gen = torch.Generator().manual_seed(1)
    trunk = randomize_batchnorm_(ResNet('resnet18'), gen)
    torch_sd = dict(trunk.state_dict())
    torch_sd['fc.weight'] = torch.randn(1000, 512, generator=gen)
    torch_sd['fc.bias'] = torch.randn(1000, generator=gen)
    src = tmp_path / 'resnet18.pth'
    torch.save(torch_sd, src)
    dst_alias, dst_depth = tmp_path / 'alias.pdparams', tmp_path / 'depth.pdparams'
    assert convert.main(['resnet18', '--src', str(src), '--dst', str(dst_alias)]) == 0
    assert convert.main(['resnet', '--depth', '18', '--src', str(src), '--dst', str(dst_depth)]) == 0
    loaded = paddle.load(str(dst_alias), return_numpy=True)
    again = paddle.load(str(dst_depth), return_numpy=True)
    assert sorted(loaded) == sorted(again)
    assert 'layer2.0.downsample.1._variance' in loaded and 'bn1._mean' in loaded
    assert not any(k.startswith('fc.') or 'num_batches_tracked' in k for k in loaded)
    for key, value in torch_sd.items():
        new_key = convert.paddle_key(key)
        if new_key is None or key.startswith('fc.'):
            continue
        np.testing.assert_array_equal(loaded[new_key], value.numpy(), err_msg=key)
        np.testing.assert_array_equal(again[new_key], value.numpy(), err_msg=key)

    from simplecv.module.resnet import ResNetEncoder

    encoder = ResNetEncoder(dict(resnet_type='resnet18', pretrained=str(dst_alias)))
    for key, value in encoder.resnet.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), loaded[key], err_msg=key)


def test_resnet_depth_mismatch_fails_without_output(tmp_path):
    src = tmp_path / 'resnet18.pth'
    torch.save(ResNet('resnet18').state_dict(), src)
    dst = tmp_path / 'r34.pdparams'
    assert convert.main(['resnet34', '--src', str(src), '--dst', str(dst)]) == 1
    assert os.listdir(tmp_path) == ['resnet18.pth']
    with pytest.raises(SystemExit):
        convert.main(['resnet50', '--depth', '18', '--src', str(src), '--dst', str(dst)])
    with pytest.raises(SystemExit):
        convert.main(['resnet', '--src', str(src), '--dst', str(dst)])


def test_factseg_checkpoint_round_trip(tmp_path):
    """An official-layout DDP checkpoint of a reduced FactSeg converts exactly, tensor by tensor."""
    gen = torch.Generator().manual_seed(2)
    torch.manual_seed(2)
    model = randomize_batchnorm_(FactSeg(SMALL_PARAMS), gen)
    torch_sd = model.state_dict()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.007, momentum=0.9, weight_decay=1e-4)
    checkpoint = {
        'model': {'module.' + k: v for k, v in torch_sd.items()},
        'opt': optimizer.state_dict(),
        'global_step': 1234,
    }
    src, dst = tmp_path / 'model-1234.pth', tmp_path / 'model-1234.pdparams'
    torch.save(checkpoint, src)
    config = _write_config(str(tmp_path), SMALL_PARAMS)

    assert convert.main(['factseg', '--src', str(src), '--dst', str(dst), '--config', config]) == 0
    out = paddle.load(str(dst), return_numpy=True)
    assert out['global_step'] == 1234 and out['source'] == 'converted-official'
    expected = {convert.paddle_key(k): v for k, v in torch_sd.items() if convert.paddle_key(k)}
    assert sorted(out['model']) == sorted(expected)
    assert len(expected) == len(torch_sd) - 34  # 34 BatchNorms in this model
    for key, value in expected.items():
        np.testing.assert_array_equal(out['model'][key], value.numpy(), err_msg=key)
    assert out['model']['fg_cls.weight'].shape == (16, 8, 1, 1)
    assert 'resencoder.resnet.layer1.0.bn1._variance' in out['model']
    assert 'bi_decoder.blocks.3.2.1._mean' in out['model']

    from module.factseg import FactSeg as PaddleFactSeg
    from simplecv.util.state_dict import load_state_dict_strict

    paddle_model = PaddleFactSeg(SMALL_PARAMS)
    load_state_dict_strict(paddle_model, out['model'], source=str(dst))
    for key, value in paddle_model.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), expected[key].numpy(), err_msg=key)


def test_factseg_bare_state_dict_gets_step_zero(tmp_path):
    torch.manual_seed(3)
    src, dst = tmp_path / 'bare.pth', tmp_path / 'bare.pdparams'
    torch.save(FactSeg(SMALL_PARAMS).state_dict(), src)
    config = _write_config(str(tmp_path), SMALL_PARAMS)
    assert convert.main(['factseg', '--src', str(src), '--dst', str(dst), '--config', config]) == 0
    assert paddle.load(str(dst))['global_step'] == 0


def test_factseg_wrong_architecture_fails_without_output(tmp_path):
    torch.manual_seed(4)
    src, dst = tmp_path / 'small.pth', tmp_path / 'out.pdparams'
    torch.save({'model': FactSeg(SMALL_PARAMS).state_dict(), 'global_step': 1}, src)
    config = _write_config(str(tmp_path), SMALL_PARAMS)
    overrides = ['model.params.foreground.fpn.out_channels', '32']
    argv = ['factseg', '--src', str(src), '--dst', str(dst), '--config', config, '--opts'] + overrides
    assert convert.main(argv) == 1
    assert sorted(os.listdir(tmp_path)) == ['small.pth', 'small_factseg.py']
    params = convert.factseg_params_from_config(config, overrides)
    with pytest.raises(
        CheckpointError,
        match=r'small\.pth does not match the target architecture: '
        r'16 keys of another shape: fgfpn\.fpn_inner1\.bias '
        r'\(model \(32,\), file \(16,\)\)',
    ):
        convert.convert_factseg_file(str(src), str(dst), params)
    assert not dst.exists()


@pytest.mark.filterwarnings('ignore:Detected pickle protocol')
def test_unreadable_and_foreign_files_name_the_file(tmp_path):
    junk = tmp_path / 'junk.pth'
    junk.write_bytes(b'this is not a torch file')
    with pytest.raises(CheckpointError, match=r'cannot read .*junk\.pth as a PyTorch weights file'):
        convert.load_torch_file(str(junk))
    with pytest.raises(CheckpointError, match=r'missing\.pth does not exist'):
        convert.load_torch_file(str(tmp_path / 'missing.pth'))
    paddle_file = tmp_path / 'paddle.pdparams'
    paddle.save({'w': paddle.ones([2])}, str(paddle_file))
    with pytest.raises(CheckpointError, match=r'paddle\.pdparams'):
        convert.unwrap_checkpoint(convert.load_torch_file(str(paddle_file)), str(paddle_file))
    listed = tmp_path / 'list.pth'
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(CheckpointError, match=r'list\.pth is neither a SimpleCV checkpoint'):
        convert.unwrap_checkpoint(convert.load_torch_file(str(listed)), str(listed))
    dst = tmp_path / 'out.pdparams'
    assert convert.main(['resnet50', '--src', str(junk), '--dst', str(dst)]) == 1
    assert not dst.exists()


def test_missing_output_folder_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match='does not exist; create it first'):
        convert.save_paddle({'a': np.zeros(1)}, str(tmp_path / 'nope' / 'x.pdparams'))
