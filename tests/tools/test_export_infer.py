"""Export a small model, run it through Paddle Inference, and compare with dygraph."""

import numpy as np
import paddle
import pytest
from PIL import Image

from simplecv.api.infer_tool import build_from_file
from simplecv.inference.fast_path import DygraphForward
from simplecv.inference.sliding_window import SlidingWindowPredictor
from simplecv.inference.static_model import StaticModelForward
from tests.core.test_infer_tool import TINY
from tools import export_model, infer


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp('export')
    paddle.seed(5)
    model = build_from_file('isaid.factseg', TINY)
    ckpt = str(root / 'model.pdparams')
    paddle.save({'model': model.state_dict(), 'global_step': 9}, ckpt)
    save_dir = str(root / 'program')
    assert (
        export_model.main(
            [
                '--config_path',
                'isaid.factseg',
                '--ckpt_path',
                ckpt,
                '--save_dir',
                save_dir,
                '--input_size',
                '64',
                '64',
                '--batch_size',
                '2',
            ]
            + TINY
        )
        == 0
    )
    return model, save_dir, root


def test_static_program_equals_dygraph_through_the_sliding_window(exported):
    model, save_dir, _ = exported
    image = np.random.RandomState(0).randint(0, 256, (100, 150, 3)).astype(np.uint8)
    results = []
    for forward in (DygraphForward(model), StaticModelForward(save_dir)):
        predictor = SlidingWindowPredictor(forward, 64, 48, batch_size=3)
        results.append(predictor.predict(image, with_probabilities=True))
    (labels_d, prob_d), (labels_s, prob_s) = results
    np.testing.assert_allclose(prob_s, prob_d, atol=1e-4)
    assert (labels_s == labels_d).mean() > 0.999


def test_infer_cli_writes_colour_and_label_pngs(exported, tmp_path):
    _, save_dir, _ = exported
    images = tmp_path / 'scenes'
    images.mkdir()
    Image.fromarray(np.random.RandomState(1).randint(0, 256, (96, 128, 3)).astype(np.uint8)).save(images / 'a.png')
    out = tmp_path / 'pred'
    assert infer.main(['--model_dir', save_dir, '--image_dir', str(images), '--out_dir', str(out)]) == 0
    label = np.array(Image.open(out / 'a_label.png'))
    colour = Image.open(out / 'a.png')
    assert label.shape == (96, 128) and label.max() < 16
    assert colour.size == (128, 96) and colour.mode == 'P'


def test_infer_cli_errors_are_clear(exported, tmp_path, capsys):
    _, save_dir, _ = exported
    assert infer.main(['--model_dir', str(tmp_path), '--image_dir', str(tmp_path), '--out_dir', str(tmp_path)]) == 2
    assert 'is not an exported model' in capsys.readouterr().err
    small = tmp_path / 'small.png'
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(small)  # its window pads to 32×32
    assert infer.main(['--model_dir', save_dir, '--image_dir', str(small), '--out_dir', str(tmp_path / 'o')]) == 2
    assert '--input_size' in capsys.readouterr().err
