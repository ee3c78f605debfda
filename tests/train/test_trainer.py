"""The iteration loop: loss goes down, exact resume, skipped non-finite steps, AMP on CPU, hooks."""

import json
import math
import os

import numpy as np
import paddle
import pytest

from simplecv.core.checkpoint import last_checkpoint, load_checkpoint
from simplecv.core.trainer import HookBase, Trainer, global_grad_norm, prepare_amp
from simplecv.engine.hooks import CheckpointHook, LoggerHook, PlotHook
from simplecv.opt import PolyLearningRate, make_optimizer
from train_helpers import TinySegmenter, parameters_of, tiny_loader, tiny_trainer


class Recorder(HookBase):
    def __init__(self):
        self.events, self.losses, self.lrs = [], [], []

    def before_train(self, trainer):
        self.events.append(('before', trainer.global_step))

    def after_step(self, trainer):
        self.losses.append(trainer.last_step.total_loss)
        self.lrs.append(trainer.last_step.lr)

    def after_train(self, trainer):
        self.events.append(('after', trainer.global_step))


def test_training_lowers_the_loss_and_follows_the_schedule():
    recorder = Recorder()
    trainer = tiny_trainer(30, hooks=[recorder])
    trainer.train(tiny_loader())
    assert trainer.global_step == 30 and trainer.skipped_steps == 0
    assert recorder.events == [('before', 0), ('after', 30)]
    assert np.mean(recorder.losses[-5:]) < 0.6 * np.mean(recorder.losses[:5])
    assert recorder.lrs == [trainer.lr_schedule.lr_at(g) for g in range(30)]


def test_an_interrupted_run_resumes_exactly(tmp_path):
    # 10 samples, batch 4: epochs of 3 batches (the last one partial); stop at step 4 (inside epoch 2).
    full = tiny_trainer(9)
    full.train(tiny_loader())

    first = tiny_trainer(9, hooks=[CheckpointHook(str(tmp_path), 4)])
    first.num_iters = 4  # the process "dies" after step 4, whose checkpoint is on disk
    first.train(tiny_loader())
    state = load_checkpoint(last_checkpoint(str(tmp_path)))
    assert state['global_step'] == 4

    resumed = tiny_trainer(9, seed=123)  # other initial weights and other tensor names
    resumed.load_state_dict(state, source='model-4')
    resumed.train(tiny_loader())
    want, got = parameters_of(full.model), parameters_of(resumed.model)
    assert sorted(want) == sorted(got)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_request_stop_ends_after_the_step_and_saves(tmp_path):
    class StopAt(HookBase):
        def after_step(self, trainer):
            if trainer.global_step == 3:
                trainer.request_stop()

    trainer = tiny_trainer(20, hooks=[StopAt(), CheckpointHook(str(tmp_path), 0)])
    trainer.train(tiny_loader())
    assert trainer.global_step == 3 and trainer.stopped_early
    assert os.path.basename(last_checkpoint(str(tmp_path))) == 'model-3.pdparams'


class NaNOnSecondStep(TinySegmenter):
    def __init__(self):
        super().__init__(batch_norm=False)
        self.calls = 0

    def forward(self, x, y):
        self.calls += 1
        losses = super().forward(x, y)
        if self.calls == 2:
            losses['ce_loss'] = losses['ce_loss'] * float('nan')
        return losses


def test_non_finite_gradients_skip_the_update_but_count_the_step():
    paddle.seed(0)
    model = NaNOnSecondStep()
    schedule = PolyLearningRate(base_lr=0.1, power=0.9, max_iters=3)
    trainer = Trainer(
        model,
        make_optimizer(dict(type='sgd', params=dict(momentum=0.9)), model.parameters(), 0.1),
        schedule,
        num_iters=3,
    )
    loader = iter(tiny_loader())
    trainer.run_step(next(loader))
    before = parameters_of(model)
    result = trainer.run_step(next(loader))
    assert result.skipped and math.isnan(result.grad_norm)
    assert trainer.skipped_steps == 1 and trainer.global_step == 2
    for name, value in parameters_of(model).items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    trainer.run_step(next(loader))
    assert all(np.isfinite(v).all() for v in parameters_of(model).values())


