"""Finding images and their masks in folders, and checking every pair before any model is built.

The way a data set names its masks after its images is a :class:`MaskNaming`, given by the
caller. :func:`list_pairs` lists the images of a folder (or one image file), finds each one's
mask and checks both files from their headers (format, completeness, pixel format, equal sizes),
so that a bad file stops a run at once with a message naming it; the pixels are decoded later,
by :meth:`ImagePair.open` or :meth:`ImagePair.read`.
"""

import os
from collections import namedtuple

from simplecv.core.errors import DataError
from simplecv.io.images import IMAGE_EXTENSIONS, check_image_header, is_geotiff, open_image, read_header, vanished_error
from simplecv.io.masks import check_mask_format, check_mask_header, open_mask

MaskNaming = namedtuple('MaskNaming', 'color label not_images')
MaskNaming.__doc__ = """How a data set names the mask of ``<stem><ext>``: ``mask_dir/<stem><mark><ext>``.

Attributes:
    color: name marks of colour masks, tried in order (``''``: the image's own name).
    label: name marks of label masks, tried in order.
    not_images: name marks (before the extension) of files that an image folder may hold and
        that are not images (masks or instance maps kept next to the images).
"""
SAME_NAME = MaskNaming(color=('',), label=('',), not_images=())


def _check_folder(folder, what, content):
    if not os.path.isdir(folder):
        raise DataError(
            '%s %s is not a folder; point %s at the folder of %s' % (what, os.path.abspath(folder), what, content)
        )


def find_images(path, naming=SAME_NAME):
    """List the images of a folder sorted by name, or one image file.

    The images of a folder are its files with one of :data:`simplecv.io.images.IMAGE_EXTENSIONS`
    (any case) whose name does not end in one of ``naming.not_images`` before the extension.

    Args:
        path: a folder, or one image file (returned as it is, checked when it is opened).
        naming: the :class:`MaskNaming` whose ``not_images`` marks are skipped.

    Returns:
        list: image paths.

    Raises:
        DataError: ``path`` is neither a file nor a folder, or the folder holds no image.
    """
    if os.path.isfile(path):
        return [path]
    _check_folder(path, 'image_dir', 'images')
    names = sorted(os.listdir(path))
    images = []
    for name in names:
        stem, extension = os.path.splitext(name)
        if extension.lower() in IMAGE_EXTENSIONS and not (naming.not_images and stem.endswith(naming.not_images)):
            images.append(os.path.join(path, name))
    if not images:
        others = [name for name in names if not os.path.isdir(os.path.join(path, name))]
        holds = (
            'it holds no file'
            if not others
            else 'it holds %d other file%s: %s'
            % (
                len(others),
                's' if len(others) > 1 else '',
                ', '.join(others[:3]) + (', ...' if len(others) > 3 else ''),
            )
        )
        raise DataError(
            'no <name>%s images in %s (%s); put the images there, in one of these formats'
            % ('|'.join(IMAGE_EXTENSIONS), os.path.abspath(path), holds)
        )
    return images


def find_mask(image_path, mask_dir, mask_format='color', naming=SAME_NAME):
    """Find the mask of an image: ``mask_dir/<stem><mark><ext>`` for the marks of ``naming``.

    Args:
        image_path: the image.
        mask_dir: the folder of the masks.
        mask_format: ``'color'`` or ``'label'``: which marks of ``naming`` are tried, in order.
        naming: the :class:`MaskNaming`.

    Returns:
        str: the first candidate that exists (and is not the image itself).

    Raises:
        DataError: there is no candidate, naming them all.
    """
    stem, extension = os.path.splitext(os.path.basename(image_path))
    marks = naming.color if mask_format == 'color' else naming.label
    candidates = [os.path.join(mask_dir, stem + mark + extension) for mark in marks]
    for candidate in candidates:
        if os.path.isfile(candidate) and not os.path.samefile(candidate, image_path):
            return candidate
    hint = (
        ''
        if mask_format == 'label'
        else "; if the masks are single-channel label images, set mask_format='label' (--mask_format label)"
    )
    raise DataError(
        'image %s has no mask: expected %s%s'
        % (os.path.abspath(image_path), ' or '.join(os.path.abspath(c) for c in candidates), hint)
    )


