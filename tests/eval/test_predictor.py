import numpy as np
import paddle
import pytest

from simplecv.core.config import AttrDict
from simplecv.core.errors import ConfigError
from simplecv.inference.fast_path import DygraphForward
from simplecv.inference.sliding_window import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SlidingWindowPredictor,
    normalization_from_config,
    predict_per_window,
)
from simplecv.io.images import ArrayImage


@pytest.mark.parametrize(
    'size, patch, stride',
    [((150, 230), 64, 40), ((64, 64), 64, 64), ((50, 37), 64, 32), ((97, 300), 96, 50), ((1408, 1408), 896, 512)],
)
def test_windows_cover_every_pixel_with_the_patch_size(size, patch, stride):
    predictor = SlidingWindowPredictor(None, patch, stride)
    windows = predictor.windows(*size)
    covered = np.zeros(size, dtype=np.int64)
    for x1, y1, x2, y2 in windows:
        assert (y2 - y1, x2 - x1) == (min(patch, size[0]), min(patch, size[1]))
        covered[y1:y2, x1:x2] += 1
    assert covered.min() >= 1
    assert len({tuple(w) for w in windows.tolist()}) == len(windows)


def test_stride_larger_than_patch_is_refused():
    with pytest.raises(ValueError, match='larger than the patch'):
        SlidingWindowPredictor(None, 64, 65)


@pytest.mark.parametrize('size, patch, stride', [((150, 230), 64, 40), ((100, 75), 64, 24), ((50, 37), 64, 32)])
def test_banded_batched_prediction_equals_the_per_window_reference_bit_for_bit(
    tiny_factseg, random_image, size, patch, stride
):
    # (100, 75) with stride 24 puts three or more windows over some rows (count 3 divisions);
    # (50, 37) is smaller than a patch and not a multiple of 32 (one padded window).
    image = random_image(*size)
    forward = DygraphForward(tiny_factseg)
    reference_probs, reference_labels = predict_per_window(forward, image, (patch, patch), stride)
    for batch_size in (1, 3, 64):
        predictor = SlidingWindowPredictor(forward, patch, stride, batch_size=batch_size, prefetch=batch_size != 3)
        labels, probs = predictor.predict(image, with_probabilities=True)
        np.testing.assert_array_equal(probs, reference_probs)
        np.testing.assert_array_equal(labels, reference_labels)
    assert len(np.unique(reference_labels)) > 1 or size[0] < patch


def test_bands_are_final_rows_in_order(random_image):
    predictor = SlidingWindowPredictor(DygraphForward(_pixel_model()), 32, 16)
    from simplecv.io.images import ArrayImage

    bands = list(predictor.predict_bands(ArrayImage(random_image(100, 40))))
    starts = [b[0] for b in bands]
    assert starts[0] == 0 and bands[-1][1] == 100
    assert all(a[1] == b[0] for a, b in zip(bands, bands[1:]))
    # rows above the next window row are handed out as soon as that row starts: 16-row bands
    assert starts == sorted(set(predictor.windows(100, 40)[:, 1].tolist()))


