"""Model forward functions for the sliding-window predictor: dygraph, and a CPU fast path.

On CPU, Paddle's dygraph convolutions do not use oneDNN (``FLAGS_use_mkldnn`` /
``FLAGS_use_onednn`` change nothing for eager kernels in Paddle 3.3), and they are about 3x
slower than the same convolutions run by Paddle Inference with oneDNN. :class:`OneDNNForward`
exports the model with :func:`paddle.jit.save` for each input shape and runs it with Paddle
Inference and oneDNN. Two problems had to be solved (Paddle 3.3.1, PIR executor):

1. ``bilinear_interp`` / ``nearest_interp`` cannot run as oneDNN ops: the oneDNN instruction
   cannot convert their ``scale`` attribute (``ArrayAttribute<DoubleAttribute>``) and raises
   ``NotImplementedError``, whether the op was built with ``scale_factor`` or ``size``, and
   ``Config.set_onednn_op`` does not keep them off oneDNN.
2. The exact matrix form of interpolation, ``A_h @ X @ A_w^T`` on 4-D ``X``, gives wrong
   numbers under oneDNN: the oneDNN convolution leaves its output in a channels-last
   (``acdb``) memory layout, and the oneDNN ``matmul`` that follows reads that memory as if it
   were plain NCHW (no reorder is inserted). Checked on ``conv -> matmul`` pairs: the wrong
   result equals ``A @ reinterpret_nchw(nhwc_memory)`` to 2e-6, and an element-wise op or a
   ``reshape`` before the matmul makes it right.

So, while exporting, ``paddle.nn.functional.interpolate`` is replaced by
:func:`matmul_interpolate`, which first *reshapes* ``X`` to 2-D (the reshape reorders to plain
layout) and then applies the interpolation matrices as 2-D / batched matmuls. Its weights
repeat the float32 arithmetic of Paddle's CPU kernels; it equals ``F.interpolate`` within a few
float32 ulps. Two more changes make the program faster (numbers within float32 rounding):
BatchNorm layers are folded into their convolutions (:mod:`simplecv.inference.bn_fold`; Paddle's
own fuse pass does not match the traced ``batch_norm_``), and ``paddle.logsumexp`` becomes
oneDNN element-wise ops. Measured on FactSeg-R50 at 896x896 (2 cores): the program file went
from 31 MB to 1.7 MB (dense interpolation matrices were stored as float64 text), export from
~10 s to ~5 s, predictor creation from ~8 s to ~3.5 s.

A new program is checked against dygraph on its first window; if it differs by more than
``atol`` or fails to build, a warning is logged and dygraph is used. Programs that passed are
kept in the program cache (:mod:`simplecv.inference.program_cache`), so later runs skip both
the export and the check.
"""
import contextlib
import os
import shutil
import sys
import tempfile
import weakref
from collections import OrderedDict

import numpy as np
import paddle
import paddle.nn.functional as F

from simplecv.inference.program_cache import (CACHE_ENV, FORMAT as PROGRAM_FORMAT, ProgramCache, code_digest,
                                              resolve_cache_dir, weights_digest)
from simplecv.util.logger import get_logger

_LOGGER = get_logger('factseg.inference')
AMP_DTYPES = {'fp16': 'float16', 'bf16': 'bfloat16'}


class DygraphForward:
    """Run a model in dygraph without gradients: ``(B, 3, h, w) ndarray -> (B, C, h, w)`` Tensor.

    Args:
        model: a ``paddle.nn.Layer`` in eval mode returning probabilities.
        amp: None for float32, ``'fp16'`` or ``'bf16'`` for ``paddle.amp.auto_cast`` (O1);
            the output is cast back to float32 before it is accumulated. Paddle 3.3 applies
            auto_cast on GPU (and XPU) only; on CPU it has no effect.
    """

    name = 'dygraph'

    def __init__(self, model, amp=None):
        if amp not in (None, 'none') and amp not in AMP_DTYPES:
            raise ValueError('amp must be None, fp16 or bf16, got %r' % (amp,))
        self.model = model
        self.amp = None if amp in (None, 'none') else amp

    def __call__(self, batch):
        x = paddle.to_tensor(batch)
        with paddle.no_grad():
            if self.amp is None:
                return self.model(x)
            with paddle.amp.auto_cast(dtype=AMP_DTYPES[self.amp], level='O1'):
                out = self.model(x)
            return out.astype('float32')


