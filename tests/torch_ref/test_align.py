"""torch_ref/align.py: the chain passes on the port, and each deliberate break fails the right step.

Sizes are reduced through the step modules' constants (64-pixel forward and loss inputs, 4
backward iterations, 6 training steps) so that the whole file runs in about a minute on two
idle cores; ``python torch_ref/align.py`` uses the documented sizes.
"""

import json
import logging
import os

import numpy as np
import pytest

torch = pytest.importorskip('torch')
paddle = pytest.importorskip('paddle')
pytest.importorskip('reprod_log')

from simplecv.module import upsample  # noqa: E402
from torch_ref import align  # noqa: E402
from torch_ref.align_steps import backward, common, forward, loss, metric, train  # noqa: E402


@pytest.fixture
def quick(monkeypatch):
    """Smaller inputs and fewer iterations for every step."""
    monkeypatch.setattr(forward, 'SMALL_SIZE', 64)
    monkeypatch.setattr(loss, 'SMALL_SIZE', 64)
    monkeypatch.setattr(backward, 'ITERATIONS', 4)
    monkeypatch.setattr(train, 'ITERATIONS', 6)
    monkeypatch.setattr(train, 'LOG_INTERVAL', 3)
    return common.StepOptions()


def _patch_paddle_model(monkeypatch, edit):
    """Make every step's Paddle model go through ``edit(model)`` after the weights are loaded."""
    original = common.build_paddle_model

    def build(params, state):
        model = original(params, state)
        edit(model)
        return model

    monkeypatch.setattr(common, 'build_paddle_model', build)


def _batch_norms(model):
    return [layer for layer in model.sublayers() if isinstance(layer, paddle.nn.BatchNorm2D)]


# --------------------------------------------------------------------- the chain as it is


@pytest.mark.slow
def test_cli_runs_the_whole_chain(quick, tmp_path):
    assert align.main(['--out', str(tmp_path)]) == 0
    summary = json.loads((tmp_path / align.SUMMARY_FILE).read_text())
    assert [r['name'] for r in summary] == list(align.STEPS)
    for result in summary:
        assert result['passed'] and result['worst_diff'] <= result['threshold'], result
        assert (tmp_path / ('%s_paddle.npy' % result['name'])).is_file()
        assert (tmp_path / ('%s_torch.npy' % result['name'])).is_file()
        log = (tmp_path / ('%s_diff.log' % result['name'])).read_text()
        assert 'diff check passed' in log and 'check passed: False' not in log
    clipped = [n for n in summary[3]['notes'] if n.startswith('global gradient norms')]
    assert clipped and 'clipped iterations [0, 2]' in clipped[0]


def test_cli_exit_status_and_summary_on_failure(monkeypatch, tmp_path):
    from simplecv.metric import miou

    original = miou.confusion_matrix
    # Rows and columns swapped: IoU is symmetric, only the matrix can see it.
    monkeypatch.setattr(miou, 'confusion_matrix', lambda *args, **kwargs: original(*args, **kwargs).T)
    assert align.main(['--steps', 'metric', '--out', str(tmp_path)]) == 1
    (result,) = json.loads((tmp_path / align.SUMMARY_FILE).read_text())
    assert not result['passed'] and result['failed_keys'] == ['confusion_matrix']
    assert 'check passed: False' in (tmp_path / 'metric_diff.log').read_text()


