"""Strict state-dict loading: every key present, none extra, every shape equal."""

import numpy as np

from simplecv.core.errors import CheckpointError

_SHOWN = 8


def _shape(value):
    return tuple(value.shape) if hasattr(value, 'shape') else tuple(np.shape(value))


def compare_state_dicts(expected, given):
    """Compare a model's state dict with one to load.

    Args:
        expected: ``{name: tensor}`` of the model.
        given: ``{name: tensor or ndarray}`` to load.

    Returns:
        tuple: ``(missing, unexpected, mismatched)``; ``mismatched`` holds
        ``(name, expected_shape, given_shape)`` triples. All lists are sorted.
    """
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    mismatched = sorted(
        (k, _shape(expected[k]), _shape(given[k]))
        for k in set(expected) & set(given)
        if _shape(expected[k]) != _shape(given[k])
    )
    return missing, unexpected, mismatched


def describe_mismatch(missing, unexpected, mismatched, total):
    """Return a readable summary such as ``'missing 3/120 keys: a, b, c; unexpected 1 keys: d'``."""
    parts = []
    if missing:
        parts.append('missing %d/%d keys: %s' % (len(missing), total, _list(missing)))
    if unexpected:
        parts.append('unexpected %d keys: %s' % (len(unexpected), _list(unexpected)))
    if mismatched:
        parts.append(
            '%d keys of another shape: %s'
            % (len(mismatched), _list(['%s (model %s, file %s)' % m for m in mismatched]))
        )
    return '; '.join(parts)


def _list(items):
    shown = ', '.join(str(i) for i in items[:_SHOWN])
    return shown + (' … (+%d more)' % (len(items) - _SHOWN) if len(items) > _SHOWN else '')


def load_state_dict_strict(layer, state, source='state dict'):
    """Load ``state`` into ``layer`` after checking that keys and shapes match exactly.

    Paddle's ``set_state_dict`` only warns on a mismatch; this refuses instead.

    Args:
        layer: a ``paddle.nn.Layer``.
        state: ``{name: tensor or ndarray}``.
        source: the file it came from, named in the error.

    Raises:
        CheckpointError: listing missing, unexpected and mis-shaped keys.
    """
    expected = layer.state_dict()
    missing, unexpected, mismatched = compare_state_dicts(expected, state)
    if missing or unexpected or mismatched:
        raise CheckpointError(
            '%s does not match the model: %s. Is it a checkpoint of this config? Official '
            'PyTorch files must first be converted with `python torch_ref/convert.py`.'
            % (source, describe_mismatch(missing, unexpected, mismatched, len(expected)))
        )
    layer.set_state_dict({k: state[k] for k in expected})