def _interp_weights(n_in, n_out, mode, align_corners, align_mode):
    """``(n_out, n_in)`` float32 matrix of Paddle's CPU interpolation along one axis."""
    one = np.float32(1.0)
    k = np.arange(n_out, dtype=np.float32)
    weights = np.zeros((n_out, n_in), dtype=np.float32)
    rows = np.arange(n_out)
    if mode == 'nearest':
        if align_corners:
            ratio = np.float32(n_in - 1) / np.float32(n_out - 1) if n_out > 1 else np.float32(0)
            src = np.floor(ratio * k + np.float32(0.5)).astype(np.int64)
        else:
            ratio = np.float32(n_in) / np.float32(n_out)
            src = np.floor(ratio * k).astype(np.int64)
        weights[rows, np.minimum(src, n_in - 1)] = 1
        return weights
    if n_out > 1 and align_corners:
        ratio = np.float32(n_in - 1) / np.float32(n_out - 1)
    elif n_out > 1:
        ratio = np.float32(n_in) / np.float32(n_out)
    else:
        ratio = np.float32(0)
    if align_corners or align_mode == 1:
        src = ratio * k
    else:
        src = np.maximum(ratio * (k + np.float32(0.5)) - np.float32(0.5), np.float32(0))
    low = np.minimum(src.astype(np.int64), n_in - 1)
    high = np.minimum(low + 1, n_in - 1)
    frac = (src - low.astype(np.float32)).astype(np.float32)
    np.add.at(weights, (rows, low), one - frac)
    np.add.at(weights, (rows, high), frac)
    return weights


def _static_hw(x):
    shape = list(x.shape)
    if len(shape) != 4 or any(not isinstance(v, int) or v <= 0 for v in shape):
        raise NotImplementedError('matmul_interpolate needs a 4-D input of known shape, got %s' % (shape,))
    return shape


def _interp_matrix(n_in, n_out, mode, align_corners, align_mode):
    """The ``(n_out, n_in)`` matrix of :func:`_interp_weights` built in the graph from two columns.

    Each row has at most two non-zeros, so the program stores their positions and weights
    (``2 * n_out`` numbers) and rebuilds the matrix with ``one_hot``; a dense constant would put
    ``n_out * n_in`` float64 numbers into the program file (31 MB for FactSeg-R50 at 896, most
    of the 7 s it took Paddle Inference to load it). ``one_hot(low) * (1 - f) + one_hot(high) * f``
    is bit-identical to :func:`_interp_weights` (products with 0 and 1 are exact, and where
    ``low == high`` the sum ``(1 - f) + f`` is the one ``np.add.at`` makes).
    """
    dense = _interp_weights(n_in, n_out, mode, align_corners, align_mode)
    rows = np.arange(n_out)
    low = dense.argmax(axis=1)
    first = dense[rows, low].copy()
    rest = dense.copy()
    rest[rows, low] = 0
    high = np.where(rest.any(axis=1), rest.argmax(axis=1), low)
    second = rest[rows, high]
    matrix = (F.one_hot(paddle.to_tensor(low), n_in) * paddle.to_tensor(first).unsqueeze(1)
              + F.one_hot(paddle.to_tensor(high), n_in) * paddle.to_tensor(second).unsqueeze(1))
    return matrix


