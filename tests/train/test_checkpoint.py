"""Checkpoint files: SimpleCV layout, atomic writes, tolerant weight loading, clear errors."""

import json
import os

import numpy as np
import paddle
import pytest

from simplecv.core import checkpoint as ckpt
from simplecv.core.errors import CheckpointError


def tiny_state(step, value=0.0):
    return dict(
        model={'w': paddle.full([2, 2], value)}, opt={}, global_step=step, config_name='isaid.demo', config_digest='abc'
    )


def test_save_writes_the_checkpoint_and_points_the_info_at_it(tmp_path):
    ckpt.save_checkpoint(str(tmp_path), tiny_state(10, 1.0))
    path = ckpt.save_checkpoint(str(tmp_path), tiny_state(20, 2.0))
    assert os.path.basename(path) == 'model-20.pdparams'
    info = json.loads((tmp_path / 'checkpoint_info.json').read_text())
    assert info['last'] == 'model-20.pdparams' and info['global_step'] == 20
    assert info['checkpoints'] == {'10': 'model-10.pdparams', '20': 'model-20.pdparams'}
    assert info['config_name'] == 'isaid.demo'
    assert ckpt.last_checkpoint(str(tmp_path)) == path
    state = ckpt.load_checkpoint(path)
    assert state['global_step'] == 20 and float(state['model']['w'].sum()) == 8.0


@pytest.mark.parametrize('interrupt', [RuntimeError('disk full'), KeyboardInterrupt()])
def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch, interrupt):
    ckpt.save_checkpoint(str(tmp_path), tiny_state(10, 1.0))
    real_save = paddle.save

    def torn_save(obj, path):
        real_save(obj, path)
        with open(path, 'r+b') as stream:  # half a file, then the process dies
            stream.truncate(os.path.getsize(path) // 2)
        raise interrupt

    monkeypatch.setattr(paddle, 'save', torn_save)
    with pytest.raises(type(interrupt)):
        ckpt.save_checkpoint(str(tmp_path), tiny_state(20, 2.0))
    assert sorted(os.listdir(tmp_path)) == ['checkpoint_info.json', 'model-10.pdparams']
    last = ckpt.last_checkpoint(str(tmp_path))
    assert last.endswith('model-10.pdparams')
    assert float(ckpt.load_checkpoint(last)['model']['w'].sum()) == 4.0


def test_a_crash_while_writing_the_info_keeps_the_old_info(tmp_path, monkeypatch):
    ckpt.save_checkpoint(str(tmp_path), tiny_state(10))

    def torn_dump(data, stream, **kwargs):
        stream.write('{"last": "model-2')
        raise KeyboardInterrupt

    monkeypatch.setattr(json, 'dump', torn_dump)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(str(tmp_path), tiny_state(20))
    monkeypatch.undo()
    assert ckpt.read_checkpoint_info(str(tmp_path))['last'] == 'model-10.pdparams'
    assert not [f for f in os.listdir(tmp_path) if '.tmp' in f]


def test_load_model_state_accepts_checkpoints_converted_files_and_bare_dicts(tmp_path):
    weights = {'conv.weight': paddle.ones([1, 1, 3, 3]), 'conv.bias': paddle.zeros([1])}
    paddle.save(
        dict(model={'module.' + k: v for k, v in weights.items()}, global_step=60000),
        str(tmp_path / 'converted.pdparams'),
    )
    paddle.save(weights, str(tmp_path / 'bare.pdparams'))
    ckpt.save_checkpoint(str(tmp_path / 'run'), dict(model=weights, opt={}, global_step=7))
    state, step = ckpt.load_model_state(str(tmp_path / 'converted.pdparams'))
    assert sorted(state) == ['conv.bias', 'conv.weight'] and step == 60000
    state, step = ckpt.load_model_state(str(tmp_path / 'bare.pdparams'))
    assert sorted(state) == ['conv.bias', 'conv.weight'] and step == 0
    state, step = ckpt.load_model_state(str(tmp_path / 'run' / 'model-7.pdparams'))
    assert step == 7 and float(state['conv.weight'].sum()) == 9.0


def test_unusable_files_raise_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match='does not exist'):
        ckpt.load_model_state(str(tmp_path / 'missing.pdparams'))
    (tmp_path / 'junk.pdparams').write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointError, match='cannot read checkpoint .*junk.pdparams'):
        ckpt.load_model_state(str(tmp_path / 'junk.pdparams'))
    paddle.save({'epoch': 3}, str(tmp_path / 'odd.pdparams'))
    with pytest.raises(CheckpointError, match='holds no model weights'):
        ckpt.load_model_state(str(tmp_path / 'odd.pdparams'))


