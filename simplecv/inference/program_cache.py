"""A cache of exported oneDNN programs, so that only the first run pays for export and check.

Exporting FactSeg-R50 for Paddle Inference and checking the program against dygraph on one
window costs tens of seconds on a CPU, as much as ten windows of prediction. The program only
depends on the weights, the model's config and code, the input shape, the export options and
the Paddle version, so it is stored under a key made of their digests and reused::

    <cache dir>/onednn/<key>/model.json, model.pdiparams, entry.json

``entry.json`` holds the key's fields, the SHA-256 of both program files and the result of the
dygraph check made when the entry was written. An entry whose fields or files do not match is
stale or corrupt: it is logged, deleted and built again.

The cache directory is ``$FACTSEG_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/factseg-paddle``
(``~/.cache/factseg-paddle``); ``--cache_dir`` of the scripts overrides both, and ``none``
turns caching off. See or clear it with::

    python tools/program_cache.py            # list entries and sizes
    python tools/program_cache.py --clear    # delete them
"""

import hashlib
import inspect
import json
import os
import shutil
import sys
import sysconfig
import tempfile

import numpy as np

from simplecv.util.logger import get_logger

_LOGGER = get_logger('factseg.inference')
CACHE_ENV = 'FACTSEG_CACHE_DIR'
ENTRY_FILE = 'entry.json'
PROGRAM_FILES = ('model.json', 'model.pdiparams')
FORMAT = 1  # bump when the entry layout or the export changes meaning
_DISABLED = ('', 'none', 'off')


def default_cache_dir():
    """``$FACTSEG_CACHE_DIR``, else ``$XDG_CACHE_HOME/factseg-paddle`` or ``~/.cache/factseg-paddle``."""
    if os.environ.get(CACHE_ENV) is not None:
        return os.environ[CACHE_ENV]
    base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
    return os.path.join(base, 'factseg-paddle')


def resolve_cache_dir(cache_dir=None):
    """The cache directory to use, or None when caching is off (``'none'``, ``'off'``, ``''``)."""
    path = default_cache_dir() if cache_dir is None else cache_dir
    return None if str(path).strip().lower() in _DISABLED else os.path.expanduser(path)


