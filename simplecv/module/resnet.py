"""torchvision-layout ResNets and SimpleCV's ``ResNetEncoder`` with its options.

Parameter names equal torchvision's (``conv1.weight``, ``layer1.0.downsample.1._mean`` …), so the
ImageNet weights converted by ``torch_ref/convert.py resnet50`` load by name.
"""

import os

import paddle
import paddle.nn as nn
from paddle.distributed.fleet.utils import recompute

from simplecv.core.config import REPO_ROOT, merge_strict
from simplecv.core.errors import CheckpointError, ConfigError
from simplecv.module.conv import Conv2D
from simplecv.module.init import batch_norm, kaiming_normal_fan_out_attr
from simplecv.util.logger import get_logger

_logger = get_logger('factseg.resnet')


def _conv(in_channels, out_channels, kernel_size, stride=1, dilation=1):
    return Conv2D(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=dilation * (kernel_size - 1) // 2,
        dilation=dilation,
        weight_attr=kaiming_normal_fan_out_attr(out_channels, kernel_size),
        bias_attr=False,
    )


class BasicBlock(nn.Layer):
    """Two 3×3 convs (ResNet-18/34). ``dilations`` gives each conv's dilation."""

    expansion = 1

    def __init__(self, in_channels, width, stride=1, dilations=(1, 1), downsample=None):
        super().__init__()
        self.conv1 = _conv(in_channels, width, 3, stride, dilations[0])
        self.bn1 = batch_norm(width)
        self.relu = nn.ReLU()
        self.conv2 = _conv(width, width, 3, 1, dilations[1])
        self.bn2 = batch_norm(width)
        self.downsample = downsample

    def forward(self, x):
        """``[N, in_channels, H, W] -> [N, width, H / stride, W / stride]``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Layer):
    """1×1 → 3×3 (with the stride, "ResNet v1.5") → 1×1 ×4 (ResNet-50/101)."""

    expansion = 4

    def __init__(self, in_channels, width, stride=1, dilations=(1, 1), downsample=None):
        super().__init__()
        self.conv1 = _conv(in_channels, width, 1)
        self.bn1 = batch_norm(width)
        self.conv2 = _conv(width, width, 3, stride, dilations[1])
        self.bn2 = batch_norm(width)
        self.conv3 = _conv(width, width * 4, 1)
        self.bn3 = batch_norm(width * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        """``[N, in_channels, H, W] -> [N, 4 * width, H / stride, W / stride]``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


# The torchvision ImageNet files SimpleCV loads, by architecture (converted with torch_ref/convert.py).
TORCHVISION_FILES = {
    'resnet18': 'resnet18-5c106cde.pth',
    'resnet34': 'resnet34-333f7ec4.pth',
    'resnet50': 'resnet50-19c8e357.pth',
    'resnet101': 'resnet101-5d3b4d8f.pth',
}

ARCHITECTURES = {
    'resnet18': (BasicBlock, (2, 2, 2, 2)),
    'resnet34': (BasicBlock, (3, 4, 6, 3)),
    'resnet50': (Bottleneck, (3, 4, 6, 3)),
    'resnet101': (Bottleneck, (3, 4, 23, 3)),
}


