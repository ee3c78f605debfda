"""Writing into an output folder without tracebacks or leftovers: full disks, read-only folders.

Every file a run writes (checkpoints, ``checkpoint_info.json``, ``train.log``, ``train_log.jsonl``,
VisualDL records, the curves PNG) goes through :func:`writing`, which turns an ``OSError`` into an
:class:`~simplecv.core.errors.OutputError` whose one-line message names the file, what was being
written and the fix for that ``errno``. :func:`check_writable` tries the folder once before any
work starts; :func:`remove_stale_temporaries` deletes the temporary files that a killed process
left behind (:func:`simplecv.core.checkpoint.atomic_write` names them ``<file>.tmp<pid>``).
"""

import contextlib
import errno
import logging
import os
import re
import shutil
import sys

from simplecv.core.errors import OutputError

_TEMPORARY = re.compile(r'^(?P<target>.+)\.tmp(?P<pid>\d+)$')


def _fix(code, folder):
    if code in (errno.ENOSPC, errno.EDQUOT):
        return 'free space on the disk of %s (or raise the quota) or choose another --model_dir' % folder
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return 'make %s writable or choose another --model_dir' % folder
    if code == errno.ENOENT:
        return 'the folder %s was removed during the run; recreate it or choose another --model_dir' % folder
    return 'check the disk of %s or choose another --model_dir' % folder


def output_error(error, path, what):
    """Return an :class:`OutputError` for an ``OSError`` raised while writing ``what`` to ``path``.

    Args:
        error: the ``OSError``.
        path: the file (or folder) being written.
        what: a short description (``'checkpoint'``, ``'training log'``).
    """
    reason = error.strerror or str(error)
    if error.errno is not None:
        reason = '[Errno %d] %s' % (error.errno, reason)
    folder = os.path.dirname(os.path.abspath(path)) if not os.path.isdir(path) else os.path.abspath(path)
    return OutputError('cannot write the %s %s (%s): %s' % (what, path, reason, _fix(error.errno, folder)))


@contextlib.contextmanager
def writing(path, what):
    """Context in which an ``OSError`` becomes an :class:`OutputError` naming ``path`` and ``what``."""
    try:
        yield
    except OSError as error:
        raise output_error(error, path, what) from None


def check_writable(folder, what='--model_dir'):
    """Create ``folder`` if needed and check that a file can be written, flushed and removed in it.

    Raises:
        OutputError: the folder cannot be created or written (read-only, full, no permission).
    """
    probe = os.path.join(folder, '.write_test.tmp%d' % os.getpid())
    with writing(folder, what + ' folder'):
        os.makedirs(folder, exist_ok=True)
        try:
            with open(probe, 'wb') as stream:
                stream.write(b'\0' * 4096)
                stream.flush()
                os.fsync(stream.fileno())
        finally:
            if os.path.exists(probe):
                os.remove(probe)


def low_space_warning(folder, needed_bytes, what):
    """Return a warning when the disk of ``folder`` cannot hold two of ``what`` (``needed_bytes`` each), else None.

    Two, because a file is written beside the one it replaces before that one is dropped.
    """
    free = shutil.disk_usage(folder).free
    if free >= 2 * needed_bytes:
        return None
    return (
        'only %.0f MB free on the disk of %s, and %s needs about %.0f MB while the previous one is kept: the '
        'run will stop when the disk is full; free space now' % (free / 2**20, folder, what, needed_bytes / 2**20)
    )


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder):
    """Delete ``<file>.tmp<pid>`` files in ``folder`` whose writing process no longer runs.

    Returns:
        list: the names removed.
    """
    removed = []
    if not os.path.isdir(folder):
        return removed
    for name in sorted(os.listdir(folder)):
        match = _TEMPORARY.match(name)
        if match is None or int(match.group('pid')) == os.getpid() or _process_alive(int(match.group('pid'))):
            continue
        with writing(os.path.join(folder, name), 'stale temporary file'):
            os.remove(os.path.join(folder, name))
        removed.append(name)
    return removed


class GuardedFileHandler(logging.FileHandler):
    """A log file handler that stops the run with an :class:`OutputError` when the file cannot be written.

    ``logging`` normally prints "--- Logging error ---" with a traceback and carries on; a full
    disk would then silently lose the log. After the first failure this handler drops further
    records (so the error can still be reported through the same logger) and raises from the
    logging call that failed.
    """

    def __init__(self, path):
        with writing(path, 'training log'):
            super().__init__(path)
        self.failed = False

    def emit(self, record):
        """Write ``record`` unless an earlier write failed."""
        if not self.failed:
            super().emit(record)

    def handleError(self, record):  # noqa: N802 (logging's name)
        """Turn a failed write (``OSError``) into an :class:`OutputError`; others go to ``logging``.

        Raises:
            OutputError: the log file could not be written (disk full, read-only, removed); the file
                is closed and later records are dropped.
        """
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            super().handleError(record)
            return
        self.failed = True
        stream, self.stream = self.stream, None
        try:
            stream.close()  # flushes what is buffered, which fails again; the file is closed all the same
        except OSError:
            pass
        raise output_error(error, self.baseFilename, 'training log') from None
