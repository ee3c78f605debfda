"""List or clear the cache of exported oneDNN programs (see simplecv/inference/program_cache.py)."""

import argparse
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from simplecv.inference.program_cache import CACHE_ENV, ProgramCache, resolve_cache_dir  # noqa: E402
from simplecv.util.logger import configure_logging  # noqa: E402


def main(argv=None):
    """List the cached programs, or delete them with ``--clear``; returns the exit status."""
    parser = argparse.ArgumentParser(prog='python tools/program_cache.py', description=__doc__)
    parser.add_argument(
        '--cache_dir', default=None, help='cache directory (default: $%s, else ~/.cache/factseg-paddle)' % CACHE_ENV
    )
    parser.add_argument('--clear', action='store_true', help='delete every cached program')
    args = parser.parse_args(argv)
    configure_logging()
    root = resolve_cache_dir(args.cache_dir)
    if root is None:
        print('caching is off (--cache_dir %s)' % args.cache_dir)
        return 0
    cache = ProgramCache(root)
    if args.clear:
        print('deleted %d cached programs from %s' % (cache.clear(), cache.root))
        return 0
    entries = cache.entries()
    for folder, size in entries:
        print('%s  %.1f MB' % (folder, size / 1e6))
    print('%d cached programs in %s (%.1f MB)' % (len(entries), cache.root, sum(s for _, s in entries) / 1e6))
    return 0


if __name__ == '__main__':
    sys.exit(main())
