"""The asymmetric decoder of the semantic FPN (official name: ``AssymetricDecoder``)."""

import math

import paddle.nn as nn

from simplecv.module.conv import Conv2D
from simplecv.module.init import batch_norm, torch_default_conv_attrs
from simplecv.module.upsample import UpsampleBilinear


class AsymmetricDecoder(nn.Layer):
    """Bring every pyramid level to one stride with conv-BN-ReLU(-bilinear ×2) stacks and average.

    A level at stride ``s`` gets ``n = log2(s) - log2(out_feat_output_stride)`` layers (at least
    one); each layer is ``Conv2D(3×3, no bias) → BatchNorm → ReLU → UpsampleBilinear(×2,
    align_corners=True)`` (the upsample only when ``n > 0``). The level outputs are summed in
    order and divided by 4 (a literal in the official code, whatever the number of levels).
    Sub-layer names ``blocks.{i}.{j}.{0,1}`` equal the official state-dict keys. Conv weights use
    torch's default init, U(±1/sqrt(fan_in)).

    Args:
        in_channels: channels of every input level.
        out_channels: channels of the output.
        in_feat_output_strides: stride of each input level, e.g. ``(4, 8, 16, 32)``.
        out_feat_output_stride: stride of the output.

    Shape:
        input: a list of ``[N, in_channels, H/s_i, W/s_i]``; output ``[N, out_channels, H/o, W/o]``
        with ``o = out_feat_output_stride``.
    """

    def __init__(self, in_channels, out_channels, in_feat_output_strides=(4, 8, 16, 32), out_feat_output_stride=4):
        super().__init__()
        self.blocks = nn.LayerList()
        for stride in in_feat_output_strides:
            num_upsample = int(math.log2(int(stride))) - int(math.log2(int(out_feat_output_stride)))
            num_layers = num_upsample if num_upsample != 0 else 1
            layers = []
            for index in range(num_layers):
                channels_in = in_channels if index == 0 else out_channels
                weight_attr, _ = torch_default_conv_attrs(channels_in, 3)
                layers.append(
                    nn.Sequential(
                        Conv2D(channels_in, out_channels, 3, padding=1, weight_attr=weight_attr, bias_attr=False),
                        batch_norm(out_channels),
                        nn.ReLU(),
                        UpsampleBilinear(scale_factor=2) if num_upsample != 0 else nn.Identity(),
                    )
                )
            self.blocks.append(nn.Sequential(*layers))

    def forward(self, features):
        """Args: features, one tensor per level. Returns: ``[N, out_channels, H/o, W/o]``."""
        total = None
        for block, feature in zip(self.blocks, features):
            out = block(feature)
            total = out if total is None else total + out
        # The official code divides by a literal 4, whatever the number of levels.
        return total / 4.0
