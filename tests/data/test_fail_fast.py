"""A failing sample reaches the caller's thread as one exception, whatever the loader's workers."""
import os
import signal

import numpy as np
import paddle
import pytest

from simplecv.core.errors import DataError, OutputError
from simplecv.data.fail_fast import CaptureErrors, collate_or_fail, raise_failures, worker_death_error


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


def batches_until_error(dataset, num_workers):
    loader = paddle.io.DataLoader(CaptureErrors(dataset), batch_size=2, num_workers=num_workers,
                                  collate_fn=collate_or_fail(stack))
    seen = []
    try:
        for batch in raise_failures(iter(loader)):
            seen.append(batch.numpy()[:, 0].tolist())
    except Exception as error:  # noqa: BLE001
        # A new exception without the traceback, whose frames would keep the loader's workers alive.
        return seen, type(error)(str(error))
    pytest.fail('no error was raised')


@pytest.mark.parametrize('num_workers', [0, 2])
def test_the_samples_own_error_class_and_message_arrive(num_workers):
    seen, error = batches_until_error(Samples(7, DataError('mask x.png holds label 77; relabel it')), num_workers)
    assert type(error) is DataError and str(error) == 'mask x.png holds label 77; relabel it'
    # Every batch before the failing one arrived complete and in order.
    assert seen == [[0, 1], [2, 3], [4, 5]]
    _, error = batches_until_error(Samples(0, OutputError('cannot write the training log t.log')), num_workers)
    assert type(error) is OutputError and 'training log t.log' in str(error)


def test_an_unexpected_exception_becomes_a_one_line_data_error():
    _, error = batches_until_error(Samples(3, KeyError('cls')), 0)
    assert type(error) is DataError
    assert str(error) == "reading sample 3 failed with KeyError: 'cls' (the traceback is in the log above)"


def test_a_killed_worker_process_is_reported_not_waited_for():
    _, error = batches_until_error(Samples(5, 'kill'), 2)
    # Paddle's SIGCHLD handler may raise its own error first, anywhere in the main thread; the
    # training entry point converts that one with worker_death_error.
    if type(error) is not DataError:
        error = worker_death_error(error)
    assert type(error) is DataError and 'a data loader worker process died' in str(error)
    assert 'num_workers' in str(error)
    assert worker_death_error(ValueError('exited unexpectedly')) is None


def test_capture_errors_passes_good_samples_and_attributes_through():
    dataset = Samples(-1, None)
    wrapped = CaptureErrors(dataset)
    assert len(wrapped) == 12 and wrapped.bad == -1
    np.testing.assert_array_equal(wrapped[4], [4, 4, 4])
