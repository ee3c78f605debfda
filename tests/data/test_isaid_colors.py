import copy
import pickle
from collections import OrderedDict

import numpy as np
import pytest

from data.isaid import CLASS_NAMES, COLOR_MAP, DEVKIT_CLASS_NAMES, RemoveColorMap, colorize, decode_color_mask

PALETTE = np.asarray(COLOR_MAP, dtype=np.uint8)


def test_class_table_is_factseg_order():
    assert len(CLASS_NAMES) == len(COLOR_MAP) == 16
    assert len(set(COLOR_MAP)) == 16
    assert CLASS_NAMES[2] == 'storage_tank' and COLOR_MAP[2] == (0, 191, 127)
    assert CLASS_NAMES[12] == 'roundabout' and COLOR_MAP[12] == (0, 63, 63)
    assert DEVKIT_CLASS_NAMES[2] == 'roundabout' and DEVKIT_CLASS_NAMES[12] == 'storage_tank'
    assert COLOR_MAP[9] == (0, 0, 127) and CLASS_NAMES[9] == 'small_vehicle'
    # The official colour hash of each table colour (spec §7.2).
    keys = [r + 2 * g + 3 * b for r, g, b in COLOR_MAP]
    assert keys == [0, 189, 763, 126, 507, 699, 891, 443, 635, 381, 573, 765, 315, 827, 1019, 665]


def test_every_table_colour_decodes_to_its_index():
    label = np.arange(16, dtype=np.uint8).reshape(4, 4)
    for unknown in ('ignore', 'background'):
        for match in ('exact', 'hash'):
            np.testing.assert_array_equal(decode_color_mask(PALETTE[label], unknown, match), label)


def _mask_with(colors):
    return np.asarray(colors, dtype=np.uint8).reshape(1, -1, 3)


@pytest.mark.parametrize(
    'unknown, match, expected',
    [
        # (189, 0, 0) collides with ship's hash 189; (5, 5, 5) hashes to 30, matching nothing.
        ('ignore', 'exact', [1, 255, 255]),
        ('background', 'exact', [1, 0, 0]),
        ('background', 'hash', [1, 1, 0]),  # the official behaviour
        ('ignore', 'hash', [1, 1, 255]),
    ],
)
def test_unknown_colours_in_every_mode(unknown, match, expected):
    mask = _mask_with([(0, 0, 63), (189, 0, 0), (5, 5, 5)])
    label, count, examples = RemoveColorMap(unknown=unknown, match=match).decode(mask)
    assert label.dtype == np.uint8
    assert label.ravel().tolist() == expected
    assert count == 2 and sorted(examples) == [(5, 5, 5), (189, 0, 0)]


def test_unknown_examples_are_most_frequent_first():
    mask = _mask_with([(9, 9, 9)] * 3 + [(1, 2, 3)] + [(0, 0, 0)] * 2)
    _, count, examples = RemoveColorMap().decode(mask)
    assert count == 4 and examples == [(9, 9, 9), (1, 2, 3)]


def test_official_ordered_dict_and_alpha_channel_accepted():
    official = OrderedDict(zip(CLASS_NAMES, COLOR_MAP, strict=True))
    rgba = np.concatenate([PALETTE[[3, 14]].reshape(1, 2, 3), np.full((1, 2, 1), 7, np.uint8)], axis=-1)
    label, count, _ = RemoveColorMap(official).decode(rgba)
    assert label.tolist() == [[3, 14]] and count == 0


def test_transform_passes_label_masks_through_and_decodes_colour_masks():
    image = np.zeros((1, 2, 3), np.uint8)
    label = np.array([[4, 255]], np.uint8)
    out_image, out = RemoveColorMap()(image, label)
    assert out is label and out_image is image
    _, decoded = RemoveColorMap()(image, PALETTE[[[4, 5]]])
    assert decoded.tolist() == [[4, 5]]


def test_bad_options_raise():
    with pytest.raises(ValueError, match='unknown'):
        RemoveColorMap(unknown='zero')
    with pytest.raises(ValueError, match='match'):
        RemoveColorMap(match='fuzzy')
    with pytest.raises(ValueError, match='uint8'):
        RemoveColorMap().decode(np.zeros((2, 2), np.uint8))


def test_copies_do_not_carry_the_lookup_table():
    decoder = RemoveColorMap(unknown='background')
    decoder.decode(PALETTE[None, :2])
    for clone in (copy.deepcopy(decoder), pickle.loads(pickle.dumps(decoder))):
        assert clone._lut is None and clone.unknown == 'background'
        assert clone.decode(_mask_with([(1, 1, 1)]))[0].tolist() == [[0]]


def test_colorize_round_trips_and_paints_ignore_white():
    label = np.array([[0, 1, 15], [255, 12, 2]], np.int64)
    rgb = colorize(label)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    assert tuple(rgb[1, 0]) == (255, 255, 255) and tuple(rgb[1, 1]) == (0, 63, 63)
    np.testing.assert_array_equal(decode_color_mask(rgb), label)


@pytest.mark.parametrize('value', [16, 254, -1, 256])
def test_colorize_rejects_values_outside_the_table(value):
    with pytest.raises(ValueError, match=str(value)):
        colorize(np.array([[0, value]]))
