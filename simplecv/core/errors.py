"""User-facing exception classes.

Every error that a user can fix (a missing file, a wrong setting) derives from
:class:`FactSegError`, so command-line tools can print its message without a
traceback.
"""


class FactSegError(Exception):
    """Base class of errors whose message tells the user what to fix."""


class DataError(FactSegError):
    """A data set file or folder is missing, unreadable or inconsistent."""


class CheckpointError(FactSegError):
    """A checkpoint file is missing, unreadable or does not match the model."""


class ConfigError(FactSegError, ValueError):
    """A config key or value is unknown or invalid."""


class OutputError(FactSegError):
    """A file in an output folder (checkpoint, log, plot) cannot be written: full disk, read-only folder."""


class ExportError(FactSegError):
    """A model cannot be converted to a deployment format (ONNX) or its converter is missing."""
