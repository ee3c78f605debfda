"""The project's one named logger."""
import logging
import sys

_LOGGER_NAME = 'factseg'


def get_logger(name=_LOGGER_NAME):
    """Return the project logger (or a child of it), adding a stderr handler once.

    Library code logs through this logger and never calls ``logging.basicConfig``; scripts
    may add file handlers to it.

    Args:
        name: ``'factseg'`` or a dotted child name such as ``'factseg.train'``.

    Returns:
        logging.Logger
    """
    root = logging.getLogger(_LOGGER_NAME)
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(message)s', '%H:%M:%S'))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False
    return logging.getLogger(name)
