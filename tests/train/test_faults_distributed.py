"""Faults under ``paddle.distributed.launch`` (2 CPU processes, gloo): one rank's failure stops every rank.

Rank r reads every second sample of the epoch from r, one per step, so rank 0 reads the image of
the epoch's third sample at step 2 while rank 1 reads the fourth.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from fault_helpers import REPO_ROOT, LabelSplit, last_line, temporaries
from simplecv.core.checkpoint import load_checkpoint, read_checkpoint_info

pytestmark = pytest.mark.slow


def launch(argv, log_dir, timeout=180, until=None):
    """Run apex_train.py on 2 processes; with ``until(process)``, call it while the launcher runs.

    Returns:
        tuple: ``(launcher exit code, launcher output, [worker 0 log, worker 1 log])``.
    """
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=REPO_ROOT)
    command = [
        sys.executable,
        '-m',
        'paddle.distributed.launch',
        '--nproc_per_node',
        '2',
        '--log_dir',
        str(log_dir),
        'apex_train.py',
        '--cpu',
    ] + argv
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        if until is not None:
            until(process)
        output = process.communicate(timeout=timeout)[0].decode(errors='replace')
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail('the 2-process run did not stop in %d s:\n%s' % (timeout, process.communicate()[0][-3000:]))
    logs = [(log_dir / ('workerlog.%d' % rank)).read_text(errors='replace') for rank in range(2)]
    return process.returncode, output, logs


def test_a_bad_sample_on_one_rank_stops_both_with_exit_code_2(tmp_path):
    split = LabelSplit(tmp_path, num_iters=4)
    split.break_label(step=3)
    model_dir = tmp_path / 'run'
    started = time.time()
    code, output, logs = launch(split.argv(model_dir), tmp_path / 'logs')
    assert code == 2, output[-3000:]
    assert time.time() - started < 120
    for rank, log in enumerate(logs):
        line = last_line(log)
        assert line.startswith('apex_train.py: error: ' + ('' if rank == 0 else 'process 0: ')), line
        assert str(split.label(3)) in line and 'the run stopped after step 1' in line, line
        assert 'Traceback' not in log
    # Rank 0 saved step 1 (the last complete one) before either process exited.
    info = read_checkpoint_info(str(model_dir))
    assert info['last'] == 'model-1.pdparams'
    assert load_checkpoint(str(model_dir / info['last']))['global_step'] == 1
    assert temporaries(str(model_dir)) == []


def test_sigterm_to_the_launcher_stops_both_ranks_at_one_saved_step(tmp_path):
    split = LabelSplit(tmp_path, num_iters=4)
    model_dir = tmp_path / 'run'
    log = model_dir / 'train_log.jsonl'

    def terminate_after_first_step(process):
        deadline = time.time() + 150
        while not (log.is_file() and log.read_text()):
            assert process.poll() is None and time.time() < deadline
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)

    code, output, logs = launch(
        split.argv(model_dir, 'train.num_iters', '10000'), tmp_path / 'logs', until=terminate_after_first_step
    )
    assert code != 0
    step = read_checkpoint_info(str(model_dir))['global_step']
    # The launcher signals the processes one after the other; the first signal stops both at one step.
    assert any('SIGTERM: stopping after this step' in log_text for log_text in logs)
    for log_text in logs:
        line = last_line(log_text)
        assert line.split(' WARNING ')[-1].startswith('stopped by '), line
        assert line.endswith(' at step %d of 10000; run the same command again to continue' % step), line
    assert load_checkpoint(str(model_dir / ('model-%d.pdparams' % step)))['global_step'] == step
    assert temporaries(str(model_dir)) == []
