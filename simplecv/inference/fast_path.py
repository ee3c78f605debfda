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
float32 ulps. The exported model is checked against dygraph on the first window; if it
differs by more than ``atol`` or fails to build, a warning is logged and dygraph is used.
"""
import contextlib
import os
import shutil
import tempfile
import weakref
from collections import OrderedDict

import numpy as np
import paddle
import paddle.nn.functional as F

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
    weights_h = _interp_weights(h, out_h, mode, align_corners, align_mode)
    weights_w_t = np.ascontiguousarray(_interp_weights(w, out_w, mode, align_corners, align_mode).T)
    # The reshape comes first on purpose: it turns a oneDNN (channels-last) tensor into a plain
    # one, which oneDNN's matmul needs (see the module docstring).
    rows = paddle.matmul(x.reshape([n * c * h, w]), paddle.to_tensor(weights_w_t))
    rows = rows.reshape([n * c, h, out_w])
    cols = paddle.matmul(paddle.to_tensor(weights_h).unsqueeze(0).expand([n * c, out_h, h]), rows)
    return cols.reshape([n, c, out_h, out_w])


@contextlib.contextmanager
def onednn_safe_interpolate():
    """Within the block, ``paddle.nn.functional.interpolate`` is :func:`matmul_interpolate`.

    Layers such as ``nn.UpsamplingBilinear2D`` and models that call ``F.interpolate`` through
    the module attribute pick it up while they are traced for export.
    """
    original = F.interpolate
    F.interpolate = matmul_interpolate
    try:
        yield
    finally:
        F.interpolate = original


class OneDNNForward:
    """Run a model exported per input shape with Paddle Inference and oneDNN (CPU).

    ``(B, 3, h, w) ndarray -> (B, C, h, w) ndarray``. Each new input shape exports the model
    once (a few seconds) into a temporary folder; up to ``max_cached`` predictors are kept.
    The first call compares the exported model with dygraph on one window; on a failure or a
    difference above ``atol`` it logs a warning and uses dygraph from then on.

    Args:
        model: the eval-mode ``paddle.nn.Layer``.
        num_threads: CPU threads for oneDNN; default ``OMP_NUM_THREADS`` or all cores.
        atol: largest accepted absolute difference of probabilities in the start-up check.
        max_cached: predictors (input shapes) kept at once.
    """

    name = 'onednn'

    def __init__(self, model, num_threads=None, atol=1e-4, max_cached=4):
        self.model = model
        self.num_threads = int(num_threads or os.environ.get('OMP_NUM_THREADS') or os.cpu_count() or 1)
        self.atol = atol
        self.max_cached = max_cached
        self.dygraph = DygraphForward(model)
        self.fallback = None
        self.verified = False
        self.max_difference = None
        self._predictors = OrderedDict()
        self._workdir = tempfile.mkdtemp(prefix='factseg_onednn_')
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._workdir, True)

    def __call__(self, batch):
        if self.fallback is None:
            try:
                if not self.verified:
                    self._verify(batch[:1])
                return self._run(batch) if self.fallback is None else self.fallback(batch)
            except Exception as error:  # any export or runtime failure: keep the evaluation going
                self._give_up('%s: %s' % (type(error).__name__, str(error).splitlines()[0] if str(error) else ''))
        return self.fallback(batch)

    def _give_up(self, reason):
        _LOGGER.warning('oneDNN fast path disabled (%s); using dygraph', reason)
        self.fallback = self.dygraph
        self._predictors.clear()

    def _verify(self, window):
        fast = self._run(window)
        reference = self.dygraph(window).numpy()
        self.max_difference = float(np.abs(fast - reference).max())
        self.verified = True
        if not self.max_difference <= self.atol:
            self._give_up('its output differs from dygraph by %.3g > %.3g on the first window'
                          % (self.max_difference, self.atol))
        else:
            _LOGGER.info('oneDNN fast path checked against dygraph on one window: max |diff| %.3g',
                         self.max_difference)

    def _predictor(self, shape):
        if shape in self._predictors:
            self._predictors.move_to_end(shape)
            return self._predictors[shape]
        import paddle.inference as inference

        prefix = os.path.join(self._workdir, 'x'.join(map(str, shape)), 'model')
        spec = [paddle.static.InputSpec(list(shape), 'float32', 'x')]
        with onednn_safe_interpolate():
            paddle.jit.save(self.model, prefix, input_spec=spec)
        config = inference.Config(prefix + '.json', prefix + '.pdiparams')
        config.disable_gpu()
        config.enable_onednn()
        config.set_cpu_math_library_num_threads(self.num_threads)
        config.disable_glog_info()
        predictor = inference.create_predictor(config)
        shutil.rmtree(os.path.dirname(prefix), ignore_errors=True)
        self._predictors[shape] = predictor
        while len(self._predictors) > self.max_cached:
            self._predictors.popitem(last=False)
        return predictor

    def _run(self, batch):
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        predictor = self._predictor(tuple(batch.shape))
        handle = predictor.get_input_handle(predictor.get_input_names()[0])
        handle.reshape(list(batch.shape))
        handle.copy_from_cpu(batch)
        predictor.run()
        return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()

    def close(self):
        """Drop the predictors and the temporary export folder."""
        self._predictors.clear()
        self._cleanup()


def onednn_available():
    """Whether this Paddle runs on CPU and was built with oneDNN."""
    try:
        built = paddle.base.core.is_compiled_with_mkldnn()
    except AttributeError:
        built = False
    return built and paddle.get_device() == 'cpu'


def build_forward(model, backend='auto', amp=None, atol=1e-4):
    """Choose the forward function for :class:`SlidingWindowPredictor`.

    Args:
        model: eval-mode model returning probabilities.
        backend: ``'dygraph'`` (exact reference arithmetic, any device), ``'onednn'`` (CPU fast
            path, checked against dygraph, float32 only) or ``'auto'`` (``'onednn'`` on a CPU
            build with oneDNN when ``amp`` is off, else ``'dygraph'``).
        amp: None, ``'fp16'`` or ``'bf16'`` (dygraph only).
        atol: tolerance of the fast path's start-up check.

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
        return OneDNNForward(model, atol=atol)
    raise ValueError("backend must be 'auto', 'dygraph' or 'onednn', got %r" % (backend,))
