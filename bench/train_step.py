"""Time full training iterations of this port's trainer and of the official step in PyTorch, side by side.

Both sides train the same model from the same weights on the same batch:

- ours: the model built from ``--config_path`` through the ``MODEL`` registry, the optimizer and
  poly schedule from the config (``simplecv.opt``: SGD momentum, weight decay, global clip), one
  iteration at a time through ``simplecv.core.trainer.Trainer.train``, the path ``apex_train.py``
  runs (data loader -> forward with the joint loss and SOM -> backward -> gradient norm ->
  clipped SGD step -> poly learning rate);
- reference: ``torch_ref/reference.py``'s FactSeg with the official SimpleCV iteration
  (``torch_ref.align_steps.common.OfficialTrainLoop``: ``torch.optim.SGD``, ``clip_grad_norm_``
  after the backward pass, the lagged poly rate).

The reference is built with its random initialisation; its weights go through the converter
(``torch_ref/convert.py``) into ours, loaded strictly. Each side runs in its own process (the
two frameworks' OpenMP runtimes slow each other down when they share one), both with
``OMP_NUM_THREADS`` threads, and the iterations alternate: ours, reference, ours, ... after
``--warmup`` untimed iterations each. It prints the median seconds per iteration of each side,
ours split into data, forward (model and loss), backward (with the gradient norm and the
trainer's bookkeeping) and optimizer (clip and SGD step), the peak resident memory of each
process, the first iteration's loss on both sides (they start equal), and
``ratio ours/reference``.

Usage::

    OMP_NUM_THREADS=2 python bench/train_step.py                       # FactSeg-R50, batch 2, 512x512
    OMP_NUM_THREADS=2 python bench/train_step.py --size 896 --iters 5
    OMP_NUM_THREADS=2 python bench/train_step.py --config_path isaid.factseg_demo --size 128 --batch_size 4
"""

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import simplecv.util.mkl_env  # noqa: E402,F401  (before Paddle runs: MKL's AVX2 path on AMD CPUs)
from simplecv.util.logger import configure_logging  # noqa: E402

PHASES = ('data', 'forward', 'backward', 'optimizer')
IGNORE_FRACTION = 0.2


def parse_args(argv=None):
    """Parse ``argv`` (default ``sys.argv[1:]``) into an ``argparse.Namespace``."""
    parser = argparse.ArgumentParser(
        prog='train_step.py', description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        '--config_path',
        default='isaid.factseg',
        help='config of both models, optimizer and schedule (default isaid.factseg: FactSeg-R50)',
    )
    parser.add_argument('--batch_size', type=int, default=2, help='images per iteration (default 2)')
    parser.add_argument('--size', type=int, default=512, help='square input size, a multiple of 32 (default 512)')
    parser.add_argument('--warmup', type=int, default=1, help='untimed iterations per side first (default 1)')
    parser.add_argument('--iters', type=int, default=3, help='timed iterations per side (default 3)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the weights and the batch')
    args = parser.parse_args(argv)
    if args.size < 32 or args.size % 32:
        parser.error('--size must be a positive multiple of 32, got %d' % args.size)
    if args.batch_size < 1 or args.iters < 1 or args.warmup < 0:
        parser.error('--batch_size and --iters must be >= 1 and --warmup >= 0')
    return args


def make_batch(batch_size, size, num_classes, seed):
    """The benchmark batch: ``images`` (N, 3, S, S) float32 N(0, 1) and ``labels`` (N, S, S) int64
    (random classes, ``IGNORE_FRACTION`` of the pixels 255)."""
    import numpy as np

    rng = np.random.RandomState(seed)
    images = rng.standard_normal((batch_size, 3, size, size)).astype(np.float32)
    labels = rng.randint(0, num_classes, size=(batch_size, size, size)).astype(np.int64)
    labels[rng.random_sample(labels.shape) < IGNORE_FRACTION] = 255
    return images, labels


def _model_params(config_path):
    from simplecv.api.infer_tool import build_config

    config = build_config(config_path)
    if 'resnet_encoder' in config.model.params:
        config.model.params.resnet_encoder.pretrained = False
    return config


def _peak_memory(rss_before):
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return dict(peak_mib=peak / 2**20, peak_above_setup_mib=(peak - rss_before) / 2**20)


def _rss():
    import psutil

    return psutil.Process().memory_info().rss


