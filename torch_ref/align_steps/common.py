"""What the alignment steps share: options and results, twin models, the official torch loop, diff logs.

Twin models: the PyTorch reference (:mod:`torch_ref.reference`) is built with its own random
initialisation, every BatchNorm gets random affine parameters and running statistics
(:func:`torch_ref.reference.randomize_batchnorm_`), and its state dict goes through the
converter's functions (:mod:`torch_ref.convert`) into the Paddle model, loaded strictly. Both
sides therefore hold the same numbers, and a converter or naming mistake shows up as a failed
step instead of being hidden by default-initialised layers.

Diff logs: each step saves what each side computed with ``reprod_log.ReprodLogger``
(``<step>_paddle.npy``, ``<step>_torch.npy``), loads them back with ``ReprodDiffHelper`` and
writes ``<step>_diff.log`` with its ``report()``. ``report()`` returns nothing, so the verdict
comes from ``reprod_log.utils.check_print_diff`` on the same diff table, with the same method
and threshold as the log. NaN in a diff counts as infinitely large.
"""

import contextlib
import copy
import io
import logging
import math
import os
from dataclasses import dataclass, field

import numpy as np
import paddle
import torch
from reprod_log import ReprodDiffHelper, ReprodLogger
from reprod_log.utils import check_print_diff

from simplecv.core.config import import_config
from simplecv.util.state_dict import load_state_dict_strict
from torch_ref import convert, reference

# torch and Paddle each bring an OpenMP runtime; with several threads on both sides in one
# process their idle workers spin against each other and torch gets 10-50x slower on a
# 2-core machine. The reference runs on one thread; Paddle keeps OMP_NUM_THREADS.
TORCH_THREADS = 1


@dataclass
class StepOptions:
    """Settings shared by every step.

    Attributes:
        full: 896x896 inputs and the official ResNet-50 model in every step (slow on a CPU);
            otherwise the small sizes each step documents.
        seed: seed of the weights and data of every step.
    """

    full: bool = False
    seed: int = 0


@dataclass
class StepResult:
    """The verdict of one step.

    Attributes:
        name: the step.
        passed: every compared quantity is within the threshold (and the step's own
            preconditions held, e.g. gradient clipping was exercised).
        worst_diff: the largest compared value of the checked statistic.
        threshold: the limit that statistic is held to.
        method: ``'mean'`` (mean absolute difference per quantity) or ``'max'`` (largest
            relative difference per quantity).
        log_path: the ``<step>_diff.log`` file.
        notes: information lines that are reported but not checked.
        failed_keys: the compared quantities over the threshold.
    """

    name: str
    passed: bool
    worst_diff: float
    threshold: float
    method: str
    log_path: str
    notes: list = field(default_factory=list)
    failed_keys: list = field(default_factory=list)


def prepare_torch():
    """Limit torch's threads (see :data:`TORCH_THREADS`)."""
    torch.set_num_threads(TORCH_THREADS)


def official_params():
    """``model.params`` of ``configs/isaid/factseg.py`` (ResNet-50), with no pretrained file."""
    params = import_config('isaid.factseg').model.params.to_dict()
    params['resnet_encoder']['pretrained'] = False
    return params


def demo_params():
    """``model.params`` of ``configs/isaid/factseg_demo.py`` (ResNet-18, 64-channel FPNs, 32-channel decoders)."""
    return import_config('isaid.factseg_demo').model.params.to_dict()


def build_paddle_model(params, state):
    """The Paddle FactSeg of ``params`` with ``state`` (Paddle names, numpy arrays) loaded strictly."""
    from module.factseg import FactSeg

    model = FactSeg(params)
    load_state_dict_strict(model, state, source='the converted reference weights')
    return model


def make_twin_models(params, seed, dtype='float32'):
    """Build the torch reference and the Paddle model with identical weights and BN statistics.

    Args:
        params: ``model.params`` (official keys).
        seed: seed of the reference's initialisation and of the random BN values.
        dtype: ``'float32'`` or ``'float64'``, for parameters and buffers of both models.

    Returns:
        tuple: ``(torch_model, paddle_model)``, both in eval mode.
    """
    torch.manual_seed(seed)
    torch_model = reference.FactSeg(params)
    reference.randomize_batchnorm_(torch_model, torch.Generator().manual_seed(seed + 1))
    state, report = convert.convert_factseg_state_dict(
        torch_model.state_dict(), convert.factseg_expected_shapes(params)
    )
    report.raise_if_failed('the reference model')
    paddle_model = build_paddle_model(params, state)
    torch_model.to(getattr(torch, dtype))
    paddle_model.to(dtype=dtype)
    torch_model.eval()
    paddle_model.eval()
    return torch_model, paddle_model


def paddle_state(model):
    """``{name: ndarray}`` of a Paddle layer's state dict (parameters and BN statistics)."""
    return {name: value.numpy().copy() for name, value in model.state_dict().items()}


