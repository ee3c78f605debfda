"""Evaluation during training (``train.eval_interval_iter`` / ``eval_after_train`` on ``data.test``) end to end."""

import json
import os

import numpy as np
import pytest

import apex_train
import isaid_eval
from simplecv.core.checkpoint import load_checkpoint, read_checkpoint_info
from train_helpers import write_tiny_config


def _records(path):
    with open(path) as stream:
        return [json.loads(line) for line in stream]


def _train(config, model_dir, *overrides):
    assert apex_train.main(['--config_path', config, '--model_dir', str(model_dir)] + list(overrides)) == 0


@pytest.fixture(scope='module')
def evaluated_run(tmp_path_factory):
    """Four steps evaluated every two steps and after the last, next to the same run without evaluation."""
    folder = tmp_path_factory.mktemp('evaluated')
    config = write_tiny_config(folder, num_iters=4, num_images=2, eval_every=2, eval_after_train=True, num_val=2)
    _train(config, folder / 'with')
    _train(config, folder / 'without', 'train.eval_interval_iter', '0', 'train.eval_after_train', 'False')
    return config, folder


def test_evaluations_are_logged_and_the_best_model_is_kept(evaluated_run):
    config, folder = evaluated_run
    run = folder / 'with'
    records = _records(run / 'eval_log.jsonl')
    assert [r['step'] for r in records] == [2, 4]  # after the last step: already evaluated at step 4
    assert all(0 <= r['miou'] <= 1 and len(r['iou']) == 16 for r in records)
    best_record = max(records, key=lambda r: r['miou'])
    best = read_checkpoint_info(str(run))['best']
    assert best == dict(file='model-best.pdparams', global_step=best_record['step'], miou=best_record['miou'])
    saved = load_checkpoint(str(run / 'model-best.pdparams'))
    assert saved['global_step'] == best_record['step'] and saved['miou'] == best_record['miou']
    if best_record['step'] == 4:
        last = load_checkpoint(str(run / 'model-4.pdparams'))['model']
        for name, value in last.items():
            np.testing.assert_array_equal(saved['model'][name].numpy(), value.numpy(), err_msg=name)
    assert os.path.isfile(run / 'training_curves.png')
    assert any(name.startswith('vdlrecords') for name in os.listdir(run))


def test_the_recorded_miou_is_what_isaid_eval_measures(evaluated_run):
    """The hook runs the official sliding-window procedure of data.test (its windows, its normalisation)."""
    config, folder = evaluated_run
    val = folder / 'data' / 'val'
    result = isaid_eval.main(
        [
            '--config_path',
            config,
            '--ckpt_path',
            str(folder / 'with' / 'model-4.pdparams'),
            '--image_dir',
            str(val / 'images'),
            '--mask_dir',
            str(val / 'masks'),
            '--patch_size',
            '64',
            '--stride',
            '32',
            '--backend',
            'dygraph',
        ]
    )[0]
    recorded = _records(folder / 'with' / 'eval_log.jsonl')[-1]
    assert recorded['miou'] == result['miou'] and recorded['iou'] == result['iou']


def test_evaluating_does_not_change_the_training(evaluated_run):
    _, folder = evaluated_run
    losses = {run: [r['loss'] for r in _records(folder / run / 'train_log.jsonl')] for run in ('with', 'without')}
    assert losses['with'] == losses['without']
    weights = {run: load_checkpoint(str(folder / run / 'model-4.pdparams'))['model'] for run in ('with', 'without')}
    for name, value in weights['with'].items():
        np.testing.assert_array_equal(value.numpy(), weights['without'][name].numpy(), err_msg=name)
    assert not os.path.exists(folder / 'without' / 'eval_log.jsonl')
    assert 'best' not in read_checkpoint_info(str(folder / 'without'))


def test_a_resumed_run_keeps_the_best_so_far_and_the_same_records(evaluated_run, tmp_path):
    config, folder = evaluated_run
    parts = tmp_path / 'parts'
    _train(config, parts, 'train.num_iters', '2')
    first = read_checkpoint_info(str(parts))['best']
    assert first['global_step'] == 2
    _train(config, parts)
    scores = {
        run: [(r['step'], r['miou'], r['iou']) for r in _records(run / 'eval_log.jsonl')]
        for run in (parts, folder / 'with')
    }
    assert scores[parts] == scores[folder / 'with']
    assert read_checkpoint_info(str(parts))['best'] == read_checkpoint_info(str(folder / 'with'))['best']


def test_evaluation_without_validation_folders_is_refused_before_training(tmp_path, capsys):
    config = write_tiny_config(tmp_path, num_iters=2, eval_every=1)
    status = apex_train.main(
        [
            '--config_path',
            config,
            '--model_dir',
            str(tmp_path / 'run'),
            'data.test.params.mask_dir',
            str(tmp_path / 'nowhere'),
        ]
    )
    assert status == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith('apex_train.py: error: ') and 'nowhere' in line
    assert not os.path.exists(tmp_path / 'run' / 'model-1.pdparams')