@paddle.jit.not_to_static
def matmul_interpolate(x, size=None, scale_factor=None, mode='nearest', align_corners=False, align_mode=0,
                       data_format='NCHW', name=None, **unused):
    """``F.interpolate`` for 4-D NCHW ``nearest``/``bilinear`` as two matmuls (for oneDNN export).

    Args:
        x: ``(N, C, H, W)`` tensor of static shape.
        size, scale_factor, mode, align_corners, align_mode, data_format: as
            :func:`paddle.nn.functional.interpolate`.

    Returns:
        Tensor: ``(N, C, H_out, W_out)``.

    Raises:
        NotImplementedError: another mode or layout, or a dynamic shape.
    """
    if data_format != 'NCHW' or mode not in ('nearest', 'bilinear') or unused.get('antialias'):
        raise NotImplementedError('matmul_interpolate supports NCHW nearest/bilinear, got %s %s' % (data_format, mode))
    n, c, h, w = _static_hw(x)
    if size is not None:
        out_h, out_w = (int(v) for v in size)
    else:
        scale = scale_factor if isinstance(scale_factor, (list, tuple)) else (scale_factor, scale_factor)
        out_h, out_w = int(h * float(scale[0])), int(w * float(scale[1]))
    weights_h = _interp_matrix(h, out_h, mode, align_corners, align_mode)
    weights_w_t = _interp_matrix(w, out_w, mode, align_corners, align_mode).t()
    # The reshape comes first on purpose: it turns a oneDNN (channels-last) tensor into a plain
    # one, which oneDNN's matmul needs (see the module docstring).
    rows = paddle.matmul(x.reshape([n * c * h, w]), weights_w_t)
    rows = rows.reshape([n * c, h, out_w])
    cols = paddle.matmul(weights_h.unsqueeze(0).expand([n * c, out_h, h]), rows)
    return cols.reshape([n, c, out_h, out_w])


@paddle.jit.not_to_static
def onednn_logsumexp(x, axis=None, keepdim=False, name=None):
    """``paddle.logsumexp`` as ``m + log(sum(exp(x - m)))`` with ``m = max(x)`` (oneDNN element-wise ops).

    The same formula as Paddle's CPU kernel, whose plain (non-oneDNN) loop cost 0.3 s per
    ``16 x 896 x 896`` call inside the exported FactSeg program. Marked ``not_to_static`` like
    :func:`matmul_interpolate`: dy2static would otherwise try to convert it while it holds its
    own (non-reentrant) conversion lock, and hang.
    """
    top = paddle.max(x, axis=axis, keepdim=True)
    out = top + paddle.log(paddle.sum(paddle.exp(x - top), axis=axis, keepdim=True))
    return out if keepdim else out.squeeze(axis)


@contextlib.contextmanager
def onednn_safe_interpolate():
    """Within the block, ``paddle.nn.functional.interpolate`` is :func:`matmul_interpolate`
    and ``paddle.logsumexp`` is :func:`onednn_logsumexp`.

    Layers such as ``nn.UpsamplingBilinear2D`` and models that call ``F.interpolate`` or
    ``paddle.logsumexp`` through the module attribute pick them up while they are traced for export.
    """
    original = F.interpolate, paddle.logsumexp
    F.interpolate, paddle.logsumexp = matmul_interpolate, onednn_logsumexp
    try:
        yield
    finally:
        F.interpolate, paddle.logsumexp = original


def export_onednn_program(model, prefix, input_shape):
    """Export ``model`` for Paddle Inference + oneDNN at a fixed input shape.

    BatchNorm layers are folded into their convolutions (:func:`~simplecv.inference.bn_fold.fold_batch_norms`,
    on a copy) and interpolation / ``logsumexp`` take their oneDNN forms
    (:func:`onednn_safe_interpolate`).

    Args:
        model: eval-mode ``paddle.nn.Layer``.
        prefix: path prefix of ``<prefix>.json`` and ``<prefix>.pdiparams``.
        input_shape: ``(N, 3, H, W)``, all positive.

    Returns:
        int: the number of folded BatchNorm layers.
    """
    from simplecv.inference.bn_fold import fold_batch_norms

    folded, count = fold_batch_norms(model)
    spec = [paddle.static.InputSpec([int(v) for v in input_shape], 'float32', 'x')]
    with onednn_safe_interpolate():
        paddle.jit.save(folded, prefix, input_spec=spec)
    return count


def create_onednn_predictor(prefix, num_threads):
    """A Paddle Inference predictor with oneDNN on CPU for ``<prefix>.json`` / ``.pdiparams``."""
    import paddle.inference as inference

    config = inference.Config(prefix + '.json', prefix + '.pdiparams')
    config.disable_gpu()
    config.enable_onednn()
    config.set_cpu_math_library_num_threads(int(num_threads))
    config.disable_glog_info()
    return inference.create_predictor(config)


def run_predictor(predictor, batch):
    """Run a one-input, one-output predictor: ``(B, 3, h, w) float32 ndarray -> ndarray``."""
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(list(batch.shape))
    handle.copy_from_cpu(np.ascontiguousarray(batch, dtype=np.float32))
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


