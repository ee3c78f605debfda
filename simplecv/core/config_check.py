"""Strict checking of a training config's sections, before anything is built.

``model.params`` is checked by the model itself (:func:`simplecv.core.config.merge_strict`);
this module checks everything else a SimpleCV training config holds: the top-level sections,
``train``, ``optimizer``, ``learning_rate``, ``data.train``, ``data.test`` and ``test``. An unknown
key, in the file or given as a ``KEY VALUE`` override, is an error naming its dotted path and
the closest valid key. Official keys that this port accepts but does not use are declared in
:data:`DECLARED` with the reason; where such a key would change what the official code does, the
values this port cannot honour are refused.
"""

import inspect

from simplecv.core.config import unknown_key_error
from simplecv.core.errors import ConfigError

SECTIONS = ('model', 'data', 'optimizer', 'learning_rate', 'train', 'test')

# Keys of ``train`` that the trainer reads (official unless marked port).
TRAIN_KEYS = {
    'num_iters': 'number of optimizer steps (required)',
    'forward_times': 'batches per step; only 1',
    'log_interval_step': 'steps between log lines (50)',
    'tensorboard_interval_step': 'steps between VisualDL scalars (100)',
    'save_ckpt_interval_epoch': 'epochs between checkpoints (1)',
    'save_ckpt_interval_iter': 'port: steps between checkpoints, instead of epochs',
    'apex_sync_bn': 'SyncBatchNorm when several processes train (False)',
    'resume_from_last': 'continue from the checkpoint in --model_dir (True)',
    'seed': 'port: the seed of the model initialisation (2333)',
    'eval_per_epoch': 'evaluate data.test after every epoch (False)',
    'eval_after_train': 'evaluate data.test after the last step (False)',
    'eval_interval_iter': 'port: steps between evaluations of data.test (0: none)',
}
# Keys of ``train`` holding a step or epoch count, where 0 means "never".
_INTERVAL_KEYS = (
    'log_interval_step',
    'tensorboard_interval_step',
    'save_ckpt_interval_epoch',
    'save_ckpt_interval_iter',
    'eval_interval_iter',
)


def _false_only(value):
    return value is False or value == 0


def _any(_):
    return True


# Official keys accepted without effect: dotted key -> (accepted values, why it is not used).
DECLARED = {
    'train.distributed': (
        _any,
        'SimpleCV reseeds its distributed sampler with it; here the sampler is always '
        'rank-aware and the process count comes from paddle.distributed.launch',
    ),
    'train.sync_bn': (
        _any,
        "read by SimpleCV's ddp_train.py (torch SyncBatchNorm); apex_train.py uses train.apex_sync_bn",
    ),
    'train.summary_grads': (_false_only, 'gradient histograms for TensorBoard are not ported'),
    'train.summary_weights': (_false_only, 'weight histograms for TensorBoard are not ported'),
    'train.half_bn': (
        _false_only,
        "apex's fp16 BatchNorm work-around for frozen BatchNorm is not needed with Paddle AMP",
    ),
    'train.iterator_type': (lambda value: value == 'normal', "only SimpleCV's 'normal' iterator exists here"),
}


def declared_unused(config):
    """Return ``[(dotted key, value, reason)]`` for the declared-unused keys present in ``config``."""
    found = []
    for dotted, (_, reason) in DECLARED.items():
        section, _, key = dotted.partition('.')
        if isinstance(config.get(section), dict) and key in config[section]:
            found.append((dotted, config[section][key], reason))
    return found


