"""Weight initialisers that reproduce torch's conventions in Paddle (``ParamAttr`` builders)."""

import math

import paddle


def uniform_attr(bound):
    """``ParamAttr`` drawing from U(-bound, bound)."""
    return paddle.ParamAttr(initializer=paddle.nn.initializer.Uniform(-bound, bound))


def torch_default_conv_attrs(in_channels, kernel_size):
    """Weight and bias attrs of torch's default ``nn.Conv2d`` init.

    torch uses ``kaiming_uniform_(a=sqrt(5))`` for the weight, i.e. U(±1/sqrt(fan_in)), and the
    same bound for the bias; Paddle's default is Normal(0, sqrt(2/fan_in)) with a zero bias.

    Returns:
        tuple: ``(weight_attr, bias_attr)``.
    """
    bound = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
    return uniform_attr(bound), uniform_attr(bound)


def kaiming_uniform_a1_attr(in_channels, kernel_size):
    """``kaiming_uniform_(a=1)`` (gain 1): U(±sqrt(3/fan_in)), the FPN's own init."""
    return uniform_attr(math.sqrt(3.0 / (in_channels * kernel_size * kernel_size)))


def kaiming_normal_fan_out_attr(out_channels, kernel_size):
    """``kaiming_normal_(mode='fan_out', nonlinearity='relu')``: N(0, sqrt(2/fan_out)), torchvision's ResNet init."""
    std = math.sqrt(2.0 / (out_channels * kernel_size * kernel_size))
    return paddle.ParamAttr(initializer=paddle.nn.initializer.Normal(0.0, std))


def zeros_attr():
    """``ParamAttr`` initialised to zero."""
    return paddle.ParamAttr(initializer=paddle.nn.initializer.Constant(0.0))


def batch_norm(num_features):
    """BatchNorm with torch's defaults translated: torch momentum 0.1 is Paddle momentum 0.9, eps 1e-5.

    Note: in training Paddle's CPU kernel updates the running variance with the biased batch
    variance, torch with the unbiased one (a relative difference of at most 1/(n-1) per step);
    outputs in train mode use batch statistics and are identical.
    """
    return paddle.nn.BatchNorm2D(num_features, momentum=0.9, epsilon=1e-5)