def test_shift_equivariant_model_gives_the_full_image_prediction(random_image):
    # A per-pixel model sees the same values in every window, so averaging must give back
    # exactly its whole-image output.
    model = _pixel_model()
    image = random_image(70, 90)
    predictor = SlidingWindowPredictor(DygraphForward(model), 32, 20, batch_size=4)
    labels, probs = predictor.predict(image, with_probabilities=True)
    x = (
        image.transpose(2, 0, 1)[None].astype(np.float32) - np.float32(IMAGENET_MEAN).reshape(1, 3, 1, 1)
    ) / np.float32(IMAGENET_STD).reshape(1, 3, 1, 1)
    with paddle.no_grad():
        whole = model(paddle.to_tensor(x)).numpy()[0]
    np.testing.assert_allclose(probs, whole, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(labels, whole.argmax(0))


def test_tta_of_a_flip_equivariant_model_changes_nothing(random_image):
    predictor = SlidingWindowPredictor(DygraphForward(_pixel_model()), 32, 16, batch_size=2)
    image = random_image(48, 64)
    plain = predictor.predict(image, with_probabilities=True)
    predictor.tta = True
    flipped = predictor.predict(image, with_probabilities=True)
    np.testing.assert_allclose(flipped[1], plain[1], atol=1e-6)


@pytest.mark.parametrize('channels', [None, 1, 2, 4])
def test_greyscale_and_alpha_images_are_converted(random_image, channels):
    rgb = random_image(40, 40)
    image = (
        rgb[:, :, 0]
        if channels is None
        else (np.repeat(rgb[:, :, :1], channels, axis=2) if channels < 3 else np.concatenate([rgb, rgb[:, :, :1]], 2))
    )
    expected = np.repeat(rgb[:, :, :1], 3, axis=2) if channels != 4 else rgb
    predictor = SlidingWindowPredictor(DygraphForward(_pixel_model()), 32, 16)
    np.testing.assert_array_equal(predictor.predict(image), predictor.predict(expected))


def test_normalization_comes_from_the_test_transforms_of_the_config():
    from simplecv.api.preprocess import comm, segm
    from simplecv.core.config import import_config

    assert normalization_from_config(import_config('isaid.factseg')) == (IMAGENET_MEAN, IMAGENET_STD)
    config = AttrDict(
        data=dict(
            test=dict(params=dict(transforms=[segm.ToTensor(True), comm.THMeanStdNormalize((1, 2, 3), (4, 5, 6))]))
        )
    )
    assert normalization_from_config(config) == ((1, 2, 3), (4, 5, 6))


@pytest.mark.parametrize(
    'data, problem',
    [
        (dict(), 'is missing'),
        (dict(train=dict(params=dict(transforms=[]))), 'is missing'),
        (
            dict(test=dict(params=dict(transforms=[dict(type='THMeanStdNormalize', mean=(1, 2, 3), std=(1, 1, 1))]))),
            'holds no THMeanStdNormalize',
        ),
    ],
)
def test_normalization_without_test_transforms_is_a_config_error(data, problem):
    with pytest.raises(
        ConfigError, match=r"'data\.test\.params\.transforms' %s; add comm\.THMeanStdNormalize" % problem
    ):
        normalization_from_config(AttrDict(data=data))


def test_errors_in_the_reading_thread_reach_the_caller():
    class Broken:
        height, width = 64, 64

        def read_rows(self, y1, y2):
            raise OSError('disk gone')

    predictor = SlidingWindowPredictor(DygraphForward(_pixel_model()), 32, 32)
    with pytest.raises(OSError, match='disk gone'):
        list(predictor.predict_bands(Broken()))


def _pixel_model():
    from tests.eval.conftest import PixelModel

    return PixelModel()


def test_large_images_are_read_in_strips_and_bands_stream_out_before_the_end(random_image):
    # Memory bound: the source is asked for at most one window row of rows at a time, and the
    # first labels are handed out before the bottom of the image has been read.
    pixels = random_image(300, 80)

    class Recording:
        height, width = pixels.shape[:2]
        requests = []

        def read_rows(self, y1, y2):
            self.requests.append((y1, y2))
            return pixels[y1:y2]

    source = Recording()
    predictor = SlidingWindowPredictor(DygraphForward(_pixel_model()), 64, 32, prefetch=False)
    bands = predictor.predict_bands(source)
    first = next(bands)
    assert first[:2] == (0, 32) and max(y2 for _, y2 in source.requests) < 300
    rest = list(bands)
    assert all(y2 - y1 == 64 for y1, y2 in source.requests) and rest[-1][1] == 300
    assert len(source.requests) == len(set(predictor.windows(300, 80)[:, 1].tolist()))


@pytest.mark.parametrize(
    'size, patch, stride',
    [
        ((131, 613), 64, 24),  # rows shared with the next window row (40) outnumber the final ones (24); 3 carry chunks
        ((64, 300), 64, 40),  # exactly one window row
        ((40, 700), 64, 48),  # shorter than a window, wide
        ((300, 45), 64, 64),  # narrower than a window, windows touching without overlap
        ((97, 301), 96, 50),  # odd sizes, a window that is not a multiple of 32 (padded)
    ],
)
def test_memory_bounded_sweep_equals_the_full_image_accumulation(tiny_factseg, random_image, size, patch, stride):
    image = random_image(*size, seed=sum(size))
    forward = DygraphForward(tiny_factseg)
    reference_probs, reference_labels = predict_per_window(forward, image, (patch, patch), stride)
    predictor = SlidingWindowPredictor(forward, patch, stride, batch_size=16)
    labels, probs = predictor.predict(image, with_probabilities=True)
    np.testing.assert_array_equal(probs, reference_probs)
    np.testing.assert_array_equal(labels, reference_labels)


def test_sweep_memory_grows_with_the_shared_rows_not_the_image(random_image):
    # A NumPy model, so that tracemalloc sees every array: the sums kept for a 600 x 3000 image
    # must stay far below the official 16 x H x W float32 map (115 MB).
    import tracemalloc

    def forward(batch):
        logits = np.tile(batch[:, :1], (1, 16, 1, 1)) * np.arange(1, 17, dtype=np.float32).reshape(1, 16, 1, 1)
        return np.exp(logits - logits.max(axis=1, keepdims=True))

    image = random_image(600, 3000)
    predictor = SlidingWindowPredictor(forward, 64, 32, batch_size=8, prefetch=False)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        for _ in predictor.predict_bands(ArrayImage(image)):
            pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    carry, full = 16 * (64 - 32) * 3000 * 4, 16 * 600 * 3000 * 4
    assert peak < 3 * carry and 3 * carry < full / 6
