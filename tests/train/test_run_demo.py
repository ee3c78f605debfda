"""tools/run_demo.py end to end at toy size: data, training, evaluation, IoU table."""

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO_ROOT, 'tools'))

import run_demo  # noqa: E402


def test_the_demo_generates_trains_evaluates_and_prints_the_table(tmp_path, capsys):
    argv = [
        '--data',
        str(tmp_path / 'data'),
        '--out',
        str(tmp_path / 'out'),
        '--num_train',
        '1',
        '--num_val',
        '1',
        '--size',
        '64',
        'train.num_iters',
        '2',
        'data.train.params.batch_size',
        '1',
    ]
    assert run_demo.main(argv) == 0
    out = capsys.readouterr().out
    assert '[1/3] generating demo data' in out
    assert 'per-class IoU of' in out and 'small_vehicle' in out and 'mIoU (16 classes)' in out
    assert os.path.isfile(tmp_path / 'out' / 'model-2.pdparams')
    assert os.path.isfile(tmp_path / 'out' / 'eval_model-2.json')
    # A second run reuses the data and the finished training.
    assert run_demo.main(argv) == 0
    assert '[1/3] using the demo data' in capsys.readouterr().out
