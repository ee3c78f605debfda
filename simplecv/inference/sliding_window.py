"""Sliding-window prediction of large images: patch -> forward -> merge, batched and banded.

The official procedure (FactSeg ``tools/isaid_eval.py``, spec §9.1), reproduced exactly:

1. windows from :func:`simplecv.data.sliding_window.sliding_window` (the training patcher's);
2. each window, as float32 ``0..255`` CHW, normalised ``(x - mean) / std``, then zero-padded at
   the bottom and right to a multiple of 32 (padding *after* normalisation, as the official
   evaluator does; training pads before);
3. the model's fused probabilities, cropped back to the window;
4. probabilities summed over overlapping windows in window order, divided by the number of
   windows covering each pixel (float32), then ``argmax`` over classes.

:class:`SlidingWindowPredictor` computes the same numbers faster and in bounded memory.
Windows go through the model in batches while the next batch is read and normalised in a
thread. The sums are kept only where they are not final yet, in the official order:

* window rows are swept top to bottom, each row left to right (the official window order);
* within a window row, the rows above the next window row's top are final once the row's
  windows have been added, column by column: columns left of the next window are divided,
  turned into labels and dropped as the sweep moves right, so this part holds at most one
  window's width;
* the rows shared with the next window row (``patch - stride`` of them) are carried to it, in
  column chunks that are handed over as the next row's sweep reaches them.

Memory is therefore ``C x (patch - stride) x W`` float32 plus a few windows, instead of the
official ``C x H x W`` (16 x 4000 x 13000 float32 = 3.3 GB; the carry is 0.32 GB). Each pixel
still receives its windows' probabilities in the official order, so the probabilities are
bit-identical to :func:`predict_per_window`, the straightforward implementation kept as the
reference.
"""

import queue
import threading

import numpy as np
import paddle

from simplecv.api.preprocess.comm import THMeanStdNormalize
from simplecv.core.errors import ConfigError
from simplecv.data.sliding_window import sliding_window
from simplecv.io.images import ArrayImage

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def normalization_from_config(config):
    """Return ``(mean, std)`` of the ``THMeanStdNormalize`` transform in ``config.data.test.params.transforms``.

    The evaluation normalises windows as the test transforms do; the transform is found by type
    (:class:`simplecv.api.preprocess.comm.THMeanStdNormalize`).

    Args:
        config: a full config (``AttrDict`` or dict), e.g. from ``import_config('isaid.factseg')``.

    Returns:
        tuple: ``(mean, std)``, each a tuple of floats per channel (0..255 scale for FactSeg).

    Raises:
        ConfigError: the key is missing or its list holds no ``THMeanStdNormalize``.
    """
    test = ((config or {}).get('data') or {}).get('test') or {}
    transforms = (test.get('params') or {}).get('transforms')
    found = [t for t in transforms or () if isinstance(t, THMeanStdNormalize)]
    if not found:
        raise ConfigError(
            "config key 'data.test.params.transforms' %s; add "
            'comm.THMeanStdNormalize(mean, std) to it (see configs/isaid/factseg.py)'
            % ('is missing' if transforms is None else 'holds no THMeanStdNormalize')
        )
    return tuple(float(v) for v in found[-1].mean), tuple(float(v) for v in found[-1].std)


def _normalize(pixels, mean, std):
    """``(h, w, 3)`` uint8 -> ``(3, h, w)`` float32 ``(x - mean) / std`` (float32 arithmetic)."""
    chw = np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32)
    chw -= np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
    chw /= np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
    return chw