class ImagePair:
    """An image and its mask (or the image alone), checked from their headers when built.

    Checks: both files are supported, complete and in the format of their extension, the image
    is 8-bit, the mask's pixel format fits ``mask_format`` and its size is the image's.

    Args:
        image_path: the image.
        mask_path: its mask, or None.
        mask_format: ``'color'`` or ``'label'``.
        decode_color: the colour decoder of ``'color'`` masks, see
            :class:`simplecv.io.masks.MaskFile`.
        num_classes: the number of classes label masks may hold; None allows 0..255.
        ignore_index: the label of ignored pixels.

    Attributes:
        image_path, mask_path: the files.
        name: the image's file name without extension.
        height, width: the image size.
        geotiff: whether the image is a TIFF/GeoTIFF (read by rows, predictions written as GeoTIFF).

    Raises:
        DataError: naming the file and the fix, for every check above.
    """

    def __init__(
        self, image_path, mask_path=None, mask_format='color', decode_color=None, num_classes=None, ignore_index=255
    ):
        check_mask_format(mask_format)
        self.image_path = image_path
        self.mask_path = mask_path
        # open_mask's decoding arguments after the path, kept for open().
        self._mask_decoding = (mask_format, decode_color, num_classes, ignore_index)
        self.name = os.path.splitext(os.path.basename(image_path))[0]
        self.geotiff = is_geotiff(image_path)
        image = read_header(image_path)
        check_image_header(image_path, image)
        self.height, self.width = image.height, image.width
        if mask_path is None:
            return
        mask = read_header(mask_path)
        check_mask_header(mask_path, mask, mask_format)
        if (mask.width, mask.height) != (image.width, image.height):
            raise DataError(
                '%s is %dx%d but its mask %s is %dx%d (width x height); the mask must match its image'
                % (image_path, image.width, image.height, mask_path, mask.width, mask.height)
            )

    def open(self):
        """Open the image and its mask and decode what must be decoded up front (a whole PNG).

        Suits a reader thread that prepares the next pair while the current one is predicted.

        Returns:
            tuple: ``(image, mask)``: a :class:`simplecv.io.images.RasterImage` and a
            :class:`simplecv.io.masks.MaskFile` (None without a mask), both with
            ``read_rows(y1, y2)`` and ``close()``.

        Raises:
            DataError: a file is gone, damaged, or a label mask holds other values.
        """
        for path in (self.image_path, self.mask_path):
            if path is not None and not os.path.exists(path):
                raise vanished_error(path)
        image = open_image(self.image_path).load()
        if self.mask_path is None:
            return image, None
        try:
            mask = open_mask(self.mask_path, *self._mask_decoding).load()
        except BaseException:
            image.close()
            raise
        return image, mask

    def read(self):
        """Decode the whole image and mask.

        Returns:
            tuple: ``(image (H, W, 3) uint8, labels (H, W) uint8)``; labels are None without a mask.

        Raises:
            DataError: as :meth:`open`.
        """
        image, mask = self.open()
        with image:
            pixels = image.read()
        if mask is None:
            return pixels, None
        with mask:
            return pixels, mask.read()

    def __repr__(self):
        return 'ImagePair(%r, %r)' % (self.image_path, self.mask_path)


def list_pairs(
    image_dir,
    mask_dir=None,
    mask_format='color',
    naming=SAME_NAME,
    decode_color=None,
    num_classes=None,
    ignore_index=255,
):
    """List and check the images of a folder (or one image file) and their masks.

    Args:
        image_dir: a folder of images, or one image file.
        mask_dir: the folder of the masks, or None to list images only.
        mask_format: ``'color'`` or ``'label'``.
        naming: the :class:`MaskNaming` of the data set.
        decode_color: the colour decoder of ``'color'`` masks, see
            :class:`simplecv.io.masks.MaskFile`.
        num_classes: the number of classes label masks may hold; None allows 0..255.
        ignore_index: the label of ignored pixels.

    Returns:
        list: :class:`ImagePair` objects sorted by image name.

    Raises:
        DataError: a folder is missing, there is no image, an image has no mask, or a check of
        :class:`ImagePair` fails.
        ConfigError: a bad ``mask_format``.
    """
    check_mask_format(mask_format)
    if mask_dir is not None:
        _check_folder(mask_dir, 'mask_dir', 'masks')
    pairs = []
    for image_path in find_images(image_dir, naming):
        mask_path = None if mask_dir is None else find_mask(image_path, mask_dir, mask_format, naming)
        pairs.append(ImagePair(image_path, mask_path, mask_format, decode_color, num_classes, ignore_index))
    return pairs
