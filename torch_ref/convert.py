"""Convert PyTorch weights (official FactSeg checkpoints, torchvision ResNets) to Paddle files.

Rules: ``running_mean`` -> ``_mean``, ``running_var`` -> ``_variance``, ``num_batches_tracked``
dropped, every other name and every layout kept (conv weights stay ``[out, in, kh, kw]``),
floating tensors stored as float32 numpy arrays. The result is checked against the key/shape
table of the target architecture; any missing, unexpected or mis-shaped key is an error and no
output file is written (the file is written to a temporary name, then renamed).

Usage::

    python torch_ref/convert.py factseg --src factseg50.pth --dst factseg50.pdparams
    python torch_ref/convert.py factseg --src model.pth --dst model.pdparams \\
        --config isaid.factseg --opts model.params.resnet_encoder.resnet_type resnet101
    python torch_ref/convert.py resnet50 --src resnet50-19c8e357.pth --dst resnet50.pdparams
    python torch_ref/convert.py resnet --depth 101 --src resnet101-5d3b4d8f.pth --dst resnet101.pdparams

Output layouts (read them with ``paddle.load``):
    ``factseg``: ``{'model': {name: ndarray}, 'global_step': int, 'source': 'converted-official'}``
    ``resnet``: ``{name: ndarray}`` with torchvision names and no prefix, ``fc.*`` dropped, as
    ``ResNetEncoder`` loads it from ``resnet_encoder.pretrained``.
"""

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass, field

if __package__ in (None, ''):
    # Run as `python torch_ref/convert.py`: make the repository root importable.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

from simplecv.core.errors import CheckpointError, ConfigError, FactSegError
from simplecv.util.logger import configure_logging, get_logger
from simplecv.util.state_dict import describe_mismatch
from torch_ref.reference import RESNET_SPECS, FactSeg, ResNet

_logger = get_logger('factseg.convert')

SOURCE_TAG = 'converted-official'
DDP_PREFIX = 'module.'
BN_RENAMES = {'running_mean': '_mean', 'running_var': '_variance'}
DROPPED_SUFFIX = 'num_batches_tracked'


@dataclass
class ConversionReport:
    """What a conversion did and what did not match the target architecture.

    Attributes:
        missing: target keys absent from the source.
        unexpected: converted keys the target does not have.
        mismatched: ``(key, target_shape, source_shape)`` triples.
        dropped: source keys left out on purpose (``num_batches_tracked``, ``fc.*``).
        total: number of target keys.
    """

    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    mismatched: list = field(default_factory=list)
    dropped: list = field(default_factory=list)
    total: int = 0

    @property
    def ok(self):
        """True when every target key was produced with its shape and nothing else was."""
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self):
        """A one-line summary of the problems (empty when :attr:`ok`)."""
        return describe_mismatch(self.missing, self.unexpected, self.mismatched, self.total)

    def raise_if_failed(self, source):
        """Raise :class:`CheckpointError` naming ``source`` unless :attr:`ok`."""
        if not self.ok:
            raise CheckpointError(
                f'{source} does not match the target architecture: {self.describe()}. Check that the '
                f'file and --config/--depth describe the same model.'
            )


def paddle_key(torch_key):
    """Paddle name of a torch state-dict key, or None for a key that Paddle has no use for.

    >>> paddle_key('bn1.running_var')
    'bn1._variance'
    >>> paddle_key('bn1.num_batches_tracked') is None
    True
    """
    prefix, _, leaf = torch_key.rpartition('.')
    if leaf == DROPPED_SUFFIX:
        return None
    leaf = BN_RENAMES.get(leaf, leaf)
    return f'{prefix}.{leaf}' if prefix else leaf


def strip_ddp_prefix(state_dict):
    """Remove a leading ``module.`` (DDP wrapper) from every key that has one."""
    return {(k[len(DDP_PREFIX) :] if k.startswith(DDP_PREFIX) else k): v for k, v in state_dict.items()}


def _to_numpy(tensor):
    array = tensor.detach().cpu()
    if array.is_floating_point():
        array = array.float()
    return array.numpy().copy()


