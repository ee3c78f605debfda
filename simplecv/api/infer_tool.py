"""Build a model from a config name, and load a checkpoint into it, for evaluation and inference."""
from simplecv.api.components import MODEL
from simplecv.core.config import import_config
from simplecv.util.logger import get_logger
from simplecv.util.state_dict import load_state_dict_strict

_logger = get_logger('factseg.infer')


def build_config(config_path, opts=None):
    """Load a config by dotted name and apply ``KEY VALUE`` overrides.

    Args:
        config_path: ``'isaid.factseg'`` or a ``.py`` path.
        opts: flat override list ``['model.params.num_classes', 16, ...]`` or None.

    Returns:
        AttrDict: the config.
    """
    config = import_config(config_path)
    if opts:
        config.update_from_list(list(opts))
    return config


def build_model(config, for_inference=True):
    """Build ``config.model`` through the ``MODEL`` registry.

    Args:
        config: a full config (``AttrDict``) with ``model.type`` and ``model.params``.
        for_inference: skip the ImageNet backbone file (every weight comes from a checkpoint
            anyway) and return the model in eval mode.
    """
    params = config.model.params
    if for_inference and 'resnet_encoder' in params:
        params.resnet_encoder.pretrained = False
    model = MODEL[config.model.type](params)
    if for_inference:
        model.eval()
    return model


def build_from_file(config_path, opts=None):
    """Return the model of a config in eval mode, with its initial weights.

    Building for evaluation or inference never needs the ImageNet backbone file.
    """
    return build_model(build_config(config_path, opts))


def build_and_load_from_file(config_path, ckpt_path, opts=None):
    """Return ``(model, global_step)``: the config's model in eval mode with a checkpoint loaded strictly.

    Args:
        config_path: ``'isaid.factseg'`` or a ``.py`` path.
        ckpt_path: a checkpoint written by ``apex_train.py``, or official weights converted by
            ``torch_ref/convert.py factseg``, or a bare Paddle state dict.
        opts: ``KEY VALUE`` overrides.

    Raises:
        ConfigError: unknown config name or key.
        CheckpointError: missing or unreadable file, or keys/shapes that do not match the model
            (the message lists them).
    """
    from simplecv.core.checkpoint import load_model_state

    model = build_from_file(config_path, opts)
    state, global_step = load_model_state(ckpt_path)
    load_state_dict_strict(model, state, source=ckpt_path)
    model.eval()
    _logger.info('loaded %s (global step %s) into %s', ckpt_path, global_step, config_path)
    return model, global_step
