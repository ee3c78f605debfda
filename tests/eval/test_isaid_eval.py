import json
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest
from PIL import Image

import isaid_eval
from data.isaid import COLOR_MAP
from simplecv.api.infer_tool import build_and_load_from_file, build_from_file
from simplecv.core.errors import CheckpointError, DataError
from simplecv.engine.checkpoint_evaluation import find_checkpoints
from simplecv.inference.fast_path import DygraphForward
from simplecv.inference.sliding_window import predict_per_window
from simplecv.metric.miou import MeanIoU
from tests.eval.conftest import TINY_OPTS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PALETTE = np.asarray(COLOR_MAP, dtype=np.uint8)
SIZES = {'a': (70, 90), 'b': (40, 50)}  # b is smaller than a patch and not a multiple of 32


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp('isaid')
    rng = np.random.RandomState(0)
    for folder in ('images', 'masks', 'labels'):
        os.makedirs(root / folder)
    for name, (h, w) in SIZES.items():
        Image.fromarray(rng.randint(0, 256, (h, w, 3)).astype(np.uint8)).save(root / 'images' / (name + '.png'))
        label = np.where(rng.rand(h, w) < 0.9, 0, 1).astype(np.uint8)
        Image.fromarray(PALETTE[label]).save(root / 'masks' / (name + '_instance_color_RGB.png'))
        label[0, :5] = 255
        Image.fromarray(label).save(root / 'labels' / (name + '_label.png'))
    return root


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """model-100: random weights; model-200: predicts background everywhere (the better one here)."""
    folder = tmp_path_factory.mktemp('ckpt')
    paddle.seed(3)
    model = build_from_file('isaid.factseg', TINY_OPTS)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    paddle.save({'model': state, 'global_step': 100}, str(folder / 'model-100.pdparams'))
    background = dict(state)
    background['fg_cls.bias'] = np.where(np.arange(16) == 0, 50.0, -50.0).astype(np.float32)
    background['bi_cls.bias'] = np.full_like(state['bi_cls.bias'], -50.0)
    paddle.save({'model': background, 'global_step': 200}, str(folder / 'model-200.pdparams'))
    return folder


def _args(dataset, ckpt, *extra, mask='masks', backend='dygraph'):
    args = [
        '--config_path',
        'isaid.factseg',
        '--ckpt_path',
        str(ckpt),
        '--image_dir',
        str(dataset / 'images'),
        '--patch_size',
        '64',
        '--stride',
        '32',
        '--backend',
        backend,
    ]
    if mask:
        args += ['--mask_dir', str(dataset / mask)] + (['--mask_format', 'label'] if mask == 'labels' else [])
    return args + list(extra) + TINY_OPTS


def _expected_matrix(dataset, ckpt, mask_folder='labels'):
    model, _ = build_and_load_from_file('isaid.factseg', str(ckpt), TINY_OPTS)
    metric = MeanIoU(16)
    for name in SIZES:
        image = np.asarray(Image.open(dataset / 'images' / (name + '.png')))
        _, labels = predict_per_window(DygraphForward(model), image, (64, 64), 32)
        metric.update(np.asarray(Image.open(dataset / mask_folder / (name + '_label.png'))), labels)
    return metric.matrix


def test_several_checkpoints_are_scored_and_the_best_is_reported(dataset, checkpoints, tmp_path):
    log_dir, vis_dir = tmp_path / 'log', tmp_path / 'vis'
    results = isaid_eval.main(
        _args(
            dataset,
            checkpoints,
            '--log_dir',
            str(log_dir),
            '--vis_dir',
            str(vis_dir),
            '--batch_size',
            '3',
            mask='labels',
        )
        + []
    )
    assert [r['global_step'] for r in results] == [100, 200]
    for result in results:
        np.testing.assert_array_equal(result['confusion_matrix'], _expected_matrix(dataset, result['checkpoint']))
    summary = json.loads((log_dir / 'eval_summary.json').read_text())
    best = max(results, key=lambda r: r['miou'])
    assert summary['best'] == best['checkpoint'] and best['global_step'] == 200
    assert best['iou']['background'] == pytest.approx(
        best['confusion_matrix'][0][0]
        / (
            np.sum(best['confusion_matrix'], 0)[0]
            + np.sum(best['confusion_matrix'], 1)[0]
            - best['confusion_matrix'][0][0]
        )
    )
    text = (log_dir / 'eval_model-200.txt').read_text()
    assert 'storage_tank' in text and 'mIoU (16 classes)' in text and 'mIoU foreground (15 classes)' in text
    saved = json.loads((log_dir / 'eval_model-200.json').read_text())
    assert saved['miou'] == best['miou'] and saved['num_pixels'] == sum(h * w for h, w in SIZES.values()) - 10
    assert any(f.startswith('vdlrecords') for f in os.listdir(log_dir))
    palette_png = Image.open(vis_dir / 'model-200' / 'a.png')
    assert palette_png.mode == 'P' and (np.asarray(palette_png) == 0).all()