def convert_state_dict(torch_sd, expected_shapes, drop=lambda key: False):
    """Rename a torch state dict to Paddle names and check it against ``expected_shapes``.

    Args:
        torch_sd (dict): ``{torch_name: Tensor}``, no wrapper prefix.
        expected_shapes (dict): ``{paddle_name: tuple}`` of the target architecture.
        drop (callable): ``drop(torch_name) -> bool`` for keys to leave out on purpose.

    Returns:
        tuple: ``(paddle_sd, report)``; ``paddle_sd`` maps Paddle names to numpy arrays (floating
        values as float32) and holds every converted key, matching or not.
    """
    report = ConversionReport(total=len(expected_shapes))
    paddle_sd = {}
    for key, value in torch_sd.items():
        new_key = paddle_key(key)
        if new_key is None or drop(key):
            report.dropped.append(key)
            continue
        if not isinstance(value, torch.Tensor):
            report.unexpected.append(f'{key} (a {type(value).__name__}, not a tensor)')
            continue
        paddle_sd[new_key] = _to_numpy(value)
    report.missing = sorted(set(expected_shapes) - set(paddle_sd))
    report.unexpected = sorted(report.unexpected + list(set(paddle_sd) - set(expected_shapes)))
    report.mismatched = sorted(
        (k, tuple(expected_shapes[k]), tuple(paddle_sd[k].shape))
        for k in set(paddle_sd) & set(expected_shapes)
        if tuple(paddle_sd[k].shape) != tuple(expected_shapes[k])
    )
    return paddle_sd, report


def convert_factseg_state_dict(torch_sd, expected_shapes):
    """Convert an official FactSeg state dict (DDP ``module.`` prefixes allowed).

    Args:
        torch_sd (dict): the ``'model'`` entry of an official checkpoint, or a bare state dict.
        expected_shapes (dict): from :func:`factseg_expected_shapes`.

    Returns:
        tuple: ``(paddle_sd, report)`` as :func:`convert_state_dict`.
    """
    return convert_state_dict(strip_ddp_prefix(torch_sd), expected_shapes)


def convert_resnet_state_dict(torch_sd, expected_shapes):
    """Convert torchvision ImageNet ResNet weights to the encoder's names (``fc.*`` dropped).

    Args:
        torch_sd (dict): e.g. the content of ``resnet50-19c8e357.pth``.
        expected_shapes (dict): from :func:`resnet_expected_shapes`.

    Returns:
        tuple: ``(paddle_sd, report)`` as :func:`convert_state_dict`.
    """
    return convert_state_dict(torch_sd, expected_shapes, drop=lambda key: key.startswith('fc.'))


def _shapes_of(module):
    shapes = {}
    for key, value in module.state_dict().items():
        new_key = paddle_key(key)
        if new_key is not None:
            shapes[new_key] = tuple(value.shape)
    return shapes


def factseg_expected_shapes(params):
    """Paddle key -> shape table of FactSeg built from ``params`` (official ``config.model.params``).

    ``resnet_encoder.pretrained`` is ignored: no weights are read to build the table.
    """
    params = dict(params)
    params['resnet_encoder'] = dict(params.get('resnet_encoder', {}), pretrained=False)
    try:
        model = FactSeg(params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f'cannot build FactSeg from these model.params: {exc}') from exc
    return _shapes_of(model)


def resnet_expected_shapes(resnet_type):
    """Paddle key -> shape table of a torchvision ResNet trunk without ``fc`` (no prefix)."""
    return _shapes_of(ResNet(resnet_type))


def factseg_params_from_config(config_name, opts=()):
    """The ``model.params`` of a project config, with ``KEY VALUE`` overrides applied.

    Args:
        config_name (str): dotted name under ``configs/`` (``'isaid.factseg'``) or a ``.py`` path.
        opts (list): flat ``['model.params.x', value, ...]`` overrides.
    """
    from simplecv.core.config import import_config

    config = import_config(config_name)
    config.update_from_list(list(opts))
    return config.model.params.to_dict()