def torch_state(model):
    """``{paddle_name: ndarray}`` of a torch module's state dict, ``num_batches_tracked`` dropped."""
    state = {}
    for name, value in model.state_dict().items():
        key = convert.paddle_key(name)
        if key is not None:
            state[key] = value.detach().cpu().numpy().copy()
    return state


class OfficialTrainLoop:
    """One optimizer step of the official training, in torch.

    What SimpleCV's ``Launcher.train_iters`` does with the official FactSeg settings (spec §8):
    ``torch.optim.SGD`` over all parameters (momentum, weight decay on every parameter); the
    keys of the model's output that end in ``loss`` summed and back-propagated;
    ``clip_grad_norm_(max_norm, norm_type=2)`` on the global norm after the backward pass;
    ``optimizer.step()``; then the poly learning rate set from the step count *before* it is
    incremented, which is the one-step lag (steps 0 and 1 both use ``base_lr``).

    Args:
        model: the reference FactSeg.
        base_lr, power, max_iters: the poly schedule.
        momentum, weight_decay: SGD settings.
        max_norm: clipping threshold of the global L2 norm.
    """

    def __init__(self, model, base_lr, power, max_iters, momentum, weight_decay, max_norm):
        self.model = model
        self.base_lr = base_lr
        self.power = power
        self.max_iters = max_iters
        self.max_norm = max_norm
        self.optimizer = torch.optim.SGD(model.parameters(), lr=base_lr, momentum=momentum, weight_decay=weight_decay)
        self.global_step = 0

    @classmethod
    def from_config(cls, model, config):
        """Return the loop with a SimpleCV config's training settings.

        Args:
            model: the reference FactSeg.
            config: the config: the poly schedule of ``learning_rate.params``, the SGD settings of
                ``optimizer.params`` and ``optimizer.grad_clip.max_norm`` (35 when it has no ``grad_clip``).
        """
        lr = config.learning_rate.params
        sgd = config.optimizer.params
        return cls(
            model,
            base_lr=lr.base_lr,
            power=lr.power,
            max_iters=lr.max_iters,
            momentum=sgd.momentum,
            weight_decay=sgd.weight_decay,
            max_norm=float(config.optimizer.get('grad_clip', {}).get('max_norm', 35)),
        )

    def step(self, images, labels, loss_scale=1.0):
        """Train on one batch.

        Args:
            images: ``(N, 3, H, W)`` ndarray.
            labels: ``(N, H, W)`` int64 ndarray.
            loss_scale: factor on the loss before the backward pass (1 in the official code).

        Returns:
            tuple: ``(loss, lr, grad_norm)``: the unscaled loss, the learning rate this step used
            and the global gradient norm before clipping (of the scaled loss).
        """
        lr = self.optimizer.param_groups[0]['lr']
        self.model.train()
        param = next(self.model.parameters())
        outputs = self.model(
            torch.from_numpy(np.asarray(images)).to(param.dtype), {'cls': torch.from_numpy(np.asarray(labels))}
        )
        total = sum(value.mean() for key, value in outputs.items() if key.endswith('loss'))
        (total * loss_scale).backward()
        norm = torch.nn.utils.clip_grad_norm_(
            [p for p in self.model.parameters() if p.requires_grad], self.max_norm, norm_type=2
        )
        self.optimizer.step()
        self.optimizer.zero_grad()
        new_lr = self.base_lr * (1 - self.global_step / self.max_iters) ** self.power
        for group in self.optimizer.param_groups:
            group['lr'] = new_lr
        self.global_step += 1
        return float(total.detach()), lr, float(norm)


def gradient_norm(model, images, labels):
    """Global gradient norm of the loss of a copy of ``model`` in train mode (``model`` is not touched)."""
    twin = copy.deepcopy(model)
    twin.train()
    param = next(twin.parameters())
    outputs = twin(torch.from_numpy(images).to(param.dtype), {'cls': torch.from_numpy(labels)})
    sum(v.mean() for k, v in outputs.items() if k.endswith('loss')).backward()
    return math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in twin.parameters() if p.grad is not None))


# ---------------------------------------------------------------------------------- diffs


def _stats(values):
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    values = np.where(np.isnan(values), np.inf, values)
    return {'mean': float(values.mean()), 'max': float(values.max()), 'min': float(values.min())}


def _drop_shared_nan(a, b):
    """Copies of ``a`` and ``b`` with 0 where both are NaN (equal undefined values)."""
    a = np.array(a, dtype=np.float64)
    b = np.array(b, dtype=np.float64)
    both = np.isnan(a) & np.isnan(b)
    a[both] = 0
    b[both] = 0
    return a, b


