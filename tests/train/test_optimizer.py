"""SGD (Paddle Momentum) with weight decay on all parameters and global-norm clipping (spec §8.2, §10.5)."""

import numpy as np
import paddle
import pytest

from simplecv.core.errors import ConfigError
from simplecv.core.registry import OPT
from simplecv.opt import make_optimizer

OFFICIAL_BLOCK = dict(
    type='sgd', params=dict(momentum=0.9, weight_decay=0.0001), grad_clip=dict(max_norm=35, norm_type=2)
)


class TwoTensors(paddle.nn.Layer):
    """Loss = sum(a * ca) + sum(b * cb): the gradients are the constants ca and cb."""

    def __init__(self, a, b):
        super().__init__()
        self.a = self.create_parameter(a.shape, default_initializer=paddle.nn.initializer.Assign(a))
        self.b = self.create_parameter(b.shape, default_initializer=paddle.nn.initializer.Assign(b))

    def forward(self, ca, cb):
        return (self.a * ca).sum() + (self.b * cb).sum()


def torch_sgd_reference(params, grads, lr, momentum, weight_decay, max_norm, steps):
    """torch: clip_grad_norm_ (global, on the raw gradients), then SGD adds weight decay and momentum."""
    params = [p.astype(np.float64).copy() for p in params]
    buffers = [None] * len(params)
    for _ in range(steps):
        norm = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads))
        scale = min(1.0, max_norm / norm)
        for i, (p, g) in enumerate(zip(params, grads)):
            d = g * scale + weight_decay * p
            buffers[i] = d if buffers[i] is None else momentum * buffers[i] + d
            params[i] = p - lr * buffers[i]
    return params


def run_paddle(a, b, ca, cb, block, steps, lr=0.05):
    model = TwoTensors(a, b)
    optimizer = make_optimizer(block, model.parameters(), lr)
    for _ in range(steps):
        model(paddle.to_tensor(ca), paddle.to_tensor(cb)).backward()
        optimizer.step()
        optimizer.clear_grad()
    return model.a.numpy(), model.b.numpy()


def test_matches_torch_sgd_semantics_with_clipping_and_decay():
    rng = np.random.RandomState(0)
    a, b = rng.randn(3, 4).astype('float32'), rng.randn(5).astype('float32')
    ca, cb = (20 * rng.randn(3, 4)).astype('float32'), (20 * rng.randn(5)).astype('float32')
    block = dict(type='sgd', params=dict(momentum=0.9, weight_decay=0.01), grad_clip=dict(max_norm=35, norm_type=2))
    got = run_paddle(a, b, ca, cb, block, steps=3)
    want = torch_sgd_reference([a, b], [ca, cb], 0.05, 0.9, 0.01, 35, steps=3)
    assert np.sqrt((ca.astype(np.float64) ** 2).sum() + (cb**2).sum()) > 35  # clipping is active
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-6)


def test_matches_torch_itself():
    torch = pytest.importorskip('torch')
    rng = np.random.RandomState(1)
    a, b = rng.randn(3, 4).astype('float32'), rng.randn(5).astype('float32')
    ca, cb = (30 * rng.randn(3, 4)).astype('float32'), (30 * rng.randn(5)).astype('float32')
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    optimizer = torch.optim.SGD([ta, tb], lr=0.05, momentum=0.9, weight_decay=0.0001)
    for _ in range(3):
        ((ta * torch.tensor(ca)).sum() + (tb * torch.tensor(cb)).sum()).backward()
        torch.nn.utils.clip_grad_norm_([ta, tb], max_norm=35, norm_type=2)
        optimizer.step()
        optimizer.zero_grad()
    got = run_paddle(a, b, ca, cb, OFFICIAL_BLOCK, steps=3)
    np.testing.assert_allclose(got[0], ta.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], tb.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_clipping_is_global_not_per_tensor():
    # Gradient norms 30 and 40: global norm 50 > 35, so both shrink by 35/50 (per-tensor
    # clipping at 35 would leave the first one as it is).
    a, b = np.zeros(1, 'float32'), np.zeros(1, 'float32')
    block = dict(type='sgd', params=dict(momentum=0.0, weight_decay=0.0), grad_clip=dict(max_norm=35, norm_type=2))
    new_a, new_b = run_paddle(a, b, np.array([30.0], 'float32'), np.array([40.0], 'float32'), block, steps=1, lr=1.0)
    np.testing.assert_allclose(new_a, [-30 * 35 / 50], rtol=1e-6)
    np.testing.assert_allclose(new_b, [-40 * 35 / 50], rtol=1e-6)


def test_weight_decay_reaches_every_parameter():
    # A parameter with zero gradient (like a BN beta far from the loss) still decays.
    block = dict(type='sgd', params=dict(momentum=0.9, weight_decay=0.1), grad_clip=None)
    new_a, _ = run_paddle(
        np.ones(2, 'float32'),
        np.ones(1, 'float32'),
        np.zeros(2, 'float32'),
        np.ones(1, 'float32'),
        block,
        steps=1,
        lr=1.0,
    )
    np.testing.assert_allclose(new_a, [0.9, 0.9], rtol=1e-6)


def test_official_block_builds_momentum_with_global_clip():
    layer = paddle.nn.Linear(2, 2)
    optimizer = make_optimizer(OFFICIAL_BLOCK, layer.parameters(), 0.007)
    assert 'sgd' in OPT
    assert isinstance(optimizer, paddle.optimizer.Momentum)
    assert isinstance(optimizer._grad_clip, paddle.nn.ClipGradByGlobalNorm)
    assert optimizer.get_lr() == pytest.approx(0.007)


@pytest.mark.parametrize(
    'block, match',
    [
        (dict(OFFICIAL_BLOCK, type='adamw'), "no optimizer named 'adamw'"),
        (dict(OFFICIAL_BLOCK, params=dict(momentum=0.9, dampening=0.1)), 'optimizer.params do not fit'),
        (dict(OFFICIAL_BLOCK, grad_clip=dict(max_norm=35, norm_type=1)), 'norm_type=1 is not supported'),
        (dict(OFFICIAL_BLOCK, grad_clip=dict(max_norm=-1)), 'max_norm must be a positive number'),
        (dict(OFFICIAL_BLOCK, grad_clip=dict(max_nrom=35)), 'unknown key'),
    ],
)
def test_bad_blocks_are_refused(block, match):
    with pytest.raises(ConfigError, match=match):
        make_optimizer(block, paddle.nn.Linear(2, 2).parameters(), 0.01)
