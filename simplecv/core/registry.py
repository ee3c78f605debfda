"""Name → class registries for the objects a config builds by ``type``.

``MODEL``, ``LOSS``, ``DATALOADER``, ``OPT`` and ``LR`` are filled when the packages listed in
:data:`LOCATIONS` are imported; call :func:`populate` before looking a name up from a script.
"""
import difflib
import importlib

from simplecv.core.errors import ConfigError

LOCATIONS = ('simplecv.opt', 'module', 'data')


class Registry:
    """A name → object table with errors that help.

    Args:
        name: what the table holds, used in messages (``'model'``).
    """

    def __init__(self, name):
        self.name = name
        self._objects = {}

    def register(self, name=None, obj=None, override=False):
        """Register ``obj`` under ``name``; without ``obj`` return a decorator.

        Args:
            name: key; defaults to the object's ``__name__``.
            obj: the class or function to register.
            override: replace an existing entry instead of failing.

        Raises:
            KeyError: ``name`` is taken and ``override`` is False.
        """
        def add(target):
            key = name or target.__name__
            if key in self._objects and not override and self._objects[key] is not target:
                raise KeyError('%s %r is registered twice (%r and %r); pass override=True to replace it'
                               % (self.name, key, self._objects[key], target))
            self._objects[key] = target
            return target

        return add if obj is None else add(obj)

    def __getitem__(self, key):
        if key not in self._objects:
            close = difflib.get_close_matches(str(key), list(self._objects), n=1)
            hint = ('did you mean %r? ' % close[0]) if close else ''
            raise ConfigError('no %s named %r is registered; %sregistered: %s'
                              % (self.name, key, hint, ', '.join(sorted(self._objects)) or '(none)'))
        return self._objects[key]

    def __contains__(self, key):
        return key in self._objects

    def names(self):
        """Return the registered names, sorted."""
        return sorted(self._objects)


MODEL = Registry('model')
LOSS = Registry('loss')
DATALOADER = Registry('data loader')
OPT = Registry('optimizer')
LR = Registry('learning-rate schedule')


def populate():
    """Import every package in :data:`LOCATIONS` so that the registries are complete."""
    for package in LOCATIONS:
        importlib.import_module(package)
