"""Two CPU processes (gloo) through ``paddle.distributed.launch``.

What is asserted:

* with the engine alone (``dp_worker.py``, a model without BatchNorm): both ranks end with
  identical parameters, equal (to float round-off) to one process training on the global
  batch, i.e. the sampler splits each global batch between the ranks, DataParallel averages the
  gradients, and clipping, weight decay and the learning rate are applied once, after the average;
* with ``apex_train.py`` on the test-sized demo config (FactSeg with BatchNorm, which on CPU is
  per process since SyncBatchNorm has no CPU kernel): the run finishes, rank 0 alone writes the
  log and the checkpoints, and the weights are finite.
"""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from simplecv.core.checkpoint import load_checkpoint, read_checkpoint_info
from train_helpers import GLOBAL_BATCH, NUM_SAMPLES, parameters_of, tiny_loader, tiny_trainer, write_tiny_config

pytestmark = pytest.mark.slow
HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))


def launch(args, tmp_path, timeout=240):
    """Run ``python -m paddle.distributed.launch --nproc_per_node 2 ARGS``; return the combined worker logs."""
    log_dir = tmp_path / 'launch_logs'
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=REPO_ROOT)
    command = [sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node', '2', '--log_dir',
               str(log_dir)] + args
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        output = process.communicate(timeout=timeout)[0].decode(errors='replace')
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output = process.communicate()[0].decode(errors='replace')
        pytest.fail('the 2-process run did not finish in %d s:\n%s' % (timeout, output[-3000:]))
    logs = output + ''.join(p.read_text(errors='replace') for p in sorted(log_dir.glob('workerlog.*')))
    assert process.returncode == 0, logs[-4000:]
    return logs


def test_two_processes_equal_one_process_on_the_global_batch(tmp_path):
    num_iters = 6
    launch([os.path.join(HERE, 'dp_worker.py'), str(tmp_path), str(num_iters)], tmp_path)
    ranks = [dict(np.load(tmp_path / ('rank%d.npz' % r))) for r in range(2)]
    single = tiny_trainer(num_iters, batch_norm=False)
    single.train(tiny_loader(NUM_SAMPLES, GLOBAL_BATCH))
    want = parameters_of(single.model)
    assert sorted(ranks[0]) == sorted(want)
    for name, value in want.items():
        np.testing.assert_array_equal(ranks[1][name], ranks[0][name], err_msg=name)
        np.testing.assert_allclose(ranks[0][name], value, rtol=1e-5, atol=1e-6, err_msg=name)
        assert not np.array_equal(value, parameters_of(tiny_trainer(1, batch_norm=False).model)[name])


def test_apex_train_runs_data_parallel(tmp_path):
    config = write_tiny_config(tmp_path, num_iters=3, num_images=2, batch_size=2)
    model_dir = tmp_path / 'run'
    logs = launch([os.path.join(REPO_ROOT, 'apex_train.py'), '--cpu', '--config_path', config, '--model_dir',
                   str(model_dir)], tmp_path)
    assert '2 process(es) x batch 2' in logs
    assert 'SyncBatchNorm has no CPU kernel' in logs
    state = load_checkpoint(str(model_dir / read_checkpoint_info(str(model_dir))['last']))
    assert state['global_step'] == 3
    assert all(np.isfinite(v.numpy()).all() for v in state['model'].values())
    assert len((model_dir / 'train_log.jsonl').read_text().splitlines()) == 3
