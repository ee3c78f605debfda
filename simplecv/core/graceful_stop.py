"""Stop a training run cleanly on Ctrl-C (SIGINT) or SIGTERM: finish the step, save, exit non-zero.

SIGTERM is what batch schedulers, ``kill``, hosted notebook back-ends and
``paddle.distributed.launch`` (when it is stopped itself) send before they kill a process; Paddle's
own handler for it prints a C++ stack and aborts, losing everything since the last checkpoint.
"""

import signal
import threading

from simplecv.util.logger import get_logger

_logger = get_logger('factseg.train')
# The exit status of a process stopped by a signal, as a shell reports it (128 + signal number).
EXIT_CODES = {signal.SIGINT: 128 + signal.SIGINT, signal.SIGTERM: 128 + signal.SIGTERM}


class GracefulStop:
    """While active, SIGINT and SIGTERM ask ``trainer`` to stop after its current step.

    The trainer then runs its ``after_train`` hooks (the checkpoint hook saves) and returns. A
    second Ctrl-C interrupts at once (``KeyboardInterrupt``); further SIGTERMs only repeat the
    request (``paddle.distributed.launch`` sends several). Signals can be handled only in the main
    thread; elsewhere (a notebook's worker thread) this does nothing.

    Args:
        trainer: an object with ``request_stop()`` (:class:`simplecv.core.trainer.Trainer`).

    Attributes:
        received (int or None): the first signal received, ``signal.SIGINT`` or ``signal.SIGTERM``.
    """

    def __init__(self, trainer):
        self.trainer = trainer
        self.received = None
        self.active = threading.current_thread() is threading.main_thread()
        self._previous = {}

    @property
    def exit_code(self):
        """130 after SIGINT, 143 after SIGTERM, None when no signal arrived."""
        return EXIT_CODES.get(self.received)

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.received is None:
            self.received = signum
            _logger.warning(
                '%s: stopping after this step and saving a checkpoint%s',
                name,
                ' (Ctrl-C again to abort)' if signum == signal.SIGINT else '',
            )
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, self._previous[signal.SIGINT])
        self.trainer.request_stop()

    def __enter__(self):
        if self.active:
            for signum in EXIT_CODES:
                previous = signal.signal(signum, self._handle)
                # A handler installed outside Python (Paddle's) reads as None and cannot be put back.
                self._previous[signum] = signal.SIG_DFL if previous is None else previous
        return self

    def __exit__(self, *exc):
        if self.active:
            for signum, previous in self._previous.items():
                signal.signal(signum, previous)
        return False
