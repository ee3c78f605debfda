"""Regenerate the reference logs in ``Log/`` from the current code with one command.

Steps (``--only`` picks some, in this order):

- ``demo``: ``python tools/run_demo.py`` in a temporary folder (~8 min on 2 cores); its training
  log, curves, evaluations and comparison picture go to ``Log/demo/``.
- ``tipc``: ``test_tipc/prepare.sh`` and ``test_tipc/test_train_inference_python.sh`` in the
  ``lite_train_lite_infer`` mode with a temporary ROOT (~1-2 min); ``results_python.log`` and
  each command's log go to ``Log/tipc/``.
- ``align``: ``python torch_ref/align.py --full`` (needs torch; about an hour on 2 cores); the
  ``*_diff.log`` files go to ``Log/align_full/``.

Each step runs in its own temporary folder, then its files are copied into a staging folder
beside the target and swapped in with a rename, so a ``Log/`` folder is either the old one or the
complete new one. A step that fails (non-zero exit, an expected file missing) stops the command
with exit status 1, leaves that step's ``Log/`` folder as it was and keeps the temporary folder
for inspection. Absolute paths of the checkout and of the temporary folder are written relative
in the copied text files, so the logs name no machine paths.
"""

import argparse
import fnmatch
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where the interpreter's packages live: warnings quoted in the logs name their files from here.
SITE_PACKAGES = tuple(sorted({sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib']}))
TIPC_CONFIG = 'test_tipc/configs/factseg/train_infer_python.txt'
TIPC_MODE = 'lite_train_lite_infer'
TEXT_SUFFIXES = ('.log', '.txt', '.json', '.jsonl')


class Step:
    """One regenerated folder of ``Log/``.

    Attributes:
        name: the ``--only`` name.
        target: the folder under ``Log/``.
        commands: ``[argv]`` run in order in the temporary folder (``{repo}`` and ``{tmp}`` are filled in).
        source: the folder (relative to the temporary folder) the files are copied from.
        patterns: file-name patterns to copy; each must match at least one file.
        about: what the step runs, for the progress lines.
    """

    def __init__(self, name, target, commands, source, patterns, about):
        self.name, self.target, self.commands = name, target, commands
        self.source, self.patterns, self.about = source, patterns, about


STEPS = (
    Step(
        'demo',
        'demo',
        [['{python}', '{repo}/tools/run_demo.py', '--data', 'demo_data', '--out', 'demo_output']],
        'demo_output',
        [
            'train.log',
            'train_log.jsonl',
            'training_curves.png',
            'checkpoint_info.json',
            'eval_log.jsonl',
            'eval_model-*.json',
            'eval_model-*.txt',
            'comparison.png',
        ],
        'the built-in demo, python tools/run_demo.py (~8 min on 2 cores)',
    ),
    Step(
        'tipc',
        'tipc',
        [
            ['bash', '{repo}/test_tipc/prepare.sh', '{repo}/' + TIPC_CONFIG, TIPC_MODE, '{tmp}'],
            ['bash', '{repo}/test_tipc/test_train_inference_python.sh', '{repo}/' + TIPC_CONFIG, TIPC_MODE, '{tmp}'],
        ],
        'test_tipc/output/' + TIPC_MODE,
        ['results_python.log', '*.log'],
        'the TIPC chain in %s mode (~2 min)' % TIPC_MODE,
    ),
    Step(
        'align',
        'align_full',
        [['{python}', '{repo}/torch_ref/align.py', '--full', '--out', 'align_full']],
        'align_full',
        ['*_diff.log'],
        'the alignment chain with torch, python torch_ref/align.py --full (~1 h on 2 cores)',
    ),
)
STEP_NAMES = tuple(step.name for step in STEPS)


class StepFailed(Exception):
    """A step's command failed or its output is incomplete (the message says which and where)."""


def parse_steps(text):
    """``'demo,tipc'`` -> the steps in their fixed order.

    Raises:
        argparse.ArgumentTypeError: an unknown or empty name.
    """
    names = [name.strip() for name in text.split(',') if name.strip()]
    unknown = [name for name in names if name not in STEP_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            'unknown step(s) %s; choose from %s' % (', '.join(unknown) or "''", ','.join(STEP_NAMES))
        )
    return [step for step in STEPS if step.name in names]


def parse_args(argv=None):
    """Parse ``argv`` (default ``sys.argv[1:]``) into an ``argparse.Namespace``."""
    parser = argparse.ArgumentParser(
        prog='python tools/regenerate_logs.py',
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n'
        '  OMP_NUM_THREADS=2 python tools/regenerate_logs.py --skip_align   # demo and TIPC (~10 min)\n'
        '  python tools/regenerate_logs.py --only tipc\n'
        '  python tools/regenerate_logs.py --dry_run                        # print what would run',
    )
    parser.add_argument(
        '--only',
        type=parse_steps,
        default=list(STEPS),
        metavar=','.join(STEP_NAMES),
        help='steps to run, comma-separated (default: all three)',
    )
    parser.add_argument(
        '--skip_align', '--skip-align', action='store_true', help='leave out the align step (about an hour on 2 cores)'
    )
    parser.add_argument(
        '--log_dir',
        default=os.path.join(REPO_ROOT, 'Log'),
        help='the folder that receives demo/, tipc/ and align_full/ (default: Log/ of the checkout)',
    )
    parser.add_argument('--keep_temp', action='store_true', help='keep the temporary folders of successful steps')
    parser.add_argument(
        '--dry_run', '--dry-run', action='store_true', help='print the commands and the files to copy; run nothing'
    )
    args = parser.parse_args(argv)
    args.steps = [step for step in args.only if not (args.skip_align and step.name == 'align')]
    if not args.steps:
        parser.error('no step left to run (--skip_align removed the only one)')
    return args


def fill(argv, tmp):
    """The step's command with ``{python}``, ``{repo}`` and ``{tmp}`` filled in."""
    return [word.format(python=sys.executable, repo=REPO_ROOT, tmp=tmp) for word in argv]


def run_command(argv, cwd, console_log, env=None):
    """Run ``argv`` in ``cwd``, echoing its output and appending it to ``console_log``; return the exit status."""
    with open(console_log, 'ab') as log:
        log.write(('$ %s\n' % ' '.join(argv)).encode())
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        while True:
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            log.write(chunk)
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        return process.wait()


def matching_files(folder, patterns):
    """The files of ``folder`` matching ``patterns`` (sorted, no duplicates).

    Raises:
        StepFailed: the folder is missing or a pattern matches nothing.
    """
    if not os.path.isdir(folder):
        raise StepFailed('the run wrote no folder %s' % folder)
    present = sorted(name for name in os.listdir(folder) if os.path.isfile(os.path.join(folder, name)))
    chosen = []
    for pattern in patterns:
        matches = fnmatch.filter(present, pattern)
        if not matches:
            raise StepFailed('the run wrote no %s in %s' % (pattern, folder))
        chosen += [name for name in matches if name not in chosen]
    return chosen


def relative_text(data, prefixes):
    """``data`` (bytes) with the folders ``prefixes`` made relative: ``<prefix>/x`` -> ``x``, ``<prefix>`` -> ``.``."""
    for prefix in sorted(prefixes, key=len, reverse=True):
        prefix = prefix.rstrip('/').encode()
        data = data.replace(prefix + b'/', b'').replace(prefix, b'.')
    return data


def install(source, names, target, prefixes=()):
    """Replace the folder ``target`` by copies of ``source/<names>``, all at once.

    The files are copied into a staging folder beside ``target`` (text files with ``prefixes``
    made relative), the old folder is renamed away, the staging folder renamed to ``target`` and
    the old one deleted; a failure before the swap leaves ``target`` untouched.
    """
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix='.%s.new-' % os.path.basename(target), dir=parent)
    try:
        for name in names:
            path = os.path.join(source, name)
            if name.endswith(TEXT_SUFFIXES) and prefixes:
                with open(path, 'rb') as stream:
                    data = relative_text(stream.read(), prefixes)
                with open(os.path.join(staging, name), 'wb') as stream:
                    stream.write(data)
            else:
                shutil.copyfile(path, os.path.join(staging, name))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    os.chmod(staging, 0o755)
    old = None
    if os.path.exists(target):
        old = tempfile.mkdtemp(prefix='.%s.old-' % os.path.basename(target), dir=parent)
        os.rename(target, os.path.join(old, 'previous'))
    os.rename(staging, target)
    if old is not None:
        shutil.rmtree(old)


def run_step(step, log_dir, keep_temp, number, total, temp_root=None):
    """Run one step and install its files; return the list of file names copied.

    Raises:
        StepFailed: a command failed or a file is missing (the temporary folder, made in
            ``temp_root`` or the system's, is kept).
    """
    tmp = tempfile.mkdtemp(prefix='factseg_regen_%s_' % step.name, dir=temp_root)
    console_log = os.path.join(tmp, 'console.log')
    # A fresh oneDNN program cache: every run exports and checks its programs, as a first run does.
    env = dict(os.environ, FACTSEG_CACHE_DIR=os.path.join(tmp, 'program_cache'))
    start = time.time()
    print('[%d/%d] %s: %s in %s' % (number, total, step.name, step.about, tmp), flush=True)
    for argv in step.commands:
        command = fill(argv, tmp)
        print('[%d/%d] %s: $ %s' % (number, total, step.name, ' '.join(command)), flush=True)
        status = run_command(command, tmp, console_log, env)
        if status != 0:
            raise StepFailed(
                '%s: `%s` exited with %d; its output is in %s (Log/%s is unchanged)'
                % (step.name, ' '.join(command), status, console_log, step.target)
            )
    source = os.path.join(tmp, step.source)
    try:
        names = matching_files(source, step.patterns)
    except StepFailed as error:
        raise StepFailed(
            '%s: %s; output in %s (Log/%s is unchanged)' % (step.name, error, console_log, step.target)
        ) from None
    target = os.path.join(log_dir, step.target)
    install(source, names, target, prefixes=(REPO_ROOT, os.path.realpath(tmp), tmp) + SITE_PACKAGES)
    print(
        '[%d/%d] %s: done in %.0f s; %d files in %s: %s'
        % (number, total, step.name, time.time() - start, len(names), target, ', '.join(names)),
        flush=True,
    )
    if not keep_temp:
        shutil.rmtree(tmp, ignore_errors=True)
    return names


def main(argv=None):
    """Regenerate the chosen folders; returns the exit status (0, 1 a step failed, 2 usage error)."""
    args = parse_args(argv)
    os.environ.setdefault('OMP_NUM_THREADS', '2')
    total = len(args.steps)
    if args.dry_run:
        for number, step in enumerate(args.steps, 1):
            print('[%d/%d] %s: %s' % (number, total, step.name, step.about))
            for argv_ in step.commands:
                print('    $ %s' % ' '.join(fill(argv_, '<tmp>')))
            print(
                '    copy <tmp>/%s/{%s} -> %s'
                % (step.source, ','.join(step.patterns), os.path.join(args.log_dir, step.target))
            )
        return 0
    start = time.time()
    for number, step in enumerate(args.steps, 1):
        try:
            run_step(step, args.log_dir, args.keep_temp, number, total)
        except StepFailed as error:
            print('regenerate_logs.py: error: %s' % error, file=sys.stderr)
            done = [s.name for s in args.steps[: number - 1]]
            if done:
                print('regenerate_logs.py: already regenerated: %s' % ', '.join(done), file=sys.stderr)
            return 1
    print('regenerated %s in %.0f s' % (', '.join(step.name for step in args.steps), time.time() - start))
    return 0


if __name__ == '__main__':
    sys.exit(main())
