import json

import numpy as np
import pytest

from simplecv.core.errors import DataError
from simplecv.metric.miou import MeanIoU, confusion_matrix, iou_per_class


def test_confusion_matrix_matches_hand_count():
    y_true = np.array([[0, 0, 1], [1, 2, 2]])
    y_pred = np.array([[0, 1, 1], [1, 2, 0]])
    # rows ground truth, columns prediction
    expected = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    matrix = confusion_matrix(y_true, y_pred, 3)
    assert matrix.dtype == np.int64
    np.testing.assert_array_equal(matrix, expected)
    # IoU_c = tp / (row + col - tp): class 0: 1/(2+2-1), class 1: 2/(2+3-2), class 2: 1/(2+1-1)
    np.testing.assert_allclose(iou_per_class(matrix), [1 / 3, 2 / 3, 1 / 2])


def test_ignore_index_255_is_left_out_not_an_error():
    y_true = np.array([0, 255, 1, 255], dtype=np.uint8)
    y_pred = np.array([0, 1, 1, 0], dtype=np.uint8)
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, 2), [[1, 0], [0, 1]])
    metric = MeanIoU(2)
    metric.update(y_true, y_pred)
    assert metric.summary().miou == 1.0 and metric.matrix.sum() == 2


@pytest.mark.parametrize(
    'y_true, y_pred, match',
    [
        (np.array([0, 16]), np.array([0, 0]), r'ground truth holds values \[16\]'),
        (np.array([0, 1]), np.array([0, 255]), r'prediction holds values \[255\]'),
        (np.array([0, -1]), np.array([0, 0]), r'ground truth holds values \[-1\]'),
    ],
)
def test_labels_out_of_range_are_clear_errors(y_true, y_pred, match):
    with pytest.raises(DataError, match=match):
        confusion_matrix(y_true, y_pred, 16)


def test_shape_mismatch_is_an_error():
    with pytest.raises(DataError, match='differ in shape'):
        confusion_matrix(np.zeros((2, 3)), np.zeros((3, 2)), 4)


def test_miou_includes_background_and_fg_excludes_it_absent_classes_are_nan():
    metric = MeanIoU(4, class_names=['background', 'a', 'b', 'c'])
    # class 3 appears in neither ground truth nor prediction -> NaN, skipped by the means
    metric.update(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 2]))
    result = metric.summary()
    np.testing.assert_allclose(result.ious[:3], [1 / 2, 1 / 2, 1.0])
    assert np.isnan(result.ious[3]) and result.num_valid_classes == 3
    assert result.miou == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert result.miou_fg == pytest.approx((0.5 + 1.0) / 2)
    table = metric.table()
    assert 'background' in table and 'n/a' in table and '0.6667' in table and '0.7500' in table
    data = metric.to_dict()
    json.dumps(data)
    assert data['iou']['c'] is None and data['confusion_matrix'][0] == [1, 1, 0, 0]


def test_counts_accumulate_over_images_in_int64_without_float32_saturation():
    metric = MeanIoU(2)
    big = np.zeros(2**24 + 1000, dtype=np.uint8)  # float32 counts would stop at 2**24
    for _ in range(2):
        metric.update(big, big)
    assert metric.matrix[0, 0] == 2 * (2**24 + 1000)
    metric.reset()
    assert metric.matrix.sum() == 0