class _Checker:
    def __init__(self, overrides):
        self.overrides = tuple(overrides)

    def note(self, path):
        """' (given on the command line)' when an override wrote ``path`` or a key under it."""
        given = any(o == path or o.startswith(path + '.') for o in self.overrides)
        return ' (given on the command line)' if given else ''

    def unknown(self, where, key, valid):
        """The :class:`ConfigError` for ``key`` unknown in section ``where`` (closest valid key, CLI note)."""
        return unknown_key_error(where, key, valid, self.note(where + '.' + key if where else key))

    def keys(self, section, where, valid, required=()):
        """Check that ``section`` is a dict with keys among ``valid`` and every ``required`` key.

        Raises:
            ConfigError: naming the section ``where`` and the offending key.
        """
        if not isinstance(section, dict):
            raise ConfigError('config section %r must be a dict, got %r' % (where, section))
        for key in section:
            if key not in valid:
                raise self.unknown(where, key, valid)
        for key in required:
            if key not in section:
                raise ConfigError('config section %r needs %r' % (where, key))

    def call_params(self, params, where, function, supplied):
        """Check ``params`` against the keyword arguments of ``function`` minus those the code supplies."""
        signature = inspect.signature(function)
        valid = [
            name
            for name, p in signature.parameters.items()
            if name not in supplied and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        self.keys(params, where, valid)


def check_training_config(config, overrides=()):
    """Check every section of a training config except ``model.params``.

    Args:
        config: the config (after ``KEY VALUE`` overrides).
        overrides: the dotted keys given on the command line, named as such in messages.

    Raises:
        ConfigError: an unknown key (its dotted path and the closest valid key), a missing
            section, or a declared official key set to a value this port cannot honour.
    """
    from simplecv.core import registry

    registry.populate()
    check = _Checker(overrides)
    check.keys(config, '', SECTIONS, required=('model', 'data', 'optimizer', 'learning_rate', 'train'))
    check.keys(config.model, 'model', ('type', 'params'), required=('type',))
    _check_train(check, config.train)
    check.keys(config.get('test', {}), 'test', ())
    check.keys(config.data, 'data', ('train', 'test'), required=('train',))
    for split in ('train', 'test'):
        if split in config.data:
            _check_loader(check, config.data[split], 'data.' + split)
    check.keys(config.optimizer, 'optimizer', ('type', 'params', 'grad_clip'), required=('type',))
    optimizer = registry.OPT[config.optimizer.type]
    check.call_params(
        config.optimizer.get('params', {}), 'optimizer.params', optimizer, ('parameters', 'learning_rate', 'grad_clip')
    )
    if config.optimizer.get('grad_clip') is not None:
        check.keys(config.optimizer.grad_clip, 'optimizer.grad_clip', ('max_norm', 'norm_type'))
    check.keys(config.learning_rate, 'learning_rate', ('type', 'params'), required=('type',))
    check.call_params(
        config.learning_rate.get('params', {}), 'learning_rate.params', registry.LR[config.learning_rate.type], ()
    )


def _check_train(check, train):
    declared = {dotted.split('.', 1)[1]: rule for dotted, rule in DECLARED.items() if dotted.startswith('train.')}
    if 'num_epochs' in train:
        raise ConfigError('train.num_epochs is not supported; set train.num_iters (steps per epoch x epochs) instead')
    check.keys(train, 'train', list(TRAIN_KEYS) + list(declared), required=('num_iters',))
    for key, (accepts, reason) in declared.items():
        if key in train and not accepts(train[key]):
            raise ConfigError('train.%s=%r is not supported: %s' % (key, train[key], reason))
    if isinstance(train.num_iters, bool) or not isinstance(train.num_iters, int) or train.num_iters < 1:
        raise ConfigError('train.num_iters must be a positive int, got %r' % (train.num_iters,))
    if train.get('forward_times', 1) != 1:
        raise ConfigError(
            'train.forward_times=%r is not supported; only 1 (one batch per step)' % (train.forward_times,)
        )
    for key in _INTERVAL_KEYS:
        value = train.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ConfigError('train.%s must be an int >= 0, got %r' % (key, value))
    for key in ('eval_per_epoch', 'eval_after_train'):
        if not isinstance(train.get(key, False), bool):
            raise ConfigError('train.%s must be True or False, got %r' % (key, train[key]))


def _check_loader(check, section, where):
    from simplecv.core import registry
    from simplecv.core.config import merge_strict

    check.keys(section, where, ('type', 'params'), required=('type',))
    loader = registry.DATALOADER[section.type]
    defaults = getattr(loader, 'default_config', None)
    if defaults is not None:
        try:
            merge_strict(defaults(), section.get('params', {}), where + '.params')
        except ConfigError as error:
            note = check.note(error.path) if hasattr(error, 'path') else ''
            raise ConfigError(str(error) + note) from None
