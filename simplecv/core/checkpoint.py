"""Checkpoints in SimpleCV's layout, written atomically, plus the ``checkpoint_info.json`` pointer.

A training checkpoint ``model_dir/model-<global_step>.pdparams`` is one ``paddle.save``'d dict::

    {'model': state_dict, 'opt': optimizer state, 'global_step': int, 'scaler': GradScaler state,
     'lr': schedule description, 'rng': generator states, 'config_name': str, 'config_digest': str}

and ``model_dir/checkpoint_info.json`` names the newest one::

    {"last": "model-N.pdparams", "global_step": N, "checkpoints": {"N": "model-N.pdparams", ...},
     "config_name": ..., "config_digest": ...,
     "best": {"file": "model-best.pdparams", "global_step": N, "miou": 0.61}}

``best`` appears once the in-training evaluation has scored a model: ``model-best.pdparams``
holds the weights of the best-scoring step (``{'model', 'global_step', 'miou', ...}``).

Every file is first written to a temporary name in the same folder, flushed to disk and then
renamed over the target, so a crash or Ctrl-C at any moment leaves either the old or the new
file, never a truncated one, and the pointer is updated only after the checkpoint it names is
complete.

The optimizer's accumulators are stored under the model's structured parameter names
(``fg_cls.weight_velocity_0``) instead of Paddle's process-global tensor names
(``conv2d_57.w_0_velocity_0``), so a checkpoint resumes in any process, whatever else was
built before the model.
"""

import hashlib
import json
import os

import paddle

from simplecv.core.errors import CheckpointError, OutputError
from simplecv.util.logger import get_logger
from simplecv.util.output_guard import writing

CHECKPOINT_INFO = 'checkpoint_info.json'
BEST_CHECKPOINT = 'model-best.pdparams'
_logger = get_logger('factseg.checkpoint')
_WRAPPER_PREFIXES = ('module.', '_layers.')


def checkpoint_name(global_step):
    """Return the file name of the checkpoint after ``global_step`` steps: ``model-<step>.pdparams``."""
    return 'model-%d.pdparams' % global_step


def config_digest(section):
    """Return a short hash of a config section (plain dicts, lists, numbers, strings).

    Used to recognise that a ``model_dir`` holds a checkpoint of another model architecture.
    """
    text = json.dumps(section, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]


def _fsync_dir(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, write):
    """Call ``write(temporary_path)``, flush the result to disk and rename it to ``path``.

    The temporary file sits next to ``path`` (a rename within one folder is atomic) and is
    removed if ``write`` fails or is interrupted.
    """
    folder = os.path.dirname(os.path.abspath(path))
    tmp_path = '%s.tmp%d' % (path, os.getpid())
    try:
        write(tmp_path)
        with open(tmp_path, 'rb+') as stream:
            os.fsync(stream.fileno())
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
    _fsync_dir(folder)


def _write_json(data):
    def write(path):
        with open(path, 'w') as stream:
            json.dump(data, stream, indent=1)

    return write


def read_checkpoint_info(model_dir):
    """Return the parsed ``model_dir/checkpoint_info.json``, or None when there is none.

    Raises:
        CheckpointError: the file exists but is not a checkpoint pointer.
    """
    path = os.path.join(model_dir, CHECKPOINT_INFO)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as stream:
            info = json.load(stream)
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            '%s is unreadable (%s); it is not written by this trainer. Move it away to '
            'start a new run in %s' % (path, exc, model_dir)
        ) from None
    has_last = isinstance(info, dict) and isinstance(info.get('last'), str)
    best_only = isinstance(info, dict) and 'last' not in info and isinstance(info.get('best'), dict)
    if not (has_last or best_only):
        raise CheckpointError(
            '%s has no "last" checkpoint name; it was not written by this trainer '
            '(SimpleCV PyTorch runs write another layout). Use another --model_dir' % path
        )
    return info


def last_checkpoint(model_dir):
    """Return the path of the checkpoint ``checkpoint_info.json`` points to, or None.

    Raises:
        CheckpointError: the pointer is broken or names a file that does not exist.
    """
    info = read_checkpoint_info(model_dir)
    if info is None or 'last' not in info:
        return None
    path = os.path.join(model_dir, info['last'])
    if not os.path.isfile(path):
        raise CheckpointError(
            '%s names %s as the last checkpoint, but that file does not exist; restore it '
            'or move %s away to start over' % (os.path.join(model_dir, CHECKPOINT_INFO), path, CHECKPOINT_INFO)
        )
    return path


