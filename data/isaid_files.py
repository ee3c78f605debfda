"""Finding, checking and decoding the PNG files of an iSAID split.

Shared by the training data set and the evaluator, so both accept and refuse the same files:

- ``find_pairs``: the sorted image list and each image's mask path;
- ``check_pair``: header checks (complete PNG, usable pixel format, equal sizes), no decoding;
- ``load_image`` / ``load_mask``: full decoding, with errors that name the file.

Images may be RGB, greyscale (converted to RGB), RGBA (alpha dropped) or palette PNGs; 16-bit
images are refused. Colour masks may be RGB, RGBA or palette PNGs; label masks greyscale (8 or
16 bit) or palette PNGs, read as their indices.
"""
import os
import zlib
from collections import namedtuple

import numpy as np
from PIL import Image

from simplecv.core.errors import DataError

COLOR_MASK_MARK = '_instance_color_RGB'
LABEL_MASK_MARK = '_label'
COLOR_MASK_SUFFIX = COLOR_MASK_MARK + '.png'
LABEL_MASK_SUFFIX = LABEL_MASK_MARK + '.png'
# Name endings (before the extension) of files that the iSAID masks folder, or a folder shared
# by images and masks, may hold and that are not images.
NON_IMAGE_MARKS = (COLOR_MASK_MARK, '_instance_id_RGB', LABEL_MASK_MARK)
MASK_FORMATS = ('color', 'label')

PngHeader = namedtuple('PngHeader', 'width height bit_depth color_type')
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_IEND = b'IEND\xaeB`\x82'
_COLOR_TYPES = {0: 'greyscale', 2: 'RGB', 3: 'palette', 4: 'greyscale+alpha', 6: 'RGBA'}


def read_png_header(path):
    """Read a PNG's size and pixel format without decoding it, and check it is complete.

    Reads the first 33 bytes (signature and IHDR chunk) and the last 4 KiB, which must hold the
    IEND chunk, so a file cut short by an interrupted copy is caught at once.

    Args:
        path: the PNG file.

    Returns:
        PngHeader: ``(width, height, bit_depth, color_type)`` with the PNG colour type code
        (0 greyscale, 2 RGB, 3 palette, 4 greyscale+alpha, 6 RGBA).

    Raises:
        DataError: the file cannot be read, is not a PNG, or is truncated.
    """
    try:
        with open(path, 'rb') as stream:
            head = stream.read(33)
            size = stream.seek(0, os.SEEK_END)
            stream.seek(max(0, size - 4096))
            tail = stream.read()
    except OSError as error:
        raise DataError('cannot read %s: %s' % (path, error)) from None
    if len(head) < 33 or head[:8] != _PNG_SIGNATURE or head[12:16] != b'IHDR':
        raise DataError('%s is not a PNG file (bad signature); convert it to PNG or remove it' % path)
    if _PNG_IEND not in tail:
        raise DataError('%s is truncated (no IEND chunk at the end of its %d bytes); copy or extract '
                        'the file again' % (path, size))
    width, height = int.from_bytes(head[16:20], 'big'), int.from_bytes(head[20:24], 'big')
    return PngHeader(width, height, head[24], head[25])


def _check_folder(folder, what, content):
    if not os.path.isdir(folder):
        raise DataError('%s %s is not a folder; point %s at the folder of %s'
                        % (what, os.path.abspath(folder), what, content))


def _mask_path(image_path, mask_dir, mask_format):
    name = os.path.basename(image_path)
    stem, extension = os.path.splitext(name)
    if mask_format == 'color':
        candidates = [stem + COLOR_MASK_MARK + extension]
    else:
        candidates = [stem + LABEL_MASK_MARK + extension, name]
    for candidate in candidates:
        path = os.path.join(mask_dir, candidate)
        if os.path.isfile(path) and not os.path.samefile(path, image_path):
            return path
    hint = ('' if mask_format == 'label' else
            "; if your masks are single-channel label images, set mask_format='label' "
            "(isaid_eval.py: --mask_format label)")
    raise DataError('image %s has no mask: expected %s%s' % (
        os.path.abspath(image_path), ' or '.join(os.path.abspath(os.path.join(mask_dir, c)) for c in candidates),
        hint))


