"""FactSeg (Ma, Wang, Zhong, Zheng, "Foreground Activation-Driven Small Object Semantic
Segmentation in Large-Scale Remote Sensing Imagery", IEEE TGRS 60, 2022).
"""

import paddle
import paddle.nn as nn

from module.decoder import AsymmetricDecoder
from module.loss import JointLoss, joint_probability, log_softmax, separate_losses
from simplecv.core.config import AttrDict, merge_strict
from simplecv.core.errors import ConfigError
from simplecv.core.registry import MODEL
from simplecv.module import upsample
from simplecv.module.conv import Conv2D
from simplecv.module.fpn import FPN
from simplecv.module.init import torch_default_conv_attrs
from simplecv.module.resnet import ResNetEncoder

_BRANCH_DEFAULTS = dict(
    fpn=dict(in_channels_list=[256, 512, 1024, 2048], out_channels=256),
    # Official spelling, kept at the config boundary.
    assymetric_decoder=dict(
        in_channels=256, out_channels=128, in_feat_output_strides=(4, 8, 16, 32), out_feat_output_stride=4
    ),
    out_channels=128,
)
_JOINT_LOSS_DEFAULTS = dict(sample='SOM', ratio=0.1, ignore_index=255, som_groups=1, ohem_min_kept=100000)
_LOSS_KEYS = ('joint_loss', 'som', 'ohem', 'ignore_index')


