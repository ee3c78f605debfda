"""iSAID semantic segmentation data: class table, mask decoding, patch data set and loader.

Folder layout (the official one, :data:`ISAID_NAMING`):

- ``image_dir/<name>.png``: the DOTA image (or ``.jpg``, ``.bmp``, TIFF/GeoTIFF ``.tif``);
- ``mask_dir/<name>_instance_color_RGB.png``: the iSAID semantic colour mask
  (``mask_format='color'``, the default), or
- ``mask_dir/<name>_label.png`` or ``mask_dir/<name>.png``: a single-channel label mask with
  values 0..15 in FactSeg's class order and 255 for ignored pixels (``mask_format='label'``;
  ``<name>_label.png`` is used when it exists). Palette ('P') PNGs are read as their indices.

A mask keeps its image's extension. Files are found, checked and read by :mod:`simplecv.io`
through :func:`list_isaid_pairs`, the same way for training, evaluation and inference.

Class order and names follow FactSeg (§7.2 of the spec). FactSeg's names for indices 2 and 12
are swapped with respect to the iSAID devkit: index 2, ``storage_tank`` here, has the colour
(0, 191, 127), which the devkit calls *Roundabout*, and index 12, ``roundabout`` here, has the
devkit's *storage tank* colour (0, 63, 63). The names are kept so that per-class tables compare
with FactSeg's; :data:`DEVKIT_CLASS_NAMES` has the devkit's names in the same index order. A
label PNG made with the devkit or mmsegmentation order has classes 2 and 12 the other way round
from the official weights.
"""

import contextlib
import functools
import random
from collections import OrderedDict

import numpy as np
import paddle

from simplecv.api.preprocess import comm, segm
from simplecv.core.config import AttrDict, merge_strict
from simplecv.core.errors import ConfigError
from simplecv.core.registry import DATALOADER
from simplecv.data.fail_fast import CaptureErrors, collate_or_fail, raise_failures
from simplecv.data.sampler import StepBatchSampler
from simplecv.data.sliding_window import sliding_window
from simplecv.io.masks import check_mask_format
from simplecv.io.pairs import MaskNaming, list_pairs
from simplecv.util.logger import get_logger

CLASS_NAMES = (
    'background',
    'ship',
    'storage_tank',
    'baseball_diamond',
    'tennis_court',
    'basketball_court',
    'ground_track_field',
    'bridge',
    'large_vehicle',
    'small_vehicle',
    'helicopter',
    'swimming_pool',
    'roundabout',
    'soccer_ball_field',
    'plane',
    'harbor',
)
DEVKIT_CLASS_NAMES = CLASS_NAMES[:2] + ('roundabout',) + CLASS_NAMES[3:12] + ('storage_tank',) + CLASS_NAMES[13:]
COLOR_MAP = (
    (0, 0, 0),
    (0, 0, 63),
    (0, 191, 127),
    (0, 63, 0),
    (0, 63, 127),
    (0, 63, 191),
    (0, 63, 255),
    (0, 127, 63),
    (0, 127, 127),
    (0, 0, 127),
    (0, 0, 191),
    (0, 0, 255),
    (0, 63, 63),
    (0, 127, 191),
    (0, 127, 255),
    (0, 100, 155),
)
NUM_CLASSES = len(CLASS_NAMES)
IGNORE_INDEX = 255
IGNORE_COLOR = (255, 255, 255)
DEFAULT_PATCH_CONFIG = dict(patch_size=896, stride=512)
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
# The mask of <name>.<ext> is masks/<name>_instance_color_RGB.<ext> (colour), or masks/<name>_label.<ext>, else
# masks/<name>.<ext> (label); <name>_instance_id_RGB.<ext> is the instance map, not an image.
COLOR_MASK_MARK = '_instance_color_RGB'
LABEL_MASK_MARK = '_label'
COLOR_MASK_SUFFIX = COLOR_MASK_MARK + '.png'
LABEL_MASK_SUFFIX = LABEL_MASK_MARK + '.png'
ISAID_NAMING = MaskNaming(
    color=(COLOR_MASK_MARK,),
    label=(LABEL_MASK_MARK, ''),
    not_images=(COLOR_MASK_MARK, '_instance_id_RGB', LABEL_MASK_MARK),
)

