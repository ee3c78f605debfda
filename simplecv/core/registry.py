"""Name → class registries for the objects a config builds by ``type``.

``MODEL``, ``LOSS``, ``DATALOADER``, ``OPT`` and ``LR`` are filled by the packages that define
the components, when they are imported; :mod:`simplecv.api.components` imports all of them in
one place. Take the registries from there (``from simplecv.api.components import MODEL``), or
call :func:`populate` in library code that sits below those packages.
"""

import difflib

from simplecv.core.errors import ConfigError


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
                raise KeyError(
                    '%s %r is registered twice (%r and %r); pass override=True to replace it'
                    % (self.name, key, self._objects[key], target)
                )
            self._objects[key] = target
            return target

        return add if obj is None else add(obj)

    def __getitem__(self, key):
        if key not in self._objects:
            close = difflib.get_close_matches(str(key), list(self._objects), n=1)
            hint = ('did you mean %r? ' % close[0]) if close else ''
            raise ConfigError(
                'no %s named %r is registered; %sregistered: %s'
                % (self.name, key, hint, ', '.join(sorted(self._objects)) or '(none)')
            )
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
    """Make the registries complete by importing :mod:`simplecv.api.components`.

    For code that cannot import that module at its top (it is below the packages that register,
    e.g. the config checker and the builders); elsewhere import the registries from it.
    """
    import simplecv.api.components  # noqa: F401  (imports every registering package)