def load_torch_file(path):
    """Read a PyTorch file safely (``weights_only=True``) on the CPU.

    Raises:
        CheckpointError: missing file, or a file torch cannot read as plain tensors and containers.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f'{path} does not exist; pass the .pth file with --src')
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # torch raises many types (pickle, zip, weights-only refusals)
        raise CheckpointError(
            f'cannot read {path} as a PyTorch weights file ({type(exc).__name__}: {_first_line(exc)}). Pass an '
            f'official .pth checkpoint or torchvision weights, not a Paddle or corrupt file.'
        ) from exc


def _first_line(exc):
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ''


def unwrap_checkpoint(obj, path):
    """Split a loaded file into ``(state_dict, global_step)``.

    Accepts SimpleCV's ``{'model': state_dict, 'opt': ..., 'global_step': N}``, a ``{'state_dict':
    ...}`` wrapper or a bare state dict (``global_step`` 0 for the last two).

    Raises:
        CheckpointError: for anything else, naming ``path``.
    """
    if isinstance(obj, dict):
        for wrapper in ('model', 'state_dict'):
            if isinstance(obj.get(wrapper), dict):
                return dict(obj[wrapper]), int(obj.get('global_step', 0))
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj), 0
    raise CheckpointError(
        f'{path} is neither a SimpleCV checkpoint ({{"model": state_dict, "global_step": N}}) nor a '
        f'state dict of tensors (top-level keys: {_head(obj)})'
    )


def _head(obj):
    if not isinstance(obj, dict):
        return f'a {type(obj).__name__}'
    keys = [str(k) for k in list(obj)[:8]]
    return ', '.join(keys) + (' ...' if len(obj) > 8 else '') if keys else 'none'


def save_paddle(obj, dst):
    """``paddle.save`` to a temporary file next to ``dst``, then rename it (no partial output)."""
    import paddle

    folder = os.path.dirname(os.path.abspath(dst))
    if not os.path.isdir(folder):
        raise CheckpointError(f'the folder of --dst {dst} does not exist; create it first')
    handle, tmp = tempfile.mkstemp(prefix='.convert-', suffix='.tmp', dir=folder)
    os.close(handle)
    try:
        paddle.save(obj, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def convert_factseg_file(src, dst, params):
    """Convert an official checkpoint file; returns the report (raises before writing on mismatch)."""
    state, global_step = unwrap_checkpoint(load_torch_file(src), src)
    paddle_sd, report = convert_factseg_state_dict(state, factseg_expected_shapes(params))
    report.raise_if_failed(src)
    save_paddle({'model': paddle_sd, 'global_step': global_step, 'source': SOURCE_TAG}, dst)
    _logger.info(
        'wrote %s: %d tensors, global_step %d (dropped %d num_batches_tracked)',
        dst,
        len(paddle_sd),
        global_step,
        len(report.dropped),
    )
    return report


def convert_resnet_file(src, dst, resnet_type):
    """Convert a torchvision ResNet file; returns the report (raises before writing on mismatch)."""
    state, _ = unwrap_checkpoint(load_torch_file(src), src)
    paddle_sd, report = convert_resnet_state_dict(strip_ddp_prefix(state), resnet_expected_shapes(resnet_type))
    report.raise_if_failed(src)
    save_paddle(paddle_sd, dst)
    _logger.info(
        'wrote %s: %d tensors of %s (dropped %d: fc and num_batches_tracked)',
        dst,
        len(paddle_sd),
        resnet_type,
        len(report.dropped),
    )
    return report


_RESNET_DEPTHS = sorted(int(name[len('resnet') :]) for name in RESNET_SPECS)


def build_parser():
    """The command-line parser (subcommands ``factseg``, ``resnet`` and ``resnet18/34/50/101``)."""
    parser = argparse.ArgumentParser(
        prog='python torch_ref/convert.py',
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n' + __doc__.split('Usage::')[1].split('Output layouts')[0],
    )
    commands = parser.add_subparsers(dest='command', required=True)
    fact = commands.add_parser('factseg', help='official FactSeg checkpoint -> Paddle checkpoint')
    fact.add_argument('--src', required=True, help='official .pth (SimpleCV checkpoint or state dict)')
    fact.add_argument('--dst', required=True, help='output .pdparams')
    fact.add_argument(
        '--config',
        default='isaid.factseg',
        help='config whose model.params describe the architecture (default: %(default)s)',
    )
    fact.add_argument(
        '--opts',
        nargs='*',
        default=[],
        metavar='KEY VALUE',
        help='config overrides, e.g. model.params.resnet_encoder.resnet_type resnet101',
    )
    res = commands.add_parser(
        'resnet',
        aliases=[f'resnet{d}' for d in _RESNET_DEPTHS],
        help='torchvision ImageNet ResNet -> encoder pretrained weights',
    )
    res.add_argument('--depth', type=int, choices=_RESNET_DEPTHS, help='ResNet depth (implied by the resnetNN aliases)')
    res.add_argument('--src', required=True, help='torchvision .pth, e.g. resnet50-19c8e357.pth')
    res.add_argument('--dst', required=True, help='output .pdparams')
    return parser


def main(argv=None):
    """Run the converter; returns the exit status (0 success, 1 bad input, 2 usage error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging()
    try:
        if args.command == 'factseg':
            if len(args.opts) % 2:
                parser.error('--opts takes KEY VALUE pairs')
            convert_factseg_file(args.src, args.dst, factseg_params_from_config(args.config, args.opts))
        else:
            implied = None if args.command == 'resnet' else int(args.command[len('resnet') :])
            if implied is None and args.depth is None:
                parser.error('resnet needs --depth (or use resnet18/34/50/101)')
            if implied is not None and args.depth not in (None, implied):
                parser.error(f'{args.command} contradicts --depth {args.depth}')
            convert_resnet_file(args.src, args.dst, f'resnet{implied or args.depth}')
    except FactSegError as exc:
        _logger.error('%s', exc)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