class _PhaseClock:
    """Seconds of the forward pass (between a model's pre- and post-forward hooks) and of optimizer steps."""

    def __init__(self):
        self.forward = 0.0
        self.optimizer = 0.0
        self._start = None

    def begin(self, *unused):
        """Forward pre-hook: start the forward clock."""
        self._start = time.perf_counter()

    def end(self, *unused):
        """Forward post-hook: add the forward seconds."""
        self.forward += time.perf_counter() - self._start

    def reset(self):
        """Zero both totals."""
        self.forward = self.optimizer = 0.0


class _TimedOptimizer:
    """The optimizer with its ``step()`` timed into a :class:`_PhaseClock`; everything else passes through."""

    def __init__(self, optimizer, clock):
        self._optimizer = optimizer
        self._clock = clock

    def step(self):
        """The optimizer's ``step()``, timed."""
        start = time.perf_counter()
        self._optimizer.step()
        self._clock.optimizer += time.perf_counter() - start

    def __getattr__(self, name):
        return getattr(self._optimizer, name)


class _OneBatchLoader:
    """A loader whose every pass yields one batch, converted to Paddle tensors when it is drawn.

    It is its own batch sampler: every step starts a pass over the same batch, so the trainer's
    ``set_start_step`` has nothing to move.
    """

    def __init__(self, images, labels):
        self.images = images
        self.labels = labels
        self.batch_sampler = self

    def set_start_step(self, step):
        """Any step's batch is the one batch."""

    def __iter__(self):
        import paddle

        yield paddle.to_tensor(self.images), {'cls': paddle.to_tensor(self.labels)}

    def __len__(self):
        return 1


def _ours(args, weights_path):
    """Build our trainer as ``apex_train.py`` does; return a function running one timed iteration."""
    import numpy as np
    import paddle

    from simplecv.engine.build import build_model, build_trainer
    from simplecv.util.state_dict import load_state_dict_strict

    config = _model_params(args.config_path)
    paddle.set_device('cpu')
    model = build_model(config)
    with np.load(weights_path) as weights:
        load_state_dict_strict(model, dict(weights), source='the converted reference weights')
    clock = _PhaseClock()
    model.register_forward_pre_hook(clock.begin)
    model.register_forward_post_hook(clock.end)
    trainer = build_trainer(config, model)
    trainer.optimizer = _TimedOptimizer(trainer.optimizer, clock)
    loader = _OneBatchLoader(*make_batch(args.batch_size, args.size, config.model.params.num_classes, args.seed))

    def iteration():
        clock.reset()
        trainer.num_iters = trainer.global_step + 1
        trainer.train(loader)
        step = trainer.last_step
        backward = step.step_time - step.data_time - clock.forward - clock.optimizer
        return dict(
            total=step.step_time,
            data=step.data_time,
            forward=clock.forward,
            backward=backward,
            optimizer=clock.optimizer,
            loss=step.total_loss,
        )

    return iteration, 'paddle %s' % paddle.__version__


def _reference(args, weights_path):
    """Build the reference model and the official loop; save its converted weights; return the iteration."""
    import numpy as np
    import torch

    from torch_ref import convert, reference
    from torch_ref.align_steps.common import OfficialTrainLoop

    config = _model_params(args.config_path)
    params = config.model.params.to_dict()
    torch.manual_seed(args.seed)
    model = reference.FactSeg(params)
    state, report = convert.convert_factseg_state_dict(model.state_dict(), convert.factseg_expected_shapes(params))
    report.raise_if_failed('the reference model')
    np.savez(weights_path, **state)
    loop = OfficialTrainLoop.from_config(model, config)
    images, labels = make_batch(args.batch_size, args.size, params['num_classes'], args.seed)

    def iteration():
        start = time.perf_counter()
        loss, _, _ = loop.step(images, labels)
        return dict(total=time.perf_counter() - start, loss=loss)

    return iteration, 'torch %s (%d threads)' % (torch.__version__, torch.get_num_threads())


def _worker(side, args, weights_path, connection):
    """Child process: build one side, then run an iteration per ``'step'`` message until ``'stop'``."""
    try:
        build = _ours if side == 'ours' else _reference
        iteration, version = build(args, weights_path)
        rss_before = _rss()
        connection.send(('ready', version))
        while connection.recv() == 'step':
            connection.send(('step', iteration()))
        connection.send(('memory', _peak_memory(rss_before)))
    except Exception as exc:  # report any failure to the parent in one line
        connection.send(('error', '%s: %s' % (type(exc).__name__, str(exc).splitlines()[0] if str(exc) else '')))
    finally:
        connection.close()


