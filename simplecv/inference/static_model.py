"""Export a model to a Paddle Inference program, and run an exported one as a window forward.

An exported folder holds ``model.json`` + ``model.pdiparams`` (``paddle.jit.save``) and
``deploy.json``: the input shape, normalisation, class names and palette, so that
``tools/infer.py`` needs neither the config nor the training code's checkpoint.
"""

import json
import os

import numpy as np
import paddle

from simplecv.core.errors import CheckpointError
from simplecv.inference.fast_path import export_onednn_program

DEPLOY_FILE = 'deploy.json'
MODEL_PREFIX = 'model'


def export_model(model, save_dir, input_shape, mean, std, class_names, colors, interpolation='matmul'):
    """Save an eval-mode model for Paddle Inference.

    Args:
        model: ``paddle.nn.Layer`` returning probabilities ``[N, C, H, W]``.
        save_dir: output folder (created).
        input_shape: ``(N, 3, H, W)`` of the normalised, padded windows the program takes; H and
            W multiples of 32. With ``interpolation='native'`` use -1 for free dimensions.
        mean, std: per-channel normalisation on the 0..255 scale, stored for the predictor.
        class_names, colors: stored for the outputs.
        interpolation: ``'matmul'`` exports with
            :func:`~simplecv.inference.fast_path.export_onednn_program` (matmul interpolation,
            folded BatchNorm) so the program runs under oneDNN on CPU (fixed shape); ``'native'`` keeps Paddle's
            interpolation ops (GPU, or CPU without oneDNN; free shapes allowed).

    Returns:
        str: the path prefix of the saved program.
    """
    if interpolation not in ('matmul', 'native'):
        raise ValueError("interpolation must be 'matmul' or 'native', got %r" % (interpolation,))
    shape = [int(v) for v in input_shape]
    if interpolation == 'matmul' and any(v <= 0 for v in shape):
        raise ValueError('the matmul export needs a fixed input shape, got %s' % (shape,))
    os.makedirs(save_dir, exist_ok=True)
    prefix = os.path.join(save_dir, MODEL_PREFIX)
    spec = [paddle.static.InputSpec(shape, 'float32', 'x')]
    model.eval()
    if interpolation == 'matmul':
        export_onednn_program(model, prefix, shape)
    else:
        paddle.jit.save(model, prefix, input_spec=spec)
    meta = dict(
        input_shape=shape,
        interpolation=interpolation,
        mean=list(mean),
        std=list(std),
        class_names=list(class_names),
        colors=[list(c) for c in colors],
    )
    with open(os.path.join(save_dir, DEPLOY_FILE), 'w') as handle:
        json.dump(meta, handle, indent=2)
    return prefix


def read_deploy_info(model_dir):
    """Return the ``deploy.json`` dict of an exported folder.

    Raises:
        CheckpointError: the folder is not an export of ``tools/export_model.py``.
    """
    path = os.path.join(model_dir, DEPLOY_FILE)
    program = os.path.join(model_dir, MODEL_PREFIX + '.json')
    if not (os.path.isfile(path) and os.path.isfile(program)):
        raise CheckpointError(
            '%s is not an exported model (no %s and %s.json); make one with '
            '`python tools/export_model.py --config_path ... --ckpt_path ... --save_dir %s`'
            % (model_dir, DEPLOY_FILE, MODEL_PREFIX, model_dir)
        )
    with open(path) as handle:
        return json.load(handle)


def run_in_fixed_batches(batch, input_shape, run):
    """Run an exported program on ``batch``, in chunks of its fixed batch size when it has one.

    Args:
        batch (np.ndarray): normalised windows ``(N, 3, H, W)``.
        input_shape (list[int]): the exported input shape ``[B, 3, H, W]`` (``-1`` for free sizes).
        run: ``(B, 3, H, W) float32 -> (B, C, H, W)``, one call of the program.

    Returns:
        np.ndarray: ``(N, C, H, W)`` outputs (zero padding of the last chunk dropped).

    Raises:
        ValueError: the windows are not the size the program was exported for.
    """
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    expected = input_shape[2:]
    if any(e > 0 and e != s for e, s in zip(expected, batch.shape[2:])):
        raise ValueError(
            'the exported model takes %s windows, got %s; export it again with '
            '--input_size %d %d' % (expected, list(batch.shape[2:]), *batch.shape[2:])
        )
    step = input_shape[0] if input_shape[0] > 0 else len(batch)
    outputs = []
    for start in range(0, len(batch), step):
        chunk = batch[start : start + step]
        count = len(chunk)
        if count < step:
            chunk = np.concatenate([chunk, np.zeros((step - count,) + chunk.shape[1:], np.float32)])
        outputs.append(run(chunk)[:count])
    return np.concatenate(outputs)


class StaticModelForward:
    """Run an exported program: ``(B, 3, h, w) float32 ndarray -> (B, C, h, w) ndarray``.

    A program exported with a fixed batch size ``b`` takes larger batches in chunks of ``b``
    and zero-pads a smaller last chunk (the padding windows' outputs are dropped).

    Args:
        model_dir: folder written by :func:`export_model`.
        use_gpu: run on GPU 0 (needs a ``native`` export and a GPU build of Paddle).
        num_threads: CPU threads.
    """

    name = 'static'

    def __init__(self, model_dir, use_gpu=False, num_threads=None):
        import paddle.inference as inference

        self.info = read_deploy_info(model_dir)
        prefix = os.path.join(model_dir, MODEL_PREFIX)
        config = inference.Config(prefix + '.json', prefix + '.pdiparams')
        if use_gpu:
            config.enable_use_gpu(256, 0)
        else:
            config.disable_gpu()
            if self.info['interpolation'] == 'matmul':
                config.enable_onednn()
            config.set_cpu_math_library_num_threads(int(num_threads or os.environ.get('OMP_NUM_THREADS') or 1))
        config.disable_glog_info()
        self._predictor = inference.create_predictor(config)

    def __call__(self, batch):
        return run_in_fixed_batches(batch, self.info['input_shape'], self._run)

    def _run(self, batch):
        handle = self._predictor.get_input_handle(self._predictor.get_input_names()[0])
        handle.reshape(list(batch.shape))
        handle.copy_from_cpu(batch)
        self._predictor.run()
        return self._predictor.get_output_handle(self._predictor.get_output_names()[0]).copy_to_cpu()
