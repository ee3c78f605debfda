"""Make a sample that fails to load stop the training loop at once, with one clear message.

Paddle's ``DataLoader`` reads samples in a background thread (``num_workers=0``) or in worker
processes. An exception raised there never reaches the training loop as such: with
``num_workers=0`` the thread dies printing its traceback and the loop waits for a batch forever;
with workers the loop gets "Blocking queue is killed" without the cause.

Here nothing raises inside the loader. :class:`CaptureErrors` wraps the data set so that a
failing sample becomes a :class:`SampleFailure`; :func:`collate_or_fail` turns a batch holding
one into an *error batch* that carries the message as bytes (which travels through the loader's
queues like any array); :func:`raise_failures`, around the loader's iterator in the main thread,
raises the original error class with the original message there. A worker process that dies
(killed by the system, e.g. out of memory) is reported the same way (:func:`worker_death_error`).
"""

import inspect

import numpy as np
import paddle

from simplecv.core import errors
from simplecv.core.errors import DataError, FactSegError
from simplecv.util.logger import get_logger

ERROR_KEY = '__sample_error__'
WORKER_EXIT_SECONDS = 5
_logger = get_logger('factseg.data')
# Paddle's messages when a loader worker process died: from the loader's queue, and from its SIGCHLD
# handler ("DataLoader process (pid N) exited unexpectedly ..." or "... exited is killed by signal").
_LOADER_DIED = ('Blocking queue is killed', 'DataLoader process (pid')


class SampleFailure:
    """What :class:`CaptureErrors` returns instead of a sample that raised.

    Attributes:
        kind (str): the exception's class name when it is one of :mod:`simplecv.core.errors`,
            else ``'DataError'``.
        message (str): the one-line message.
    """

    def __init__(self, what, error):
        if isinstance(error, FactSegError):
            self.kind, self.message = type(error).__name__, str(error)
        else:
            self.kind = 'DataError'
            self.message = 'reading %s failed with %s: %s (the traceback is in the log above)' % (
                what,
                type(error).__name__,
                error,
            )


class CaptureErrors(paddle.io.Dataset):
    """Wrap a map-style data set so that ``__getitem__`` returns a :class:`SampleFailure` instead of raising.

    Other attributes are read from the wrapped data set. When it has ``describe(key)`` (the sample's
    files, e.g. :meth:`data.isaid.ISAIDSegmmDataset.describe`), messages of unexpected exceptions
    name them; otherwise they name the sample key.

    Args:
        dataset: the data set.
    """

    def __init__(self, dataset):
        super().__init__()
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        try:
            return self.dataset[key]
        except Exception as error:  # noqa: BLE001 (every failure must reach the main thread)
            describe = getattr(self.dataset, 'describe', None)
            what = describe(key) if describe is not None else 'sample %s' % (key,)
            if not isinstance(error, FactSegError):
                _logger.exception('%s could not be read', what)
            return SampleFailure(what, error)

    def __getattr__(self, name):
        if name == 'dataset':
            raise AttributeError(name)
        return getattr(self.dataset, name)


def collate_or_fail(collate):
    """Return a collate function that gives ``{ERROR_KEY: uint8 message}`` when a sample failed.

    Args:
        collate: the normal collate function ``samples -> batch``.
    """

    def collate_checked(samples):
        for sample in samples:
            if isinstance(sample, SampleFailure):
                return error_batch(sample.kind, sample.message)
        try:
            return collate(samples)
        except Exception as error:  # noqa: BLE001
            failure = SampleFailure('batch', error)
            return error_batch(failure.kind, failure.message)

    return collate_checked


def error_batch(kind, message):
    """Encode an error as a batch: ``{ERROR_KEY: (n,) uint8}`` holding ``'<kind>:<message>'`` in UTF-8."""
    return {ERROR_KEY: np.frombuffer(('%s:%s' % (kind, message)).encode('utf-8'), dtype=np.uint8).copy()}


def _batch_error(batch):
    """Return the exception an error batch carries, or None for a normal batch."""
    if not (isinstance(batch, dict) and ERROR_KEY in batch):
        return None
    value = batch[ERROR_KEY]
    data = value.numpy() if hasattr(value, 'numpy') else np.asarray(value)
    kind, _, message = bytes(data.astype(np.uint8)).decode('utf-8', errors='replace').partition(':')
    error_class = getattr(errors, kind, DataError)
    if not (isinstance(error_class, type) and issubclass(error_class, FactSegError)):
        error_class = DataError
    return error_class(message)


def worker_death_error(error):
    """Return a one-line :class:`DataError` when ``error`` is Paddle's report of a dead loader worker, else None.

    Paddle reports a worker process that died (killed by the system, e.g. out of memory) either
    from the loader's queue ("Blocking queue is killed") or from its SIGCHLD handler, which raises
    in the main thread wherever it happens to be ("DataLoader process (pid N) exited ...").
    """
    if not any(text in str(error) for text in _LOADER_DIED):
        return None
    return DataError(
        'a data loader worker process died (killed by the system, often for lack of memory): lower '
        'data.train.params.num_workers or cache_mb, then run the same command again to continue'
    )


def raise_failures(batches):
    """Yield the batches of a loader iterator; raise the error of an error batch in this thread.

    When this generator ends, fails or is dropped unfinished (a run stopped mid-epoch), the loader
    iterator is shut down at once (:func:`release`).

    Raises:
        DataError (or the sample's own :class:`FactSegError` class): a sample failed, or a
            loader worker process died.
    """
    try:
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except Exception as loader_error:  # noqa: BLE001 (only Paddle's dead-worker reports are converted)
                error = worker_death_error(loader_error)
                if error is None:
                    raise
            else:
                error = _batch_error(batch)
            if error is not None:
                raise error
            yield batch
    finally:
        release(batches)


def release(batches):
    """Stop a Paddle loader iterator's reader thread and worker processes now.

    Paddle's iterators have no public ``close()`` and their reader thread holds a reference to
    them, so an abandoned iterator keeps that thread (blocked on its full queue) and the worker
    processes alive until the interpreter exits; its own shutdown method is called instead.
    """
    shutdown = getattr(batches, '_try_shutdown_all', None)
    if shutdown is None:
        return
    if 'timeout' in inspect.signature(shutdown).parameters:
        # Worker processes get this long to exit; a stuck one (daemonic) ends with this process.
        shutdown(timeout=WORKER_EXIT_SECONDS)
    else:
        shutdown()