@pytest.mark.parametrize('level', ['O1', 'O2'])
def test_amp_levels_run_on_cpu(level):
    paddle.seed(0)
    model = TinySegmenter()
    schedule = PolyLearningRate(base_lr=0.1, power=0.9, max_iters=4)
    optimizer = make_optimizer(dict(type='sgd', params=dict(momentum=0.9, weight_decay=1e-4)), model.parameters(), 0.1)
    model, optimizer, scaler = prepare_amp(model, optimizer, level, 'float16')
    assert isinstance(scaler, paddle.amp.GradScaler)
    recorder = Recorder()
    trainer = Trainer(model, optimizer, schedule, 4, amp_level=level, scaler=scaler, hooks=[recorder])
    trainer.train(tiny_loader())
    assert trainer.global_step == 4 and all(math.isfinite(v) for v in recorder.losses)
    assert 'scaler' in trainer.state_dict()


def test_prepare_amp_rejects_unknown_settings():
    with pytest.raises(ValueError, match='AMP level'):
        prepare_amp(None, None, 'O3')
    assert prepare_amp('model', 'opt', 'O1', 'bfloat16')[2] is None  # bfloat16 needs no loss scaling


def test_logger_and_plot_hooks_write_records_and_a_png(tmp_path):
    recorder = Recorder()
    hooks = [recorder, LoggerHook(2, str(tmp_path)), CheckpointHook(str(tmp_path), 4), PlotHook(str(tmp_path))]
    trainer = tiny_trainer(6, hooks=hooks)
    trainer.train(tiny_loader())
    records = [json.loads(line) for line in (tmp_path / 'train_log.jsonl').read_text().splitlines()]
    assert [r['step'] for r in records] == [2, 4, 6]
    # Losses are averaged over the steps since the previous line.
    assert [r['loss'] for r in records] == pytest.approx(np.reshape(recorder.losses, (3, 2)).mean(axis=1))
    assert {'loss', 'ce_loss', 'lr', 'grad_norm', 's_per_iter', 'samples_per_s', 'data_time'} <= set(records[0])
    assert records[0]['lr'] == trainer.lr_schedule.lr_at(1)
    assert (tmp_path / 'training_curves.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'

    # Resuming from step 4 drops the records written after it, then logs again.
    resumed = tiny_trainer(6, hooks=[LoggerHook(2, str(tmp_path))])
    resumed.load_state_dict(load_checkpoint(str(tmp_path / 'model-4.pdparams')))
    resumed.num_iters = 4
    resumed.train(tiny_loader())
    assert [json.loads(line)['step'] for line in (tmp_path / 'train_log.jsonl').read_text().splitlines()] == [2, 4]


def test_a_model_without_losses_is_reported():
    class NoLoss(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv = paddle.nn.Conv2D(3, 1, 1)

        def forward(self, x, y):
            return {'logits': self.conv(x)}

    model = NoLoss()
    trainer = Trainer(
        model, make_optimizer(dict(type='sgd'), model.parameters(), 0.1), PolyLearningRate(0.1, 0.9, 2), 2
    )
    with pytest.raises(ValueError, match="keys ending in 'loss', got \\['logits'\\]"):
        trainer.train(tiny_loader())


@pytest.mark.parametrize('dtype, rtol', [('float64', 1e-14), ('float32', 1e-6)])
def test_global_grad_norm_keeps_the_gradient_precision(dtype, rtol):
    rng = np.random.RandomState(0)
    values = [1.0 + 1e-9 * rng.standard_normal((30, 40)), 1e-3 * rng.standard_normal(7)]
    params = []
    for value in values:
        param = paddle.create_parameter(value.shape, dtype)
        param.set_value(value.astype(dtype))
        (param * param / 2).sum().backward()  # gradient = the value itself
        params.append(param)
    expected = math.sqrt(sum(float((v.astype(dtype).astype(np.float64) ** 2).sum()) for v in values))
    assert global_grad_norm(params + [paddle.create_parameter([2], dtype)]) == pytest.approx(expected, rel=rtol)
    assert global_grad_norm([]) == 0.0
