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


def config_script_parser(prog, doc, epilog):
    """Return the :func:`script_parser` of a script run from a config, its ``--config_path`` option first.

    Args:
        prog: the name in the usage line (``'apex_train.py'``).
        doc: the script's module docstring; its first paragraph is the description.
        epilog: example commands shown after the options, kept as written.
    """
    parser = script_parser(prog, doc, epilog)
    parser.add_argument(
        '--config_path', required=True, help="config: dotted name under configs/ ('isaid.factseg') or a .py file"
    )
    return parser


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


def parse_with_overrides(parser, argv, example):
    """Add the trailing config overrides to ``parser``, parse ``argv`` and check that they are whole pairs.

    Args:
        parser: the ``argparse.ArgumentParser`` of the script, with its options.
        argv: the arguments (``None``: ``sys.argv[1:]``).
        example: one pair for the help text of the overrides, e.g. ``'train.num_iters 1000'``.

    Returns:
        argparse.Namespace: the parsed arguments; ``opts`` holds the overrides.

    Raises:
        SystemExit: on a usage error, as argparse does.
    """
    add_config_overrides(parser, example)
    args = parser.parse_args(argv)
    check_config_overrides(parser, args.opts)
    return args


def add_size_option(parser, flag, default, help_text):
    """Add an option that takes a height and a width in pixels: two integers, ``H W`` in the usage.

    Args:
        parser: the ``argparse.ArgumentParser`` (or argument group) to add it to.
        flag: the option, e.g. ``'--input_size'``.
        default: the ``(height, width)`` when the option is not given.
        help_text: its help.
    """
    parser.add_argument(flag, type=int, nargs=2, default=default, metavar=('H', 'W'), help=help_text)


def add_choice_option(parser, flag, choices, help_text):
    """Add an option that takes one of ``choices``; the first of them is the default.

    Args:
        parser: the ``argparse.ArgumentParser`` (or argument group) to add it to.
        flag: the option, e.g. ``'--backend'``.
        choices: the values it accepts, the default first.
        help_text: its help.
    """
    parser.add_argument(flag, default=choices[0], choices=choices, help=help_text)
