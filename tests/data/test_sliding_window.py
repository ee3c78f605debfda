import numpy as np
import pytest

from simplecv.data.sliding_window import sliding_window


def _boxes(xs, ys, kw, kh):
    return [[x, y, x + kw, y + kh] for y in ys for x in xs]


@pytest.mark.parametrize(
    'size, expected',
    [
        ((800, 800), [[0, 0, 800, 800]]),
        ((896, 896), [[0, 0, 896, 896]]),
        ((897, 1000), _boxes([0, 104], [0, 1], 896, 896)),
        ((1408, 1408), _boxes([0, 512], [0, 512], 896, 896)),
        ((2000, 3000), _boxes([0, 512, 1024, 1536, 2048, 2104], [0, 512, 1024, 1104], 896, 896)),
        ((500, 1000), _boxes([0, 104], [0], 896, 500)),
    ],
)
def test_windows_match_hand_computed_lists(size, expected):
    boxes = sliding_window(size, (896, 896), 512)
    assert boxes.dtype == np.int64
    np.testing.assert_array_equal(boxes, np.asarray(expected))


@pytest.mark.parametrize(
    'size, count',
    [((800, 800), 1), ((896, 896), 1), ((897, 1000), 4), ((1408, 1408), 4), ((2000, 3000), 24), ((4000, 4000), 64)],
)
def test_window_counts(size, count):
    assert len(sliding_window(size, (896, 896), 512)) == count


@pytest.mark.parametrize(
    'size, kernel, stride', [((37, 53), (16, 8), 5), ((10, 10), (3, 3), 3), ((64, 9), (64, 20), 7)]
)
def test_windows_cover_every_pixel_once_placed_and_unique(size, kernel, stride):
    boxes = sliding_window(size, kernel, stride)
    cover = np.zeros(size, dtype=int)
    kh, kw = min(kernel[0], size[0]), min(kernel[1], size[1])
    for x1, y1, x2, y2 in boxes:
        assert (y2 - y1, x2 - x1) == (kh, kw)
        assert 0 <= x1 and 0 <= y1 and x2 <= size[1] and y2 <= size[0]
        cover[y1:y2, x1:x2] += 1
    assert cover.min() >= 1
    assert len({tuple(b) for b in boxes.tolist()}) == len(boxes)
    # Row-major: y outer, x inner.
    assert boxes[:, [1, 0]].tolist() == sorted(boxes[:, [1, 0]].tolist())


def test_square_kernel_may_be_one_int():
    np.testing.assert_array_equal(sliding_window((1408, 1408), 896, 512), sliding_window((1408, 1408), (896, 896), 512))


@pytest.mark.parametrize(
    'kwargs, match',
    [
        (dict(input_size=(0, 10), kernel_size=(4, 4), stride=2), 'input_size'),
        (dict(input_size=(10, 10), kernel_size=(4, -1), stride=2), 'kernel_size'),
        (dict(input_size=(10, 10), kernel_size=(4, 4), stride=0), 'stride'),
        (dict(input_size=(10, 10), kernel_size=(4, 4), stride=2.5), 'stride'),
        (dict(input_size=(10.0, 10), kernel_size=(4, 4), stride=2), 'input_size'),
        (dict(input_size=(10, 10, 3), kernel_size=(4, 4), stride=2), 'input_size'),
        (dict(input_size=(10, 10), kernel_size=None, stride=2), 'kernel_size'),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sliding_window(**kwargs)