def test_cli_rejects_unknown_steps(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        align.main(['--steps', 'forward,bakward', '--out', str(tmp_path)])
    assert exit_info.value.code == 2
    assert 'bakward' in capsys.readouterr().err
    assert align.parse_steps('train,forward') == ('forward', 'train')


def test_a_step_that_raises_fails_the_chain(monkeypatch, tmp_path):
    def broken(out_dir, options):
        raise RuntimeError('no reference today')

    monkeypatch.setattr(metric, 'run', broken)
    assert align.main(['--steps', 'metric', '--out', str(tmp_path)]) == 1
    (result,) = json.loads((tmp_path / align.SUMMARY_FILE).read_text())
    assert not result['passed'] and 'no reference today' in result['notes'][0]


# --------------------------------------------------------------------- the diff machinery


def test_compare_verdicts_nan_and_relative_norms(tmp_path):
    same = dict(a=np.array([1.0, np.nan]), b=np.ones(3))
    result = common.compare('t1', str(tmp_path), same, dict(a=np.array([1.0, np.nan]), b=np.ones(3) + 5e-7), 1e-6)
    assert result.passed and result.worst_diff == pytest.approx(5e-7)
    result = common.compare('t2', str(tmp_path), dict(a=np.array([1.0, np.nan])), dict(a=np.array([1.0, 2.0])), 1e-6)
    assert not result.passed and result.failed_keys == ['a'] and result.worst_diff == np.inf
    result = common.compare(
        't3',
        str(tmp_path),
        dict(w=np.array([3.0, 4.0]), s=np.array([1.0, 2.0])),
        dict(w=np.array([3.0, 4.0005]), s=np.array([1.0, 2.002])),
        1e-3,
        method='max',
        l2_keys=['w'],
    )
    assert result.passed and result.worst_diff == pytest.approx(0.002 / 2.002)
    result = common.compare(
        't4', str(tmp_path), dict(x=np.zeros(2)), dict(x=np.zeros(2)), 1e-6, precondition='clipping was not exercised'
    )
    assert not result.passed and 'FAILED: clipping' in open(result.log_path).read()


def test_reports_leave_logging_alone_and_logs_apart(tmp_path):
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    common.compare('first', str(tmp_path), dict(x=np.zeros(2)), dict(x=np.zeros(2)), 1e-6)
    common.compare('second', str(tmp_path), dict(y=np.zeros(2)), dict(y=np.ones(2)), 1e-6)
    assert root.handlers == handlers and root.level == level
    first = (tmp_path / 'first_diff.log').read_text()
    assert 'x:' in first and 'y:' not in first and 'passed' in first
    assert 'diff check failed' in (tmp_path / 'second_diff.log').read_text()


def test_official_logged_loss_is_a_running_window_mean():
    losses = list(range(1, 11))
    assert train.logged_losses(losses, interval=5, window=3).tolist() == [4.0, 9.0]
    assert train.logged_losses(losses, interval=5, window=100).tolist() == [3.0, 5.5]


# --------------------------------------------------------------------- deliberate breaks


def test_perturbed_weight_fails_forward(quick, monkeypatch, tmp_path):
    def perturb(model):
        weight = model.fg_cls.weight
        noise = 1e-3 * np.random.RandomState(0).standard_normal(weight.shape)
        weight.set_value((weight.numpy() + noise).astype(weight.numpy().dtype))

    _patch_paddle_model(monkeypatch, perturb)
    result = forward.run(str(tmp_path), quick)
    assert not result.passed
    assert set(result.failed_keys) >= {'eval_prob_fp64', 'train_fg_logits_fp64'}
    assert 'train_bi_logits_fp64' not in result.failed_keys


def test_align_corners_false_fails_forward(quick, monkeypatch, tmp_path):
    def corners_false(x, scale_factor, interpolation='native'):
        return paddle.nn.functional.interpolate(x, scale_factor=scale_factor, mode='bilinear', align_corners=False)

    monkeypatch.setattr(upsample, 'bilinear', corners_false)
    result = forward.run(str(tmp_path), quick)
    assert not result.passed
    assert {'train_fg_logits_fp64', 'train_bi_logits_fp64'} <= set(result.failed_keys)


def test_torch_style_bn_momentum_fails_backward_only(quick, monkeypatch, tmp_path):
    def torch_momentum(model):  # PaddleRS's bug: torch's 0.1 passed to Paddle, where it weighs the old value
        for layer in _batch_norms(model):
            layer._momentum = 0.1

    _patch_paddle_model(monkeypatch, torch_momentum)
    assert forward.run(str(tmp_path), quick).passed  # outputs do not see it
    result = backward.run(str(tmp_path), quick)
    assert not result.passed
    assert result.failed_keys == ['bn_running_means']


class _PerTensorClip(paddle.nn.ClipGradByNorm):
    """``ClipGradByNorm(35)`` for any dtype (Paddle's ``clip_by_norm`` kernel is float32-only on the CPU)."""

    def _dygraph_clip(self, params_grads):
        clipped = []
        for param, grad in params_grads:
            if grad is not None:
                grad = grad * paddle.clip(self.clip_norm / paddle.linalg.norm(grad), max=1.0)
            clipped.append((param, grad))
        return clipped


def test_per_tensor_clipping_fails_backward(quick, monkeypatch, tmp_path):
    from simplecv.opt import optimizer

    monkeypatch.setattr(optimizer, 'make_grad_clip', lambda config: _PerTensorClip(35.0))
    result = backward.run(str(tmp_path), quick)
    assert not result.passed
    assert {'loss', 'weights'} <= set(result.failed_keys)
    assert 'lr' not in result.failed_keys


def test_wrong_momentum_fails_backward_updates(quick, monkeypatch, tmp_path):
    """Momentum 0.8 instead of 0.9 changes the updates by ~13 %: caught by ``updates``, not by ``weights``."""
    from simplecv.engine import build

    original = build.make_optimizer

    def momentum_08(config, parameters, learning_rate):
        config = dict(config, params=dict(config['params'], momentum=0.8))
        return original(config, parameters, learning_rate)

    monkeypatch.setattr(build, 'make_optimizer', momentum_08)
    result = backward.run(str(tmp_path), quick)
    assert not result.passed
    # The first update is the same (momentum buffers start as the gradient), later ones are not.
    assert {'updates/iter01', 'updates/iter02', 'updates/iter03'} <= set(result.failed_keys)
    assert not {'updates/iter00', 'lr', 'weights'} & set(result.failed_keys)
    monkeypatch.setattr(backward, 'resynced', lambda options: True)
    result = backward.run(str(tmp_path), quick)
    assert 'updates/iter03' in result.failed_keys and 'updates/iter00' not in result.failed_keys


def test_backward_one_step_at_a_time_passes_and_resets_the_weights(quick, monkeypatch, tmp_path):
    """The ``--full`` mode (weights reset to the reference's after every step) at the small size."""
    copies = []
    original = backward._copy_weights
    monkeypatch.setattr(backward, '_copy_weights', lambda *args: copies.append(1) or original(*args))
    monkeypatch.setattr(backward, 'resynced', lambda options: True)
    result = backward.run(str(tmp_path), quick)
    assert result.passed, result.failed_keys
    assert len(copies) == backward.ITERATIONS - 1
    assert any('reset to the reference' in note for note in result.notes)


def test_learning_rate_without_lag_fails_backward(quick, monkeypatch, tmp_path):
    from simplecv.opt.learning_rate import PolyLearningRate

    monkeypatch.setattr(
        PolyLearningRate, 'lr_at', lambda self, step: self.base_lr * (1 - min(step / self.max_iters, 1.0)) ** self.power
    )
    result = backward.run(str(tmp_path), quick)
    assert not result.passed and 'lr' in result.failed_keys


def test_softmax_over_the_wrong_axis_fails_loss(quick, monkeypatch, tmp_path):
    import paddle.nn.functional as F

    from module import loss as paddle_loss

    # Paddle's softmax default axis is -1, torch code says dim=1
    def wrong_axis(fg_logits, bi_logits, logsumexp='native'):
        log_class = F.log_softmax(fg_logits)
        log_joint = paddle.concat(
            [F.log_sigmoid(-bi_logits) + log_class[:, :1], F.log_sigmoid(bi_logits) + log_class[:, 1:]], axis=1
        )
        return log_joint - paddle.logsumexp(log_joint, axis=1, keepdim=True)

    monkeypatch.setattr(paddle_loss, 'joint_log_probability', wrong_axis)
    result = loss.run(str(tmp_path), quick)
    assert not result.passed
    assert {'joint_som/loss', 'joint_som_groups2/loss', 'joint_ohem/loss'} <= set(result.failed_keys)
    assert not {'ce/cls_loss', 'ce_som/som_cls_loss', 'ohem_ce/ohem_loss'} & set(result.failed_keys)


def test_batchnorm_frozen_during_training_fails_train(quick, monkeypatch, tmp_path):
    from module.factseg import FactSeg

    original = FactSeg.train

    def train_with_frozen_bn(self):  # the mistake of PORT's backward check: BN never in train mode
        original(self)
        for layer in _batch_norms(self):
            layer.eval()
        return self

    monkeypatch.setattr(FactSeg, 'train', train_with_frozen_bn)
    result = train.run(str(tmp_path), quick)
    assert not result.passed and 'logged_loss' in result.failed_keys and 'lr' not in result.failed_keys
    assert os.path.isfile(result.log_path)
