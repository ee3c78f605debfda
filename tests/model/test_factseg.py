"""FactSeg invariants on a small configuration (ResNet-18, narrow branches)."""

import numpy as np
import paddle
import pytest

from module.factseg import FactSeg
from simplecv.core.errors import CheckpointError, ConfigError
from simplecv.module.resnet import ResNetEncoder
from tests.conftest import tiny_factseg_params


@pytest.fixture(scope='module')
def model():
    paddle.seed(0)
    return FactSeg(tiny_factseg_params())


def _randomise_bn_statistics(layer, seed):
    rng = np.random.RandomState(seed)
    for sub in layer.sublayers():
        if isinstance(sub, paddle.nn.BatchNorm2D):
            sub._mean.set_value(rng.randn(*sub._mean.shape).astype('float32') * 0.1)
            sub._variance.set_value(rng.uniform(0.5, 1.5, sub._variance.shape).astype('float32'))


def test_eval_probabilities_sum_to_one_and_batch_entries_are_independent(model):
    _randomise_bn_statistics(model, 0)
    model.eval()
    x = paddle.randn([3, 3, 64, 96])
    with paddle.no_grad():
        prob = model(x)
        single = model(x[1:2])
    assert prob.shape == [3, 16, 64, 96]
    np.testing.assert_allclose(prob.sum(axis=1).numpy(), 1.0, atol=1e-5)
    assert float(prob.min()) >= 0
    np.testing.assert_allclose(prob[1:2].numpy(), single.numpy(), atol=1e-6)


def test_eval_output_is_the_joint_fusion_of_the_two_heads(model):
    model.eval()
    x = paddle.randn([2, 3, 64, 64])
    with paddle.no_grad():
        fg, bi = model.logits(x)
        prob = model(x).numpy()
    c = paddle.nn.functional.softmax(fg, axis=1).numpy()
    q = paddle.nn.functional.sigmoid(bi).numpy()
    joint = np.concatenate([(1 - q) * c[:, :1], q * c[:, 1:]], axis=1)
    np.testing.assert_allclose(prob, joint / joint.sum(axis=1, keepdims=True), atol=1e-6)


def test_train_mode_returns_joint_loss_and_gradients_reach_both_branches(model):
    model.train()
    model.clear_gradients()
    x = paddle.randn([2, 3, 64, 64])
    y = paddle.randint(0, 16, [2, 64, 64])
    y[:, :8] = 255
    losses = model(x, {'cls': y})
    assert set(losses) == {'joint_loss'} and losses['joint_loss'].item() > 0
    losses['joint_loss'].backward()
    for name in [
        'fg_cls.weight',
        'bi_cls.weight',
        'fg_cls.bias',
        'bi_cls.bias',
        'fg_decoder.blocks.3.2.0.weight',
        'bi_decoder.blocks.0.0.0.weight',
        'fgfpn.fpn_inner4.weight',
        'bifpn.fpn_layer1.weight',
        'resencoder.resnet.conv1.weight',
    ]:
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and float(grad.abs().sum()) > 0, name
    model.eval()


def test_train_mode_without_labels_is_a_clear_error(model):
    model.train()
    with pytest.raises(ValueError, match="model\\(x, \\{'cls': y\\}\\)"):
        model(paddle.randn([1, 3, 32, 32]))
    model.eval()


def test_runs_in_float64():
    paddle.seed(1)
    net = FactSeg(tiny_factseg_params())
    net.to(dtype='float64')
    net.eval()
    with paddle.no_grad():
        prob = net(paddle.randn([2, 3, 32, 32], dtype='float64'))
    assert prob.dtype == paddle.float64
    np.testing.assert_allclose(prob.sum(axis=1).numpy(), 1.0, atol=1e-12)


def test_official_alternative_losses():
    net = FactSeg(tiny_factseg_params(som=0.1))
    net.train()
    y = paddle.randint(0, 16, [2, 32, 32])
    assert set(net(paddle.randn([2, 3, 32, 32]), {'cls': y})) == {'som_cls_loss', 'bce_loss'}
    net = FactSeg(tiny_factseg_params(ohem=True))
    net.train()
    assert set(net(paddle.randn([2, 3, 32, 32]), {'cls': y})) == {'ohem_loss', 'bce_loss'}


def test_parameter_names_follow_the_official_state_dict():
    net = FactSeg(tiny_factseg_params())
    keys = set(net.state_dict())
    for key in [
        'resencoder.resnet.layer1.0.conv1.weight',
        'resencoder.resnet.layer2.0.downsample.1._variance',
        'fgfpn.fpn_inner1.weight',
        'bifpn.fpn_layer4.bias',
        'fg_decoder.blocks.0.0.0.weight',
        'bi_decoder.blocks.3.2.1._mean',
        'fg_cls.weight',
        'bi_cls.bias',
    ]:
        assert key in keys, key
    assert not any('running' in k or 'num_batches_tracked' in k for k in keys)


def test_full_model_trainable_parameter_count_matches_the_official():
    net = FactSeg(dict(resnet_encoder=dict(pretrained=False), loss=dict(joint_loss=dict())))
    trainable = sum(int(np.prod(p.shape)) for p in net.parameters() if not p.stop_gradient)
    assert trainable == 33446609


