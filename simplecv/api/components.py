"""The one place that fills the registries: importing this module registers every buildable component.

Each package registers its own classes when it is imported (``@MODEL.register`` and friends);
this module imports them all, explicitly, so that a look-up never depends on what a script
happened to import before::

    from simplecv.api.components import MODEL
    model = MODEL[config.model.type](config.model.params)

A name that is not registered raises :class:`~simplecv.core.errors.ConfigError` listing the
registered names.
"""

import data  # noqa: F401  (DATALOADER: ISAIDSegmmDataLoader)
import module  # noqa: F401  (MODEL: FactSeg)
import simplecv.opt  # noqa: F401  (OPT: sgd; LR: poly)
from simplecv.core.registry import DATALOADER, LOSS, LR, MODEL, OPT

__all__ = ['DATALOADER', 'LOSS', 'LR', 'MODEL', 'OPT']