class OneDNNForward:
    """Run a model exported per input shape with Paddle Inference and oneDNN (CPU).

    ``(B, 3, h, w) ndarray -> (B, C, h, w) ndarray``. Each new input shape needs a program:
    it is taken from the program cache (:mod:`simplecv.inference.program_cache`) when an entry
    for these weights, config, code, shape and Paddle version exists; otherwise the model is
    exported (:func:`export_onednn_program`), checked against dygraph on the first window of
    that shape, and stored in the cache only if the check passes. On an export or runtime
    failure or a difference above ``atol`` a warning is logged and dygraph is used from then on.

    Args:
        model: the eval-mode ``paddle.nn.Layer``.
        num_threads: CPU threads for oneDNN; default ``OMP_NUM_THREADS`` or all cores.
        atol: largest accepted absolute difference of probabilities in the check.
        max_cached: predictors (input shapes) kept in memory at once.
        cache_dir: program cache directory; None for the default
            (:func:`~simplecv.inference.program_cache.default_cache_dir`), ``'none'`` for no cache.
        config: JSON-able description of the model's config, part of the cache key (the code
            and weights are hashed from the model itself).
    """

    name = 'onednn'

    def __init__(self, model, num_threads=None, atol=1e-4, max_cached=4, cache_dir=None, config=None):
        self.model = model
        self.num_threads = int(num_threads or os.environ.get('OMP_NUM_THREADS') or os.cpu_count() or 1)
        self.atol = atol
        self.max_cached = max_cached
        self.config = config
        self.dygraph = DygraphForward(model)
        self.fallback = None
        self.max_difference = None
        self.cache_hits = 0
        root = resolve_cache_dir(cache_dir)
        self.cache = ProgramCache(root) if root is not None else None
        self._key_fields = None
        self._predictors = OrderedDict()
        self._unchecked = {}   # shape -> (staging folder, key fields) until its first window passed
        self._workdir = tempfile.mkdtemp(prefix='factseg_onednn_')
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._workdir, True)

    @property
    def verified(self):
        """Whether every program in use was checked against dygraph (now or when it was cached)."""
        return self.fallback is None and bool(self._predictors) and not self._unchecked

    def __call__(self, batch):
        if self.fallback is None:
            try:
                return self._run(batch)
            except Exception as error:  # any export or runtime failure: keep the evaluation going
                self._give_up('%s: %s' % (type(error).__name__, str(error).splitlines()[0] if str(error) else ''))
        return self.fallback(batch)

    def _give_up(self, reason):
        _LOGGER.warning('oneDNN fast path disabled (%s); using dygraph', reason)
        self.fallback = self.dygraph
        self._predictors.clear()

    def key_fields(self, shape):
        """What determines the program of input ``shape`` (the cache key's fields)."""
        if self._key_fields is None:
            import simplecv.inference.bn_fold as bn_fold

            self._key_fields = dict(
                format=PROGRAM_FORMAT, weights=weights_digest(self.model),
                code=code_digest(self.model, [sys.modules[__name__], bn_fold]), config=self.config,
                export=dict(interpolation='matmul', fold_batch_norm=True, logsumexp='onednn'),
                paddle=paddle.__version__, paddle_commit=getattr(paddle.version, 'commit', ''),
                check_atol=self.atol)
        return dict(self._key_fields, input_shape=list(shape))

    def _predictor(self, shape):
        if shape in self._predictors:
            self._predictors.move_to_end(shape)
            return self._predictors[shape]
        fields = self.key_fields(shape)
        predictor = self._from_cache(fields) if self.cache is not None else None
        if predictor is None:
            staging = self.cache.staging_dir() if self.cache is not None else tempfile.mkdtemp(dir=self._workdir)
            prefix = os.path.join(staging, 'model')
            folded = export_onednn_program(self.model, prefix, shape)
            _LOGGER.info('exported the model for oneDNN at input %s (%d BatchNorm layers folded)',
                         list(shape), folded)
            predictor = create_onednn_predictor(prefix, self.num_threads)
            self._unchecked[shape] = (staging, fields)
        self._predictors[shape] = predictor
        while len(self._predictors) > self.max_cached:
            self._predictors.popitem(last=False)
        return predictor

    def _from_cache(self, fields):
        found = self.cache.lookup(fields)
        if found is None:
            _LOGGER.info('oneDNN program cache: no program for input %s in %s yet; exporting it '
                         '(set --cache_dir or $%s to move the cache, `python tools/program_cache.py --clear` '
                         'to clear it)', fields['input_shape'], self.cache.root, CACHE_ENV)
            return None
        folder, entry = found
        try:
            predictor = create_onednn_predictor(os.path.join(folder, 'model'), self.num_threads)
        except Exception as error:  # an unreadable program: rebuild it
            _LOGGER.warning('oneDNN program cache: entry %s does not load (%s); rebuilding it',
                            folder, type(error).__name__)
            self.cache.discard(folder)
            return None
        self.cache_hits += 1
        self.max_difference = entry['check']['max_abs_diff']
        _LOGGER.info('oneDNN program cache: using %s (checked against dygraph when cached: max |diff| %.3g)',
                     folder, self.max_difference)
        return predictor

    def _check(self, shape, fast, window):
        staging, fields = self._unchecked.pop(shape)
        reference = self.dygraph(window).numpy()
        self.max_difference = float(np.abs(fast - reference).max())
        if not self.max_difference <= self.atol:
            shutil.rmtree(staging, ignore_errors=True)
            self._give_up('its output differs from dygraph by %.3g > %.3g on the first window'
                          % (self.max_difference, self.atol))
            return False
        _LOGGER.info('oneDNN fast path checked against dygraph on one window: max |diff| %.3g',
                     self.max_difference)
        if self.cache is not None:
            folder = self.cache.store(staging, fields, dict(max_abs_diff=self.max_difference, atol=self.atol))
            _LOGGER.info('oneDNN program cache: stored %s', folder)
        else:
            shutil.rmtree(staging, ignore_errors=True)
        return True

    def _run(self, batch):
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        shape = tuple(batch.shape)
        out = run_predictor(self._predictor(shape), batch)
        if shape in self._unchecked and not self._check(shape, out[:1], batch[:1]):
            return self.fallback(batch).numpy()
        return out

    def close(self):
        """Drop the predictors and the temporary export folder."""
        self._predictors.clear()
        for staging, _ in self._unchecked.values():
            shutil.rmtree(staging, ignore_errors=True)
        self._unchecked.clear()
        self._cleanup()