class _Side:
    """A worker process and the pipe to it."""

    def __init__(self, context, side, args, weights_path):
        self.name = side
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(side, args, weights_path, child), daemon=True)
        self.process.start()
        child.close()
        self.version = self.expect('ready')
        self.records = []

    def expect(self, kind):
        """Receive the worker's next message and return its payload.

        Raises:
            RuntimeError: the worker died or reported an error.
        """
        try:
            got, payload = self.connection.recv()
        except EOFError:
            raise RuntimeError(
                'the %s worker died (exit code %s); run with fewer --batch_size/--size if it ran out '
                'of memory' % (self.name, self.process.exitcode)
            ) from None
        if got == 'error':
            raise RuntimeError('the %s worker failed: %s' % (self.name, payload))
        return payload

    def step(self):
        """Run one iteration in the worker and return its timings."""
        self.connection.send('step')
        return self.expect('step')

    def finish(self):
        """Stop the worker and return its peak memory."""
        self.connection.send('stop')
        memory = self.expect('memory')
        self.process.join()
        return memory


def _median(records, key):
    return statistics.median(r[key] for r in records)


def run(args):
    """Run the benchmark; return ``{'ours': {...}, 'reference': {...}, 'ratio': float}``."""
    from tqdm import tqdm

    context = multiprocessing.get_context('spawn')
    with tempfile.TemporaryDirectory() as tmp:
        weights_path = os.path.join(tmp, 'weights.npz')
        reference = _Side(context, 'reference', args, weights_path)
        ours = _Side(context, 'ours', args, weights_path)
        try:
            first = {}
            for _ in tqdm(range(args.warmup), desc='warm-up', leave=False):
                for side in (ours, reference):
                    first.setdefault(side.name, side.step()['loss'])
            for _ in tqdm(range(args.iters), desc='timed iterations (ours + reference)', leave=False):
                for side in (ours, reference):
                    record = side.step()
                    first.setdefault(side.name, record['loss'])
                    side.records.append(record)
            memory = {side.name: side.finish() for side in (ours, reference)}
        finally:
            for side in (ours, reference):
                if side.process.is_alive():
                    side.process.terminate()
    result = {}
    for side in (ours, reference):
        result[side.name] = dict(
            version=side.version,
            s_per_iter=_median(side.records, 'total'),
            first_loss=first[side.name],
            **memory[side.name],
        )
    result['ours']['phases'] = {phase: _median(ours.records, phase) for phase in PHASES}
    result['ratio'] = result['ours']['s_per_iter'] / result['reference']['s_per_iter']
    return result


def report(args, result):
    """Print the figures of :func:`run`."""
    ours, reference = result['ours'], result['reference']
    print(
        '%s, batch %d x 3 x %d x %d, fp32, CPU, OMP_NUM_THREADS=%s, MKL_DEBUG_CPU_TYPE=%s; %d warm-up + %d timed '
        'iterations per side, alternating'
        % (
            args.config_path,
            args.batch_size,
            args.size,
            args.size,
            os.environ.get('OMP_NUM_THREADS', 'unset'),
            os.environ.get('MKL_DEBUG_CPU_TYPE', 'unset'),
            args.warmup,
            args.iters,
        )
    )
    print(
        'first-iteration loss: ours %.6f, reference %.6f (same weights, same batch)'
        % (ours['first_loss'], reference['first_loss'])
    )
    for name, side in (('ours', ours), ('reference', reference)):
        print(
            '%-10s %-28s median %7.3f s/iter   peak memory %6.0f MiB (+%.0f MiB over the built model)'
            % (name, side['version'], side['s_per_iter'], side['peak_mib'], side['peak_above_setup_mib'])
        )
    total = ours['s_per_iter']
    print(
        'ours, median per phase: '
        + ', '.join(
            '%s %.3f s (%.0f%%)' % (phase, seconds, 100 * seconds / total) for phase, seconds in ours['phases'].items()
        )
    )
    print('ratio ours/reference %.2f' % result['ratio'])


def main(argv=None):
    """Time training steps of both frameworks and print the report.

    Returns:
        int: exit status, 1 when a worker failed (the reason on stderr), else 0.
    """
    args = parse_args(argv)
    configure_logging()
    try:
        result = run(args)
    except RuntimeError as exc:
        sys.stderr.write('train_step.py: error: %s\n' % exc)
        return 1
    report(args, result)
    return 0


if __name__ == '__main__':
    sys.exit(main())
