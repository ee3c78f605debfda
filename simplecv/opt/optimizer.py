"""Optimizers, registered in :data:`simplecv.core.registry.OPT`."""

import paddle

from simplecv.core.errors import ConfigError
from simplecv.core.registry import OPT


@OPT.register('sgd')
def sgd(parameters, learning_rate, momentum=0.0, weight_decay=0.0, nesterov=False, grad_clip=None):
    """``torch.optim.SGD`` semantics with Paddle's ``Momentum``.

    The update is ``v = momentum * v + (g + weight_decay * p); p -= lr * v`` with ``v`` starting
    at 0 (torch starts at ``g + weight_decay * p``, which is the same), weight decay on every
    parameter (BN and biases included, as the official single parameter group). Gradient
    clipping runs before weight decay is added, as ``clip_grad_norm_`` before ``SGD.step``.

    Args:
        parameters: the parameters to train.
        learning_rate: initial learning rate (a float; the trainer sets it every step).
        momentum: momentum factor.
        weight_decay: L2 coefficient added to every gradient.
        nesterov: Nesterov momentum.
        grad_clip: a ``paddle.nn.ClipGrad*`` instance or None.

    Returns:
        paddle.optimizer.Momentum
    """
    return paddle.optimizer.Momentum(
        learning_rate=learning_rate,
        momentum=momentum,
        parameters=parameters,
        use_nesterov=nesterov,
        weight_decay=float(weight_decay),
        grad_clip=grad_clip,
    )


def make_grad_clip(config):
    """Return ``ClipGradByGlobalNorm`` for a ``grad_clip`` block ``dict(max_norm=35, norm_type=2)``, or None.

    The official ``clip_grad_norm_`` scales every gradient by ``max_norm / (norm + 1e-6)`` when
    the global L2 norm exceeds ``max_norm``; Paddle scales by ``max_norm / norm`` (no epsilon).

    Raises:
        ConfigError: a norm type other than 2, unknown keys or a non-positive ``max_norm``.
    """
    if config is None:
        return None
    unknown = sorted(set(config) - {'max_norm', 'norm_type'})
    if unknown:
        raise ConfigError('unknown key(s) %s in optimizer.grad_clip; valid: max_norm, norm_type' % unknown)
    if config.get('norm_type', 2) != 2:
        raise ConfigError(
            'optimizer.grad_clip.norm_type=%r is not supported; only the L2 norm (2) is' % (config['norm_type'],)
        )
    max_norm = config.get('max_norm')
    if not isinstance(max_norm, (int, float)) or max_norm <= 0:
        raise ConfigError('optimizer.grad_clip.max_norm must be a positive number, got %r' % (max_norm,))
    return paddle.nn.ClipGradByGlobalNorm(clip_norm=float(max_norm))


def make_optimizer(config, parameters, learning_rate):
    """Build the optimizer of an ``optimizer`` config block.

    Args:
        config: ``dict(type='sgd', params=dict(momentum=..., weight_decay=...),
            grad_clip=dict(max_norm=35, norm_type=2))``. Without ``grad_clip`` SimpleCV's default
            (global L2 norm 35) applies; ``grad_clip=None`` turns clipping off.
        parameters: the parameters to train.
        learning_rate: the initial learning rate (SimpleCV takes it from the schedule's ``base_lr``).

    Raises:
        ConfigError: unknown ``type`` or ``params`` that do not fit it.
    """
    factory = OPT[config['type']]
    grad_clip = make_grad_clip(config.get('grad_clip', dict(max_norm=35, norm_type=2)))
    try:
        return factory(parameters, learning_rate, grad_clip=grad_clip, **config.get('params', {}))
    except TypeError as exc:
        raise ConfigError('optimizer.params do not fit %r: %s' % (config['type'], exc)) from None
