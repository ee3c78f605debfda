"""apex_train.py end to end on a test-sized demo config: learning, exact resume, Ctrl-C, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import paddle
import pytest

import apex_train
from simplecv.core.checkpoint import load_checkpoint, read_checkpoint_info
from train_helpers import write_tiny_config

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def losses(model_dir):
    with open(os.path.join(model_dir, 'train_log.jsonl')) as stream:
        return [json.loads(line)['loss'] for line in stream]


def test_a_few_iterations_lower_the_loss(tmp_path):
    config = write_tiny_config(tmp_path, num_iters=10, num_images=1, image_size=64, batch_size=1)
    model_dir = str(tmp_path / 'run')
    assert apex_train.main(['--config_path', config, '--model_dir', model_dir]) == 0
    history = losses(model_dir)
    assert len(history) == 10
    assert np.mean(history[-3:]) < 0.85 * np.mean(history[:3])
    assert read_checkpoint_info(model_dir)['last'] == 'model-10.pdparams'
    for name in ('train.log', 'training_curves.png', 'model-10.pdparams'):
        assert os.path.isfile(os.path.join(model_dir, name)), name
    assert any(name.startswith('vdlrecords') for name in os.listdir(model_dir))


def test_an_interrupted_run_continues_exactly(tmp_path):
    config = write_tiny_config(tmp_path, num_iters=5)
    whole, parts = str(tmp_path / 'whole'), str(tmp_path / 'parts')
    assert apex_train.main(['--config_path', config, '--model_dir', whole]) == 0
    # The first attempt ends after step 2 (its checkpoint is on disk); the same command continues.
    assert apex_train.main(['--config_path', config, '--model_dir', parts, 'train.num_iters', '2']) == 0
    assert apex_train.main(['--config_path', config, '--model_dir', parts]) == 0
    want = load_checkpoint(os.path.join(whole, 'model-5.pdparams'))
    got = load_checkpoint(os.path.join(parts, 'model-5.pdparams'))
    assert got['global_step'] == 5
    for name, value in want['model'].items():
        np.testing.assert_array_equal(got['model'][name].numpy(), value.numpy(), err_msg=name)
    for name, value in want['opt'].items():
        np.testing.assert_array_equal(got['opt'][name].numpy(), value.numpy(), err_msg=name)
    assert losses(parts) == losses(whole)


def test_resume_flags_name_a_checkpoint(tmp_path):
    config = write_tiny_config(tmp_path, num_iters=3, save_every=1)
    first, second = str(tmp_path / 'first'), str(tmp_path / 'second')
    assert apex_train.main(['--config_path', config, '--model_dir', first]) == 0
    assert (
        apex_train.main(
            [
                '--config_path',
                config,
                '--model_dir',
                second,
                '--resume_model_path',
                os.path.join(first, 'model-2.pdparams'),
            ]
        )
        == 0
    )
    assert read_checkpoint_info(second)['checkpoints'] == {'3': 'model-3.pdparams'}
    assert (
        apex_train.main(['--config_path', config, '--model_dir', first, '--resume_iter', '2', 'train.num_iters', '4'])
        == 0
    )
    assert read_checkpoint_info(first)['last'] == 'model-4.pdparams'


def run_error(argv, capsys):
    assert apex_train.main(argv) == 2
    return capsys.readouterr().err


def test_bad_input_gives_clear_errors(tmp_path, capsys):
    model_dir = str(tmp_path / 'run')
    err = run_error(['--config_path', 'isaid.factseg_dmeo', '--model_dir', model_dir], capsys)
    assert "no config 'isaid.factseg_dmeo'" in err and "did you mean 'isaid.factseg_demo'" in err

    config = write_tiny_config(tmp_path, num_iters=1)
    assert apex_train.main(['--config_path', config, '--model_dir', model_dir]) == 0
    err = run_error(['--config_path', 'isaid.factseg_demo', '--model_dir', model_dir], capsys)
    assert 'holds a checkpoint of config' in err and 'isaid.factseg_demo' in err
    err = run_error(
        ['--config_path', config, '--model_dir', model_dir, 'model.params.foreground.fpn.out_channels', '24'], capsys
    )
    assert 'another model section' in err

    err = run_error(['--config_path', config, '--model_dir', model_dir, '--resume_iter', '7'], capsys)
    assert 'model-7.pdparams does not exist' in err
    weights_only = str(tmp_path / 'weights.pdparams')
    paddle.save(load_checkpoint(os.path.join(model_dir, 'model-1.pdparams'))['model'], weights_only)
    err = run_error(['--config_path', config, '--model_dir', str(tmp_path / 'other'), '--resume', weights_only], capsys)
    assert 'model weights only' in err

    err = run_error(
        [
            '--config_path',
            config,
            '--model_dir',
            str(tmp_path / 'fresh'),
            'model.params.resnet_encoder.pretrained',
            'pretrained/missing.pdparams',
        ],
        capsys,
    )
    assert 'python torch_ref/convert.py resnet18' in err
    err = run_error(['--config_path', config, '--model_dir', str(tmp_path / 'fresh'), 'train.num_iters', '0'], capsys)
    assert 'train.num_iters must be a positive int' in err


def test_usage_errors_exit_from_argparse(capsys):
    with pytest.raises(SystemExit):
        apex_train.main(['--config_path', 'isaid.factseg_demo', '--model_dir', 'x', '--opt_level', 'O3'])
    assert "invalid choice: 'O3'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        apex_train.main(['--config_path', 'isaid.factseg_demo', '--model_dir', 'x', 'train.num_iters'])
    assert 'KEY VALUE pairs' in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_saves_a_complete_checkpoint_and_stops(tmp_path):
    config = write_tiny_config(tmp_path, num_iters=10000)
    model_dir = tmp_path / 'run'
    env = dict(os.environ, OMP_NUM_THREADS='2', PYTHONPATH=REPO_ROOT)
    process = subprocess.Popen(
        [
            sys.executable,
            os.path.join(REPO_ROOT, 'apex_train.py'),
            '--config_path',
            config,
            '--model_dir',
            str(model_dir),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 120
        while not (model_dir / 'train_log.jsonl').is_file() or not (model_dir / 'train_log.jsonl').read_text():
            assert process.poll() is None and time.time() < deadline, process.stdout.read().decode()[-3000:]
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=120)[0].decode()
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, output[-3000:]
    assert 'run the same command again to continue' in output
    info = read_checkpoint_info(str(model_dir))
    state = load_checkpoint(str(model_dir / info['last']))
    assert state['global_step'] == info['global_step'] >= 1
    assert not [name for name in os.listdir(model_dir) if '.tmp' in name]
