"""``Conv2D`` whose bias is added by a fast kernel in dygraph; the same parameters, names and numbers.

``paddle.nn.functional.conv2d`` adds the bias as ``[N, C, H, W] + [1, C, 1, 1]``, and Paddle's CPU
kernels for that broadcast (forward, and the reduction giving the bias gradient) are slow: on
2x256x128x128 the add takes 0.26 s forward and backward against 0.07 s when the map is viewed as
``[N, C, H*W]`` and the bias as ``[C, 1]``, and a 1x1 256->256 convolution with bias takes 0.61 s
against 0.18 s without (2-core AMD EPYC). Both forms add the same numbers in the same order: the
output and both gradients are bit-identical.

When the oneDNN extension can be built (a C++ compiler and oneDNN's headers, see
:mod:`simplecv.module.onednn_conv`), the convolutions where oneDNN is faster run through it: a
custom operator calling the oneDNN bundled with Paddle for forward, backward-data and
backward-weights (the kernels PyTorch runs), with the bias fused into the forward and reduced by the
backward-weights pass. It differs from Paddle's im2col + GEMM by float rounding only (max relative
difference ~1e-6 on y and dx, ~1e-5 on dw for 3x3 256->256 on 2x256x128x128). See
:meth:`Conv2D.use_onednn` for which shapes take it. ``FACTSEG_ONEDNN_CONV`` (read at every call)
chooses: unset or ``auto`` uses it when it builds (and says once, in the log, when it cannot),
``1`` asks for it (a warning when it cannot be built), ``0`` turns it off. Only layers in train mode
use it: evaluation and inference keep Paddle's convolution, so the dygraph reference that exported
oneDNN programs are checked against (within 1e-4) is unchanged.
"""

import os

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

ONEDNN_ENV = 'FACTSEG_ONEDNN_CONV'
# oneDNN wins only on large outputs (2-core AMD EPYC, forward + backward): 3x3 0.46-0.78x of Paddle's
# time at 128x128, 0.73x at 64x64, 0.95x at 32x32, 1.05x at 16x16; the 7x7/2 stem 0.49x. 1x1 ties
# or loses (1.00-1.34x), so it stays on Paddle.
ONEDNN_MIN_OUTPUT_PIXELS = 64 * 64


def onednn_setting():
    """``$FACTSEG_ONEDNN_CONV`` as ``'on'`` (``1``/``true``/``on``/``yes``), ``'off'`` (``0``/``false``/``off``/``no``)
    or ``'auto'`` (unset, empty or anything else: oneDNN when the extension builds)."""
    value = os.environ.get(ONEDNN_ENV, '').strip().lower()
    if value in ('1', 'true', 'on', 'yes'):
        return 'on'
    if value in ('0', 'false', 'off', 'no'):
        return 'off'
    return 'auto'


def add_channel_bias(x, bias):
    """Return ``x + bias[None, :, None, None]`` for ``x`` of shape ``[N, C, H, W]`` and ``bias`` of shape ``[C]``."""
    channels = x.shape[1]
    out = x.reshape([0, channels, -1]) + bias.reshape([channels, 1])
    return out.reshape(x.shape)


class Conv2D(nn.Conv2D):
    """``paddle.nn.Conv2D`` (NCHW, zero padding) with the bias added by :func:`add_channel_bias` in dygraph.

    Static graphs (``paddle.jit.to_static``, export) keep Paddle's own conv + add, which inference
    passes know how to fuse.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, weight_attr,
        bias_attr: as ``paddle.nn.Conv2D``.

    Shape:
        ``[N, in_channels, H, W] -> [N, out_channels, H', W']``.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        weight_attr=None,
        bias_attr=None,
    ):
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            weight_attr=weight_attr,
            bias_attr=bias_attr,
        )
        self.conv_stride = stride
        self.conv_padding = padding
        self.conv_dilation = dilation
        self.conv_groups = groups

    def use_onednn(self, x):
        """Whether this call goes to oneDNN: the switch is not off, train mode (evaluation keeps
        Paddle's convolution, the arithmetic exported programs are checked against), dygraph, float32
        NCHW on the CPU, groups=1, zero padding given as an int or a pair, a kernel larger than 1x1,
        an output of at least ``ONEDNN_MIN_OUTPUT_PIXELS`` pixels per channel, and the extension builds."""
        setting = onednn_setting()
        if setting == 'off' or not self.training or not paddle.in_dynamic_mode():
            return False
        if (
            self.conv_groups != 1
            or self._data_format != 'NCHW'
            or self._padding_mode != 'zeros'
            or x.dtype != paddle.float32
            or not x.place.is_cpu_place()
            or len(x.shape) != 4
        ):
            return False
        pads = [self.conv_padding] * 2 if isinstance(self.conv_padding, int) else list(self.conv_padding)
        if len(pads) != 2 or not all(isinstance(p, int) for p in pads):
            return False
        kernel = self._kernel_size
        if kernel[0] * kernel[1] == 1:
            return False
        strides, dilations = self._stride, self._dilation
        out_pixels = 1
        for i in range(2):
            out_pixels *= (x.shape[2 + i] + 2 * pads[i] - dilations[i] * (kernel[i] - 1) - 1) // strides[i] + 1
        if out_pixels < ONEDNN_MIN_OUTPUT_PIXELS:
            return False
        from simplecv.module import onednn_conv

        return onednn_conv.load_extension(quiet=setting == 'auto') is not None

    def forward(self, x):
        """``[N, in_channels, H, W] -> [N, out_channels, H', W']``, the numbers of ``paddle.nn.Conv2D``
        (to float rounding when oneDNN runs it)."""
        if self.use_onednn(x):
            from simplecv.module import onednn_conv

            return onednn_conv.conv2d(x, self.weight, self.bias, self._stride, self.conv_padding, self._dilation)
        if self.bias is None or not paddle.in_dynamic_mode():
            return super().forward(x)
        out = F.conv2d(
            x,
            self.weight,
            None,
            stride=self.conv_stride,
            padding=self.conv_padding,
            dilation=self.conv_dilation,
            groups=self.conv_groups,
        )
        return add_channel_bias(out, self.bias)
