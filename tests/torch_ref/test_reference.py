"""torch_ref/reference.py: official names, sizes, initialisation and loss semantics."""

import math

import numpy as np
import pytest

torch = pytest.importorskip('torch')

from torch_ref import reference as ref  # noqa: E402

SMALL = dict(
    resnet_encoder=dict(resnet_type='resnet18'),
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
)


def test_official_size_and_key_names():
    torch.manual_seed(0)
    model = ref.FactSeg({})
    assert sum(p.numel() for p in model.parameters()) == 33_446_609  # spec §4.1
    keys = set(model.state_dict())
    for key in (
        'resencoder.resnet.conv1.weight',
        'resencoder.resnet.bn1.running_var',
        'resencoder.resnet.layer1.0.downsample.0.weight',
        'resencoder.resnet.layer4.0.downsample.1.num_batches_tracked',
        'fgfpn.fpn_inner4.bias',
        'bifpn.fpn_layer1.weight',
        'fg_decoder.blocks.3.2.0.weight',
        'bi_decoder.blocks.0.0.1.running_mean',
        'fg_cls.weight',
        'bi_cls.bias',
    ):
        assert key in keys, key
    decoder_blocks = {k.split('.')[2] + '.' + k.split('.')[3] for k in keys if k.startswith('fg_decoder.')}
    assert decoder_blocks == {'0.0', '1.0', '2.0', '2.1', '3.0', '3.1', '3.2'}
    assert not any(k.startswith('resencoder.resnet.fc') for k in keys)


def test_initialisation_follows_the_official_code():
    torch.manual_seed(0)
    model = ref.FactSeg(SMALL)
    inner = model.fgfpn.fpn_inner4  # 512 -> 16, kaiming_uniform(a=1): bound sqrt(3 / 512)
    assert inner.weight.abs().max() <= math.sqrt(3 / 512) and inner.weight.abs().max() > 0.9 * math.sqrt(3 / 512)
    assert torch.count_nonzero(inner.bias) == 0
    head_bound = 1 / math.sqrt(8)  # torch default conv init, weight and bias
    assert 0 < model.fg_cls.bias.abs().max() <= head_bound
    bn = model.fg_decoder.blocks[0][0][1]
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


def test_forward_shapes_probabilities_and_batch_independence():
    torch.manual_seed(0)
    model = ref.randomize_batchnorm_(ref.FactSeg(SMALL), torch.Generator().manual_seed(0)).eval()
    x = torch.randn(3, 3, 64, 96)
    with torch.no_grad():
        prob = model(x)
        single = model(x[1:2])
    assert prob.shape == (3, 16, 64, 96)
    torch.testing.assert_close(prob.sum(dim=1), torch.ones(3, 64, 96))
    # keepdim=True normaliser: entry 1 of a batch equals the same image alone.
    torch.testing.assert_close(prob[1:2], single, rtol=1e-5, atol=1e-6)
    model.train()
    out = model(x, {'cls': torch.randint(0, 16, (3, 64, 96))})
    assert list(out) == ['joint_loss'] and out['joint_loss'].ndim == 0 and out['joint_loss'] > 0


def test_output_stride_16_dilates_layer4():
    encoder = ref.ResNetEncoder(resnet_type='resnet18', output_stride=16)
    feats = encoder(torch.randn(1, 3, 64, 64))
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 4]
    assert encoder.resnet.layer4[0].conv1.dilation == (1, 1)
    assert encoder.resnet.layer4[1].conv2.dilation == (2, 2)


def test_freezing_options():
    encoder = ref.ResNetEncoder(resnet_type='resnet18', freeze_at=2, batchnorm_trainable=False)
    assert not encoder.resnet.conv1.weight.requires_grad
    assert not encoder.resnet.layer1[0].conv1.weight.requires_grad
    assert encoder.resnet.layer2[0].conv1.weight.requires_grad
    assert not encoder.resnet.layer3[0].bn1.weight.requires_grad
    encoder.train()
    assert not encoder.resnet.layer3[0].bn1.training and encoder.resnet.layer3[0].conv1.training


