import numpy as np
from PIL import Image

from simplecv.io.writers import palette_bytes, save_label_png, save_palette_png

COLORS = [(0, 0, 0), (0, 0, 63), (0, 191, 127)]


def test_palette_png_holds_labels_and_shows_colours(tmp_path):
    labels = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    save_palette_png(str(tmp_path / 'sub' / 'p.png'), labels, COLORS)
    save_label_png(str(tmp_path / 'l.png'), labels)
    with Image.open(tmp_path / 'sub' / 'p.png') as image:
        assert image.mode == 'P'
        np.testing.assert_array_equal(np.asarray(image), labels)
        np.testing.assert_array_equal(np.asarray(image.convert('RGB'))[1, 0], COLORS[2])
    with Image.open(tmp_path / 'l.png') as image:
        assert image.mode == 'L'
        np.testing.assert_array_equal(np.asarray(image), labels)


def test_palette_bytes_pads_to_256_colours():
    flat = palette_bytes(COLORS)
    assert len(flat) == 768 and flat[6:9] == list(COLORS[2]) and not any(flat[9:])
