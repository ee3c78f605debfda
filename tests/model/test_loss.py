"""The joint loss, SOM and OHEM against NumPy evaluations of the official formulas."""

import numpy as np
import paddle
import pytest

from module.loss import JointLoss, ohem_cross_entropy, separate_losses, som


def _softmax(s):
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _official_joint_nll(s, b, y, ignore=255):
    """Official JointLoss up to the per-pixel losses, in float64 (clone, slice writes, log)."""
    c = _softmax(s)
    q = 1.0 / (1.0 + np.exp(-b))
    joint = c.copy()
    joint[:, 0] = (1 - q[:, 0]) * c[:, 0]
    joint[:, 1:] = q * c[:, 1:]
    p = joint / joint.sum(axis=1, keepdims=True)
    safe = np.where(y == ignore, 0, y)
    picked = np.take_along_axis(p, safe[:, None], axis=1)[:, 0]
    return np.where(y == ignore, 0.0, -np.log(picked)), p


def _official_som(losses, ratio):
    k = int(ratio * losses.size)
    top = np.sort(losses.ravel())[::-1][:k]
    mask = top != 0
    return top[mask].sum() / (mask.sum() + 1e-6)


def _random_case(seed, n=2, c=16, h=12, w=10, ignore_fraction=0.2):
    rng = np.random.RandomState(seed)
    s = rng.randn(n, c, h, w) * 2
    b = rng.randn(n, 1, h, w) * 2
    y = rng.randint(0, c, size=(n, h, w))
    y[rng.rand(n, h, w) < ignore_fraction] = 255
    return s, b, y


@pytest.mark.parametrize('ratio', [0.1, 0.37, 1.0])
def test_joint_som_loss_matches_numpy(ratio):
    s, b, y = _random_case(0)
    losses, _ = _official_joint_nll(s, b, y)
    expected = _official_som(losses, ratio)
    loss = JointLoss(ratio=ratio)(paddle.to_tensor(s, 'float32'), paddle.to_tensor(b, 'float32'), paddle.to_tensor(y))
    np.testing.assert_allclose(loss.item(), expected, rtol=2e-6)


def test_joint_loss_gradient_is_zero_at_ignored_pixels():
    s, b, y = _random_case(1)
    fg = paddle.to_tensor(s, 'float64', stop_gradient=False)
    bi = paddle.to_tensor(b, 'float64', stop_gradient=False)
    JointLoss(ratio=1.0)(fg, bi, paddle.to_tensor(y)).backward()
    ignored = y == 255
    assert np.all(fg.grad.numpy().transpose(0, 2, 3, 1)[ignored] == 0)
    assert np.all(bi.grad.numpy()[:, 0][ignored] == 0)
    assert np.abs(fg.grad.numpy().transpose(0, 2, 3, 1)[~ignored]).sum() > 0


def test_joint_loss_gradient_matches_finite_differences():
    s, b, y = _random_case(2, n=1, c=4, h=3, w=3, ignore_fraction=0.0)
    fg = paddle.to_tensor(s, 'float64', stop_gradient=False)
    bi = paddle.to_tensor(b, 'float64', stop_gradient=False)
    JointLoss(ratio=1.0)(fg, bi, paddle.to_tensor(y)).backward()

    def value(s_, b_):
        return _official_som(_official_joint_nll(s_, b_, y)[0], 1.0)

    eps = 1e-6
    for index in [(0, 0, 0, 0), (0, 2, 1, 2), (0, 3, 2, 1)]:
        plus, minus = s.copy(), s.copy()
        plus[index] += eps
        minus[index] -= eps
        np.testing.assert_allclose(fg.grad.numpy()[index], (value(plus, b) - value(minus, b)) / (2 * eps), rtol=1e-5)
    plus, minus = b.copy(), b.copy()
    plus[0, 0, 1, 1] += eps
    minus[0, 0, 1, 1] -= eps
    np.testing.assert_allclose(bi.grad.numpy()[0, 0, 1, 1], (value(s, plus) - value(s, minus)) / (2 * eps), rtol=1e-5)


def test_all_pixels_ignored_gives_zero_loss_and_finite_zero_gradients():
    s, b, _ = _random_case(3)
    y = np.full((2, 12, 10), 255)
    fg = paddle.to_tensor(s, 'float32', stop_gradient=False)
    bi = paddle.to_tensor(b, 'float32', stop_gradient=False)
    loss = JointLoss()(fg, bi, paddle.to_tensor(y))
    loss.backward()
    assert loss.item() == 0.0
    assert np.all(fg.grad.numpy() == 0) and np.all(bi.grad.numpy() == 0)


def test_saturated_sigmoid_keeps_loss_and_gradients_finite():
    """b = 30 rounds σ(b) to 1 in fp32: the official log(p) form gives inf/NaN, log space does not."""
    s, b, y = _random_case(4, ignore_fraction=0.0)
    b[0, 0, 0, 0] = 30.0
    y[0, 0, 0] = 0
    fg = paddle.to_tensor(s, 'float32', stop_gradient=False)
    bi = paddle.to_tensor(b, 'float32', stop_gradient=False)
    loss = JointLoss(ratio=0.5)(fg, bi, paddle.to_tensor(y))
    loss.backward()
    assert np.isfinite(loss.item()) and loss.item() > 0
    assert np.isfinite(fg.grad.numpy()).all() and np.isfinite(bi.grad.numpy()).all()
    losses64, _ = _official_joint_nll(s, b, y)
    np.testing.assert_allclose(loss.item(), _official_som(losses64, 0.5), rtol=1e-5)