def test_broken_info_files_are_reported(tmp_path):
    (tmp_path / 'checkpoint_info.json').write_text('{"last": ')
    with pytest.raises(CheckpointError, match='checkpoint_info.json is unreadable'):
        ckpt.read_checkpoint_info(str(tmp_path))
    (tmp_path / 'checkpoint_info.json').write_text('{"last": "model-5.pdparams"}')
    with pytest.raises(CheckpointError, match='model-5.pdparams as the last checkpoint, but that file does not exist'):
        ckpt.last_checkpoint(str(tmp_path))
    (tmp_path / 'checkpoint_info.json').write_text('{"last": {"step": 5, "name": "model-5.pth"}}')
    with pytest.raises(CheckpointError, match='no "last" checkpoint name'):
        ckpt.read_checkpoint_info(str(tmp_path))


def test_check_compatible_refuses_another_config():
    info = dict(config_name='isaid.factseg', config_digest='d1')
    ckpt.check_compatible(info, 'isaid.factseg', 'd1', 'log')
    ckpt.check_compatible({}, 'isaid.factseg_demo', 'd2', 'log')
    with pytest.raises(CheckpointError, match="holds a checkpoint of config 'isaid.factseg', not 'isaid.factseg_demo'"):
        ckpt.check_compatible(info, 'isaid.factseg_demo', 'd1', 'log')
    with pytest.raises(CheckpointError, match='another model section'):
        ckpt.check_compatible(info, 'isaid.factseg', 'd2', 'log')


def test_config_digest_ignores_key_order_and_sees_values():
    assert ckpt.config_digest(dict(a=1, b=[2, 3])) == ckpt.config_digest(dict(b=[2, 3], a=1))
    assert ckpt.config_digest(dict(a=1)) != ckpt.config_digest(dict(a=2))


def _net():
    return paddle.nn.Sequential(paddle.nn.Linear(3, 4), paddle.nn.BatchNorm1D(4), paddle.nn.Linear(4, 2))


def _one_step(model, optimizer):
    model(paddle.ones([2, 3])).sum().backward()
    optimizer.step()
    optimizer.clear_grad()


def test_optimizer_state_moves_between_models_with_other_tensor_names(tmp_path):
    paddle.seed(0)
    first = _net()
    opt_first = paddle.optimizer.Momentum(0.1, 0.9, parameters=first.parameters())
    _one_step(first, opt_first)
    paddle.save(ckpt.optimizer_state_by_name(opt_first, first), str(tmp_path / 'opt.pdparams'))
    state = paddle.load(str(tmp_path / 'opt.pdparams'))
    assert sorted(state) == sorted('%s_velocity_0' % n for n, p in first.named_parameters() if not p.stop_gradient)

    second = _net()  # new process-global tensor names (linear_2.w_0, ...)
    assert [p.name for p in second.parameters()] != [p.name for p in first.parameters()]
    second.set_state_dict(first.state_dict())
    opt_second = paddle.optimizer.Momentum(0.1, 0.9, parameters=second.parameters())
    ckpt.load_optimizer_state_by_name(opt_second, second, state, 'test')
    _one_step(first, opt_first)
    _one_step(second, opt_second)
    for (name, a), (_, b) in zip(first.named_parameters(), second.named_parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)


def test_optimizer_state_for_unknown_parameters_is_refused():
    model = _net()
    optimizer = paddle.optimizer.Momentum(0.1, 0.9, parameters=model.parameters())
    with pytest.raises(CheckpointError, match='parameters the model does not have: head.weight_velocity_0'):
        ckpt.load_optimizer_state_by_name(optimizer, model, {'head.weight_velocity_0': paddle.zeros([1])}, 'f')
