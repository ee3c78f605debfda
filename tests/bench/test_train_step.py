"""bench/train_step.py runs both sides on equal weights and the same batch, and reports its figures."""

import os
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO_ROOT, 'bench'))

pytest.importorskip('torch')
train_step = pytest.importorskip('train_step')


@pytest.mark.slow
def test_both_sides_start_from_the_same_loss_and_report(capsys):
    args = train_step.parse_args(
        ['--config_path', 'isaid.factseg_demo', '--size', '64', '--batch_size', '2', '--warmup', '0', '--iters', '2']
    )
    result = train_step.run(args)
    ours, reference = result['ours'], result['reference']
    # Same converted weights, same batch, train-mode BN: the first losses agree to float32 accuracy.
    assert ours['first_loss'] == pytest.approx(reference['first_loss'], rel=1e-5)
    assert ours['first_loss'] > 0
    phases = ours['phases']
    assert set(phases) == set(train_step.PHASES)
    assert phases['forward'] > 0 and phases['optimizer'] > 0
    # With two timed iterations each median is a mean, and the phases add up to the whole step.
    assert sum(phases.values()) == pytest.approx(ours['s_per_iter'], rel=1e-9)
    assert result['ratio'] == pytest.approx(ours['s_per_iter'] / reference['s_per_iter'])
    for side in (ours, reference):
        assert side['peak_mib'] > side['peak_above_setup_mib'] > 0
    train_step.report(args, result)
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == 'ratio ours/reference %.2f' % result['ratio']


def test_bad_size_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        train_step.parse_args(['--size', '100'])
    assert info.value.code == 2
    assert '--size must be a positive multiple of 32' in capsys.readouterr().err