def test_colour_masks_and_the_fast_path_give_the_same_scores(dataset, checkpoints, tmp_path):
    ckpt = checkpoints / 'model-100.pdparams'
    exact = isaid_eval.main(_args(dataset, ckpt))[0]
    auto = isaid_eval.main(_args(dataset, ckpt, backend='auto'))[0]
    # colour masks have no 255 pixels: 10 more pixels than the label masks
    assert exact['num_pixels'] == sum(h * w for h, w in SIZES.values())
    assert auto['miou'] == pytest.approx(exact['miou'], abs=1e-3)


def test_predict_only_writes_label_and_colour_pngs(dataset, checkpoints, tmp_path):
    vis_dir = tmp_path / 'pred'
    results = isaid_eval.main(_args(dataset, checkpoints / 'model-100.pdparams', '--vis_dir', str(vis_dir), mask=None))
    assert 'miou' not in results[0]
    model, _ = build_and_load_from_file('isaid.factseg', str(checkpoints / 'model-100.pdparams'), TINY_OPTS)
    image = np.asarray(Image.open(dataset / 'images' / 'a.png'))
    _, expected = predict_per_window(DygraphForward(model), image, (64, 64), 32)
    np.testing.assert_array_equal(np.asarray(Image.open(vis_dir / 'a_label.png')), expected)
    colour = Image.open(vis_dir / 'a.png')
    np.testing.assert_array_equal(np.asarray(colour.convert('RGB')), PALETTE[expected])


def test_geotiff_predictions_keep_georeference(checkpoints, tmp_path):
    rasterio = pytest.importorskip('rasterio')
    from rasterio.transform import from_origin

    os.makedirs(tmp_path / 'tifs')
    transform = from_origin(300000, 5000000, 0.5, 0.5)
    pixels = np.random.RandomState(5).randint(0, 256, (3, 70, 100)).astype(np.uint8)
    with rasterio.open(
        tmp_path / 'tifs' / 'scene.tif',
        'w',
        driver='GTiff',
        height=70,
        width=100,
        count=3,
        dtype='uint8',
        crs='EPSG:4326',
        transform=transform,
    ) as dst:
        dst.write(pixels)
    args = [
        '--config_path',
        'isaid.factseg',
        '--ckpt_path',
        str(checkpoints / 'model-100.pdparams'),
        '--image_dir',
        str(tmp_path / 'tifs'),
        '--vis_dir',
        str(tmp_path / 'out'),
        '--patch_size',
        '64',
        '--stride',
        '32',
        '--backend',
        'dygraph',
        '--batch_size',
        '2',
    ] + TINY_OPTS
    isaid_eval.main(args)
    model, _ = build_and_load_from_file('isaid.factseg', str(checkpoints / 'model-100.pdparams'), TINY_OPTS)
    _, expected = predict_per_window(DygraphForward(model), pixels.transpose(1, 2, 0), (64, 64), 32)
    with rasterio.open(tmp_path / 'out' / 'scene.tif') as result:
        assert result.crs.to_epsg() == 4326 and result.transform == transform
        np.testing.assert_array_equal(result.read(1), expected)
    # a GeoTIFF label mask is read band by band too
    truth = np.random.RandomState(6).randint(0, 16, (1, 70, 100)).astype(np.uint8)
    with rasterio.open(
        tmp_path / 'tifs' / 'scene_label.tif', 'w', driver='GTiff', height=70, width=100, count=1, dtype='uint8'
    ) as dst:
        dst.write(truth)
    result = isaid_eval.main(
        args[: -len(TINY_OPTS)] + ['--mask_dir', str(tmp_path / 'tifs'), '--mask_format', 'label'] + TINY_OPTS
    )[0]
    metric = MeanIoU(16)
    metric.update(truth[0], expected)
    np.testing.assert_array_equal(result['confusion_matrix'], metric.matrix)