def check_compatible(info, config_name, digest, where):
    """Refuse to resume a run of another config.

    Args:
        info: a checkpoint dict or a parsed ``checkpoint_info.json`` (keys ``config_name`` and
            ``config_digest``; files without them are accepted).
        config_name: the config of this run (``'isaid.factseg'``).
        digest: :func:`config_digest` of this run's ``model`` section.
        where: the file or folder named in the message.

    Raises:
        CheckpointError: naming both configs and the fix.
    """
    saved_name, saved_digest = info.get('config_name'), info.get('config_digest')
    if saved_name is not None and saved_name != config_name:
        raise CheckpointError(
            '%s holds a checkpoint of config %r, not %r. Give this run its own --model_dir, '
            'or pass --config_path %s to continue that run' % (where, saved_name, config_name, saved_name)
        )
    if saved_digest is not None and saved_digest != digest:
        raise CheckpointError(
            '%s holds a checkpoint of config %r with another model section (model overrides '
            'differ); use the same model.* overrides as that run or another --model_dir' % (where, config_name)
        )


def save_checkpoint(model_dir, state):
    """Write ``state`` to ``model_dir/model-<state['global_step']>.pdparams`` and point the info at it.

    Args:
        model_dir: output folder (created if needed).
        state: the trainer's state dict (see the module docstring); ``global_step`` is required,
            ``config_name``/``config_digest`` are copied into ``checkpoint_info.json``.

    Returns:
        str: the checkpoint path.

    Raises:
        OutputError: the folder is full or read-only; the message names the file and the last
            complete checkpoint, which is left as it was (no temporary file remains).
    """
    step = int(state['global_step'])
    name = checkpoint_name(step)
    path = os.path.join(model_dir, name)
    info = read_checkpoint_info(model_dir) if os.path.isdir(model_dir) else None
    info = info or {}
    try:
        with writing(model_dir, 'checkpoint folder'):
            os.makedirs(model_dir, exist_ok=True)
        with writing(path, 'checkpoint'):
            atomic_write(path, lambda tmp: paddle.save(state, tmp))
        checkpoints = dict(info.get('checkpoints', {}))
        checkpoints[str(step)] = name
        new_info = dict(
            info,
            last=name,
            global_step=step,
            checkpoints=checkpoints,
            config_name=state.get('config_name'),
            config_digest=state.get('config_digest'),
        )
        info_path = os.path.join(model_dir, CHECKPOINT_INFO)
        with writing(info_path, 'checkpoint pointer'):
            atomic_write(info_path, _write_json(new_info))
    except OutputError as error:
        previous = info.get('last')
        if previous:
            note = (
                'the last complete checkpoint %s is unchanged; run the same command again to continue from it'
                % os.path.join(model_dir, previous)
            )
        else:
            note = 'no earlier checkpoint exists'
        raise OutputError('%s; %s' % (error, note)) from None
    _logger.info('saved %s', path)
    return path


def best_entry(model_dir):
    """Return the ``best`` entry of ``model_dir/checkpoint_info.json`` (``file``, ``global_step``, ``miou``) or None."""
    info = read_checkpoint_info(model_dir) if os.path.isdir(model_dir) else None
    return None if info is None else info.get('best')


def save_best(model_dir, state, global_step, miou):
    """Write ``model_dir/model-best.pdparams`` and record it as ``best`` in ``checkpoint_info.json``.

    Both files are replaced atomically, the weights first, so the pointer never names a file
    that is not complete.

    Args:
        model_dir: the run's folder.
        state: ``{'model': state_dict, ...}`` plus ``config_name``/``config_digest``.
        global_step: the step the weights are from.
        miou: their score.

    Returns:
        str: the path of the best checkpoint.

    Raises:
        OutputError: the folder is full or read-only (the previous best and pointer are unchanged).
    """
    path = os.path.join(model_dir, BEST_CHECKPOINT)
    state = dict(state, global_step=int(global_step), miou=float(miou))
    with writing(path, 'best checkpoint'):
        atomic_write(path, lambda tmp: paddle.save(state, tmp))
    info = read_checkpoint_info(model_dir) or dict(
        config_name=state.get('config_name'), config_digest=state.get('config_digest')
    )
    info['best'] = dict(file=BEST_CHECKPOINT, global_step=int(global_step), miou=float(miou))
    info_path = os.path.join(model_dir, CHECKPOINT_INFO)
    with writing(info_path, 'checkpoint pointer'):
        atomic_write(info_path, _write_json(info))
    return path


