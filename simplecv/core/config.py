"""Python-dict configs in SimpleCV's format, loaded by dotted name, merged strictly.

A config is a module ``configs/<group>/<name>.py`` that defines ``config = dict(...)``; it is
loaded by its dotted name (``'isaid.factseg'``) from any working directory, a script or a
Jupyter cell. Components declare their defaults with ``set_default_config`` and merge the
user's values over them with :func:`merge_strict`, which rejects keys the component does not
know and names the closest valid one.
"""

import ast
import copy
import difflib
import importlib.util
import os
import sys

from simplecv.core.errors import ConfigError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_ROOT = os.path.join(REPO_ROOT, 'configs')


class AttrDict(dict):
    """A dict whose keys are also attributes, with a deep-merging :meth:`update`.

    Nested plain dicts are converted to ``AttrDict`` on insertion, so ``cfg.model.params`` works
    at any depth.
    """

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.update(dict(*args, **kwargs))

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __setitem__(self, key, value):
        if isinstance(value, dict) and not isinstance(value, AttrDict):
            value = AttrDict(value)
        super().__setitem__(key, value)

    def __deepcopy__(self, memo):
        import copy

        return AttrDict({k: copy.deepcopy(v, memo) for k, v in self.items()})

    def update(self, other=(), **kwargs):
        """Merge ``other`` into this dict recursively: nested dicts merge, other values replace."""
        for key, value in dict(other, **kwargs).items():
            if isinstance(value, dict) and isinstance(self.get(key), AttrDict):
                self[key].update(value)
            else:
                self[key] = value

    def update_from_list(self, items):
        """Apply ``KEY VALUE`` overrides from a command line.

        Args:
            items: a flat list ``['a.b.c', value, 'x.y', value, ...]``. String values are parsed
                with ``ast.literal_eval`` where possible (``'0.01'`` becomes a float, ``'(1, 2)'``
                a tuple) and kept as strings otherwise.

        Raises:
            ConfigError: odd number of items, or a path that runs through a non-dict value.
        """
        if len(items) % 2:
            raise ConfigError('overrides come in KEY VALUE pairs, got an odd number of items: %r' % (list(items),))
        for dotted, raw in zip(items[0::2], items[1::2]):
            node = self
            parts = dotted.split('.')
            for depth, part in enumerate(parts[:-1]):
                child = node.get(part)
                if child is None:
                    node[part] = AttrDict()
                elif not isinstance(child, dict):
                    raise ConfigError(
                        'cannot override %r: %r is a %s, not a section'
                        % (dotted, '.'.join(parts[: depth + 1]), type(child).__name__)
                    )
                node = node[part]
            node[parts[-1]] = _parse_value(raw)

    def to_dict(self):
        """Return a plain ``dict`` copy (nested ``AttrDict``s converted too)."""
        return {k: v.to_dict() if isinstance(v, AttrDict) else v for k, v in self.items()}


def _parse_value(raw):
    if not isinstance(raw, str):
        return raw
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def available_configs():
    """Return the dotted names of every config under ``configs/``, sorted."""
    names = []
    for folder, _, files in os.walk(CONFIG_ROOT):
        for file_name in files:
            if file_name.endswith('.py') and file_name != '__init__.py':
                rel = os.path.relpath(os.path.join(folder, file_name[:-3]), CONFIG_ROOT)
                names.append(rel.replace(os.sep, '.'))
    return sorted(names)


def config_file(config_path):
    """Resolve a dotted config name (``'isaid.factseg'``) or a ``.py`` path to a file path.

    Raises:
        ConfigError: when no such config exists; the message lists the closest names.
    """
    if config_path.endswith('.py'):
        path = os.path.abspath(config_path)
    else:
        dotted = config_path[len('configs.') :] if config_path.startswith('configs.') else config_path
        path = os.path.join(CONFIG_ROOT, *dotted.split('.')) + '.py'
    if not os.path.isfile(path):
        known = available_configs()
        close = difflib.get_close_matches(config_path, known, n=3, cutoff=0.4)
        hint = ('did you mean %s? ' % ' or '.join(repr(c) for c in close)) if close else ''
        raise ConfigError(
            'no config %r (looked for %s); %savailable configs: %s' % (config_path, path, hint, ', '.join(known))
        )
    return path