def test_initialisation_follows_torch_conventions():
    paddle.seed(3)
    net = FactSeg(dict(resnet_encoder=dict(pretrained=False), loss=dict(joint_loss=dict())))
    head = net.fg_cls.weight.numpy()
    bound = 1 / np.sqrt(128)
    assert np.abs(head).max() <= bound and np.abs(head).max() > 0.9 * bound
    assert np.abs(net.fg_cls.bias.numpy()).max() > 0  # torch draws the head bias too
    fpn = net.fgfpn.fpn_layer1.weight.numpy()
    assert np.abs(fpn).max() <= np.sqrt(3 / 2304)
    np.testing.assert_allclose(fpn.std(), np.sqrt(3 / 2304) / np.sqrt(3), rtol=0.02)  # U(±a) has std a/√3
    assert np.all(net.fgfpn.fpn_inner1.bias.numpy() == 0)
    dec = net.fg_decoder.blocks[0][0][0].weight.numpy()
    assert np.abs(dec).max() <= 1 / np.sqrt(2304)
    bn = net.fg_decoder.blocks[0][0][1]
    assert bn._momentum == pytest.approx(0.9) and bn._epsilon == pytest.approx(1e-5)


@pytest.mark.parametrize(
    'bad, match',
    [
        (dict(num_clases=16), r"model\.params\.num_clases.*did you mean 'model\.params\.num_classes'"),
        (dict(fbattention=dict(atttention=True)), 'fbatt_block_list'),
        (dict(foreground=dict(skip_decoder=True)), r'model\.params\.foreground\.skip_decoder'),
        (dict(loss=dict(inverse_ce=True)), 'inverse_ce'),
        (dict(loss=dict(joint_loss=dict(sample='SUM'))), "'SOM' or 'OHEM'"),
        (dict(resnet_encoder=dict(resnet_type='resnet50')), r'in_channels_list=\[64, 128, 256, 512\] does not match'),
    ],
)
def test_config_errors(bad, match):
    params = tiny_factseg_params()
    for key, value in bad.items():
        if isinstance(value, dict) and isinstance(params.get(key), dict):
            params[key] = dict(params[key], **value)
        else:
            params[key] = value
    with pytest.raises(ConfigError, match=match):
        FactSeg(params)


def test_pretrained_true_and_missing_file_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match='never downloads'):
        ResNetEncoder(dict(resnet_type='resnet18', pretrained=True))
    missing = str(tmp_path / 'resnet18.pdparams')
    converter = r'torch_ref/convert\.py resnet18 --src resnet18-5c106cde\.pth'
    with pytest.raises(CheckpointError, match=r'do not exist.*' + converter):
        ResNetEncoder(dict(resnet_type='resnet18', pretrained=missing))


def test_pretrained_file_loads_strictly(tmp_path):
    source = ResNetEncoder(dict(resnet_type='resnet18'))
    state = {k: v.numpy() + 1.0 for k, v in source.resnet.state_dict().items()}
    state['fc.weight'] = np.zeros((1000, 512), 'float32')  # torchvision files carry fc: dropped
    path = str(tmp_path / 'r18.pdparams')
    paddle.save(state, path)
    loaded = ResNetEncoder(dict(resnet_type='resnet18', pretrained=path))
    for key, value in loaded.resnet.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), state[key])
    del state['layer1.0.conv1.weight']
    state['layer9.weight'] = np.zeros(1, 'float32')
    paddle.save(state, path)
    expected = r'missing 1/\d+ keys: layer1\.0\.conv1\.weight.*unexpected 1 keys: layer9'
    with pytest.raises(CheckpointError, match=expected):
        ResNetEncoder(dict(resnet_type='resnet18', pretrained=path))


@pytest.mark.parametrize('output_stride, strides', [(32, [4, 8, 16, 32]), (16, [4, 8, 16, 16]), (8, [4, 8, 8, 8])])
def test_output_stride(output_stride, strides):
    encoder = ResNetEncoder(dict(resnet_type='resnet18', output_stride=output_stride))
    encoder.eval()
    with paddle.no_grad():
        features = encoder(paddle.randn([1, 3, 64, 64]))
    assert [64 // f.shape[-1] for f in features] == strides
    assert [f.shape[1] for f in features] == [64, 128, 256, 512]


def test_freeze_at_and_frozen_batchnorm():
    encoder = ResNetEncoder(dict(resnet_type='resnet18', freeze_at=2, batchnorm_trainable=False))
    assert encoder.resnet.conv1.weight.stop_gradient and encoder.resnet.layer1[0].conv1.weight.stop_gradient
    assert not encoder.resnet.layer2[0].conv1.weight.stop_gradient
    assert encoder.resnet.layer3[0].bn1.weight.stop_gradient
    encoder.train()
    assert not encoder.resnet.layer3[0].bn1.training and encoder.resnet.layer3[0].conv1.training


def test_gradient_checkpointing_gives_the_same_gradients():
    paddle.seed(4)
    plain = ResNetEncoder(dict(resnet_type='resnet18'))
    recomputed = ResNetEncoder(dict(resnet_type='resnet18', with_cp=(True, True, True, True)))
    recomputed.set_state_dict(plain.state_dict())
    x = paddle.randn([2, 3, 64, 64])
    for net in (plain, recomputed):
        net.train()
        x_in = x.clone()
        x_in.stop_gradient = False
        sum(f.mean() for f in net(x_in)).backward()
    np.testing.assert_allclose(
        plain.resnet.conv1.weight.grad.numpy(), recomputed.resnet.conv1.weight.grad.numpy(), rtol=1e-5, atol=1e-7
    )


def test_frozen_stages_keep_batchnorm_statistics_fixed():
    encoder = ResNetEncoder(dict(resnet_type='resnet18', freeze_at=2))
    encoder.train()
    assert not encoder.resnet.bn1.training and not encoder.resnet.layer1[1].bn2.training
    assert encoder.resnet.layer2[0].bn1.training