__all__ = [
    'CLASS_NAMES',
    'COLOR_MAP',
    'COLOR_MASK_SUFFIX',
    'ColorMaskDecoder',
    'DEVKIT_CLASS_NAMES',
    'IGNORE_INDEX',
    'IMAGENET_MEAN',
    'IMAGENET_STD',
    'ISAID_NAMING',
    'ISAIDSegmmDataLoader',
    'ISAIDSegmmDataset',
    'LABEL_MASK_SUFFIX',
    'NUM_CLASSES',
    'RemoveColorMap',
    'colorize',
    'collate_batch',
    'decode_color_mask',
    'list_isaid_pairs',
    'train_transforms',
]

_LOGGER = get_logger('factseg.data')
# Mask files whose unknown colours were already reported by this process.
_REPORTED = set()


def _color_keys(colors):
    colors = np.asarray(colors, dtype=np.uint32).reshape(-1, 3)
    return (colors[:, 0] << 16) | (colors[:, 1] << 8) | colors[:, 2]


def _pixel_keys(mask):
    # (H, W, 3) uint8 -> (H, W) uint32 0xRRGGBB; in-place ops keep this at ~2 ns per pixel.
    keys = mask[..., 0].astype(np.uint32)
    keys <<= 8
    keys |= mask[..., 1]
    keys <<= 8
    keys |= mask[..., 2]
    return keys


