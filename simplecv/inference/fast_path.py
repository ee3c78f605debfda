"""Model forward functions for the sliding-window predictor: dygraph, and a CPU fast path.

On CPU, Paddle's dygraph convolutions do not use oneDNN (``FLAGS_use_mkldnn`` /
``FLAGS_use_onednn`` change nothing for eager kernels in Paddle 3.3), and they are about 3x
slower than the same convolutions run by Paddle Inference with oneDNN. :class:`OneDNNForward`
exports the model with :func:`paddle.jit.save` for each input shape and runs it with Paddle
Inference and oneDNN. Paddle's interpolation ops cannot run under oneDNN there, so the exported
copy of the model uses the matmul form of interpolation and an element-wise ``logsumexp``
(:mod:`simplecv.module.export_ops`, chosen with :func:`~simplecv.module.export_ops.set_export_ops`
on the copy; the caller's model and Paddle itself are not changed). BatchNorm layers are folded
into their convolutions (:mod:`simplecv.inference.bn_fold`; Paddle's own fuse pass does not match
the traced ``batch_norm_``). Measured on FactSeg-R50 at 896x896 (2 cores): the program file went
from 31 MB to 1.7 MB (dense interpolation matrices were stored as float64 text), export from
~10 s to ~5 s, predictor creation from ~8 s to ~3.5 s.

A new program is checked against dygraph on its first window; if it differs by more than
``atol`` or fails to build, a warning is logged and dygraph is used. Programs that passed are
kept in the program cache (:mod:`simplecv.inference.program_cache`), so later runs skip both
the export and the check.
"""

import copy
import os
import shutil
import sys
import tempfile
import weakref
from collections import OrderedDict

import numpy as np
import paddle

from simplecv.inference.heap import HeapKeeper
from simplecv.inference.program_cache import (
    CACHE_ENV,
    FORMAT as PROGRAM_FORMAT,
    ProgramCache,
    code_digest,
    resolve_cache_dir,
    weights_digest,
)
from simplecv.module import export_ops
from simplecv.util.logger import get_logger

_LOGGER = get_logger('factseg.inference')
AMP_DTYPES = {'fp16': 'float16', 'bf16': 'bfloat16'}
# The implementations the exported program uses (see simplecv.module.export_ops); part of the cache key.
EXPORT_OPS = dict(interpolation='matmul', logsumexp='elementwise')


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


