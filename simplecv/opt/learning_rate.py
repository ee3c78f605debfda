"""Learning-rate schedules, registered in :data:`simplecv.core.registry.LR`."""

from simplecv.core.errors import ConfigError
from simplecv.core.registry import LR


@LR.register('poly')
class PolyLearningRate:
    """SimpleCV's poly schedule, with the official one-step lag.

    SimpleCV sets the learning rate *after* each optimizer step from the step count *before* it
    is incremented, so the step with 0-based index ``g`` runs with

        ``lr(g) = base_lr * (1 - max(g - 1, 0) / max_iters) ** power``

    (steps 0 and 1 both use ``base_lr``; the last of 60k steps uses ``lr`` of step 59,998, not
    0). The schedule is a pure function of the global step, so it has no state to save and is
    exact after a resume. Steps at or past ``max_iters + 1`` get 0.

    Args:
        base_lr: learning rate of the first two steps.
        power: exponent of the decay (0.9 in FactSeg).
        max_iters: steps over which the rate decays to 0.

    Raises:
        ConfigError: a non-positive ``base_lr``/``max_iters`` or a negative ``power``.
    """

    def __init__(self, base_lr, power, max_iters):
        if not base_lr > 0 or not max_iters > 0 or not power >= 0:
            raise ConfigError(
                'learning_rate.params of poly need base_lr > 0, power >= 0 and max_iters > 0; '
                'got base_lr=%r, power=%r, max_iters=%r' % (base_lr, power, max_iters)
            )
        self.base_lr = float(base_lr)
        self.power = float(power)
        self.max_iters = int(max_iters)

    def lr_at(self, global_step):
        """Return the learning rate of the step with 0-based index ``global_step``."""
        progress = min(max(global_step - 1, 0) / self.max_iters, 1.0)
        return self.base_lr * (1.0 - progress) ** self.power

    def step(self, global_step, optimizer):
        """Set ``optimizer``'s learning rate for the step ``global_step``; return it."""
        lr = self.lr_at(global_step)
        optimizer.set_lr(lr)
        return lr

    def state_dict(self):
        """Return the schedule's settings (it has no other state), stored in checkpoints for checking."""
        return dict(type='poly', base_lr=self.base_lr, power=self.power, max_iters=self.max_iters)

    def __repr__(self):
        return 'PolyLearningRate(base_lr=%g, power=%g, max_iters=%d)' % (self.base_lr, self.power, self.max_iters)


def make_learning_rate(config):
    """Build the schedule of a ``learning_rate`` config block ``dict(type='poly', params=dict(...))``.

    Raises:
        ConfigError: unknown ``type`` (the registered names are listed) or bad ``params``.
    """
    schedule = LR[config['type']]
    try:
        return schedule(**config.get('params', {}))
    except TypeError as exc:
        raise ConfigError('learning_rate.params do not fit %r: %s' % (config['type'], exc)) from None
