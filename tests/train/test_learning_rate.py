"""Poly learning rate with SimpleCV's one-step lag (spec §8.3)."""

import paddle
import pytest

from simplecv.core.errors import ConfigError
from simplecv.core.registry import LR
from simplecv.opt import PolyLearningRate, make_learning_rate


def official_schedule(base_lr, power, max_iters, num_steps):
    """The LR each step runs with in SimpleCV: set after the step from the not-yet-incremented step."""
    lr, used = base_lr, []
    for global_step in range(num_steps):
        used.append(lr)
        lr = base_lr * (1 - global_step / max_iters) ** power
    return used


def test_exact_values_at_given_steps():
    schedule = PolyLearningRate(base_lr=0.007, power=0.9, max_iters=60000)
    assert schedule.lr_at(0) == 0.007
    assert schedule.lr_at(1) == 0.007
    assert schedule.lr_at(2) == pytest.approx(0.007 * (1 - 1 / 60000) ** 0.9, rel=1e-15)
    assert schedule.lr_at(30001) == pytest.approx(0.007 * 0.5**0.9, rel=1e-15)
    # The last of 60k steps runs with the rate of step 59,998, not 0.
    assert schedule.lr_at(59999) == pytest.approx(0.007 * (2 / 60000) ** 0.9, rel=1e-12)
    assert schedule.lr_at(59999) > 0
    assert schedule.lr_at(60001) == 0.0
    assert schedule.lr_at(70000) == 0.0


def test_matches_the_official_loop_step_by_step():
    schedule = PolyLearningRate(base_lr=0.01, power=0.9, max_iters=50)
    assert [schedule.lr_at(g) for g in range(50)] == official_schedule(0.01, 0.9, 50, 50)


def test_step_sets_the_optimizer_rate():
    layer = paddle.nn.Linear(2, 2)
    optimizer = paddle.optimizer.Momentum(learning_rate=1.0, parameters=layer.parameters())
    schedule = PolyLearningRate(base_lr=0.1, power=1.0, max_iters=10)
    assert schedule.step(6, optimizer) == pytest.approx(0.05)
    assert optimizer.get_lr() == pytest.approx(0.05)


def test_built_from_the_official_config_block():
    schedule = make_learning_rate(dict(type='poly', params=dict(base_lr=0.007, power=0.9, max_iters=60000)))
    assert LR['poly'] is PolyLearningRate
    assert schedule.state_dict() == dict(type='poly', base_lr=0.007, power=0.9, max_iters=60000)


@pytest.mark.parametrize(
    'block, match',
    [
        (dict(type='cosine', params=dict()), "no learning-rate schedule named 'cosine'"),
        (dict(type='poly', params=dict(base_lr=0.1, power=0.9)), 'learning_rate.params do not fit'),
        (dict(type='poly', params=dict(base_lr=0.1, power=0.9, max_iters=0)), 'max_iters > 0'),
    ],
)
def test_bad_blocks_are_refused(block, match):
    with pytest.raises(ConfigError, match=match):
        make_learning_rate(block)
