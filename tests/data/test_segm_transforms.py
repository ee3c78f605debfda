import random

import numpy as np
import pytest
from PIL import Image

from data.isaid import IMAGENET_MEAN, IMAGENET_STD
from simplecv.api.preprocess import comm, segm

H, W = 6, 9


def _coordinate_pair():
    """An image whose pixels encode their (y, x) position, and a mask derived from it."""
    ys, xs = np.mgrid[0:H, 0:W]
    image = np.stack([ys, xs, np.full_like(ys, 7)], axis=-1).astype(np.uint8)
    mask = (ys * W + xs).astype(np.uint8)
    return image, mask


def _assert_aligned(image, mask):
    np.testing.assert_array_equal(mask, image[..., 0].astype(int) * W + image[..., 1])


@pytest.mark.parametrize(
    'transform, reference',
    [
        (segm.RandomHorizontalFlip(1.0), lambda a: a[:, ::-1]),
        (segm.RandomVerticalFlip(1.0), lambda a: a[::-1]),
        (segm.RandomRotate90K((1,)), lambda a: np.rot90(a, 1)),
        (segm.RandomRotate90K((2,)), lambda a: np.rot90(a, 2)),
        (segm.RandomRotate90K((3,)), lambda a: np.rot90(a, 3)),
    ],
)
def test_geometric_transforms_keep_image_and_mask_aligned(transform, reference):
    image, mask = _coordinate_pair()
    out_image, out_mask = transform(image, mask)
    _assert_aligned(out_image, out_mask)
    np.testing.assert_array_equal(out_image, reference(image))
    np.testing.assert_array_equal(out_mask, reference(mask))


@pytest.mark.parametrize('k', [1, 2, 3])
def test_rotation_is_counter_clockwise_like_pil_expand(k):
    image, mask = _coordinate_pair()
    out_image, out_mask = segm.RandomRotate90K((k,))(image, mask)
    pil = np.asarray(Image.fromarray(mask).rotate(90 * k, expand=True))
    np.testing.assert_array_equal(out_mask, pil)
    if k == 1:
        # The top-right pixel moves to the top-left corner; height and width swap.
        assert out_mask.shape == (W, H) and out_mask[0, 0] == mask[0, W - 1]


def test_flips_match_pil():
    _, mask = _coordinate_pair()
    np.testing.assert_array_equal(
        segm.RandomHorizontalFlip(1.0)(mask, mask)[1],
        np.asarray(Image.fromarray(mask).transpose(Image.FLIP_LEFT_RIGHT)),
    )
    np.testing.assert_array_equal(
        segm.RandomVerticalFlip(1.0)(mask, mask)[1], np.asarray(Image.fromarray(mask).transpose(Image.FLIP_TOP_BOTTOM))
    )


def test_random_chain_keeps_alignment_for_many_seeds():
    chain = comm.Compose(
        [segm.RandomHorizontalFlip(0.5), segm.RandomVerticalFlip(0.5), segm.RandomRotate90K((0, 1, 2, 3))]
    )
    seen = set()
    for seed in range(40):
        random.seed(seed)
        out_image, out_mask = chain(*_coordinate_pair())
        _assert_aligned(out_image, out_mask)
        seen.add(out_mask.tobytes())
    assert len(seen) == 8  # all 8 flip/rotation combinations (the dihedral group) occur


def test_probability_zero_never_flips():
    image, mask = _coordinate_pair()
    for _ in range(10):
        out_image, out_mask = segm.RandomHorizontalFlip(0.0)(image, mask)
        np.testing.assert_array_equal(out_mask, mask)


def test_transforms_accept_image_only():
    image, _ = _coordinate_pair()
    out = comm.Compose([segm.RandomHorizontalFlip(1.0), segm.FixedPad((8, 10)), segm.ToTensor(True)])(image)
    assert out.shape == (3, 8, 10)
    np.testing.assert_array_equal(out[1, :H, :W], image[:, ::-1, 1])


def test_fixed_pad_fills_bottom_right_image_zero_mask_255():
    image, mask = _coordinate_pair()
    out_image, out_mask = segm.FixedPad((8, 12), 255)(image, mask)
    assert out_image.shape == (8, 12, 3) and out_mask.shape == (8, 12)
    np.testing.assert_array_equal(out_image[:H, :W], image)
    np.testing.assert_array_equal(out_mask[:H, :W], mask)
    assert (out_image[H:] == 0).all() and (out_image[:, W:] == 0).all()
    assert (out_mask[H:] == 255).all() and (out_mask[:, W:] == 255).all()


def test_fixed_pad_refuses_larger_input():
    image, mask = _coordinate_pair()
    with pytest.raises(ValueError, match='does not fit'):
        segm.FixedPad((H, W - 1))(image, mask)


def test_padding_becomes_minus_mean_over_std_after_normalisation():
    image, mask = _coordinate_pair()
    chain = comm.Compose(
        [segm.FixedPad((8, 12), 255), segm.ToTensor(True), comm.THMeanStdNormalize(IMAGENET_MEAN, IMAGENET_STD)]
    )
    out_image, out_mask = chain(image, mask)
    expected = -np.asarray(IMAGENET_MEAN, np.float32) / np.asarray(IMAGENET_STD, np.float32)
    np.testing.assert_allclose(out_image[:, 7, 11], expected, rtol=1e-6)
    np.testing.assert_allclose(expected, (-2.1179, -2.0357, -1.8044), atol=1e-4)
    assert out_mask.dtype == np.int64 and out_mask[7, 11] == 255


@pytest.mark.parametrize('shape, expected', [((33, 64), (64, 64)), ((64, 64), (64, 64)), ((1, 31), (32, 32))])
def test_divisible_pad(shape, expected):
    image = np.full(shape + (3,), 9, np.uint8)
    mask = np.ones(shape, np.uint8)
    out_image, out_mask = segm.DivisiblePad(32, 255)(image, mask)
    assert out_image.shape[:2] == expected and out_mask.shape == expected
    assert (out_image[: shape[0], : shape[1]] == 9).all() and (out_mask[: shape[0], : shape[1]] == 1).all()
    assert out_image[shape[0] :].sum() == 0 and (out_mask[shape[0] :] == 255).all()


def test_to_tensor_layout_range_and_dtypes():
    image, mask = _coordinate_pair()
    chw, out_mask = segm.ToTensor(True)(image, mask)
    assert chw.dtype == np.float32 and chw.shape == (3, H, W) and chw.flags.c_contiguous
    np.testing.assert_array_equal(chw, image.transpose(2, 0, 1).astype(np.float32))
    assert out_mask.dtype == np.int64
    np.testing.assert_array_equal(out_mask, mask)
    scaled = segm.ToTensor()(image)
    np.testing.assert_allclose(scaled, image.transpose(2, 0, 1) / np.float32(255.0), rtol=0)


def test_normalize_is_float32_subtract_then_divide():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (3, 4, 5)).astype(np.float32)
    out = comm.THMeanStdNormalize(IMAGENET_MEAN, IMAGENET_STD)(image)
    mean = np.asarray(IMAGENET_MEAN, np.float32)[:, None, None]
    std = np.asarray(IMAGENET_STD, np.float32)[:, None, None]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, (image - mean) / std)


def test_compose_of_none_is_identity():
    image, mask = _coordinate_pair()
    out_image, out_mask = comm.Compose(None)(image, mask)
    assert out_image is image and out_mask is mask
