"""Command-line pieces shared by the entry points (``apex_train.py``, ``isaid_eval.py``, ``tools/``)."""

import argparse


def script_parser(prog, doc, epilog=None):
    """Return a script's ``argparse.ArgumentParser``: its name, the first paragraph of its docstring, examples.

    Args:
        prog: the name in the usage line (``'apex_train.py'``, ``'python tools/infer.py'``).
        doc: the script's module docstring; its first paragraph is the description.
        epilog: example commands shown after the options, kept as written.
    """
    return argparse.ArgumentParser(
        prog=prog, description=doc.split('\n\n')[0], epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_config_overrides(parser, example):
    """Add SimpleCV's trailing config overrides: the positional ``opts``, ``KEY VALUE`` pairs.

    Args:
        parser: the ``argparse.ArgumentParser`` of the script.
        example: one pair for the help text, e.g. ``'train.num_iters 1000'``.
    """
    parser.add_argument(
        'opts',
        nargs=argparse.REMAINDER,
        default=None,
        help='config overrides as KEY VALUE pairs, last on the command line, e.g. %s' % example,
    )


def check_config_overrides(parser, opts):
    """Stop with a usage error unless ``opts`` holds whole ``KEY VALUE`` pairs.

    Raises:
        SystemExit: an odd number of items (argparse's usage error, exit status 2).
    """
    if opts and len(opts) % 2:
        parser.error('config overrides come in KEY VALUE pairs, got %s' % opts)