def test_pretrained_true_is_refused_and_a_local_file_loads(tmp_path):
    with pytest.raises(ValueError, match='would download'):
        ref.ResNetEncoder(resnet_type='resnet18', pretrained=True)
    trunk = ref.randomize_batchnorm_(ref.ResNet('resnet18'), torch.Generator().manual_seed(3))
    state = dict(trunk.state_dict(), **{'fc.weight': torch.zeros(1000, 512), 'fc.bias': torch.zeros(1000)})
    torch.save(state, tmp_path / 'r18.pth')
    encoder = ref.ResNetEncoder(resnet_type='resnet18', pretrained=str(tmp_path / 'r18.pth'))
    torch.testing.assert_close(encoder.resnet.layer2[0].bn1.running_var, trunk.layer2[0].bn1.running_var)


def test_broken_official_options_are_refused():
    with pytest.raises(ValueError, match='atttention'):
        ref.FactSeg(dict(SMALL, fbattention=dict(atttention=True)))
    with pytest.raises(ValueError, match="'SOM' or 'OHEM'"):
        ref.JointLoss(sample='mean')


def test_som_keeps_top_fraction_and_skips_zeros():
    losses = torch.tensor([[5.0, 0.0, 3.0, 0.0, 1.0, 0.0, 0.0, 0.0, 2.0, 4.0]])
    assert ref.som(losses, 0.3).item() == pytest.approx((5 + 4 + 3) / 3)
    # K = 8 but only 5 losses are non-zero: all of them are averaged.
    assert ref.som(losses, 0.8).item() == pytest.approx(15 / 5)
    assert ref.som(torch.zeros(2, 5), 0.5).item() == 0.0  # eps avoids 0/0
    assert torch.isnan(ref.som(torch.zeros(2, 5), 0.5, eps=0.0))


def test_ohem_weight_rule():
    prob = torch.tensor([[0.1, 0.95, 0.5, 0.8, 0.3, 0.99]])
    valid = torch.tensor([[True, True, True, True, False, True]])
    # min_kept 1: threshold max(0.7, sorted[1] = 0.5) = 0.7 -> 0.1 and 0.5 kept.
    assert ref.ohem_weight(prob, valid, 0.7, 1).tolist() == [[1, 0, 1, 0, 0, 0]]
    # min_kept 3: threshold max(0.7, sorted[3] = 0.95) -> also 0.8; invalid 0.3 never.
    assert ref.ohem_weight(prob, valid, 0.7, 3).tolist() == [[1, 0, 1, 1, 0, 0]]


def test_joint_loss_value_and_ignored_pixels():
    gen = torch.Generator().manual_seed(5)
    fg = torch.randn(2, 4, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    bi = torch.randn(2, 1, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 4, (2, 3, 3), generator=gen)
    y[0, 0, 0] = 255
    loss = ref.JointLoss(sample='SOM', ratio=1.0)(fg, bi, y)
    q, c = torch.sigmoid(bi), torch.softmax(fg, dim=1)
    joint = torch.cat([(1 - q) * c[:, :1], q * c[:, 1:]], dim=1)
    p = joint / joint.sum(1, keepdim=True)
    nll = -torch.log(p.gather(1, y.clamp(max=3).unsqueeze(1))).squeeze(1)
    valid = y != 255
    torch.testing.assert_close(loss, nll[valid].mean())
    loss.backward()
    assert torch.all(fg.grad[0, :, 0, 0] == 0) and bi.grad[0, 0, 0, 0] == 0
    np.testing.assert_array_less(0, fg.grad[1].abs().sum().item())


def test_separate_losses_keys():
    gen = torch.Generator().manual_seed(6)
    fg, bi = torch.randn(2, 16, 8, 8, generator=gen), torch.randn(2, 1, 8, 8, generator=gen)
    y = torch.randint(0, 16, (2, 8, 8), generator=gen)
    for loss, key in (
        (dict(), 'cls_loss'),
        (dict(som=0.2), 'som_cls_loss'),
        (dict(ohem=True), 'ohem_loss'),
        (dict(inverse_ce=True), 'inverse_celoss'),
    ):
        out = ref.separate_losses(fg, bi, y, dict(loss, ignore_index=255), 16)
        assert sorted(out) == sorted([key, 'bce_loss']) and all(torch.isfinite(v) for v in out.values())