class ResNet(nn.Layer):
    """torchvision's ResNet without ``fc``, with SimpleCV's stride-to-dilation conversion.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        depths: blocks per stage.
        stage_dilations: dilation of each of ``layer1..4``; a stage with dilation ``d > 1`` has
            stride 1, its first block's strided 3×3 conv gets ``d // 2`` and every other 3×3
            conv ``d`` (SimpleCV's ``_nostride_dilate``).

    Shape:
        input ``[N, 3, H, W]``; ``layer1..4`` outputs at strides 4, 8, 16, 32 (fewer when dilated).
    """

    def __init__(self, block, depths, stage_dilations=(1, 1, 1, 1)):
        super().__init__()
        self.conv1 = Conv2D(
            3, 64, 7, stride=2, padding=3, weight_attr=kaiming_normal_fan_out_attr(64, 7), bias_attr=False
        )
        self.bn1 = batch_norm(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)
        self._in_channels = 64
        widths = (64, 128, 256, 512)
        strides = (1, 2, 2, 2)
        for index in range(4):
            layer = self._make_layer(block, widths[index], depths[index], strides[index], stage_dilations[index])
            self.add_sublayer('layer%d' % (index + 1), layer)

    def _make_layer(self, block, width, depth, stride, dilation):
        if dilation > 1:
            stride = 1
            first = (dilation // 2, dilation // 2) if block is Bottleneck else (dilation // 2, dilation)
            later = (dilation, dilation)
        else:
            first = later = (1, 1)
        downsample = None
        if stride != 1 or self._in_channels != width * block.expansion:
            downsample = nn.Sequential(
                _conv(self._in_channels, width * block.expansion, 1, stride),
                batch_norm(width * block.expansion),
            )
        blocks = [block(self._in_channels, width, stride, first, downsample)]
        self._in_channels = width * block.expansion
        blocks += [block(self._in_channels, width, 1, later) for _ in range(1, depth)]
        return nn.Sequential(*blocks)


class ResNetEncoder(nn.Layer):
    """SimpleCV's ResNet encoder: returns ``[c2, c3, c4(, c5)]``.

    Args:
        config: a dict of the keys in :meth:`default_config`:
            ``resnet_type`` ('resnet18'|'resnet34'|'resnet50'|'resnet101'), ``include_conv5``,
            ``batchnorm_trainable`` (False freezes BN affine parameters and keeps BN in eval
            mode), ``pretrained`` (False or a local ``.pdparams`` path made by
            ``torch_ref/convert.py resnet50``), ``freeze_at`` (0: nothing; 1: stem; k≥2: also
            ``layer1..layer{k-1}``), ``output_stride`` (8, 16 or 32), ``with_cp`` (four bools:
            recompute each stage in backward to save memory). ``stem3_3x3`` is accepted for
            compatibility with official configs and ignored, as SimpleCV ignores it.

    Shape:
        input ``[N, 3, H, W]``; outputs ``[N, C·k, H/s, W/s]`` with s = 4, 8, 16, 32 at output
        stride 32 (C = 64 for ResNet-18/34, 256 for ResNet-50/101; k = 1, 2, 4, 8).

    Raises:
        ConfigError: unknown key, unsupported ``resnet_type`` or ``output_stride``, ``pretrained=True``.
        CheckpointError: the ``pretrained`` file is missing or does not match.

    Differences from the official code: ``pretrained=True`` (download torchvision weights) is
    refused: nothing downloads. The weights load strictly (SimpleCV used ``strict=False``).
    """

    @staticmethod
    def default_config():
        """The keys and defaults of SimpleCV's ``ResNetEncoder.set_defalut_config``."""
        return dict(
            resnet_type='resnet50',
            include_conv5=True,
            batchnorm_trainable=True,
            pretrained=False,
            freeze_at=0,
            output_stride=32,
            with_cp=(False, False, False, False),
            stem3_3x3=False,
        )

    def __init__(self, config, where='resnet_encoder'):
        super().__init__()
        self.config = merge_strict(self.default_config(), config, where)
        cfg = self.config
        if cfg.resnet_type not in ARCHITECTURES:
            raise ConfigError(
                '%s.resnet_type=%r is not supported; choose one of %s'
                % (where, cfg.resnet_type, ', '.join(ARCHITECTURES))
            )
        dilations = {32: (1, 1, 1, 1), 16: (1, 1, 1, 2), 8: (1, 1, 2, 4)}
        if cfg.output_stride not in dilations:
            raise ConfigError('%s.output_stride must be 8, 16 or 32, got %r' % (where, cfg.output_stride))
        block, depths = ARCHITECTURES[cfg.resnet_type]
        self.resnet = ResNet(block, depths, dilations[cfg.output_stride])
        self.out_channels = [64 * block.expansion * 2**i for i in range(4)]
        if cfg.pretrained is True:
            raise ConfigError(
                '%s.pretrained=True asks for torchvision ImageNet weights; this port never downloads. '
                'Set it to a local file made with `python torch_ref/convert.py %s --src %s '
                '--dst pretrained/%s.pdparams`, or to False to train from scratch.'
                % (where, cfg.resnet_type, TORCHVISION_FILES[cfg.resnet_type], cfg.resnet_type)
            )
        if cfg.pretrained:
            self.load_pretrained(cfg.pretrained)
        if not cfg.batchnorm_trainable:
            for layer in self.resnet.sublayers():
                if isinstance(layer, nn.BatchNorm2D):
                    for param in layer.parameters():
                        param.stop_gradient = True
        self._freeze_at(cfg.freeze_at)

    def load_pretrained(self, path):
        """Load ImageNet weights (torchvision names, Paddle BN names) strictly from ``path``.

        A relative path is looked up in the working directory, then in the repository root.
        """
        if not os.path.isabs(path) and not os.path.isfile(path) and os.path.isfile(os.path.join(REPO_ROOT, path)):
            path = os.path.join(REPO_ROOT, path)
        if not os.path.isfile(path):
            raise CheckpointError(
                "pretrained backbone weights %r do not exist. Convert torchvision's ImageNet weights "
                "with `python torch_ref/convert.py %s --src %s --dst %s` (torchvision's file of that name), "
                'or set model.params.resnet_encoder.pretrained False to train from scratch.'
                % (path, self.config.resnet_type, TORCHVISION_FILES[self.config.resnet_type], path)
            )
        try:
            state = paddle.load(path)
        except Exception as exc:
            message = 'cannot read pretrained weights %r (%s); re-create it with `python torch_ref/convert.py %s ...`'
            raise CheckpointError(message % (path, exc, self.config.resnet_type)) from exc
        if isinstance(state, dict) and isinstance(state.get('model'), dict):
            state = state['model']
        state = {k: v for k, v in state.items() if not k.startswith('fc.')}
        from simplecv.util.state_dict import load_state_dict_strict

        load_state_dict_strict(self.resnet, state, source=path)
        _logger.info('ResNetEncoder: loaded %d pretrained tensors from %s', len(state), path)

    def _frozen_stages(self):
        at = self.config.freeze_at
        stages = [self.resnet.conv1, self.resnet.bn1] if at >= 1 else []
        return stages + [getattr(self.resnet, 'layer%d' % i) for i in range(1, min(at, 5))]

    def _freeze_at(self, at):
        for stage in self._frozen_stages():
            for param in stage.parameters():
                param.stop_gradient = True

    def train(self):
        """Train mode; BatchNorm stays in eval mode in frozen stages and when ``batchnorm_trainable`` is False.

        As SimpleCV's ``freeze_params``, freezing a stage also fixes its BN statistics.
        """
        super().train()
        frozen = (
            self.resnet.sublayers()
            if not self.config.batchnorm_trainable
            else [layer for stage in self._frozen_stages() for layer in [stage] + stage.sublayers()]
        )
        for layer in frozen:
            if isinstance(layer, nn.BatchNorm2D):
                layer.eval()
        return self

    def forward(self, x):
        """Args: x ``[N, 3, H, W]``. Returns: list ``[c2, c3, c4, c5]`` (``c5`` only with ``include_conv5``)."""
        r = self.resnet
        x = r.maxpool(r.relu(r.bn1(r.conv1(x))))
        stages = [r.layer1, r.layer2, r.layer3] + ([r.layer4] if self.config.include_conv5 else [])
        features = []
        for stage, checkpointed in zip(stages, self.config.with_cp):
            if checkpointed and self.training and not x.stop_gradient:
                x = recompute(stage, x)
            else:
                x = stage(x)
            features.append(x)
        return features