def export_onednn_program(model, prefix, input_shape):
    """Export ``model`` for Paddle Inference + oneDNN at a fixed input shape.

    BatchNorm layers are folded into their convolutions (:func:`~simplecv.inference.bn_fold.fold_batch_norms`,
    on a copy), and the copy's layers are switched to :data:`EXPORT_OPS` (matmul interpolation,
    element-wise ``logsumexp``) with :func:`~simplecv.module.export_ops.set_export_ops`.

    Args:
        model: eval-mode ``paddle.nn.Layer``.
        prefix: path prefix of ``<prefix>.json`` and ``<prefix>.pdiparams``.
        input_shape: ``(N, 3, H, W)``, all positive.

    Returns:
        int: the number of folded BatchNorm layers.
    """
    from simplecv.inference.bn_fold import fold_batch_norms

    folded, count = fold_batch_norms(model)
    exported = folded if folded is not model else copy.deepcopy(model)
    export_ops.set_export_ops(exported, **EXPORT_OPS)
    spec = [paddle.static.InputSpec([int(v) for v in input_shape], 'float32', 'x')]
    paddle.jit.save(exported, prefix, input_spec=spec)
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
        reload: ``() -> model`` giving the same model again, or None. With it the dygraph model is
            let go once the programs in use are verified (it is only needed to export, to check
            and to fall back), and rebuilt if it is needed again: the process does not hold the
            weights twice while it predicts.
    """

    name = 'onednn'

    def __init__(self, model, num_threads=None, atol=1e-4, max_cached=4, cache_dir=None, config=None, reload=None):
        self.model = model
        self.reload = reload
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
        self._unchecked = {}  # shape -> (staging folder, key fields) until its first window passed
        self._workdir = tempfile.mkdtemp(prefix='factseg_onednn_')
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._workdir, True)
        self.heap = HeapKeeper()

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
        self._predictors.clear()
        self.fallback = self._dygraph()

    def _dygraph(self):
        """The dygraph forward, rebuilding the model through ``reload`` if it was let go."""
        if self.dygraph is None:
            self.model = self.reload()
            self.dygraph = DygraphForward(self.model)
        return self.dygraph

    def _settle(self):
        """Once every program in use is verified: drop the dygraph model (only with ``reload``) and
        keep freed memory for the next window (:class:`~simplecv.inference.heap.HeapKeeper`)."""
        if not self.verified:
            return
        if self.reload is not None and self.dygraph is not None:
            self.model = self.dygraph = None
        self.heap.after_window()

    def key_fields(self, shape):
        """What determines the program of input ``shape`` (the cache key's fields)."""
        if self._key_fields is None:
            import simplecv.inference.bn_fold as bn_fold

            self._key_fields = dict(
                format=PROGRAM_FORMAT,
                weights=weights_digest(self.model),
                code=code_digest(self.model, [sys.modules[__name__], bn_fold, export_ops]),
                config=self.config,
                export=dict(EXPORT_OPS, fold_batch_norm=True),
                paddle=paddle.__version__,
                paddle_commit=getattr(paddle.version, 'commit', ''),
                check_atol=self.atol,
            )
        return dict(self._key_fields, input_shape=list(shape))

    def _predictor(self, shape):
        if shape in self._predictors:
            self._predictors.move_to_end(shape)
            return self._predictors[shape]
        fields = self.key_fields(shape)
        predictor = self._from_cache(fields) if self.cache is not None else None
        if predictor is None:
            self.heap.return_freed()  # exporting: its dygraph temporaries go back to the system
            staging = self.cache.staging_dir() if self.cache is not None else tempfile.mkdtemp(dir=self._workdir)
            prefix = os.path.join(staging, 'model')
            folded = export_onednn_program(self._dygraph().model, prefix, shape)
            _LOGGER.info('exported the model for oneDNN at input %s (%d BatchNorm layers folded)', list(shape), folded)
            predictor = create_onednn_predictor(prefix, self.num_threads)
            self._unchecked[shape] = (staging, fields)
        self._predictors[shape] = predictor
        while len(self._predictors) > self.max_cached:
            self._predictors.popitem(last=False)
        return predictor

    def _from_cache(self, fields):
        found = self.cache.lookup(fields)
        if found is None:
            _LOGGER.info(
                'oneDNN program cache: no program for input %s in %s yet; exporting it '
                '(set --cache_dir or $%s to move the cache, `python tools/program_cache.py --clear` '
                'to clear it)',
                fields['input_shape'],
                self.cache.root,
                CACHE_ENV,
            )
            return None
        folder, entry = found
        try:
            predictor = create_onednn_predictor(os.path.join(folder, 'model'), self.num_threads)
        except Exception as error:  # an unreadable program: rebuild it
            _LOGGER.warning(
                'oneDNN program cache: entry %s does not load (%s); rebuilding it', folder, type(error).__name__
            )
            self.cache.discard(folder)
            return None
        self.cache_hits += 1
        self.max_difference = entry['check']['max_abs_diff']
        _LOGGER.info(
            'oneDNN program cache: using %s (checked against dygraph when cached: max |diff| %.3g)',
            folder,
            self.max_difference,
        )
        return predictor

    def _check(self, shape, fast, window):
        staging, fields = self._unchecked.pop(shape)
        reference = self._dygraph()(window).numpy()
        self.max_difference = float(np.abs(fast - reference).max())
        if not self.max_difference <= self.atol:
            shutil.rmtree(staging, ignore_errors=True)
            self._give_up(
                'its output differs from dygraph by %.3g > %.3g on the first window' % (self.max_difference, self.atol)
            )
            return False
        _LOGGER.info('oneDNN fast path checked against dygraph on one window: max |diff| %.3g', self.max_difference)
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
        self._settle()
        return out

    def close(self):
        """Drop the predictors and the temporary export folder; freed memory goes back to the system again."""
        self._predictors.clear()
        self.heap.return_freed()
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


def build_forward(model, backend='auto', amp=None, atol=1e-4, cache_dir=None, config=None, reload=None):
    """Choose the forward function for :class:`SlidingWindowPredictor`.

    Args:
        model: eval-mode model returning probabilities.
        backend: ``'dygraph'`` (exact reference arithmetic, any device), ``'onednn'`` (CPU fast
            path, checked against dygraph, float32 only) or ``'auto'`` (``'onednn'`` on a CPU
            build with oneDNN when ``amp`` is off, else ``'dygraph'``).
        amp: None, ``'fp16'`` or ``'bf16'`` (dygraph only).
        atol: tolerance of the fast path's check against dygraph.
        cache_dir, config, reload: program cache directory, the config part of its key and how
            to rebuild the model once it was let go (see :class:`OneDNNForward`).

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
            raise ValueError(
                'the onednn backend needs a CPU build of Paddle with oneDNN (device is %s)' % paddle.get_device()
            )
        return OneDNNForward(model, atol=atol, cache_dir=cache_dir, config=config, reload=reload)
    raise ValueError("backend must be 'auto', 'dygraph' or 'onednn', got %r" % (backend,))