def onednn_available():
    """Whether this Paddle runs on CPU and was built with oneDNN."""
    try:
        built = paddle.base.core.is_compiled_with_mkldnn()
    except AttributeError:
        built = False
    return built and paddle.get_device() == 'cpu'


def build_forward(model, backend='auto', amp=None, atol=1e-4, cache_dir=None, config=None):
    """Choose the forward function for :class:`SlidingWindowPredictor`.

    Args:
        model: eval-mode model returning probabilities.
        backend: ``'dygraph'`` (exact reference arithmetic, any device), ``'onednn'`` (CPU fast
            path, checked against dygraph, float32 only) or ``'auto'`` (``'onednn'`` on a CPU
            build with oneDNN when ``amp`` is off, else ``'dygraph'``).
        amp: None, ``'fp16'`` or ``'bf16'`` (dygraph only).
        atol: tolerance of the fast path's check against dygraph.
        cache_dir, config: program cache directory and the config part of its key
            (see :class:`OneDNNForward`).

    Returns:
        DygraphForward or OneDNNForward.

    Raises:
        ValueError: an unknown backend, or ``'onednn'`` with ``amp`` or without a oneDNN CPU build.
    """
    amp = None if amp in (None, 'none') else amp
    if backend == 'auto':
        backend = 'onednn' if onednn_available() and amp is None else 'dygraph'
    if backend == 'dygraph':
        return DygraphForward(model, amp)
    if backend == 'onednn':
        if amp is not None:
            raise ValueError('--amp needs the dygraph backend; the oneDNN fast path runs float32')
        if not onednn_available():
            raise ValueError('the onednn backend needs a CPU build of Paddle with oneDNN '
                             '(device is %s)' % paddle.get_device())
        return OneDNNForward(model, atol=atol, cache_dir=cache_dir, config=config)
    raise ValueError("backend must be 'auto', 'dygraph' or 'onednn', got %r" % (backend,))
