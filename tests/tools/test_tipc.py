"""The TIPC driver on real runs: config parsing, train → eval → export → infer, result lines, exit codes."""

import json
import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, 'test_tipc', 'configs', 'factseg', 'train_infer_python.txt')
DRIVER = os.path.join(REPO, 'test_tipc', 'test_train_inference_python.sh')
PREPARE = os.path.join(REPO, 'test_tipc', 'prepare.sh')
LITE = 'lite_train_lite_infer'


def run(*args, timeout=600):
    return subprocess.run(['bash'] + [str(a) for a in args], capture_output=True, text=True, timeout=timeout)


def result_lines(root, mode=LITE):
    lines = (root / 'test_tipc' / 'output' / mode / 'results_python.log').read_text().splitlines()
    assert lines[0].strip('- ') == mode
    return [line.strip() for line in lines[1:]]


@pytest.mark.slow
def test_lite_chain_by_mode_alone_prepares_and_runs_every_step(tmp_path):
    result = run(DRIVER, LITE, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result_lines(tmp_path)
    ran = [line for line in lines if not line.startswith('Skipped')]
    assert [line.split(' - ')[0] for line in ran] == ['Run successfully with command'] * 4
    scripts = [line.split(' - ')[2].split()[1] for line in ran]
    assert [os.path.relpath(s, REPO) for s in scripts] == [
        'apex_train.py',
        'isaid_eval.py',
        os.path.join('tools', 'export_model.py'),
        os.path.join('tools', 'infer.py'),
    ]
    assert 'train.num_iters 6' in ran[0] and '--input_size 128 128' in ran[2]
    out = tmp_path / 'test_tipc' / 'output' / LITE
    train_dir = out / 'norm_gpus_-1_autocast_O0'
    assert json.load(open(train_dir / 'checkpoint_info.json'))['last'] == 'model-6.pdparams'
    assert (train_dir / 'static' / 'model.pdiparams').is_file()
    assert 'mIoU' in (out / 'norm_gpus_-1_autocast_O0_eval.log').read_text()
    predictions = next(out.glob('python_infer_cpu_*_results'))
    val_images = (tmp_path / 'test_tipc' / 'data' / 'factseg' / 'val' / 'images').iterdir()
    assert sorted(p.name for p in predictions.glob('*_label.png')) == sorted(
        p.name.replace('.png', '_label.png') for p in val_images
    )


@pytest.mark.slow
def test_a_failed_command_is_logged_and_fails_the_run(tmp_path):
    """One inference command fails (batch size 0) and the next succeeds: the run still exits 1."""
    lines = open(CONFIG).read().splitlines()
    lines[6] = 'train.num_iters:lite_train_lite_infer=1'
    lines[10] = 'train_model_name:lite_train_lite_infer=model-1.pdparams'
    lines[12] = 'learning_rate.params.max_iters:lite_train_lite_infer=1'
    assert lines[44].startswith('--batch_size:')
    lines[44] = '--batch_size:0|1'
    config = tmp_path / 'train_infer_python.txt'
    config.write_text('\n'.join(lines) + '\n')
    assert run(PREPARE, config, LITE, tmp_path).returncode == 0
    result = run(DRIVER, config, LITE, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert '1 command(s) failed' in result.stderr
    ran = [line for line in result_lines(tmp_path) if not line.startswith('Skipped')]
    assert [line.split(' - ')[0] for line in ran] == ['Run successfully with command'] * 3 + [
        'Run failed with command',
        'Run successfully with command',
    ]
    assert '--batch_size 0' in ran[3] and '--batch_size 1' in ran[4]
    failed_log = next((tmp_path / 'test_tipc' / 'output' / LITE).glob('python_infer_cpu_*batchsize_0.log'))
    assert 'batch_size must be >= 1' in failed_log.read_text()


def test_driver_without_prepared_data_names_the_prepare_command(tmp_path):
    result = run(DRIVER, CONFIG, LITE, tmp_path)
    assert result.returncode == 2
    assert 'run bash test_tipc/prepare.sh' in result.stderr and LITE in result.stderr
    assert not (tmp_path / 'test_tipc' / 'output').exists()


@pytest.mark.parametrize('script', [DRIVER, PREPARE])
def test_unknown_mode_is_refused(tmp_path, script):
    result = run(script, CONFIG, 'lite_train', tmp_path)
    assert result.returncode == 2
    assert "unknown mode 'lite_train'" in result.stderr


def test_short_config_is_refused(tmp_path):
    config = tmp_path / 'train_infer_python.txt'
    config.write_text('\n'.join(open(CONFIG).read().splitlines()[:30]) + '\n')
    result = run(DRIVER, config, LITE, tmp_path)
    assert result.returncode == 2
    assert 'has 30 lines' in result.stderr
