"""tools/regenerate_logs.py without its heavy runs: arguments, the plan, running a step and swapping folders."""

import sys

import pytest

from tools import regenerate_logs as regen


def test_dry_run_lists_the_chosen_steps_commands_and_copies(capsys, tmp_path):
    assert regen.main(['--only', 'tipc,demo', '--log_dir', str(tmp_path), '--dry_run']) == 0
    out = capsys.readouterr().out
    assert out.index('[1/2] demo') < out.index('[2/2] tipc')  # fixed order, whatever the order given
    assert 'tools/run_demo.py --data demo_data --out demo_output' in out
    assert 'test_tipc/test_train_inference_python.sh' in out and 'lite_train_lite_infer <tmp>' in out
    assert 'align.py' not in out
    assert '-> %s' % (tmp_path / 'tipc') in out
    assert list(tmp_path.iterdir()) == []


def test_skip_align_and_bad_names():
    assert [step.name for step in regen.parse_args(['--skip-align']).steps] == ['demo', 'tipc']
    assert [step.name for step in regen.parse_args([]).steps] == ['demo', 'tipc', 'align']
    with pytest.raises(SystemExit) as error:
        regen.parse_args(['--only', 'demo,tpic'])
    assert error.value.code == 2
    with pytest.raises(SystemExit):
        regen.parse_args(['--only', 'align', '--skip_align'])


def test_install_swaps_the_folder_and_makes_paths_relative(tmp_path):
    source, target = tmp_path / 'run', tmp_path / 'Log' / 'demo'
    source.mkdir()
    repo = regen.REPO_ROOT
    (source / 'train.log').write_text('saved %s/demo_output/model-10.pdparams from %s\n' % (repo, repo))
    (source / 'curves.png').write_bytes(b'\x89PNG' + regen.REPO_ROOT.encode())
    (source / 'model-10.pdparams').write_bytes(b'weights')
    target.mkdir(parents=True)
    (target / 'stale.log').write_text('old')
    regen.install(str(source), ['train.log', 'curves.png'], str(target), prefixes=(regen.REPO_ROOT,))
    assert sorted(p.name for p in target.iterdir()) == ['curves.png', 'train.log']
    assert (target / 'train.log').read_text() == 'saved demo_output/model-10.pdparams from .\n'
    assert (target / 'curves.png').read_bytes() == b'\x89PNG' + regen.REPO_ROOT.encode()  # binary: as written
    assert sorted(p.name for p in target.parent.iterdir()) == ['demo']  # no staging or old folder left


def fake_step(code, patterns):
    return regen.Step('fake', 'fake', [[sys.executable, '-c', code]], 'out', patterns, 'a test step')


def test_a_step_copies_its_files_and_a_failing_step_changes_nothing(tmp_path):
    log_dir, runs = tmp_path / 'Log', tmp_path / 'runs'
    log_dir.mkdir()
    runs.mkdir()
    writes = "import os; os.makedirs('out'); open('out/a_diff.log', 'w').write('ok'); open('out/b.npy', 'w')"
    assert regen.run_step(fake_step(writes, ['*_diff.log']), str(log_dir), False, 1, 1, str(runs)) == ['a_diff.log']
    assert (log_dir / 'fake' / 'a_diff.log').read_text() == 'ok'

    failed = r'exited with 3; its output is in .*console\.log \(Log/fake is unchanged\)'
    with pytest.raises(regen.StepFailed, match=failed):
        regen.run_step(fake_step('import sys; sys.exit(3)', ['*_diff.log']), str(log_dir), False, 1, 1, str(runs))
    with pytest.raises(regen.StepFailed, match=r'the run wrote no \*\.json in'):
        regen.run_step(fake_step(writes, ['*_diff.log', '*.json']), str(log_dir), False, 1, 1, str(runs))
    assert [p.name for p in (log_dir / 'fake').iterdir()] == ['a_diff.log']
    assert sorted(p.name for p in log_dir.iterdir()) == ['fake']
    assert len(list(runs.iterdir())) == 2  # the failed runs' folders are kept for inspection, the good one removed