def test_som_keeps_the_top_fraction_and_skips_zeros():
    losses = np.zeros((2, 5, 10), dtype='float32')
    losses.reshape(-1)[:30] = np.arange(1, 31)
    # K = int(0.1 * 100) = 10 → the ten largest: 21..30.
    assert som(paddle.to_tensor(losses), 0.1).item() == pytest.approx(np.arange(21, 31).mean(), rel=1e-6)
    # K = 50 > 30 non-zero values: the zeros among the top K are not averaged in.
    assert som(paddle.to_tensor(losses), 0.5).item() == pytest.approx(np.arange(1, 31).mean(), rel=1e-6)


def test_som_groups_average_separate_chunks():
    rng = np.random.RandomState(5)
    losses = rng.rand(4, 8, 8).astype('float32')
    grouped = som(paddle.to_tensor(losses), 0.1, groups=2).item()
    separate = [_official_som(losses[:2], 0.1), _official_som(losses[2:], 0.1)]
    assert grouped == pytest.approx(np.mean(separate), rel=1e-6)
    assert grouped != pytest.approx(_official_som(losses, 0.1), rel=1e-6)


def _np_ohem_weight(true_prob, valid, thresh, min_kept):
    sorted_prob = np.sort(true_prob[valid])
    threshold = thresh
    if sorted_prob.size:
        threshold = max(sorted_prob[min(min_kept * true_prob.shape[0], sorted_prob.size - 1)], thresh)
    return (valid & (true_prob < threshold)).astype(float)


@pytest.mark.parametrize('min_kept', [5, 100000])
def test_joint_ohem_matches_numpy(min_kept):
    s, b, y = _random_case(6)
    losses, p = _official_joint_nll(s, b, y)
    valid = y != 255
    true_prob = np.exp(-losses)
    weight = _np_ohem_weight(true_prob, valid, 0.3, min_kept)
    expected = (losses * weight).sum() / weight.sum()
    loss = JointLoss(sample='OHEM', ratio=0.3, ohem_min_kept=min_kept)(
        paddle.to_tensor(s, 'float32'), paddle.to_tensor(b, 'float32'), paddle.to_tensor(y)
    )
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-5)


def test_ohem_cross_entropy_matches_numpy():
    s, _, y = _random_case(7)
    c = _softmax(s)
    valid = y != 255
    safe = np.where(valid, y, 0)
    true_prob = np.take_along_axis(c, safe[:, None], axis=1)[:, 0]
    ce = np.where(valid, -np.log(true_prob), 0)
    weight = _np_ohem_weight(true_prob, valid, 0.7, 10)
    expected = (ce * weight).sum() / weight.sum()
    got = ohem_cross_entropy(paddle.to_tensor(s, 'float32'), paddle.to_tensor(y), 255, 0.7, 10).item()
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_separate_losses_ce_som_and_bce():
    s, b, y = _random_case(8)
    valid = y != 255
    c = _softmax(s)
    safe = np.where(valid, y, 0)
    ce = np.where(valid, -np.log(np.take_along_axis(c, safe[:, None], axis=1)[:, 0]), 0)
    z = b[:, 0][valid]
    t = (y[valid] > 0).astype(float)
    bce = np.mean(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z))))
    args = paddle.to_tensor(s, 'float32'), paddle.to_tensor(b, 'float32'), paddle.to_tensor(y)
    out = separate_losses(*args, dict(som=0.2))
    assert set(out) == {'som_cls_loss', 'bce_loss'}
    np.testing.assert_allclose(out['som_cls_loss'].item(), _official_som(ce, 0.2), rtol=1e-5)
    np.testing.assert_allclose(out['bce_loss'].item(), bce, rtol=1e-5)
    plain = separate_losses(*args, dict())
    np.testing.assert_allclose(plain['cls_loss'].item(), ce.mean(), rtol=1e-5)
    assert set(separate_losses(*args, dict(ohem=True))) == {'ohem_loss', 'bce_loss'}


def test_som_groups_split_an_uneven_batch_like_a_distributed_sampler():
    rng = np.random.RandomState(9)
    losses = rng.rand(5, 6, 6).astype('float32')
    got = som(paddle.to_tensor(losses), 0.2, groups=2).item()
    assert got == pytest.approx(np.mean([_official_som(losses[:3], 0.2), _official_som(losses[3:], 0.2)]), rel=1e-6)
    single = som(paddle.to_tensor(losses[:1]), 0.2, groups=2).item()
    assert single == pytest.approx(_official_som(losses[:1], 0.2), rel=1e-6)


def test_wide_logits_match_the_exact_formula_despite_paddle_softmax_clipping():
    """Paddle's CPU softmax clips x - max at -64; the joint log-probability and the fusion must not."""
    from module.loss import joint_log_probability, joint_probability, pixel_nll

    s, b, y = _random_case(10, ignore_fraction=0.0)
    s, b = s * 30, np.clip(b * 20, -30, 30)  # logit gaps of a few hundred: past -64, inside float64
    # Exact log-space evaluation of the joint probability in NumPy.
    top = s.max(axis=1, keepdims=True)
    log_class = s - top - np.log(np.exp(s - top).sum(axis=1, keepdims=True))
    log_joint = np.concatenate([-np.logaddexp(0, b) + log_class[:, :1], -np.logaddexp(0, -b) + log_class[:, 1:]], 1)
    top = log_joint.max(axis=1, keepdims=True)
    expected = log_joint - top - np.log(np.exp(log_joint - top).sum(axis=1, keepdims=True))
    got = joint_log_probability(paddle.to_tensor(s), paddle.to_tensor(b))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-10)
    assert pixel_nll(got, paddle.to_tensor(y)).numpy().max() > 64  # beyond the clip
    np.testing.assert_allclose(
        joint_probability(paddle.to_tensor(s), paddle.to_tensor(b)).numpy(), np.exp(expected), atol=1e-12
    )
