"""The project's named loggers, and the one function entry points call to show them.

Library modules only create loggers (``get_logger('factseg.<part>')``, i.e.
``logging.getLogger``) and never attach handlers or set levels. A script's ``main`` calls
:func:`configure_logging` once; until then the ``factseg`` messages follow Python's defaults
(warnings and errors only, on stderr), so importing the library changes no global state.
"""

import logging
import sys

LOGGER_NAME = 'factseg'
FORMAT = '%(asctime)s %(levelname)s %(message)s'
DATE_FORMAT = '%H:%M:%S'


class _ConsoleHandler(logging.StreamHandler):
    """The handler :func:`configure_logging` adds (its own class, so a second call replaces it)."""


def get_logger(name=LOGGER_NAME):
    """Return a project logger; the same as ``logging.getLogger(name)``.

    Args:
        name: ``'factseg'`` or a dotted child name such as ``'factseg.train'``.

    Returns:
        logging.Logger
    """
    return logging.getLogger(name)


def configure_logging(level=logging.INFO, stream=None):
    """Print the project's log records on the terminal as ``HH:MM:SS LEVEL message``; for entry points.

    Adds one stream handler to the ``factseg`` logger (replacing the one an earlier call added),
    sets its level and stops its records from also reaching the root logger, so that a script
    or notebook that configured the root logger does not print them twice. Other handlers (a
    training run's ``train.log``, pytest's ``caplog``) are kept.

    Args:
        level: the lowest level shown, ``logging.INFO`` by default.
        stream: where to write; ``sys.stderr`` (looked up at call time) by default.

    Returns:
        logging.Logger: the ``factseg`` logger.
    """
    logger = logging.getLogger(LOGGER_NAME)
    for handler in [h for h in logger.handlers if isinstance(h, _ConsoleHandler)]:
        logger.removeHandler(handler)
    handler = _ConsoleHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger
