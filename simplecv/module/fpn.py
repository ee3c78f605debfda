"""SimpleCV's FPN: 1×1 laterals, 3×3 outputs, nearest ×2 top-down, no extra levels."""

import paddle.nn as nn

from simplecv.module import upsample
from simplecv.module.conv import Conv2D
from simplecv.module.init import kaiming_uniform_a1_attr, zeros_attr


class FPN(nn.Layer):
    """Feature pyramid over encoder features ordered from high to low resolution.

    Sub-layers are named ``fpn_inner{i}`` (1×1 lateral) and ``fpn_layer{i}`` (3×3 output) for
    ``i = 1..len(in_channels_list)`` as in SimpleCV, so official checkpoints load by name. Each
    conv has a bias and ``kaiming_uniform_(a=1)`` init with a zero bias; no norm, no activation.

    Args:
        in_channels_list: channels of each input level, highest resolution first.
        out_channels: channels of every output level.
        interpolation: ``'native'`` or ``'matmul'``, the implementation of the nearest ×2
            upsampling (:func:`simplecv.module.upsample.nearest_2x`); exporters change it with
            :func:`simplecv.module.export_ops.set_export_ops`.

    Shape:
        input: a list of ``[N, C_i, H/s_i, W/s_i]`` with s_{i+1} = 2·s_i;
        output: a tuple of ``[N, out_channels, H/s_i, W/s_i]``, highest resolution first.
        The top-down merge carries the pre-3×3 map (``last_inner``), not the 3×3 output.
    """

    def __init__(self, in_channels_list, out_channels, interpolation='native'):
        super().__init__()
        self.num_levels = len(in_channels_list)
        self.interpolation = interpolation
        for index, in_channels in enumerate(in_channels_list, 1):
            self.add_sublayer(
                'fpn_inner%d' % index,
                Conv2D(
                    in_channels,
                    out_channels,
                    1,
                    weight_attr=kaiming_uniform_a1_attr(in_channels, 1),
                    bias_attr=zeros_attr(),
                ),
            )
            self.add_sublayer(
                'fpn_layer%d' % index,
                Conv2D(
                    out_channels,
                    out_channels,
                    3,
                    padding=1,
                    weight_attr=kaiming_uniform_a1_attr(out_channels, 3),
                    bias_attr=zeros_attr(),
                ),
            )

    def forward(self, features):
        """Args: features, a list as in the class docstring. Returns: a tuple of pyramid levels."""
        last_inner = getattr(self, 'fpn_inner%d' % self.num_levels)(features[-1])
        results = [getattr(self, 'fpn_layer%d' % self.num_levels)(last_inner)]
        for index in range(self.num_levels - 1, 0, -1):
            lateral = getattr(self, 'fpn_inner%d' % index)(features[index - 1])
            last_inner = lateral + upsample.nearest_2x(last_inner, self.interpolation)
            results.insert(0, getattr(self, 'fpn_layer%d' % index)(last_inner))
        return tuple(results)