def test_bad_inputs_are_clear_errors(dataset, checkpoints, tmp_path):
    os.makedirs(tmp_path / 'empty' / 'images')
    with pytest.raises(DataError, match='no <name>.* images in .*empty'):
        isaid_eval.main(_args(tmp_path / 'empty', checkpoints, '--vis_dir', str(tmp_path / 'v'), mask=None))
    bad = tmp_path / 'bad'
    os.makedirs(bad / 'images')
    os.makedirs(bad / 'masks')
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(bad / 'images' / 'x.png')
    Image.fromarray(np.zeros((40, 41, 3), np.uint8)).save(bad / 'masks' / 'x_instance_color_RGB.png')
    with pytest.raises(DataError, match=r'x.png is 40x40 but its mask .* is 41x40'):
        isaid_eval.main(_args(bad, checkpoints))
    os.remove(bad / 'masks' / 'x_instance_color_RGB.png')
    with pytest.raises(DataError, match='has no mask: expected .*x_instance_color_RGB.png.*--mask_format label'):
        isaid_eval.main(_args(bad, checkpoints))
    (bad / 'masks' / 'x_instance_color_RGB.png').write_bytes(b'not a png')
    with pytest.raises(DataError, match='x_instance_color_RGB.png'):
        isaid_eval.main(_args(bad, checkpoints))
    with pytest.raises(CheckpointError, match='no file matches'):
        isaid_eval.main(_args(dataset, tmp_path / '*.pdparams'))


def test_checkpoint_with_missing_keys_names_them(dataset, checkpoints, tmp_path):
    state = paddle.load(str(checkpoints / 'model-100.pdparams'))['model']
    del state['fg_cls.weight'], state['bi_cls.bias']
    paddle.save({'model': state, 'global_step': 1}, str(tmp_path / 'partial.pdparams'))
    with pytest.raises(CheckpointError, match='missing 2/.*bi_cls.bias, fg_cls.weight'):
        isaid_eval.main(_args(dataset, tmp_path / 'partial.pdparams'))


@pytest.mark.parametrize(
    'extra, message',
    [
        (['--stride', '100'], '--stride must be in 1..--patch_size'),
        (['--batch_size', '0'], '--batch_size must be at least 1'),
        (['--amp', 'fp8'], 'invalid choice'),
    ],
)
def test_bad_flags_stop_before_any_work(dataset, checkpoints, capsys, extra, message):
    with pytest.raises(SystemExit):
        isaid_eval.main(_args(dataset, checkpoints)[: -len(TINY_OPTS)] + extra)
    assert message in capsys.readouterr().err


def test_command_line_error_has_no_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, 'isaid_eval.py'),
            '--config_path',
            'isaid.factseg',
            '--ckpt_path',
            str(tmp_path / 'none.pdparams'),
            '--image_dir',
            str(tmp_path),
            '--vis_dir',
            str(tmp_path / 'v'),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 2
    assert 'isaid_eval.py: error: --ckpt_path: no file matches' in result.stderr and 'Traceback' not in result.stderr


def test_amp_on_cpu_is_refused_because_paddle_ignores_it(dataset, checkpoints):
    from simplecv.core.errors import ConfigError

    if paddle.get_device() != 'cpu':
        pytest.skip('CPU-only check')
    with pytest.raises(ConfigError, match='--amp bf16 needs a GPU'):
        isaid_eval.main(_args(dataset, checkpoints, '--amp', 'bf16'))


def test_checkpoints_are_found_by_file_folder_or_glob_in_step_order(tmp_path):
    for name in ('model-60000.pdparams', 'model-5000.pdparams', 'model-10000.pdparams', 'notes.txt'):
        (tmp_path / name).write_bytes(b'')
    expected = [str(tmp_path / n) for n in ('model-5000.pdparams', 'model-10000.pdparams', 'model-60000.pdparams')]
    assert find_checkpoints(str(tmp_path)) == expected
    assert find_checkpoints(str(tmp_path / 'model-*0000.pdparams')) == expected[1:]
    assert find_checkpoints(expected[0]) == expected[:1]
    os.makedirs(tmp_path / 'none')
    with pytest.raises(CheckpointError, match=r'has no \*.pdparams files'):
        find_checkpoints(str(tmp_path / 'none'))
