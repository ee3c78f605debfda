"""Multi-node training through Paddle's launcher: two nodes on loopback equal one node with two processes.

Two ``paddle.distributed.launch --nnodes 2 --master 127.0.0.1:PORT --rank 0|1 --nproc_per_node 1``
processes (CPU, gloo) train the test-sized demo config with ``apex_train.py``; a single
``--nproc_per_node 2`` launch trains the same config. Global rank r reads the same share of each
global batch in both layouts, so the runs must end with the same weights, BatchNorm statistics and
logged losses and gradient norms.
"""

import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from simplecv.core.checkpoint import load_checkpoint, read_checkpoint_info
from train_helpers import write_tiny_config

pytestmark = pytest.mark.slow
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 300
NUM_ITERS = 3


def free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def start_launcher(launch_args, config, model_dir, log_dir):
    """Start ``python -m paddle.distributed.launch LAUNCH_ARGS apex_train.py ...`` in its own process group."""
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=REPO_ROOT)
    command = (
        [sys.executable, '-m', 'paddle.distributed.launch', '--log_dir', str(log_dir)]
        + launch_args
        + [os.path.join(REPO_ROOT, 'apex_train.py'), '--cpu', '--config_path', config, '--model_dir', str(model_dir)]
    )
    return subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )


def wait_all(processes, timeout=TIMEOUT):
    """Wait for every launcher; on a timeout kill them all and fail with their output."""
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=timeout)[0].decode(errors='replace'))
    except subprocess.TimeoutExpired:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        tails = [p.communicate()[0].decode(errors='replace')[-2000:] for p in processes[len(outputs) :]]
        pytest.fail('the launchers did not finish in %d s:\n%s' % (timeout, '\n'.join(outputs + tails)))
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-4000:]
    return outputs


def env_log(log_dir):
    """The worker's environment as the launcher logged it (``envlog.0``)."""
    lines = (log_dir / 'envlog.0').read_text().splitlines()
    return dict(line.split('=', 1) for line in lines if '=' in line)


def final_state(model_dir):
    return load_checkpoint(str(model_dir / read_checkpoint_info(str(model_dir))['last']))


def logged_losses(model_dir):
    records = [json.loads(line) for line in (model_dir / 'train_log.jsonl').read_text().splitlines()]
    return [(r['step'], r['joint_loss'], r['grad_norm']) for r in records]


def test_two_nodes_on_loopback_equal_one_node_with_two_processes(tmp_path):
    config = write_tiny_config(tmp_path, num_iters=NUM_ITERS, num_images=2, batch_size=2)
    single_dir, multi_dir = tmp_path / 'single', tmp_path / 'multi'
    wait_all([start_launcher(['--nproc_per_node', '2'], config, single_dir, tmp_path / 'log_single')])

    master = '127.0.0.1:%d' % free_port()
    node_logs = [tmp_path / ('log_node%d' % rank) for rank in range(2)]
    launchers = [
        start_launcher(
            ['--nnodes', '2', '--master', master, '--rank', str(rank), '--nproc_per_node', '1'],
            config,
            multi_dir,
            node_logs[rank],
        )
        for rank in range(2)
    ]
    outputs = wait_all(launchers)

    for rank, (log_dir, output) in enumerate(zip(node_logs, outputs)):
        env = env_log(log_dir)
        assert (env['PADDLE_TRAINER_ID'], env['PADDLE_TRAINERS_NUM']) == (str(rank), '2')
        assert len(env['PADDLE_TRAINER_ENDPOINTS'].split(',')) == 2
        assert '2 process(es) x batch 2' in (log_dir / 'workerlog.0').read_text()
        assert 'Exit code 0' in output
    single, multi = final_state(single_dir), final_state(multi_dir)
    assert single['global_step'] == multi['global_step'] == NUM_ITERS
    assert sorted(multi['model']) == sorted(single['model'])
    for name, value in single['model'].items():
        np.testing.assert_allclose(multi['model'][name].numpy(), value.numpy(), rtol=1e-5, atol=1e-7, err_msg=name)
    losses = logged_losses(single_dir)
    assert [record[0] for record in losses] == list(range(1, NUM_ITERS + 1))
    np.testing.assert_allclose(np.array(logged_losses(multi_dir)), np.array(losses), rtol=1e-6)