def file_digest(path, chunk=1 << 22):
    """SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, 'rb') as stream:
        for block in iter(lambda: stream.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()


def weights_digest(model):
    """SHA-256 of a layer's state (every parameter and buffer: name, dtype, shape, bytes)."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        array = np.ascontiguousarray(value.numpy())
        digest.update(('%s|%s|%s;' % (name, array.dtype.str, array.shape)).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _installed_roots():
    paths = sysconfig.get_paths()
    return tuple(os.path.abspath(paths[key]) + os.sep for key in ('stdlib', 'platstdlib', 'purelib', 'platlib'))


def _source_file(module, installed):
    path = getattr(module, '__file__', None)
    if not path or not path.endswith('.py'):
        return None
    path = os.path.abspath(path)
    return None if path.startswith(installed) else path


def _siblings_used_by(module):
    """The modules of ``module``'s own package that its global names refer to (modules, functions, classes)."""
    package = module.__name__.rpartition('.')[0]
    used = []
    for value in vars(module).values():
        if inspect.ismodule(value):
            used.append(value)
        elif inspect.isfunction(value) or inspect.isclass(value):
            used.append(sys.modules.get(getattr(value, '__module__', None)))
    return [m for m in used if m is not None and m.__name__.rpartition('.')[0] == package]


def code_digest(model, extra_modules=()):
    """SHA-256 of the source files that define the model's layers (and ``extra_modules``).

    A change in the model code changes the program even with the same weights and config. Besides
    the files of the layer classes, the modules of the same package they import from (one level:
    e.g. ``module.loss``, whose functions ``module.factseg`` calls in ``forward``) are hashed;
    files of the Python installation (standard library, site-packages, Paddle) are not.

    Args:
        model: the ``paddle.nn.Layer`` exported.
        extra_modules: modules hashed as they are (the exporter's own code).

    Returns:
        str: the hex digest.
    """
    installed = _installed_roots()
    modules = list(extra_modules)
    for module in {sys.modules.get(type(layer).__module__) for layer in [model] + model.sublayers()} - {None}:
        modules += [module] + _siblings_used_by(module)
    files = {_source_file(module, installed) for module in modules} - {None}
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(os.path.basename(path).encode())
        digest.update(file_digest(path).encode())
    return digest.hexdigest()


def program_key(fields):
    """The entry name of a dict of key fields (JSON-able): 24 hex digits of its SHA-256."""
    text = json.dumps(fields, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class ProgramCache:
    """Exported programs on disk, one folder per key (see the module docstring).

    Args:
        root: the cache directory (``<root>/onednn/<key>``).
    """

    def __init__(self, root):
        self.root = os.path.join(root, 'onednn')

    def path(self, fields):
        """The folder of the entry for ``fields``."""
        return os.path.join(self.root, program_key(fields))

    def lookup(self, fields):
        """Return ``(folder, entry dict)`` of a valid entry for ``fields``, or None.

        A stale (fields differ) or corrupt (files missing, changed or unreadable) entry is
        logged and deleted, so that it is rebuilt.
        """
        folder = self.path(fields)
        if not os.path.isdir(folder):
            return None
        problem = self._problem(folder, fields)
        if problem is None:
            with open(os.path.join(folder, ENTRY_FILE)) as stream:
                return folder, json.load(stream)
        _LOGGER.warning('oneDNN program cache: entry %s is %s; rebuilding it', folder, problem)
        self.discard(folder)
        return None

    @staticmethod
    def _problem(folder, fields):
        try:
            with open(os.path.join(folder, ENTRY_FILE)) as stream:
                entry = json.load(stream)
        except (OSError, ValueError) as error:
            return 'corrupt (%s: %s)' % (ENTRY_FILE, type(error).__name__)
        if json.loads(json.dumps(fields, sort_keys=True, default=repr)) != entry.get('fields'):
            return 'stale (it was made for other weights, config, code, input size or Paddle)'
        for name in PROGRAM_FILES:
            path = os.path.join(folder, name)
            if not os.path.isfile(path) or file_digest(path) != entry.get('sha256', {}).get(name):
                return 'corrupt (%s is missing or changed)' % name
        return None

    def store(self, staging, fields, check):
        """Move an exported folder ``staging`` (holding :data:`PROGRAM_FILES`) into the cache.

        Args:
            staging: folder with the exported program; it is moved, not copied.
            fields: the key fields.
            check: JSON-able result of the dygraph check (stored in ``entry.json``).

        Returns:
            str: the entry folder. If another process stored the same key meanwhile, its
            entry is kept and ``staging`` deleted.
        """
        entry = dict(
            format=FORMAT,
            fields=json.loads(json.dumps(fields, sort_keys=True, default=repr)),
            sha256={name: file_digest(os.path.join(staging, name)) for name in PROGRAM_FILES},
            check=check,
        )
        with open(os.path.join(staging, ENTRY_FILE), 'w') as stream:
            json.dump(entry, stream, indent=1)
        folder = self.path(fields)
        os.makedirs(self.root, exist_ok=True)
        try:
            os.rename(staging, folder)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
        return folder

    def staging_dir(self):
        """A new empty folder inside the cache (same file system, so ``store`` can rename it)."""
        os.makedirs(self.root, exist_ok=True)
        return tempfile.mkdtemp(prefix='.staging-', dir=self.root)

    @staticmethod
    def discard(folder):
        """Delete an entry folder."""
        shutil.rmtree(folder, ignore_errors=True)

    def entries(self):
        """``[(folder, bytes)]`` of the entries, in name order."""
        if not os.path.isdir(self.root):
            return []
        found = []
        for name in sorted(os.listdir(self.root)):
            folder = os.path.join(self.root, name)
            if os.path.isdir(folder) and not name.startswith('.'):
                size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
                found.append((folder, size))
        return found

    def clear(self):
        """Delete every entry (and leftover staging folders); returns the number of entries deleted."""
        count = len(self.entries())
        shutil.rmtree(self.root, ignore_errors=True)
        return count
