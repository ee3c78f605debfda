"""Check the Paddle port against the PyTorch reference, step by step (the reproduction guide's five checks).

Each step runs the Paddle code and the reference (``torch_ref/reference.py``; a NumPy
reference for the metric) on the same generated data and the same weights, saves both sides
with ``reprod_log`` (``<step>_paddle.npy``, ``<step>_torch.npy``), writes ``<step>_diff.log``
and is held to its threshold:

  forward   eval probabilities, train-mode logits of both branches (fp64) mean abs diff <= 1e-6
  metric    confusion matrix, per-class IoU, mIoU vs the official NPmIoU  mean abs diff <= 1e-6
  loss      joint loss (SOM, OHEM), CE+SOM, OHEM-CE, CE: values, grads    mean abs diff <= 1e-6
  backward  10 steps of SGD, clip 35, lagged poly: losses, LRs, updates,  relative diff <= 1e-4
            weights, BN running means (--full: every step from equal weights)
  train     20 steps on demo data through the real pipeline: loss curve  relative diff <= 0.5%

The module docstrings in ``torch_ref/align_steps/`` say what each step builds and why. The
exit status is 0 when every selected step passes, 1 when one fails or cannot run.

Usage::

    python torch_ref/align.py --out align_out                  # all steps, small sizes (~1-2 min)
    python torch_ref/align.py --steps forward,loss --out align_out
    python torch_ref/align.py --full --out align_full          # 896x896, official ResNet-50 (slow)
"""

import argparse
import json
import os
import sys
import time
import traceback

if __package__ in (None, ''):
    # Run as `python torch_ref/align.py`: make the repository root importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import simplecv.util.mkl_env  # noqa: E402,F401  (before Paddle runs: MKL's AVX2 path on AMD CPUs)
from simplecv.util.logger import configure_logging, get_logger  # noqa: E402
from torch_ref.align_steps import STEPS, step_module  # noqa: E402
from torch_ref.align_steps.common import StepOptions, StepResult  # noqa: E402

_logger = get_logger('factseg.align')
SUMMARY_FILE = 'summary.json'
MAX_LISTED = 8


def parse_steps(text):
    """``'all'`` or a comma-separated list of step names -> tuple in chain order.

    Raises:
        argparse.ArgumentTypeError: an unknown name.
    """
    if text == 'all':
        return STEPS
    names = [name.strip() for name in text.split(',') if name.strip()]
    unknown = [name for name in names if name not in STEPS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            'unknown step(s) %s; choose all or from %s' % (', '.join(unknown) or "''", ', '.join(STEPS))
        )
    return tuple(name for name in STEPS if name in names)


def build_parser():
    """The command-line parser."""
    parser = argparse.ArgumentParser(
        prog='python torch_ref/align.py',
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n' + __doc__.split('Usage::')[1],
    )
    parser.add_argument(
        '--steps',
        type=parse_steps,
        default=STEPS,
        metavar='all|' + ','.join(STEPS),
        help='steps to run, comma-separated (default: all)',
    )
    parser.add_argument('--out', required=True, help='output folder for the .npy files and *_diff.log')
    parser.add_argument(
        '--full',
        action='store_true',
        help='896x896 inputs and the official ResNet-50 in every step (tens of minutes on a CPU)',
    )
    parser.add_argument('--seed', type=int, default=0, help='seed of weights and data (default: %(default)s)')
    return parser


def run_steps(steps, out_dir, options):
    """Run ``steps`` in order; a step that raises counts as failed. Returns ``[StepResult]``."""
    results = []
    for name in steps:
        start = time.time()
        try:
            result = step_module(name).run(out_dir, options)
        except Exception as exc:  # a step that cannot run is a failed check, reported with its cause
            _logger.error('%s: could not run:\n%s', name, traceback.format_exc())
            result = StepResult(
                name, False, float('inf'), float('nan'), '', '', ['error: %s: %s' % (type(exc).__name__, exc)]
            )
        _logger.info(
            '%-8s %s  worst %s diff %.3g (limit %g)  %.0f s  %s',
            name,
            'passed' if result.passed else 'FAILED',
            result.method or '-',
            result.worst_diff,
            result.threshold,
            time.time() - start,
            result.log_path or result.notes[-1],
        )
        if not result.passed:
            over = result.failed_keys[:MAX_LISTED] + (['...'] if len(result.failed_keys) > MAX_LISTED else [])
            _logger.error(
                '%s: over the limit: %s%s',
                name,
                ', '.join(over) or '-',
                ''.join('; ' + n for n in result.notes if n.startswith('FAILED')),
            )
        results.append(result)
    return results


def main(argv=None):
    """Run the chain; returns the exit status (0 all passed, 1 a step failed, 2 usage error)."""
    args = build_parser().parse_args(argv)
    configure_logging()
    os.makedirs(args.out, exist_ok=True)
    options = StepOptions(full=args.full, seed=args.seed)
    results = run_steps(args.steps, args.out, options)
    with open(os.path.join(args.out, SUMMARY_FILE), 'w') as stream:
        json.dump([dict(vars(r)) for r in results], stream, indent=2, default=str)
    failed = [r.name for r in results if not r.passed]
    if failed:
        _logger.error('alignment FAILED: %s (see the *_diff.log files in %s)', ', '.join(failed), args.out)
        return 1
    _logger.info('alignment passed: %s', ', '.join(r.name for r in results))
    return 0


if __name__ == '__main__':
    sys.exit(main())