class RemoveColorMap:
    """Turn an iSAID colour mask into a label mask (the first transform of the FactSeg configs).

    Args:
        color_map: the class colours in label order, a sequence of RGB triples or a mapping
            ``name -> RGB`` (the official ``OrderedDict``).
        mapping: channel weights of the official colour hash; used only with ``match='hash'``.
        unknown: label of pixels whose colour is not in ``color_map``: ``'ignore'`` (255, the
            default) or ``'background'`` (0, the official behaviour).
        match: ``'exact'`` (the default) compares full RGB triples; ``'hash'`` reproduces the
            official matching on ``R*1 + G*2 + B*3``, which also maps some colours that are not
            in the table to a class, e.g. (189, 0, 0) to ship.

    A mask that is already a label mask (2-D) passes through unchanged, so the transform can
    stay in a config whose data set reads label PNGs.

    Differences from the official code: exact matching and ``unknown='ignore'`` are the
    defaults; ``RemoveColorMap(unknown='background', match='hash')`` is the official
    behaviour. The result is a NumPy uint8 array, not a PIL image.
    """

    def __init__(self, color_map=COLOR_MAP, mapping=(1, 2, 3), unknown='ignore', match='exact'):
        colors = list(color_map.values()) if hasattr(color_map, 'values') else list(color_map)
        if unknown not in ('ignore', 'background'):
            raise ConfigError("RemoveColorMap: unknown must be 'ignore' or 'background', got %r" % (unknown,))
        if match not in ('exact', 'hash'):
            raise ConfigError("RemoveColorMap: match must be 'exact' or 'hash', got %r" % (match,))
        if not 0 < len(colors) < IGNORE_INDEX - 1:
            raise ConfigError(
                'RemoveColorMap: color_map must hold 1 to %d colours, got %d' % (IGNORE_INDEX - 2, len(colors))
            )
        self.colors = tuple(tuple(int(v) for v in c) for c in colors)
        self.mapping = tuple(mapping)
        self.unknown = unknown
        self.match = match
        self.fill = IGNORE_INDEX if unknown == 'ignore' else 0
        self._lut = None

    def __getstate__(self):
        # The 16 MiB lookup table is rebuilt on first use instead of being pickled or copied.
        state = dict(self.__dict__)
        state['_lut'] = None
        return state

    def __deepcopy__(self, memo):
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__getstate__())
        return clone

    def _exact_lut(self):
        if self._lut is None:
            sentinel = len(self.colors)
            lut = np.full(1 << 24, sentinel, dtype=np.uint8)
            # Reversed so that the first of two equal colours wins.
            keys = _color_keys(self.colors)
            lut[keys[::-1]] = np.arange(len(self.colors), dtype=np.uint8)[::-1]
            self._lut = lut
        return self._lut

    def decode(self, mask):
        """Decode a colour mask and count the pixels of colours that are not in the table.

        Args:
            mask: ``(H, W, 3)`` uint8 RGB array (extra channels such as alpha are ignored).

        Returns:
            tuple: ``(label, num_unknown, unknown_colors)``: ``(H, W)`` uint8 labels, the number
            of pixels whose colour is not in the table, and up to five such colours (the most
            frequent first) as RGB tuples.
        """
        mask = np.asarray(mask)
        if mask.ndim != 3 or mask.shape[2] < 3 or mask.dtype != np.uint8:
            raise ValueError(
                'RemoveColorMap.decode expects an (H, W, 3) uint8 RGB mask, got %s %s' % (mask.dtype, mask.shape)
            )
        keys = _pixel_keys(mask)
        exact = self._exact_lut()[keys]
        unknown = exact == len(self.colors)
        num_unknown = int(np.count_nonzero(unknown))
        if self.match == 'exact':
            label = exact
            label[unknown] = self.fill
        else:
            label = self._hash_decode(mask)
        examples = []
        if num_unknown:
            values, counts = np.unique(keys[unknown], return_counts=True)
            for key in values[np.argsort(-counts, kind='stable')][:5]:
                examples.append((int(key) >> 16, (int(key) >> 8) & 255, int(key) & 255))
        return label, num_unknown, examples

    def _hash_decode(self, mask):
        weights = np.asarray(self.mapping, dtype=np.int64)
        table_keys = np.asarray(self.colors, dtype=np.int64) @ weights
        hashes = mask[..., :3] @ weights
        lut = np.full(int(max(hashes.max(), table_keys.max())) + 1, -1, dtype=np.int64)
        for label, key in enumerate(table_keys):
            # The official code adds the labels of all table entries with a matching key.
            lut[key] = label if lut[key] < 0 else lut[key] + label
        label = lut[hashes]
        label[label < 0] = self.fill
        return label.astype(np.uint8)

    def __call__(self, image, mask=None):
        if mask is None:
            return image
        if np.ndim(mask) == 2:
            return image, mask
        return image, self.decode(mask)[0]

    def __repr__(self):
        return '%s(unknown=%r, match=%r)' % (type(self).__name__, self.unknown, self.match)


@functools.lru_cache(maxsize=None)
def _decoder(unknown, match):
    return RemoveColorMap(unknown=unknown, match=match)


def decode_color_mask(mask, unknown='ignore', match='exact'):
    """Decode an iSAID colour mask to FactSeg labels.

    Args:
        mask: ``(H, W, 3)`` uint8 RGB array.
        unknown: ``'ignore'`` (colours outside the table become 255) or ``'background'`` (0).
        match: ``'exact'`` or the official ``'hash'``; see :class:`RemoveColorMap`.

    Returns:
        np.ndarray: ``(H, W)`` uint8 labels in 0..15, plus 255 with ``unknown='ignore'``.
    """
    return _decoder(unknown, match).decode(mask)[0]


def colorize(label):
    """Paint a label map with the iSAID colours.

    Args:
        label: ``(H, W)`` integer array with values 0..15 or 255.

    Returns:
        np.ndarray: ``(H, W, 3)`` uint8 RGB. Ignored pixels (255) are white, a colour that is
        not in the table, so they stay visible.

    Raises:
        ValueError: a value other than 0..15 and 255.
    """
    label = np.asarray(label)
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[:NUM_CLASSES] = COLOR_MAP
    palette[IGNORE_INDEX] = IGNORE_COLOR
    bad = (label < 0) | (label > IGNORE_INDEX) | ((label >= NUM_CLASSES) & (label != IGNORE_INDEX))
    if bad.any():
        raise ValueError(
            'colorize: labels must be 0..%d or %d, found %s'
            % (NUM_CLASSES - 1, IGNORE_INDEX, np.unique(label[bad])[:10].tolist())
        )
    return palette[label.astype(np.intp)]


