"""The steps of the alignment chain (``python torch_ref/align.py``), one module each.

Every module has ``NAME``, ``THRESHOLD`` and ``run(out_dir, options) -> StepResult``
(:class:`torch_ref.align_steps.common.StepOptions`, :class:`~torch_ref.align_steps.common.StepResult`).
"""

import importlib

STEPS = ('forward', 'metric', 'loss', 'backward', 'train')


def step_module(name):
    """The module of step ``name`` (one of :data:`STEPS`)."""
    if name not in STEPS:
        raise ValueError('unknown alignment step %r; choose from %s' % (name, ', '.join(STEPS)))
    return importlib.import_module('torch_ref.align_steps.%s' % name)
