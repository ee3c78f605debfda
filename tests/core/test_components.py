"""The registries are filled by one explicit import."""

import pytest

from simplecv.core.errors import ConfigError


def test_components_module_fills_every_registry():
    from simplecv.api import components

    assert 'FactSeg' in components.MODEL
    assert 'ISAIDSegmmDataLoader' in components.DATALOADER
    assert 'sgd' in components.OPT and 'poly' in components.LR


def test_a_miss_lists_the_registered_names():
    from simplecv.api.components import MODEL

    with pytest.raises(
        ConfigError,
        match=r"no model named 'Factseg' is registered; did you mean 'FactSeg'\? "
        r'registered: .*FactSeg',
    ):
        MODEL['Factseg']