def load_checkpoint(path):
    """Load a checkpoint file written by :func:`save_checkpoint` (or any ``paddle.save``'d dict).

    Raises:
        CheckpointError: the file does not exist or cannot be parsed.
    """
    if not os.path.isfile(path):
        raise CheckpointError('checkpoint %s does not exist' % path)
    try:
        return paddle.load(path)
    except Exception as exc:
        raise CheckpointError(
            'cannot read checkpoint %s (%s); it is truncated or not a Paddle file. '
            'Official PyTorch .pth files must first be converted with '
            '`python torch_ref/convert.py factseg --src FILE.pth --dst FILE.pdparams`' % (path, exc)
        ) from None


def strip_wrapper_prefix(state_dict):
    """Remove a ``module.`` (torch DDP) or ``_layers.`` (Paddle DataParallel) prefix from every key."""
    for prefix in _WRAPPER_PREFIXES:
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            return {k[len(prefix) :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def load_model_state(path):
    """Return ``(state_dict, global_step)`` of the model weights in ``path``.

    Accepts a trainer checkpoint, a converted official file ``{'model': sd, 'global_step': N}``
    and a bare state dict (``global_step`` is then 0). Wrapper prefixes are removed.

    Raises:
        CheckpointError: missing or unreadable file, or no state dict inside.
    """
    obj = load_checkpoint(path)
    if isinstance(obj, dict) and isinstance(obj.get('model'), dict):
        state, step = obj['model'], obj.get('global_step', 0)
    elif isinstance(obj, dict) and obj and all(hasattr(v, 'shape') for v in obj.values()):
        state, step = obj, 0
    else:
        raise CheckpointError(
            '%s holds no model weights: expected a dict of tensors or a checkpoint with a '
            '"model" entry, got %s' % (path, _describe(obj))
        )
    return strip_wrapper_prefix(state), int(step)


def _describe(obj):
    if isinstance(obj, dict):
        return 'a dict with keys %s' % sorted(map(str, obj))[:8]
    return type(obj).__name__


def _parameter_names(model):
    """Map each trainable parameter's Paddle tensor name to its structured name in ``model``."""
    return {param.name: name for name, param in model.named_parameters()}


def _rename_keys(state, table):
    """Rename each key that starts with a key of ``table`` followed by ``_`` (longest match wins).

    Returns:
        tuple: ``(renamed dict, sorted keys that matched no entry)``.
    """
    prefixes = sorted(table, key=len, reverse=True)
    renamed, unmatched = {}, []
    for key, value in state.items():
        prefix = next((p for p in prefixes if key.startswith(p + '_')), None)
        if prefix is None:
            unmatched.append(key)
        else:
            key = table[prefix] + key[len(prefix) :]
        renamed[key] = value
    return renamed, sorted(unmatched)


def optimizer_state_by_name(optimizer, model):
    """Return ``optimizer.state_dict()`` with keys rewritten to ``model``'s structured parameter names.

    Master weights (AMP O2) are keyed by the parameter name itself and stored as
    ``{'master_weights': {structured_name: tensor}}``.
    """
    state = dict(optimizer.state_dict())
    master = state.pop('master_weights', None)
    state, _ = _rename_keys(state, _parameter_names(model))
    if master:
        names = _parameter_names(model)
        state['master_weights'] = {names[k]: v for k, v in master.items()}
    return state


def load_optimizer_state_by_name(optimizer, model, state, source):
    """Load a state written by :func:`optimizer_state_by_name` into ``optimizer``.

    Raises:
        CheckpointError: an entry names a parameter that ``model`` does not have.
    """
    table = {name: param.name for name, param in model.named_parameters()}
    state = dict(state)
    master = state.pop('master_weights', None)
    renamed, unmatched = _rename_keys(state, table)
    unmatched += sorted(set(master or ()) - set(table))
    if unmatched:
        raise CheckpointError(
            '%s has optimizer state for parameters the model does not have: %s' % (source, ', '.join(unmatched[:8]))
        )
    if master:
        renamed['master_weights'] = {table[k]: v for k, v in master.items()}
    optimizer.set_state_dict(renamed)
