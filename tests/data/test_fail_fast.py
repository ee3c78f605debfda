"""A failing sample reaches the caller's thread as one exception, whatever the loader's workers.

Scenarios with worker processes run in a fresh interpreter: forking while another test's threads
hold Paddle's locks can deadlock the new worker (the hazard ``test_isaid_dataset`` avoids too).
"""

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import paddle
import pytest

from simplecv.core.errors import DataError, OutputError
from simplecv.data.fail_fast import CaptureErrors, collate_or_fail, raise_failures, worker_death_error

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))


def stack(samples):
    return np.stack(samples)


class Samples(paddle.io.Dataset):
    """Sample i is ``[i, i, i]``; sample ``bad`` fails with ``error`` (or kills its process with 'kill')."""

    def __init__(self, bad, error):
        self.bad, self.error = bad, error

    def __len__(self):
        return 12

    def __getitem__(self, index):
        if index == self.bad:
            if self.error == 'kill':
                os.kill(os.getpid(), signal.SIGKILL)
            raise self.error
        return np.full(3, index, dtype='float32')


def loader(dataset, num_workers):
    return paddle.io.DataLoader(
        CaptureErrors(dataset), batch_size=2, num_workers=num_workers, collate_fn=collate_or_fail(stack)
    )


def batches_until_error(dataset, num_workers):
    seen = []
    try:
        for batch in raise_failures(iter(loader(dataset, num_workers))):
            seen.append(batch.numpy()[:, 0].tolist())
    except Exception as error:  # noqa: BLE001
        # A new exception without the traceback, whose frames would keep the loader alive.
        return seen, type(error)(str(error))
    pytest.fail('no error was raised')


def loader_threads_and_workers():
    threads = {t for t in threading.enumerate() if '_thread_loop' in t.name}
    return threads, set(multiprocessing.active_children())


def stopped_since(before, seconds=12):
    """Whether the loader threads and workers are back to ``before`` within ``seconds``.

    A worker loader's reader thread notices the stop at its next queue poll (Paddle polls every 5 s).
    """
    deadline = time.time() + seconds
    while loader_threads_and_workers() != before:
        if time.time() > deadline:
            return False
        time.sleep(0.1)
    return True


def check_errors_arrive(num_workers):
    before = loader_threads_and_workers()
    seen, error = batches_until_error(Samples(7, DataError('mask x.png holds label 77; relabel it')), num_workers)
    assert type(error) is DataError and str(error) == 'mask x.png holds label 77; relabel it'
    # Every batch before the failing one arrived complete and in order.
    assert seen == [[0, 1], [2, 3], [4, 5]]
    # The loader's reader thread and worker processes were stopped, not left blocked.
    assert stopped_since(before)
    _, error = batches_until_error(Samples(0, OutputError('cannot write the training log t.log')), num_workers)
    assert type(error) is OutputError and 'training log t.log' in str(error)


def check_killed_worker():
    _, error = batches_until_error(Samples(5, 'kill'), 2)
    # Paddle's SIGCHLD handler may raise its own error first, anywhere in the main thread; the
    # training entry point converts that one with worker_death_error.
    if type(error) is not DataError:
        error = worker_death_error(error) or error
    assert type(error) is DataError and 'a data loader worker process died' in str(error), repr(error)
    assert 'num_workers' in str(error)


def check_left_mid_epoch(num_workers):
    before = loader_threads_and_workers()
    batches = raise_failures(iter(loader(Samples(-1, None), num_workers)))
    assert next(batches).numpy()[:, 0].tolist() == [0, 1]
    batches.close()
    assert stopped_since(before)


def in_fresh_interpreter(name, *args):
    code = 'import sys; sys.path.insert(0, %r); import test_fail_fast; test_fail_fast.%s(*%r)' % (HERE, name, args)
    env = dict(os.environ, OMP_NUM_THREADS='2', PYTHONPATH=REPO_ROOT)
    result = subprocess.run(
        [sys.executable, '-c', code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_samples_own_error_class_and_message_arrive():
    check_errors_arrive(0)


def test_with_worker_processes_too():
    in_fresh_interpreter('check_errors_arrive', 2)


def test_a_killed_worker_process_is_reported_not_waited_for():
    in_fresh_interpreter('check_killed_worker')
    # Paddle's three wordings are recognised, and nothing else.
    for message in (
        '(Fatal) Blocking queue is killed because the data reader raises an exception.',
        'DataLoader process (pid 12) exited unexpectedly with code 1. Error detailed are lost',
        'DataLoader process (pid 12) exited is killed by signal: Killed.',
    ):
        assert isinstance(worker_death_error(SystemError(message)), DataError)
    assert worker_death_error(ValueError('the process exited unexpectedly')) is None


def test_a_loader_left_mid_epoch_is_shut_down():
    check_left_mid_epoch(0)
    in_fresh_interpreter('check_left_mid_epoch', 2)


def test_an_unexpected_exception_becomes_a_one_line_data_error():
    _, error = batches_until_error(Samples(3, KeyError('cls')), 0)
    assert type(error) is DataError
    assert str(error) == "reading sample 3 failed with KeyError: 'cls' (the traceback is in the log above)"


def test_an_unexpected_exception_in_an_isaid_transform_names_the_files(demo_split):
    from data.isaid import ISAIDSegmmDataset

    def broken_transform(image, mask):
        raise ZeroDivisionError('division by zero')

    dataset = ISAIDSegmmDataset(*demo_split, dict(patch_size=64, stride=64), [broken_transform])
    failure = CaptureErrors(dataset)[(4, 99)]
    x1, y1, x2, y2 = (int(v) for v in dataset.windows[4][1:])
    image_path, mask_path = dataset.files[int(dataset.windows[4][0])]
    assert failure.kind == 'DataError' and failure.message == (
        'reading window (%d, %d, %d, %d) of %s (mask %s) failed with ZeroDivisionError: division by zero (the '
        'traceback is in the log above)' % (x1, y1, x2, y2, image_path, mask_path)
    )


def test_capture_errors_passes_good_samples_and_attributes_through():
    wrapped = CaptureErrors(Samples(-1, None))
    assert len(wrapped) == 12 and wrapped.bad == -1
    np.testing.assert_array_equal(wrapped[4], [4, 4, 4])