def absolute_diff(paddle_data, torch_data):
    """``{key: {'mean', 'max', 'min'}}`` of ``|paddle - torch|`` (reprod_log's table; NaN -> inf)."""
    diffs = {}
    for key in torch_data:
        a, b = _drop_shared_nan(paddle_data[key], torch_data[key])
        if a.shape != b.shape:
            diffs[key] = _stats([np.inf])
            continue
        diffs[key] = _stats(np.abs(a - b))
    return diffs


def relative_diff(paddle_data, torch_data, l2_keys=()):
    """Relative differences in reprod_log's table format.

    Keys in ``l2_keys`` give one value, ``||p - t||_2 / ||t||_2`` (``||p - t||_2`` when
    ``t`` is 0); other keys give ``|p - t| / |t|`` element by element (e.g. one per iteration).
    """
    diffs = {}
    for key in torch_data:
        a, b = _drop_shared_nan(paddle_data[key], torch_data[key])
        if a.shape != b.shape:
            diffs[key] = _stats([np.inf])
        elif key in l2_keys:
            scale = np.linalg.norm(b)
            diffs[key] = _stats([np.linalg.norm(a - b) / (scale if scale > 0 else 1.0)])
        else:
            with np.errstate(divide='ignore', invalid='ignore'):
                rel = np.where(a == b, 0.0, np.abs(a - b) / np.abs(b))
            diffs[key] = _stats(rel)
    return diffs


def _save(data, path):
    logger = ReprodLogger()
    for key, value in data.items():
        logger.add(key, np.asarray(value))
    logger.save(path)


def _write_report(helper, method, threshold, path):
    """``helper.report(...)`` without its side effects on the process's logging and stdout.

    reprod_log's ``init_logger`` adds a stdout and a file handler to the root logger on every
    call and sets it to DEBUG; left in place, each later report would also write into every
    earlier log file. The root logger's own handlers are detached meanwhile so that the table
    goes to the log file only.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    for handler in handlers:
        root.removeHandler(handler)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            helper.report(diff_method=method, diff_threshold=threshold, path=path)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def compare(
    name, out_dir, paddle_data, torch_data, threshold, method='mean', l2_keys=None, notes=(), precondition=None
):
    """Save both sides, write ``<name>_diff.log`` and return the :class:`StepResult`.

    Args:
        name: the step (file prefix).
        out_dir: output folder (created).
        paddle_data, torch_data: ``{key: array}`` with the same keys and shapes.
        threshold: the limit of ``method`` for every key.
        method: ``'mean'``: mean absolute difference per key (reprod_log's comparison);
            ``'max'``: largest relative difference per key (:func:`relative_diff`).
        l2_keys: with ``method='max'``, the keys compared by relative L2 norm.
        notes: lines appended to the log and the result, not checked.
        precondition: None, or a message saying why the step fails regardless of the diffs.

    Returns:
        StepResult
    """
    os.makedirs(out_dir, exist_ok=True)
    paddle_path = os.path.join(out_dir, '%s_paddle.npy' % name)
    torch_path = os.path.join(out_dir, '%s_torch.npy' % name)
    _save(paddle_data, paddle_path)
    _save(torch_data, torch_path)
    helper = ReprodDiffHelper()
    paddle_info, torch_info = helper.load_info(paddle_path), helper.load_info(torch_path)
    if set(paddle_info) != set(torch_info):
        raise ValueError(
            '%s: the two sides recorded different keys: %s' % (name, sorted(set(paddle_info) ^ set(torch_info)))
        )
    if method == 'mean':
        helper.diff_dict = absolute_diff(paddle_info, torch_info)
    else:
        helper.diff_dict = relative_diff(paddle_info, torch_info, set(l2_keys or ()))
    passed = check_print_diff(
        helper.diff_dict, diff_method=method, diff_threshold=threshold, print_func=lambda *args: None
    )
    log_path = os.path.join(out_dir, '%s_diff.log' % name)
    _write_report(helper, method, threshold, log_path)
    notes = list(notes)
    if precondition:
        notes.insert(0, 'FAILED: ' + precondition)
        passed = False
    with open(log_path, 'a') as stream:
        stream.write(
            'checked: %s %s diff <= %g per key; %s\n'
            % (method, 'absolute' if method == 'mean' else 'relative', threshold, 'passed' if passed else 'FAILED')
        )
        for line in notes:
            stream.write('note: %s\n' % line)
    worst = max((leaf[method] for leaf in helper.diff_dict.values()), default=0.0)
    failed_keys = [key for key, leaf in helper.diff_dict.items() if not leaf[method] <= threshold]
    return StepResult(name, bool(passed), float(worst), threshold, method, log_path, notes, failed_keys)


def as_paddle(array, dtype=None):
    """A Paddle tensor of ``array`` (cast to ``dtype`` when given)."""
    array = np.asarray(array)
    return paddle.to_tensor(array.astype(dtype) if dtype else array)
