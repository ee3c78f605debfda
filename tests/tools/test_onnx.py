"""ONNX: tools/export_model.py --format onnx (paddle2onnx) and tools/infer.py --backend onnxruntime,
checked against the Paddle Inference program and dygraph on a small FactSeg."""

import shutil
import sys

import numpy as np
import paddle
import pytest
from PIL import Image

from simplecv.api.infer_tool import build_from_file
from simplecv.core.errors import CheckpointError, ExportError
from simplecv.inference.onnx_backend import ONNX_FILE, OnnxModelForward, export_onnx
from simplecv.inference.sliding_window import SlidingWindowPredictor
from simplecv.inference.static_model import StaticModelForward, export_model
from tests.core.test_infer_tool import TINY
from tools import export_model as export_tool, infer

pytest.importorskip('paddle2onnx', reason='requirements-dev.txt installs paddle2onnx')
pytest.importorskip('onnxruntime', reason='requirements-dev.txt installs onnxruntime')


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """A tiny FactSeg checkpoint exported with --format onnx (64×64 windows, batch 2)."""
    root = tmp_path_factory.mktemp('onnx')
    paddle.seed(11)
    model = build_from_file('isaid.factseg', TINY)
    ckpt = str(root / 'model.pdparams')
    paddle.save({'model': model.state_dict(), 'global_step': 4}, ckpt)
    save_dir = root / 'program'
    assert (
        export_tool.main(
            [
                '--config_path',
                'isaid.factseg',
                '--ckpt_path',
                ckpt,
                '--save_dir',
                str(save_dir),
                '--input_size',
                '64',
                '64',
                '--batch_size',
                '2',
                '--format',
                'onnx',
            ]
            + TINY
        )
        == 0
    )
    assert sorted(p.name for p in save_dir.iterdir()) == ['deploy.json', 'model.json', ONNX_FILE, 'model.pdiparams']
    return model, str(save_dir)


def test_onnxruntime_probabilities_equal_the_paddle_program_and_dygraph(exported):
    model, save_dir = exported
    windows = np.random.RandomState(3).randn(5, 3, 64, 64).astype(np.float32)  # 3 runs of the batch-2 model
    onnx_probs = OnnxModelForward(save_dir)(windows)
    paddle_probs = StaticModelForward(save_dir)(windows)
    with paddle.no_grad():
        dygraph_probs = model(paddle.to_tensor(windows)).numpy()
    assert onnx_probs.shape == (5, 16, 64, 64)
    np.testing.assert_allclose(onnx_probs.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(onnx_probs, paddle_probs, atol=1e-4, rtol=0)
    np.testing.assert_allclose(onnx_probs, dygraph_probs, atol=1e-4, rtol=0)
    assert np.abs(onnx_probs - dygraph_probs).max() > 0  # two different engines, not one result read twice


def test_sliding_window_through_onnxruntime_equals_the_paddle_program(exported):
    _, save_dir = exported
    image = np.random.RandomState(0).randint(0, 256, (100, 150, 3)).astype(np.uint8)
    results = [
        SlidingWindowPredictor(forward, 64, 48, batch_size=3).predict(image, with_probabilities=True)
        for forward in (OnnxModelForward(save_dir), StaticModelForward(save_dir))
    ]
    (labels_o, probs_o), (labels_p, probs_p) = results
    np.testing.assert_allclose(probs_o, probs_p, atol=1e-4, rtol=0)
    assert (labels_o == labels_p).mean() > 0.999


def test_infer_cli_with_onnxruntime_writes_the_paddle_labels(exported, tmp_path):
    _, save_dir = exported
    images = tmp_path / 'scenes'
    images.mkdir()
    Image.fromarray(np.random.RandomState(1).randint(0, 256, (96, 128, 3)).astype(np.uint8)).save(images / 'a.png')
    labels = {}
    for backend in ('onnxruntime', 'paddle'):
        out = tmp_path / backend
        assert (
            infer.main(
                [
                    '--model_dir',
                    save_dir,
                    '--image_dir',
                    str(images),
                    '--out_dir',
                    str(out),
                    '--backend',
                    backend,
                    '--stride',
                    '32',
                ]
            )
            == 0
        )
        labels[backend] = np.array(Image.open(out / 'a_label.png'))
    assert labels['onnxruntime'].shape == (96, 128)
    assert (labels['onnxruntime'] == labels['paddle']).mean() > 0.999


def test_infer_cli_without_model_onnx_names_the_export_flag(exported, tmp_path, capsys):
    _, save_dir = exported
    paddle_only = tmp_path / 'paddle_only'
    paddle_only.mkdir()
    for name in ('deploy.json', 'model.json', 'model.pdiparams'):
        shutil.copy(f'{save_dir}/{name}', paddle_only / name)
    assert (
        infer.main(
            [
                '--model_dir',
                str(paddle_only),
                '--image_dir',
                str(tmp_path),
                '--out_dir',
                str(tmp_path / 'o'),
                '--backend',
                'onnxruntime',
            ]
        )
        == 2
    )
    assert '--format onnx' in capsys.readouterr().err
    with pytest.raises(CheckpointError, match='has no model.onnx'):
        OnnxModelForward(str(paddle_only))
    with pytest.raises(SystemExit):
        infer.parse_args(
            ['--model_dir', save_dir, '--image_dir', '.', '--out_dir', '.', '--use_gpu', '--backend', 'onnxruntime']
        )
    assert 'CPU only' in capsys.readouterr().err


def test_native_interpolation_export_is_refused_with_paddle2onnx_reason(tmp_path):
    paddle.seed(2)
    model = build_from_file('isaid.factseg', TINY)
    save_dir = str(tmp_path / 'native')
    export_model(
        model,
        save_dir,
        (-1, 3, -1, -1),
        (0, 0, 0),
        (1, 1, 1),
        ['c%d' % i for i in range(16)],
        [(i, i, i) for i in range(16)],
        interpolation='native',
    )
    with pytest.raises(ExportError, match=r'cannot convert .*model\.json: .*FloatAttribute.*--interpolation matmul'):
        export_onnx(save_dir)
    assert not (tmp_path / 'native' / ONNX_FILE).exists()
    assert not (tmp_path / 'native' / (ONNX_FILE + '.partial')).exists()


def test_missing_paddle2onnx_is_one_clear_error(exported, monkeypatch):
    _, save_dir = exported
    monkeypatch.setitem(sys.modules, 'paddle2onnx', None)  # import paddle2onnx now raises ImportError
    with pytest.raises(ExportError, match='pip install paddle2onnx'):
        export_onnx(save_dir)