def find_pairs(image_dir, mask_dir, mask_format='color', extensions=('.png',)):
    """List the images of a split, sorted by name, with their masks.

    Images are the files of ``image_dir`` with one of ``extensions`` (any case), except names
    ending in ``_instance_color_RGB``, ``_instance_id_RGB`` or ``_label`` before the extension.
    The mask of ``<name>.<ext>`` is ``mask_dir/<name>_instance_color_RGB.<ext>``
    (``mask_format='color'``), or ``mask_dir/<name>_label.<ext>`` if it exists, else
    ``mask_dir/<name>.<ext>`` (``'label'``).

    Args:
        image_dir: folder of the images.
        mask_dir: folder of the masks, or None to list images only.
        mask_format: ``'color'`` or ``'label'``.
        extensions: lower-case image extensions with the dot; the training data set reads PNG
            only, the evaluator every format of :mod:`simplecv.util.raster_io`.

    Returns:
        list: ``(image_path, mask_path)`` tuples; ``mask_path`` is None without ``mask_dir``.

    Raises:
        DataError: a folder is missing, there is no image, or an image has no mask.
    """
    if mask_format not in MASK_FORMATS:
        raise ValueError("mask_format must be 'color' or 'label', got %r" % (mask_format,))
    _check_folder(image_dir, 'image_dir', 'images')
    if mask_dir is not None:
        _check_folder(mask_dir, 'mask_dir', 'masks')
    names = []
    for name in sorted(os.listdir(image_dir)):
        stem, extension = os.path.splitext(name)
        if extension.lower() in extensions and not stem.endswith(NON_IMAGE_MARKS):
            names.append(name)
    if not names:
        raise DataError('no <name>%s images in %s; expected the iSAID layout <split>/images/<name>%s '
                        'with masks in <split>/masks' % ('|'.join(extensions), os.path.abspath(image_dir),
                                                          extensions[0]))
    pairs = []
    for name in names:
        image_path = os.path.join(image_dir, name)
        pairs.append((image_path, None if mask_dir is None else _mask_path(image_path, mask_dir, mask_format)))
    return pairs


def check_pair(image_path, mask_path, mask_format='color'):
    """Check an image and its mask from their headers only.

    Args:
        image_path: the image PNG.
        mask_path: its mask PNG, or None to check the image alone.
        mask_format: ``'color'`` or ``'label'``.

    Returns:
        tuple: the image size ``(H, W)``.

    Raises:
        DataError: a file is not a complete PNG, the image is 16-bit, the mask has the wrong
        number of channels for ``mask_format``, or the sizes differ.
    """
    image = read_png_header(image_path)
    if image.bit_depth > 8:
        raise DataError('%s is a %d-bit %s image; convert it to 8-bit RGB'
                        % (image_path, image.bit_depth, _COLOR_TYPES.get(image.color_type, '?')))
    if mask_path is None:
        return image.height, image.width
    mask = read_png_header(mask_path)
    if mask_format == 'color':
        if mask.color_type in (0, 4):
            raise DataError("%s is a single-channel mask, not an iSAID colour mask; if it holds class "
                            "indices set mask_format='label'" % mask_path)
        if mask.bit_depth > 8:
            raise DataError('%s is a %d-bit colour mask; save it as 8-bit RGB' % (mask_path, mask.bit_depth))
    elif mask.color_type not in (0, 3):
        raise DataError("%s is a %s mask, not a single-channel label PNG; for iSAID colour masks set "
                        "mask_format='color'" % (mask_path, _COLOR_TYPES.get(mask.color_type, '?')))
    if (image.width, image.height) != (mask.width, mask.height):
        raise DataError('%s is %dx%d but its mask %s is %dx%d (width x height); the mask must match its image'
                        % (image_path, image.width, image.height, mask_path, mask.width, mask.height))
    return image.height, image.width


def _decode_png(path, mode):
    try:
        with Image.open(path) as image:
            if mode is not None and image.mode != mode:
                image = image.convert(mode)
            return np.asarray(image)
    except FileNotFoundError:
        raise DataError('%s no longer exists (removed or renamed after the data set was listed); restore it, '
                        'or remove its image and mask from the split and start a new run' % path) from None
    except PermissionError:
        raise DataError('%s cannot be read (permission denied); make it readable (chmod a+r)' % path) from None
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error) as error:
        raise DataError('cannot decode %s (%s: %s); the file is damaged, replace it'
                        % (path, type(error).__name__, error)) from None


def load_image(path):
    """Decode an image PNG to RGB.

    Returns:
        np.ndarray: ``(H, W, 3)`` uint8.

    Raises:
        DataError: the file cannot be decoded.
    """
    return _decode_png(path, 'RGB')


def load_mask(path, mask_format='color', num_classes=16, ignore_index=255):
    """Decode a mask PNG without interpreting colours.

    Args:
        path: the mask PNG.
        mask_format: ``'color'`` returns the RGB colours, ``'label'`` the label values.
        num_classes: label masks may hold ``0..num_classes-1`` and ``ignore_index``.
        ignore_index: the ignore label.

    Returns:
        np.ndarray: ``(H, W, 3)`` uint8 colours, or ``(H, W)`` uint8 labels.

    Raises:
        DataError: the file cannot be decoded, or a label mask holds other values.
    """
    if mask_format == 'color':
        return _decode_png(path, 'RGB')
    label = _decode_png(path, None)
    bad = (label >= num_classes) & (label != ignore_index)
    if bad.any():
        raise DataError('%s holds label values %s outside 0..%d and %d; relabel it in FactSeg class order'
                        % (path, np.unique(label[bad])[:10].tolist(), num_classes - 1, ignore_index))
    return label.astype(np.uint8)
