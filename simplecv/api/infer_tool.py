"""SimpleCV's inference helpers at their official import path: config by name, model, checkpoint.

They call the library's builders (:mod:`simplecv.engine.build`), as training and evaluation do.
"""

from simplecv.core.config import import_config


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
    """Build ``config.model`` (see :func:`simplecv.engine.build.build_model`); in eval mode by default."""
    from simplecv.engine.build import build_model as build

    return build(config, for_inference)


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
    from simplecv.engine.build import build_and_load

    return build_and_load(build_config(config_path, opts), ckpt_path)