def import_config(config_path):
    """Load ``config`` from a config module as an :class:`AttrDict`.

    Args:
        config_path: a dotted name relative to ``configs/`` (``'isaid.factseg'``; a leading
            ``'configs.'`` is accepted) or a path to a ``.py`` file.

    Returns:
        AttrDict: a fresh copy on every call, safe to modify.

    Raises:
        ConfigError: unknown name (the closest names are listed) or a file without ``config``.
    """
    path = config_file(config_path)
    if REPO_ROOT not in sys.path:
        # Config modules import project code (data.isaid, simplecv.api.preprocess).
        sys.path.insert(0, REPO_ROOT)
    spec = importlib.util.spec_from_file_location('_factseg_config_' + os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not isinstance(getattr(module, 'config', None), dict):
        raise ConfigError('%s defines no `config = dict(...)`' % path)
    return AttrDict(module.config)


def merge_strict(defaults, user, where='', open_keys=()):
    """Merge ``user`` over ``defaults`` and reject keys that ``defaults`` does not declare.

    Args:
        defaults: the component's complete set of keys with default values.
        user: the values from a config; every key must exist in ``defaults`` (recursively).
        where: dotted prefix of this section, used in error messages (``'model.params'``).
        open_keys: dotted paths (relative to this section) whose dict values are taken as they
            are without checking, e.g. the ``params`` of a registry-built object.

    Returns:
        AttrDict: the merged config.

    Raises:
        ConfigError: naming the full dotted path of the unknown key and the closest valid key.
    """
    merged = AttrDict(defaults)
    _merge_into(merged, user or {}, where, tuple(open_keys), '')
    return merged


class Replace:
    """Marks a value in :func:`derive`'s overrides that replaces the base's value whole (no merge).

    Args:
        value: the new value of the key (a dict is taken as it is, keys unchecked).
    """

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return 'Replace(%r)' % (self.value,)


def derive(base, overrides, where=''):
    """Return a config made from ``base`` with ``overrides`` deep-merged over a copy of it.

    Lets a config reuse another one and state only what it changes: nested dicts merge key by
    key, other values (numbers, strings, lists of transforms) replace the base's, and a value
    wrapped in :class:`Replace` replaces a whole section. Every key of ``overrides`` must exist
    in ``base``, so that a misspelt override fails instead of adding a key nobody reads.

    Args:
        base: the config dict to start from (e.g. ``import_config('isaid.factseg')``); not changed.
        overrides: a nested dict of the values that differ.
        where: dotted prefix used in error messages.

    Returns:
        AttrDict: a deep copy of ``base`` with the overrides applied.

    Raises:
        ConfigError: an override key that ``base`` does not have, naming its dotted path and the
            closest existing key.
    """
    merged = copy.deepcopy(AttrDict(base))
    _derive_into(merged, overrides, where)
    return merged


def _derive_into(target, overrides, where):
    for key, value in overrides.items():
        if key not in target:
            raise unknown_key_error(where, key, target.keys(), ' (an override of a derived config)')
        if isinstance(value, Replace):
            target[key] = copy.deepcopy(value.value)
        elif isinstance(value, dict) and isinstance(target[key], dict):
            _derive_into(target[key], value, _join(where, key))
        else:
            target[key] = copy.deepcopy(value)


def unknown_key_error(where, key, valid, note=''):
    """Return the :class:`ConfigError` for ``key`` in the section ``where``, naming the closest of ``valid``.

    The error's ``path`` attribute holds the dotted path of the key.

    Args:
        where: dotted path of the section (``'train'``; ``''`` for the top level).
        key: the unknown key.
        valid: the keys the section accepts.
        note: text appended to the message (e.g. where the key came from).
    """
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    hint = ('; did you mean %r?' % (_join(where, close[0]),)) if close else ''
    error = ConfigError(
        'unknown config key %r%s (valid keys here: %s)%s'
        % (_join(where, key), hint, ', '.join(sorted(valid)) or 'none', note)
    )
    error.path = _join(where, key)
    return error


def _merge_into(target, user, where, open_keys, rel):
    for key, value in user.items():
        rel_key = rel + key
        if key not in target:
            raise unknown_key_error(_join(where, rel[:-1]) if rel else where, key, target.keys())
        if isinstance(value, dict) and isinstance(target[key], dict) and rel_key not in open_keys:
            _merge_into(target[key], value, where, open_keys, rel_key + '.')
        else:
            target[key] = value


def _join(where, key):
    return where + '.' + key if where else key
