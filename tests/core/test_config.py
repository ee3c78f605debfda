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
    cfg.update_from_list(
        [
            'train.num_iters',
            '100',
            'learning_rate.params.base_lr',
            '0.01',
            'name',
            'demo',
            'train.with_cp',
            '(True, False)',
        ]
    )
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
    with pytest.raises(
        ConfigError,
        match=r'model\.params\.foreground\.fpn\.out_chanels.*'
        r"did you mean 'model\.params\.foreground\.fpn\.out_channels'",
    ):
        merge_strict(defaults, dict(fpn=dict(out_chanels=5)), 'model.params.foreground')


def test_import_config_from_any_directory(tmp_path):
    code = (
        'from simplecv.core.config import import_config; '
        'c = import_config("isaid.factseg"); print(c.model.type, c.train.num_iters)'
    )
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run(
        [sys.executable, '-c', code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=repo),
    )
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


@pytest.mark.parametrize(
    'key, value, message',
    [
        ('trian.num_iters', '3', r"unknown config key 'trian'; did you mean 'train'\?"),
        ('train.num_iterz', '3', r"'train.num_iterz'; did you mean 'train.num_iters'\?"),
        (
            'optimizer.params.momentun',
            '0.5',
            r"'optimizer.params.momentun'; did you mean 'optimizer.params.momentum'\?",
        ),
        (
            'optimizer.grad_clip.max_nrom',
            '3',
            r"'optimizer.grad_clip.max_nrom'; did you mean "
            r"'optimizer.grad_clip.max_norm'",
        ),
        ('optimizer.tpye', 'sgd', r"'optimizer.tpye'; did you mean 'optimizer.type'\?"),
        ('learning_rate.params.powr', '1.0', r"'learning_rate.params.powr'; did you mean 'learning_rate.params.power'"),
        (
            'data.train.params.batch_sise',
            '2',
            r"'data.train.params.batch_sise'; did you mean "
            r"'data.train.params.batch_size'",
        ),
        (
            'data.train.params.patch_config.strid',
            '3',
            r"'data.train.params.patch_config.strid'; did you mean "
            r"'data.train.params.patch_config.stride'",
        ),
        ('data.test.params.image_dri', 'x', r"'data.test.params.image_dri'; did you mean 'data.test.params.image_dir'"),
        ('data.tset.type', 'x', r"'data.tset'; did you mean 'data.test'\?"),
        ('model.typ', 'FactSeg', r"'model.typ'; did you mean 'model.type'\?"),
        ('test.batch_size', '1', r"unknown config key 'test.batch_size' \(valid keys here: none\)"),
    ],
)
def test_every_section_is_strict(key, value, message):
    from simplecv.core.config_check import check_training_config

    config = import_config('isaid.factseg')
    config.update_from_list([key, value])
    with pytest.raises(ConfigError, match=message + r'.*given on the command line'):
        check_training_config(config, [key])
    # The same key written in the file is refused the same way, without the command-line note.
    with pytest.raises(ConfigError, match=message) as caught:
        check_training_config(config)
    assert 'command line' not in str(caught.value)


def test_official_configs_pass_and_declare_their_unused_keys():
    from simplecv.core.config_check import check_training_config, declared_unused

    official = import_config('isaid.factseg')
    check_training_config(official)
    declared = {key: value for key, value, _ in declared_unused(official)}
    assert declared == {
        'train.distributed': True,
        'train.sync_bn': False,
        'train.summary_grads': False,
        'train.summary_weights': False,
    }
    demo = import_config('isaid.factseg_demo')
    check_training_config(demo)
    assert declared_unused(demo) == []


@pytest.mark.parametrize(
    'key, value, message',
    [
        ('train.eval_interval_iter', '-1', r'train.eval_interval_iter must be an int >= 0, got -1'),
        ('train.eval_per_epoch', "'yes'", r"train.eval_per_epoch must be True or False, got 'yes'"),
        ('train.forward_times', '2', 'only 1'),
        ('train.summary_grads', 'True', 'gradient histograms'),
        ('train.iterator_type', 'prefetch', "only SimpleCV's 'normal' iterator"),
        ('train.num_epochs', '3', 'set train.num_iters'),
    ],
)
def test_behaviour_changing_official_keys_are_refused_not_ignored(key, value, message):
    from simplecv.core.config_check import check_training_config

    config = import_config('isaid.factseg')
    config.update_from_list([key, value])
    with pytest.raises(ConfigError, match=message):
        check_training_config(config)
