"""ONNX deployment: convert an exported Paddle program with paddle2onnx and run it with onnxruntime.

The conversion reads the folder that :func:`simplecv.inference.static_model.export_model` writes
(Paddle 3's ``model.json`` program + ``model.pdiparams``) and saves ``model.onnx`` beside them,
so one ``deploy.json`` describes both. paddle2onnx 2.1.0 converts the ``matmul`` export (fixed
input size, exact matmul interpolation); it cannot convert Paddle's native interpolation ops
(``the 0th elementwise MUST be ir::FloatAttribute``), so a ``native`` export is refused with
that message.
"""

import contextlib
import io
import os
import re

from simplecv.core.errors import CheckpointError, ExportError
from simplecv.inference.static_model import MODEL_PREFIX, read_deploy_info, run_in_fixed_batches
from simplecv.util.logger import get_logger

ONNX_FILE = 'model.onnx'
DEFAULT_OPSET = 11
_logger = get_logger('factseg.onnx')


def export_onnx(model_dir, opset_version=DEFAULT_OPSET):
    """Convert the exported program in ``model_dir`` to ``model_dir/model.onnx``.

    The file is written under a temporary name and renamed, so a failed conversion leaves no
    ``model.onnx`` behind.

    Args:
        model_dir: folder written by ``export_model`` (``model.json``, ``model.pdiparams``,
            ``deploy.json``); the program takes ``(N, 3, H, W)`` windows and returns
            ``(N, C, H, W)`` probabilities, and so does the ONNX model.
        opset_version: ONNX opset to target.

    Returns:
        str: the path of ``model.onnx``.

    Raises:
        CheckpointError: ``model_dir`` is not an exported program.
        ExportError: paddle2onnx is not installed, or it cannot convert the program (its
            message is included).
    """
    info = read_deploy_info(model_dir)
    try:
        import paddle2onnx
    except ImportError as error:
        raise ExportError('ONNX export needs paddle2onnx (%s); pip install paddle2onnx==2.1.0' % error) from None
    prefix = os.path.join(model_dir, MODEL_PREFIX)
    target = os.path.join(model_dir, ONNX_FILE)
    partial = target + '.partial'
    messages = io.StringIO()
    try:
        # paddle2onnx prints its progress and, on a failure, its reason to stdout, then calls
        # sys.exit(-1); keep the text for the message and turn the exit into an ExportError.
        with contextlib.redirect_stdout(messages):
            paddle2onnx.export(
                prefix + '.json', prefix + '.pdiparams', partial, opset_version=opset_version, optimize_tool='None'
            )
    except (Exception, SystemExit) as error:  # noqa: BLE001 - any converter failure becomes one ExportError
        if os.path.exists(partial):
            os.remove(partial)
        marker = 'Failed to convert PaddlePaddle model:'
        text = re.sub(r'\x1b\[[0-9;]*m', '', messages.getvalue())  # without colour codes
        reasons = [line.split(marker, 1)[1].strip() for line in text.splitlines() if marker in line]
        reason = reasons[0] if reasons else '%s: %s' % (type(error).__name__, error)
        hint = (
            '; export with --interpolation matmul (a fixed input size), which converts'
            if info.get('interpolation') == 'native'
            else ''
        )
        raise ExportError(
            'paddle2onnx %s cannot convert %s: %s%s'
            % (paddle2onnx.__version__, prefix + '.json', ' '.join(reason.split()), hint)
        ) from None
    _logger.debug('paddle2onnx output:\n%s', messages.getvalue())
    os.replace(partial, target)
    return target


class OnnxModelForward:
    """Run ``model.onnx`` with onnxruntime on the CPU: ``(B, 3, h, w) float32 ndarray -> (B, C, h, w) ndarray``.

    A model exported with a fixed batch size ``b`` takes larger batches in chunks of ``b`` and
    zero-pads a smaller last chunk (the padding windows' outputs are dropped).

    Args:
        model_dir: folder holding ``model.onnx`` and ``deploy.json`` (``tools/export_model.py
            --format onnx``).
        num_threads: intra-op threads; default ``OMP_NUM_THREADS``, else onnxruntime's choice.

    Raises:
        CheckpointError: no exported model or no ``model.onnx`` in ``model_dir``.
        ExportError: onnxruntime is not installed.
    """

    name = 'onnxruntime'

    def __init__(self, model_dir, num_threads=None):
        self.info = read_deploy_info(model_dir)
        path = os.path.join(model_dir, ONNX_FILE)
        if not os.path.isfile(path):
            raise CheckpointError(
                '%s has no %s; export it with `python tools/export_model.py --config_path ... '
                '--ckpt_path ... --save_dir %s --format onnx`' % (model_dir, ONNX_FILE, model_dir)
            )
        try:
            import onnxruntime
        except ImportError as error:
            raise ExportError('--backend onnxruntime needs onnxruntime (%s); pip install onnxruntime' % error) from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(num_threads or os.environ.get('OMP_NUM_THREADS') or 0)
        options.log_severity_level = 3  # errors only: its optimiser warns about every Unsqueeze it keeps
        self._session = onnxruntime.InferenceSession(path, options, providers=['CPUExecutionProvider'])
        self._input_name = self._session.get_inputs()[0].name

    def __call__(self, batch):
        return run_in_fixed_batches(
            batch, self.info['input_shape'], lambda chunk: self._session.run(None, {self._input_name: chunk})[0]
        )