@MODEL.register('FactSeg')
class FactSeg(nn.Layer):
    """Foreground activation (FA) + semantic refinement (SR) network with a joint-probability loss.

    A ResNet encoder feeds two independent FPN + asymmetric-decoder branches: the foreground
    branch ends in ``fg_cls`` (C class logits), the binary branch in ``bi_cls`` (one foreground
    logit); both are upsampled ×4 (bilinear, ``align_corners=True``) to the input size. In
    float64 every bilinear upsampling is computed in float64 (:mod:`simplecv.module.upsample`;
    Paddle's kernel uses single-precision weights), so float64 runs match torch's to ~1e-10.
    Sub-layer names equal the official state-dict keys (``resencoder.resnet.*``, ``fgfpn.*``,
    ``bifpn.*``, ``fg_decoder.*``, ``bi_decoder.*``, ``fg_cls``, ``bi_cls``); BatchNorm statistics
    are ``_mean`` / ``_variance``.

    Args:
        config: ``config.model.params`` of a FactSeg config (official keys, see
            :meth:`default_config`); unknown keys raise :class:`ConfigError` naming the closest key.

    Shape:
        ``x``: ``[N, 3, H, W]`` float, H and W multiples of 32.
        Train mode: ``forward(x, {'cls': y})`` with ``y`` ``[N, H, W]`` int (0..C-1, 255 ignored)
        returns a dict of scalar losses (``{'joint_loss': …}`` for the default config).
        Eval mode: ``forward(x)`` returns fused class probabilities ``[N, C, H, W]`` summing to 1
        over axis 1.

    Attributes:
        interpolation: ``'native'`` (default) or ``'matmul'``, the implementation of the two final
            ×4 upsamplings; the FPN and decoder layers hold their own.
        logsumexp: ``'native'`` (default) or ``'elementwise'``, the implementation of the
            normalisers of the eval-mode probabilities. Exporters set both on a copy with
            :func:`simplecv.module.export_ops.set_export_ops`; training and evaluation use the defaults.

    Differences from the official code:
        * the eval-mode normaliser keeps its class axis, so batches of any size are right
          (the official is only right for batch 1);
        * ``JointLoss`` works in log space and supports OHEM (see :class:`module.loss.JointLoss`);
        * no prints; ``fbattention.atttention=True`` and ``skip_decoder``, which reach undefined
          attributes in the official code, are refused with a clear error;
        * ``resnet_encoder.pretrained`` is False or a local file (nothing downloads).
    """

    @staticmethod
    def default_config():
        """The official ``set_defalut_config`` keys plus the official config's keys."""
        return dict(
            resnet_encoder=ResNetEncoder.default_config(),
            num_classes=16,
            foreground=_BRANCH_DEFAULTS,
            binary=_BRANCH_DEFAULTS,
            fbattention=dict(atttention=False, encode_channel=128),
            loss=dict(ignore_index=255),
        )

    def __init__(self, config):
        super().__init__()
        config = AttrDict(config)
        loss_config = config.pop('loss', {})
        self.config = merge_strict(self.default_config(), config, 'model.params')
        self.config.loss = self._check_loss_config(loss_config)
        cfg = self.config
        if cfg.fbattention.atttention:
            raise ConfigError(
                'model.params.fbattention.atttention=True is not supported: the official code '
                'never builds its attention blocks (fbatt_block_list), so it cannot run there either'
            )
        self.resencoder = ResNetEncoder(cfg.resnet_encoder, 'model.params.resnet_encoder')
        for branch in ('foreground', 'binary'):
            if list(cfg[branch].fpn.in_channels_list) != self.resencoder.out_channels:
                raise ConfigError(
                    'model.params.%s.fpn.in_channels_list=%s does not match the %s encoder, whose '
                    'features have %s channels'
                    % (
                        branch,
                        list(cfg[branch].fpn.in_channels_list),
                        cfg.resnet_encoder.resnet_type,
                        self.resencoder.out_channels,
                    )
                )
        self.fgfpn = FPN(**cfg.foreground.fpn)
        self.bifpn = FPN(**cfg.binary.fpn)
        self.fg_decoder = AsymmetricDecoder(**cfg.foreground.assymetric_decoder)
        self.bi_decoder = AsymmetricDecoder(**cfg.binary.assymetric_decoder)
        self.fg_cls = self._head(cfg.foreground.out_channels, cfg.num_classes)
        self.bi_cls = self._head(cfg.binary.out_channels, 1)
        if 'joint_loss' in cfg.loss:
            self.joint_loss = JointLoss(**cfg.loss.joint_loss)
        self.interpolation = 'native'
        self.logsumexp = 'native'

    @staticmethod
    def _head(in_channels, out_channels):
        weight_attr, bias_attr = torch_default_conv_attrs(in_channels, 1)
        return Conv2D(in_channels, out_channels, 1, weight_attr=weight_attr, bias_attr=bias_attr)

    @staticmethod
    def _check_loss_config(loss_config):
        loss_config = AttrDict(loss_config)
        unknown = sorted(set(loss_config) - set(_LOSS_KEYS))
        if unknown:
            raise ConfigError(
                'unknown loss %s in model.params.loss; supported: %s (inverse_ce is not ported)'
                % (', '.join(repr(u) for u in unknown), ', '.join(_LOSS_KEYS))
            )
        if 'joint_loss' in loss_config:
            loss_config.joint_loss = merge_strict(
                _JOINT_LOSS_DEFAULTS, loss_config.joint_loss, 'model.params.loss.joint_loss'
            )
        loss_config.setdefault('ignore_index', 255)
        return loss_config

    def train(self):
        """Train mode, keeping the encoder's frozen BatchNorm in eval mode when configured."""
        super().train()
        self.resencoder.train()
        return self

    def logits(self, x):
        """Return ``(fg_logits [N, C, H, W], bi_logits [N, 1, H, W])`` at the input resolution."""
        features = self.resencoder(x)
        fg_out = self.fg_decoder(list(self.fgfpn(features)))
        bi_out = self.bi_decoder(list(self.bifpn(features)))
        fg_logits = upsample.bilinear(self.fg_cls(fg_out), 4.0, self.interpolation)
        bi_logits = upsample.bilinear(self.bi_cls(bi_out), 4.0, self.interpolation)
        return fg_logits, bi_logits

    def forward(self, x, y=None):
        """Losses in train mode, fused class probabilities in eval mode.

        Args:
            x: ``[N, 3, H, W]`` float normalised images, H and W multiples of 32.
            y: train mode only, ``{'cls': [N, H, W] int64}`` labels (0..C-1, ``ignore_index`` ignored).

        Returns:
            dict or Tensor: in train mode a dict of scalar losses: ``{'joint_loss': …}`` with
            ``loss.joint_loss`` configured, else :func:`module.loss.separate_losses`' dict (a class
            loss and ``bce_loss``). In eval mode ``[N, C, H, W]`` probabilities summing to 1 over
            axis 1: :func:`module.loss.joint_probability` of the two branches, or the softmax of
            the class branch without ``joint_loss``.

        Raises:
            ValueError: in train mode without ``y['cls']``.
        """
        fg_logits, bi_logits = self.logits(x)
        if self.training:
            if y is None or 'cls' not in y:
                raise ValueError("FactSeg in train mode needs labels: model(x, {'cls': y})")
            if 'joint_loss' in self.config.loss:
                return dict(joint_loss=self.joint_loss(fg_logits, bi_logits, y['cls']))
            return separate_losses(fg_logits, bi_logits, y['cls'], self.config.loss, self.config.loss.ignore_index)
        if 'joint_loss' in self.config.loss:
            return joint_probability(fg_logits, bi_logits, self.logsumexp)
        return paddle.exp(log_softmax(fg_logits, axis=1, logsumexp=self.logsumexp))
