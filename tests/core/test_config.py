import os
import subprocess
import sys

import pytest

from simplecv.core.config import AttrDict, import_config, merge_strict
from simplecv.core.errors import ConfigError
from simplecv.core.registry import Registry


def test_attrdict_deep_update_and_attribute_access():
    cfg = AttrDict(a=dict(b=dict(c=1, d=2)), e=3)
    cfg.update(dict(a=dict(b=dict(c=10)), f=4))
    assert cfg.a.b.c == 10 and cfg.a.b.d == 2 and cfg.e == 3 and cfg.f == 4
    assert isinstance(cfg.a.b, AttrDict)
    assert cfg.to_dict() == {'a': {'b': {'c': 10, 'd': 2}}, 'e': 3, 'f': 4}


def test_update_from_list_parses_values_and_creates_paths():
    cfg = AttrDict(train=dict(num_iters=60000), name='x')
    cfg.update_from_list(['train.num_iters', '100', 'learning_rate.params.base_lr', '0.01',
                          'name', 'demo', 'train.with_cp', '(True, False)'])
    assert cfg.train.num_iters == 100
    assert cfg.learning_rate.params.base_lr == pytest.approx(0.01)
    assert cfg.name == 'demo' and cfg.train.with_cp == (True, False)


def test_update_from_list_errors():
    cfg = AttrDict(train=dict(num_iters=1))
    with pytest.raises(ConfigError, match='pairs'):
        cfg.update_from_list(['train.num_iters'])
    with pytest.raises(ConfigError, match='train.num_iters'):
        cfg.update_from_list(['train.num_iters.x', '1'])


def test_merge_strict_names_the_path_and_closest_key():
    defaults = dict(fpn=dict(in_channels_list=[1], out_channels=2), out_channels=3)
    merged = merge_strict(defaults, dict(fpn=dict(out_channels=5)), 'model.params.foreground')
    assert merged.fpn.out_channels == 5 and merged.fpn.in_channels_list == [1]
    with pytest.raises(ConfigError, match=r"model\.params\.foreground\.fpn\.out_chanels.*"
                                          r"did you mean 'model\.params\.foreground\.fpn\.out_channels'"):
        merge_strict(defaults, dict(fpn=dict(out_chanels=5)), 'model.params.foreground')


def test_import_config_from_any_directory(tmp_path):
    code = ('from simplecv.core.config import import_config; '
            'c = import_config("isaid.factseg"); print(c.model.type, c.train.num_iters)')
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=repo))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ['FactSeg', '60000']


def test_import_config_official_keys_and_fresh_copies():
    first = import_config('isaid.factseg')
    assert first.model.params.foreground.assymetric_decoder.out_channels == 128
    assert first.model.params.fbattention.atttention is False
    first.model.params.num_classes = 3
    assert import_config('configs.isaid.factseg').model.params.num_classes == 16


def test_unknown_config_lists_close_names():
    with pytest.raises(ConfigError, match=r"isaid\.factsge.*did you mean 'isaid\.factseg'"):
        import_config('isaid.factsge')


def test_registry_duplicate_and_missing():
    reg = Registry('thing')

    @reg.register('a')
    class A:
        pass

    assert reg['a'] is A
    with pytest.raises(KeyError, match='registered twice'):
        reg.register('a', object())
    reg.register('a', int, override=True)
    assert reg['a'] is int
    with pytest.raises(ConfigError, match=r"no thing named 'b'.*registered: a"):
        reg['b']


def test_global_registries_are_filled_by_imports():
    from simplecv.core import registry
    registry.populate()
    assert 'FactSeg' in registry.MODEL
    with pytest.raises(ConfigError, match="did you mean 'FactSeg'"):
        registry.MODEL['Factseg']
