"""Two CPU processes (gloo) through ``paddle.distributed.launch``.

What is asserted:

* with the engine alone (``dp_worker.py``, a model without BatchNorm): both ranks end with
  identical parameters, equal (to float round-off) to one process training on the global
  batch, i.e. the sampler splits each global batch between the ranks, DataParallel averages the
  gradients, and clipping, weight decay and the learning rate are applied once, after the average;
* with ``apex_train.py`` on the test-sized demo config (FactSeg with BatchNorm, which on CPU is
  per process since SyncBatchNorm has no CPU kernel): the run finishes, rank 0 alone writes the
  log and the checkpoints, and the weights are finite;
* evaluation during training and ``isaid_eval.py`` share the images out between the processes
  and sum the confusion matrices: the metric and the label maps are the single-process ones.
"""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from simplecv.core.checkpoint import load_checkpoint, read_checkpoint_info
from train_helpers import GLOBAL_BATCH, NUM_SAMPLES, parameters_of, tiny_loader, tiny_trainer, write_tiny_config

pytestmark = pytest.mark.slow
HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))


def launch(args, tmp_path, timeout=240):
    """Run ``python -m paddle.distributed.launch --nproc_per_node 2 ARGS``; return the combined worker logs."""
    log_dir = tmp_path / 'launch_logs'
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=REPO_ROOT)
    command = [
        sys.executable,
        '-m',
        'paddle.distributed.launch',
        '--nproc_per_node',
        '2',
        '--log_dir',
        str(log_dir),
    ] + args
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
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
    logs = launch(
        [os.path.join(REPO_ROOT, 'apex_train.py'), '--cpu', '--config_path', config, '--model_dir', str(model_dir)],
        tmp_path,
    )
    assert '2 process(es) x batch 2' in logs
    assert 'SyncBatchNorm has no CPU kernel' in logs
    state = load_checkpoint(str(model_dir / read_checkpoint_info(str(model_dir))['last']))
    assert state['global_step'] == 3
    assert all(np.isfinite(v.numpy()).all() for v in state['model'].values())
    assert len((model_dir / 'train_log.jsonl').read_text().splitlines()) == 3


def test_in_training_evaluation_is_shared_by_the_processes(tmp_path):
    """Both processes score their share of the validation images; rank 0 alone writes the record and the best."""
    config = write_tiny_config(tmp_path, num_iters=2, num_images=2, batch_size=2, eval_every=2, num_val=3)
    model_dir = tmp_path / 'run'
    logs = launch(
        [os.path.join(REPO_ROOT, 'apex_train.py'), '--cpu', '--config_path', config, '--model_dir', str(model_dir)],
        tmp_path,
    )
    for rank in range(2):
        assert 'evaluation at step 2: mIoU' in (tmp_path / 'launch_logs' / ('workerlog.%d' % rank)).read_text()
    records = [json.loads(line) for line in (model_dir / 'eval_log.jsonl').read_text().splitlines()]
    assert [r['step'] for r in records] == [2]
    assert 'mIoU %.2f%%' % (100 * records[0]['miou']) in logs
    best = read_checkpoint_info(str(model_dir))['best']
    assert (best['global_step'], best['miou']) == (2, records[0]['miou'])


def test_isaid_eval_on_two_processes_gives_the_single_process_result(tmp_path):
    """Images shared out over 2 processes, confusion matrices summed: the same metric and the same label maps."""
    import paddle

    from simplecv.api.infer_tool import build_config
    from simplecv.engine.build import build_model

    config = write_tiny_config(tmp_path, num_images=1, num_val=3)
    paddle.seed(5)
    model = build_model(build_config(config), for_inference=True)
    checkpoint = str(tmp_path / 'model-7.pdparams')
    paddle.save({'model': model.state_dict(), 'global_step': 7}, checkpoint)
    val = tmp_path / 'data' / 'val'

    def arguments(out):
        return [
            '--config_path',
            config,
            '--ckpt_path',
            checkpoint,
            '--image_dir',
            str(val / 'images'),
            '--mask_dir',
            str(val / 'masks'),
            '--patch_size',
            '64',
            '--stride',
            '32',
            '--backend',
            'dygraph',
            '--device',
            'cpu',
            '--log_dir',
            str(tmp_path / out),
            '--vis_dir',
            str(tmp_path / out / 'vis'),
        ]

    single = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, 'isaid_eval.py')] + arguments('single'),
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT),
        capture_output=True,
        timeout=240,
    )
    assert single.returncode == 0, single.stderr.decode()[-3000:]
    launch([os.path.join(REPO_ROOT, 'isaid_eval.py')] + arguments('shared'), tmp_path)
    results = {out: json.loads((tmp_path / out / 'eval_model-7.json').read_text()) for out in ('single', 'shared')}
    assert results['shared']['num_images'] == 3 and results['shared']['num_windows'] == results['single']['num_windows']
    assert results['shared']['confusion_matrix'] == results['single']['confusion_matrix']
    assert results['shared']['miou'] == results['single']['miou']
    names = sorted(os.listdir(tmp_path / 'single' / 'vis'))
    assert len(names) == 3 and names == sorted(os.listdir(tmp_path / 'shared' / 'vis'))
    for name in names:
        np.testing.assert_array_equal(
            np.asarray(Image.open(tmp_path / 'shared' / 'vis' / name)),
            np.asarray(Image.open(tmp_path / 'single' / 'vis' / name)),
            err_msg=name,
        )