class ColorMaskDecoder:
    """The colour decoder of iSAID masks for :mod:`simplecv.io.masks`: colours to FactSeg labels.

    Pixels of colours outside the table are counted and logged as a warning once per file and
    process; they get the decoder's ``fill`` label (255 with the default ``RemoveColorMap()``).

    Args:
        remove_color_map: the :class:`RemoveColorMap` that decodes; ``RemoveColorMap()`` if None.
    """

    def __init__(self, remove_color_map=None):
        self.remove_color_map = remove_color_map or _decoder('ignore', 'exact')

    def __call__(self, pixels, path):
        """Decode colours to labels.

        Args:
            pixels: ``(h, w, 3)`` uint8 RGB, all or some rows of the mask.
            path: the mask file, for the warning.

        Returns:
            np.ndarray: ``(h, w)`` uint8 labels in 0..15 and the fill label.
        """
        decoder = self.remove_color_map
        label, num_unknown, examples = decoder.decode(pixels)
        if num_unknown and path not in _REPORTED:
            _REPORTED.add(path)
            _LOGGER.warning(
                '%s: %d pixels (%.2f%%) have colours outside the iSAID table, e.g. %s; they are labelled %d (%s)',
                path,
                num_unknown,
                100.0 * num_unknown / label.size,
                ', '.join(map(str, examples)),
                decoder.fill,
                decoder.unknown,
            )
        return label


def train_transforms(patch_size=896):
    """Return the official FactSeg training transforms, in the official order, as new objects.

    Colour masks decoded to labels, random horizontal and vertical flips (p=0.5), a random
    rotation by 0/90/180/270 degrees, padding to ``patch_size`` (image 0, mask 255), a float
    tensor and the ImageNet mean/std normalisation. They are the ``data.train`` transforms of
    ``configs/isaid/factseg.py`` and the default of :class:`ISAIDSegmmDataLoader`.

    Args:
        patch_size: the side the windows are padded to (the official 896).
    """
    return [
        RemoveColorMap(),
        segm.RandomHorizontalFlip(0.5),
        segm.RandomVerticalFlip(0.5),
        segm.RandomRotate90K((0, 1, 2, 3)),
        segm.FixedPad((patch_size, patch_size), 255),
        segm.ToTensor(True),
        comm.THMeanStdNormalize(IMAGENET_MEAN, IMAGENET_STD),
    ]


def list_isaid_pairs(image_dir, mask_dir=None, mask_format='color', remove_color_map=None):
    """List and check the images of an iSAID split and their masks (named as :data:`ISAID_NAMING` says).

    The one listing of training, evaluation and inference: every file is checked from its
    header now (format, completeness, 8-bit image, mask format, equal sizes); label masks may
    hold 0..15 and 255, checked when decoded.

    Args:
        image_dir: folder of images (PNG, JPEG, BMP or TIFF/GeoTIFF), or one image file.
        mask_dir: folder of the masks, or None for images only.
        mask_format: ``'color'`` (iSAID colour masks) or ``'label'`` (label masks).
        remove_color_map: the :class:`RemoveColorMap` decoding colour masks; ``RemoveColorMap()`` if None.

    Returns:
        list: :class:`simplecv.io.pairs.ImagePair` objects sorted by image name.

    Raises:
        DataError: naming the file and the fix.
        ConfigError: a bad ``mask_format``.
    """
    return list_pairs(
        image_dir, mask_dir, mask_format, ISAID_NAMING, ColorMaskDecoder(remove_color_map), NUM_CLASSES, IGNORE_INDEX
    )