def _padded(size, divisor):
    return size if not divisor else -(-size // divisor) * divisor


def _as_tensor(output):
    return output if isinstance(output, paddle.Tensor) else paddle.to_tensor(output)


def predict_per_window(forward, image, patch_size, stride, mean=IMAGENET_MEAN, std=IMAGENET_STD, size_divisor=32):
    """The official procedure, one window at a time over a full-image sum (the reference).

    Args:
        forward: ``(1, 3, h, w) float32 -> (1, C, h, w)`` probabilities (Tensor or array).
        image: ``(H, W, 3)`` uint8.
        patch_size: window size ``(kh, kw)``.
        stride: window step.
        mean, std: normalisation per channel (0..255 scale).
        size_divisor: pad windows to a multiple of this.

    Returns:
        tuple: ``(probabilities (C, H, W) float32, labels (H, W) int64)``.
    """
    height, width = image.shape[:2]
    total = count = None
    for x1, y1, x2, y2 in sliding_window((height, width), patch_size, stride):
        window = _normalize(image[y1:y2, x1:x2], mean, std)
        h, w = window.shape[1:]
        padded = np.zeros((1, 3, _padded(h, size_divisor), _padded(w, size_divisor)), dtype=np.float32)
        padded[0, :, :h, :w] = window
        with paddle.no_grad():
            out = forward(padded)
        out = np.asarray(out.numpy() if isinstance(out, paddle.Tensor) else out)[0, :, :h, :w]
        if total is None:
            total = np.zeros((out.shape[0], height, width), dtype=np.float32)
            count = np.zeros((height, width), dtype=np.float32)
        total[:, y1:y2, x1:x2] += out
        count[y1:y2, x1:x2] += 1
    probabilities = total / count
    return probabilities, probabilities.argmax(axis=0)


class SlidingWindowPredictor:
    """Batched, banded sliding-window prediction (see the module docstring).

    Args:
        forward: ``(B, 3, h, w) float32 ndarray -> (B, C, h, w)`` probabilities as a Tensor
            (kept on its device) or an ndarray; e.g. :class:`~simplecv.inference.fast_path.DygraphForward`.
        patch_size: window size, an int or ``(kh, kw)``.
        stride: window step (512 in the official evaluator).
        mean, std: normalisation per channel in the 0..255 scale.
        batch_size: windows per forward call. Every batch size gives the same result.
        size_divisor: windows are zero-padded to a multiple of this (32).
        tta: also predict the horizontally and vertically flipped windows and average the
            three probability maps (not part of the official procedure).
        prefetch: assemble the next batch in a background thread while the model runs.

    Memory: besides the model, the carried sums of ``C x (kh - stride) x W`` float32, one
    window row of labels, at most two uint8 strips of ``kh x W x 3`` and a few batches; the
    image is read by rows from a :class:`~simplecv.io.images.RasterImage`, so a GeoTIFF
    larger than memory works. Sums are kept on the CPU in NumPy, as the official evaluator does.
    """

    def __init__(
        self,
        forward,
        patch_size,
        stride=512,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        batch_size=1,
        size_divisor=32,
        tta=False,
        prefetch=True,
    ):
        if isinstance(patch_size, int):
            patch_size = (patch_size, patch_size)
        if batch_size < 1:
            raise ValueError('batch_size must be >= 1, got %r' % (batch_size,))
        self.forward = forward
        self.patch_size = tuple(int(v) for v in patch_size)
        self.stride = int(stride)
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.batch_size = int(batch_size)
        self.size_divisor = size_divisor
        self.tta = tta
        self.prefetch = prefetch
        sliding_window((1, 1), self.patch_size, self.stride)  # validates patch size and stride
        if self.stride > min(self.patch_size):
            raise ValueError(
                'stride %d is larger than the patch %s: windows would leave gaps' % (self.stride, self.patch_size)
            )

    def windows(self, height, width):
        """The ``(K, 4)`` windows ``(x1, y1, x2, y2)`` of an image, in processing order.

        The official row-major order, except that the last two window rows are interleaved
        (:func:`_interleave_last_rows`): each pixel still receives its windows in the official
        order, and the sums those two rows share need not be held across the whole width.
        """
        return _interleave_last_rows(sliding_window((height, width), self.patch_size, self.stride))

    def predict(self, image, with_probabilities=False):
        """Predict a whole in-memory image.

        Args:
            image: ``(H, W, 3)`` uint8 array (greyscale/RGBA are converted) or a RasterImage.
            with_probabilities: also return the averaged probabilities.

        Returns:
            np.ndarray: ``(H, W)`` uint8 labels; with ``with_probabilities`` a tuple
            ``(labels, probabilities (C, H, W) float32)``.
        """
        source = image if hasattr(image, 'read_rows') else ArrayImage(image)
        bands = list(self.predict_bands(source, with_probabilities))
        labels = np.concatenate([band[2] for band in bands], axis=0)
        if with_probabilities:
            return labels, np.concatenate([band[3] for band in bands], axis=1)
        return labels

    def predict_bands(self, source, with_probabilities=False):
        """Yield the prediction as row bands, top to bottom, as soon as they are final.

        Args:
            source: a :class:`~simplecv.io.images.RasterImage` (``height``, ``width``,
                ``read_rows(y1, y2) -> (rows, W, 3) uint8``).
            with_probabilities: also yield the averaged probabilities of the band.

        Yields:
            tuple: ``(y1, y2, labels)`` with ``(y2 - y1, W)`` uint8 labels, plus
            ``(C, y2 - y1, W)`` float32 probabilities with ``with_probabilities``.
        """
        height, width = source.height, source.width
        windows = self.windows(height, width)
        kh = int(windows[0, 3] - windows[0, 1])
        # Windows covering each row / column: the window grid is a product, so the official
        # float32 count map equals row_count[y] * col_count[x] exactly.
        row_count = np.zeros(height, dtype=np.float32)
        col_count = np.zeros(width, dtype=np.float32)
        tops = np.unique(windows[:, 1])
        for y1 in tops:
            row_count[y1 : y1 + kh] += 1
        for x1, x2 in np.unique(windows[:, [0, 2]], axis=0):
            col_count[x1:x2] += 1
        next_top = dict(zip(tops.tolist(), tops[1:].tolist() + [height]))
        previous_top = dict(zip(tops[1:].tolist(), tops[:-1].tolist()))
        remaining = dict(zip(*(v.tolist() for v in np.unique(windows[:, 1], return_counts=True))))
        # At most two rows are open at once (the last two, interleaved); a row's carry is handed
        # to the next row when that row opens, while the row may still be adding to it.
        sweeps = {}
        carries = {}
        for x1, y1, x2, _, out in self._window_outputs(source, windows):
            sweep = sweeps.get(y1)
            if sweep is None:
                above = previous_top.get(y1)
                carry = sweeps[above].carry if above in sweeps else carries.pop(above, None)
                sweep = sweeps[y1] = _RowSweep(
                    y1, next_top[y1], y1 + kh, width, out.shape[0], carry, row_count, col_count, with_probabilities
                )
            sweep.add(x1, x2, out)
            del out
            remaining[y1] -= 1
            if not remaining[y1]:
                del sweeps[y1]
                if y1 != tops[-1] and next_top[y1] not in sweeps:
                    carries[y1] = sweep.carry
                band = sweep.finish()
                sweep = None
                yield band

    def _window_outputs(self, source, windows):
        """Yield ``(x1, y1, x2, y2, (C, y2 - y1, x2 - x1) float32 ndarray)`` in window order."""
        for batch_windows, batch in self._batches(source, windows):
            out = self._forward(batch)
            out = out.numpy() if isinstance(out, paddle.Tensor) else np.asarray(out)
            windows_here = batch_windows.tolist()
            for k, (x1, y1, x2, y2) in enumerate(windows_here):
                window = out[k, :, : y2 - y1, : x2 - x1]
                if k + 1 == len(windows_here):
                    out = None  # the batch is freed once its last window has been added
                yield x1, y1, x2, y2, window
                window = None

    def _forward(self, batch):
        with paddle.no_grad():
            if not self.tta:
                return _as_tensor(self.forward(batch))
            size = batch.shape[0]
            flipped = np.concatenate([batch, batch[:, :, :, ::-1], batch[:, :, ::-1, :]], axis=0)
            out = _as_tensor(self.forward(np.ascontiguousarray(flipped)))
            return (out[:size] + paddle.flip(out[size : 2 * size], [3]) + paddle.flip(out[2 * size :], [2])) / 3.0

    def _batches(self, source, windows):
        producer = _BatchProducer(self, source, windows)
        if not self.prefetch:
            yield from producer
            return
        yield from _in_background(producer)

    def _window(self, strip, x1, x2):
        # Normalising each window equals normalising the strip (element-wise), and keeps only
        # the uint8 rows in memory (3 bytes a pixel instead of 12).
        return _normalize(strip[:, x1:x2], self.mean, self.std)


class _Carry:
    """Probability sums of the rows a window row shares with the next one, in column chunks.

    Args:
        rows: rows held (``top + patch height - next top``).
        channels: classes ``C``.
        chunk: columns per chunk; chunks are created (zero) when first written.
    """

    def __init__(self, rows, channels, chunk=256):
        self.rows = rows
        self.channels = channels
        self.chunk = chunk
        self.chunks = {}

    def add(self, x1, values):
        """``sums[:, :, x1:x1 + w] += values`` for ``values`` of shape ``(C, rows, w)``."""
        x2 = x1 + values.shape[2]
        for index in range(x1 // self.chunk, (x2 - 1) // self.chunk + 1):
            start = index * self.chunk
            part = self.chunks.get(index)
            if part is None:
                part = self.chunks[index] = np.zeros((self.channels, self.rows, self.chunk), np.float32)
            a, b = max(x1, start), min(x2, start + self.chunk)
            part[:, :, a - start : b - start] += values[:, :, a - x1 : b - x1]

    def pop(self, x1, x2):
        """Return ``sums[:, :, x1:x2]`` (zeros where never written); free the chunks that end by ``x2``.

        Columns are popped left to right, each once.
        """
        out = np.zeros((self.channels, self.rows, x2 - x1), np.float32)
        for index in range(x1 // self.chunk, (x2 - 1) // self.chunk + 1):
            start = index * self.chunk
            part = self.chunks.get(index)
            a, b = max(x1, start), min(x2, start + self.chunk)
            if part is not None:
                out[:, :, a - x1 : b - x1] = part[:, :, a - start : b - start]
            if b == start + self.chunk:
                self.chunks.pop(index, None)
        return out


class _RowSweep:
    """Accumulate one window row left to right and finalise its top rows column by column.

    The row's windows cover rows ``top .. bottom``; rows ``top .. next_top`` are final after
    this row. Their sums live in ``pending`` (columns ``x0 .. x1`` only); the rows below go to
    a new :class:`_Carry` (``carry``) for the next row. ``old`` is what the rows above carried
    into rows ``top .. top + old.rows``; it is handed over column by column as the sweep reaches it.
    """

    def __init__(self, top, next_top, bottom, width, channels, old, row_count, col_count, with_probabilities):
        self.top, self.final_rows = top, next_top - top
        self.width = width
        self.old = old
        self.carry = _Carry(bottom - next_top, channels) if bottom > next_top else None
        self.pending = np.zeros((channels, self.final_rows, 0), np.float32)
        self.x0 = self.x1 = 0
        self.count_rows = row_count[top:next_top]
        self.col_count = col_count
        self.labels = np.zeros((self.final_rows, width), np.uint8)
        self.probabilities = np.zeros((channels, self.final_rows, width), np.float32) if with_probabilities else None

    def add(self, x1, x2, out):
        """Add one window's ``(C, rows, x2 - x1)`` probabilities (windows in left-to-right order)."""
        self._emit(x1)
        self._extend(x2)
        self.pending[:, :, x1 - self.x0 : x2 - self.x0] += out[:, : self.final_rows]
        if self.carry is not None:
            self.carry.add(x1, out[:, self.final_rows :])

    def _extend(self, x2):
        """Grow ``pending`` to column ``x2``, starting from what the rows above carried."""
        if x2 <= self.x1:
            return
        fresh = np.zeros((self.pending.shape[0], self.final_rows, x2 - self.x1), np.float32)
        if self.old is not None:
            above = self.old.pop(self.x1, x2)
            shared = min(self.final_rows, self.old.rows)
            fresh[:, :shared] = above[:, :shared]
            if self.carry is not None and self.old.rows > self.final_rows:
                self.carry.add(self.x1, _pad_rows(above[:, self.final_rows :], self.carry.rows))
        self.pending = np.concatenate([self.pending, fresh], axis=2)
        self.x1 = x2

    def _emit(self, x_end):
        """Divide, argmax and drop the pending columns left of ``x_end``."""
        if x_end <= self.x0:
            return
        done = self.pending[:, :, : x_end - self.x0]
        count = self.count_rows[:, None] * self.col_count[None, self.x0 : x_end]
        probabilities = done / count[None]
        self.labels[:, self.x0 : x_end] = probabilities.argmax(axis=0)
        if self.probabilities is not None:
            self.probabilities[:, :, self.x0 : x_end] = probabilities
        self.pending = self.pending[:, :, x_end - self.x0 :].copy()
        self.x0 = x_end

    def finish(self):
        """Finalise the remaining columns; return ``(top, next_top, labels[, probabilities])``."""
        self._extend(self.width)
        self._emit(self.width)
        bottom = self.top + self.final_rows
        if self.probabilities is not None:
            return self.top, bottom, self.labels, self.probabilities
        return self.top, bottom, self.labels


def _interleave_last_rows(windows):
    """Row-major ``windows`` with the last two window rows interleaved, each pixel's order kept.

    A pixel of the last row must receive every window of the row above that covers it before
    any window of the last row: window ``j`` of the last row is therefore placed right after the
    last window of the row above that starts left of its right edge. Then the sums the two rows
    share (``kh - step`` rows, up to ``kh - 1`` when the last row is shifted to end on the
    border: 864 rows for a 4000-pixel-high image, 896-pixel windows and stride 512) are held over
    about two windows' width instead of the whole width (16 x 864 x 13000 float32 = 0.72 GB).
    """
    tops = np.unique(windows[:, 1])
    if len(tops) < 2:
        return windows
    upper = windows[windows[:, 1] == tops[-2]]
    last = windows[windows[:, 1] == tops[-1]]
    head = windows[windows[:, 1] < tops[-2]]
    order = []
    done = 0
    for window in last:
        needed = int((upper[:, 0] < window[2]).sum())
        order.extend(upper[done:needed])
        done = max(done, needed)
        order.append(window)
    order.extend(upper[done:])
    return np.concatenate([head, np.asarray(order, dtype=windows.dtype).reshape(-1, 4)], axis=0)


def _pad_rows(values, rows):
    """``(C, r, w)`` -> ``(C, rows, w)`` with zero rows appended (``rows >= r``)."""
    if values.shape[1] == rows:
        return values
    out = np.zeros((values.shape[0], rows, values.shape[2]), np.float32)
    out[:, : values.shape[1]] = values
    return out


class _BatchProducer:
    """Iterate ``(windows, (B, 3, h', w') float32 batch)`` over an image, reading strips once."""

    def __init__(self, predictor, source, windows):
        self.predictor = predictor
        self.source = source
        self.windows = windows

    def __iter__(self):
        predictor = self.predictor
        strips = {}
        windows = self.windows
        # Strips are kept while a later window still reads them (windows are row-major except
        # for the interleaved last two rows).
        lowest_ahead = np.minimum.accumulate(windows[::-1, 1])[::-1]
        for start in range(0, len(windows), predictor.batch_size):
            chunk = windows[start : start + predictor.batch_size]
            first_row = int(lowest_ahead[start])
            h, w = int(chunk[0, 3] - chunk[0, 1]), int(chunk[0, 2] - chunk[0, 0])
            batch = np.zeros(
                (len(chunk), 3, _padded(h, predictor.size_divisor), _padded(w, predictor.size_divisor)),
                dtype=np.float32,
            )
            for k, (x1, y1, x2, y2) in enumerate(chunk.tolist()):
                if y1 not in strips:
                    strips = {key: value for key, value in strips.items() if key >= first_row}
                    strips[y1] = self.source.read_rows(int(y1), int(y2))
                batch[k, :, :h, :w] = predictor._window(strips[y1], x1, x2)
            yield chunk, batch


_DONE = object()


def _in_background(iterable, depth=2):
    """Iterate ``iterable`` in a daemon thread, ``depth`` items ahead; re-raise its errors here."""
    items = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work():
        try:
            for item in iterable:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(_DONE)
        except BaseException as error:  # handed to the consumer
            items.put(error)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