class _LruCache:
    """Least-recently-used cache of decoded arrays, bounded by their total size in bytes."""

    def __init__(self, max_bytes):
        self.max_bytes = max_bytes
        self._items = OrderedDict()
        self._bytes = 0

    def get(self, key, load):
        """Return the cached arrays of ``key``, else ``load()``'s, cached when they fit.

        Args:
            key: any hashable.
            load: a callable returning a sequence of numpy arrays.

        Returns:
            The arrays (the cached object itself: callers must not modify them).
        """
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = load()
        size = sum(array.nbytes for array in value)
        if size <= self.max_bytes:
            while self._bytes + size > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= sum(array.nbytes for array in old)
            self._items[key] = value
            self._bytes += size
        return value


@contextlib.contextmanager
def _seeded(seed):
    """Seed Python's and NumPy's global generators, and restore their states afterwards."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


# ---------------------------------------------------------------- data set


class ISAIDSegmmDataset(paddle.io.Dataset):
    """All sliding-window patches of all iSAID images in a folder.

    Images are listed by :func:`list_isaid_pairs`: the PNG, JPEG, BMP and TIFF files of
    ``image_dir`` sorted by name (names ending in ``_instance_color_RGB``, ``_instance_id_RGB``
    or ``_label`` before the extension are skipped), and each is cut into the windows of
    :func:`simplecv.data.sliding_window.sliding_window`; the
    data set is the concatenation of those windows, image by image, in window order.

    Every file is checked when the data set is built, as the evaluator and ``tools/infer.py``
    check it: both folders exist, every image has its mask, every file is complete and in the
    format of its extension, the mask has the image's size and the pixel formats are usable.
    Images may be RGB, greyscale (converted to RGB), RGBA (alpha dropped) or palette; 16-bit
    images are refused. Colour masks may be RGB, RGBA or palette; label masks greyscale (8 or
    16 bit) or palette. ``verify='decode'`` also decodes every file now instead of at first use.

    Reading a sample decodes the whole image and mask and keeps
    the result in a per-process LRU cache of ``cache_mb`` MiB, so the other windows of a cached
    image cost only a crop. Shuffled training on full-size iSAID images rarely hits the cache;
    cut the split once with ``tools/cut_patches.py`` and train on the patches instead (see
    ``bench/bench_data.py`` for the figures). Colour masks are decoded to labels once per file, by the first
    :class:`RemoveColorMap` in ``transforms`` (``RemoveColorMap()`` if there is none); that
    transform then sees a label mask and passes it through. Pixels of colours outside the table
    are counted and logged once per file and process. Label masks with values other than 0..15
    and 255 raise :class:`DataError`.

    Args:
        image_dir: folder of ``<name>.png`` (``.jpg``, ``.bmp``, ``.tif``) images.
        mask_dir: folder of the masks.
        patch_config: ``dict(patch_size=896, stride=512)``.
        transforms: ``t(image, mask)`` callables applied in order to the ``(h, w, 3)`` uint8
            image patch and ``(h, w)`` uint8 label patch; they should end with ``ToTensor``
            (and normalisation).
        mask_format: ``'color'`` (iSAID colour masks) or ``'label'`` (label masks).
        verify: ``'header'`` (read headers when building) or ``'decode'`` (decode everything).
        cache_mb: size of the decoded-image cache per process in MiB; 0 disables it.

    Raises:
        DataError: naming the file and the fix, for every problem listed above.
    """

    def __init__(
        self,
        image_dir,
        mask_dir,
        patch_config=DEFAULT_PATCH_CONFIG,
        transforms=None,
        mask_format='color',
        verify='header',
        cache_mb=512,
    ):
        super().__init__()
        check_mask_format(mask_format)
        if verify not in ('header', 'decode'):
            raise ConfigError("verify must be 'header' or 'decode', got %r" % (verify,))
        self.image_dir = image_dir
        self.mask_dir = mask_dir
        self.patch_size = int(patch_config.get('patch_size', DEFAULT_PATCH_CONFIG['patch_size']))
        self.stride = int(patch_config.get('stride', DEFAULT_PATCH_CONFIG['stride']))
        self.mask_format = mask_format
        self.transforms = comm.Compose(transforms)
        decoders = [t for t in self.transforms.transforms if isinstance(t, RemoveColorMap)]
        self.color_decoder = decoders[0] if decoders else RemoveColorMap()
        self._cache = _LruCache(int(cache_mb * 2**20))
        self.pairs = list_isaid_pairs(image_dir, mask_dir, mask_format, self.color_decoder)
        self.files = [(pair.image_path, pair.mask_path) for pair in self.pairs]
        sizes = [(pair.height, pair.width) for pair in self.pairs]
        windows = []
        for file_index, (height, width) in enumerate(sizes):
            boxes = sliding_window((height, width), (self.patch_size, self.patch_size), self.stride)
            windows.append(np.concatenate([np.full((len(boxes), 1), file_index), boxes], axis=1))
        self.windows = np.concatenate(windows, axis=0)
        if verify == 'decode':
            for file_index in range(len(self.files)):
                self._load(file_index)

    def _load(self, file_index):
        """Return the whole ``(H, W, 3)`` uint8 image and ``(H, W)`` uint8 labels, cached."""
        return self._cache.get(file_index, lambda: self._decode_pair(file_index))

    def _decode_pair(self, file_index):
        image, label = self.pairs[file_index].read()
        # The cached arrays are shared by all reads: a transform that writes into its input fails
        # instead of corrupting later samples.
        image.flags.writeable = False
        label.flags.writeable = False
        return image, label

    def read(self, index):
        """Return the untransformed patch ``index``.

        Returns:
            tuple: ``(image (h, w, 3) uint8, label (h, w) uint8)``, read-only views.
        """
        file_index, x1, y1, x2, y2 = (int(v) for v in self.windows[index])
        image, label = self._load(file_index)
        return image[y1:y2, x1:x2], label[y1:y2, x1:x2]

    def describe(self, key):
        """Name sample ``key`` (an index or ``(index, seed)``) for messages: its window and files."""
        index = key[0] if isinstance(key, tuple) else key
        file_index, x1, y1, x2, y2 = (int(v) for v in self.windows[index])
        image_path, mask_path = self.files[file_index]
        return 'window (%d, %d, %d, %d) of %s (mask %s)' % (x1, y1, x2, y2, image_path, mask_path)

    def __len__(self):
        return len(self.windows)

    def __getitem__(self, key):
        """Return one transformed patch.

        Args:
            key: a sample index, or ``(index, sample_seed)`` as yielded by
                :class:`simplecv.data.sampler.StepBatchSampler`. With a seed, Python's ``random``
                and NumPy's global generator are seeded with it for the transforms (and restored
                afterwards), so the augmentation depends only on the seed.

        Returns:
            tuple: ``(image, {'cls': label})``: ``(3, H, W)`` float32 and ``(H, W)`` int64.
        """
        index, seed = key if isinstance(key, tuple) else (key, None)
        image, label = self.read(index)
        if seed is None:
            image, label = self.transforms(image, label)
        else:
            with _seeded(int(seed)):
                image, label = self.transforms(image, label)
        image = np.ascontiguousarray(image, dtype=np.float32)
        if image.ndim != 3 or image.shape[0] != 3:
            raise ConfigError(
                'the data transforms must end with segm.ToTensor() so that images are '
                '(3, H, W); got an image of shape %s' % (image.shape,)
            )
        return image, {'cls': np.ascontiguousarray(label, dtype=np.int64)}


def collate_batch(samples):
    """Stack ``(image, {'cls': label})`` samples into ``(images (B, 3, H, W), {'cls': (B, H, W)})``."""
    images = np.stack([image for image, _ in samples])
    labels = np.stack([target['cls'] for _, target in samples])
    return images, {'cls': labels}


@DATALOADER.register('ISAIDSegmmDataLoader')
class ISAIDSegmmDataLoader(paddle.io.DataLoader):
    """The iSAID patch loader, built from the ``params`` of a ``data.train`` config block.

    Batches are ``(image, {'cls': label})``: ``(B, 3, H, W)`` float32 and ``(B, H, W)`` int64
    tensors. The batch sampler is :class:`StepBatchSampler` (shuffled when ``training``), with
    this process's rank and world size, so augmentation and order are reproducible and
    resumable. See :meth:`set_default_config` for the keys.

    Args:
        config: dict of the keys below; unknown keys raise :class:`ConfigError`.

    Attributes:
        config (AttrDict): the merged config.
        dataset (ISAIDSegmmDataset): the data set.
        CLASS_NAMES, COLORS: the 16 classes and their mask colours, for evaluation tables and pictures.
    """

    CLASS_NAMES = CLASS_NAMES
    COLORS = COLOR_MAP

    @staticmethod
    def evaluation_items(params):
        """List and check the images and masks an evaluation of this data set reads.

        Args:
            params: ``image_dir``, ``mask_dir`` (None or empty: predict only) and optionally
                ``mask_format`` (``'color'``, the default, or ``'label'``): a ``data.test.params``
                block or the evaluator's folders.

        Returns:
            list: :class:`simplecv.io.pairs.ImagePair` objects, for :class:`simplecv.engine.evaluator.Evaluator`.

        Raises:
            DataError: a missing folder or mask, or a bad file (named, with the fix).
        """
        return list_isaid_pairs(
            params['image_dir'], params.get('mask_dir') or None, params.get('mask_format') or 'color'
        )

    def __init__(self, config):
        self.config = AttrDict()
        self.set_default_config()
        self.config = merge_strict(self.config, config, where='ISAIDSegmmDataLoader.params')
        cfg = self.config
        for key in ('batch_size', 'num_workers'):
            minimum = 1 if key == 'batch_size' else 0
            if not isinstance(cfg[key], int) or cfg[key] < minimum:
                raise ConfigError(
                    'ISAIDSegmmDataLoader.params.%s must be an int >= %d, got %r' % (key, minimum, cfg[key])
                )
        dataset = ISAIDSegmmDataset(
            cfg.image_dir,
            cfg.mask_dir,
            cfg.patch_config,
            cfg.transforms,
            mask_format=cfg.mask_format,
            verify=cfg.verify,
            cache_mb=cfg.cache_mb,
        )
        sampler = StepBatchSampler(
            len(dataset),
            cfg.batch_size,
            seed=cfg.seed,
            shuffle=cfg.training,
            drop_last=False,
            rank=paddle.distributed.get_rank(),
            world_size=paddle.distributed.get_world_size(),
        )
        super().__init__(
            CaptureErrors(dataset),
            batch_sampler=sampler,
            num_workers=cfg.num_workers,
            collate_fn=collate_or_fail(collate_batch),
            return_list=True,
        )

    def __iter__(self):
        """Iterate over batches; a sample that fails to load raises its :class:`DataError` here, in the caller's
        thread, whatever ``num_workers`` is (see :mod:`simplecv.data.fail_fast`)."""
        return raise_failures(super().__iter__())

    def set_default_config(self):
        """Fill ``self.config`` with :meth:`default_config` (SimpleCV's configurable hook)."""
        self.config.update(self.default_config())

    @staticmethod
    def default_config():
        """Return every key the loader accepts, with its default.

        Keys (official unless marked *port*):

        - ``image_dir``, ``mask_dir``: the image and mask folders.
        - ``patch_config``: ``dict(patch_size=896, stride=512)``.
        - ``transforms``: list of ``(image, mask)`` callables; the FactSeg training list.
        - ``batch_size`` (per process, 1), ``num_workers`` (0), ``training`` (True: shuffle).
        - *port* ``mask_format``: ``'color'`` or ``'label'`` (see :class:`ISAIDSegmmDataset`).
        - *port* ``verify``: ``'header'`` or ``'decode'``.
        - *port* ``cache_mb``: decoded-image cache per worker process, MiB (512).
        - *port* ``seed``: sampler seed; epoch order and augmentation derive from it (2333).
        """
        return dict(
            image_dir='',
            mask_dir='',
            patch_config=dict(DEFAULT_PATCH_CONFIG),
            transforms=train_transforms(),
            batch_size=1,
            num_workers=0,
            training=True,
            mask_format='color',
            verify='header',
            cache_mb=512,
            seed=2333,
        )
