"""Which freed memory a prediction process keeps: glibc's allocator, set for speed or for memory.

A Paddle Inference predictor frees each window's intermediate tensors (up to 51 MB each for
FactSeg-R50 at 896x896) and allocates them again for the next window. Whether that memory stays
in the process or goes back to the system decides how fast windows run and how much memory the
process holds. Two policies for glibc's ``malloc`` (:func:`set_malloc_policy`), measured on the
FactSeg-R50 predictor at 896x896 (2 cores, per window; outputs bit-identical):

* ``RETURN_FREED`` (every block of 128 KiB or more is its own ``mmap``, returned at ``free``):
  the lowest memory (1.12 GB over 6 windows), but each window faults its gigabytes of fresh
  tensors in again: 4.6-4.9 s, 2.5 s of it system time. (glibc's own default, a threshold moving
  up to 32 MiB, is in between: 3.7-4.4 s, 1.3-1.8 s system, 1.34 GB.)
* ``KEEP_FREED`` (blocks under 64 MiB from the heap, up to 1 GiB of free heap top kept): the
  tensors stay for the next window: 2.7-2.8 s, about 0.03 s system, 1.87 GB.

:class:`HeapKeeper` applies them: ``RETURN_FREED`` while a program is exported and checked (its
dygraph temporaries go back), ``KEEP_FREED`` once the programs in use are verified, unless
``$FACTSEG_LEAN_MEMORY`` asks for the lowest memory. Whole processes (``bench/bench_eval.py``, 2-core
AMD EPYC, 2026-12-03; against PyTorch see the README):
2472x2299 with R50 in 61 s instead of 93 s; 1800x13000 with the demo config in 85 s instead of
154 s (106 s of it system time), at 1.50 GB instead of 1.20 GB.

Everything here is process-wide and a no-op where glibc's functions are not found.
"""

import ctypes
import ctypes.util
import functools
import os

_M_TRIM_THRESHOLD = -1  # glibc mallopt parameters
_M_MMAP_THRESHOLD = -3
RETURN_FREED = dict(mmap_threshold=128 * 1024, trim_threshold=128 * 1024)
KEEP_FREED = dict(mmap_threshold=64 << 20, trim_threshold=1 << 30)
KEEP_SPREAD = 64 << 20  # heap growth in free chunks tolerated before they are released
LEAN_MEMORY_ENV = 'FACTSEG_LEAN_MEMORY'


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ('arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks', 'fordblks')
    ] + [('keepcost', ctypes.c_size_t)]


@functools.lru_cache(maxsize=1)
def _libc():
    """The C library (glibc on Linux); raises ``OSError`` where it cannot be loaded."""
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
    if hasattr(libc, 'mallinfo2'):
        libc.mallinfo2.restype = _MallInfo2
    return libc


def lean_memory():
    """Whether ``$FACTSEG_LEAN_MEMORY`` asks to keep ``RETURN_FREED`` during the sweep too
    (``1``/``true``/``on``/``yes``): the lowest peak memory, at the cost of page faults each window."""
    return os.environ.get(LEAN_MEMORY_ENV, '').strip().lower() in ('1', 'true', 'on', 'yes')


def set_malloc_policy(mmap_threshold, trim_threshold=None):
    """Set glibc's mmap threshold (blocks of this size or more get their own mapping, returned at
    ``free``) and, unless None, its trim threshold (free bytes at the top of the heap kept rather
    than returned). Returns whether glibc accepted the settings."""
    try:
        libc = _libc()
        accepted = bool(libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)))
        if trim_threshold is not None:
            accepted = bool(libc.mallopt(_M_TRIM_THRESHOLD, int(trim_threshold))) and accepted
        return accepted
    except (OSError, AttributeError):
        return False


def free_heap_bytes():
    """Bytes in glibc's free heap chunks, all arenas (``mallinfo2().fordblks``); None without glibc 2.33+.

    Pages released by ``malloc_trim`` stay counted: the figure measures how far the heap has
    spread beyond what is in use, not what is resident.
    """
    try:
        return int(_libc().mallinfo2().fordblks)
    except (OSError, AttributeError):
        return None


def release_free_heap():
    """Give the pages of glibc's free heap chunks back to the system (``malloc_trim(0)``)."""
    try:
        return bool(_libc().malloc_trim(0))
    except (OSError, AttributeError):
        return False


class HeapKeeper:
    """The malloc policy of one predicting object; sets ``RETURN_FREED`` when created.

    Under ``KEEP_FREED`` the arrays that live longer than a window (the sweep's sums) leave holes
    in the heap that later windows do not always fit in (measured on a 1800x13000 image with the
    demo config: 452 MB free in a 1028 MB heap at the peak). :meth:`after_window` therefore gives
    the free chunks' pages back each time the free part has grown by ``KEEP_SPREAD`` beyond what
    the first kept window left (the predictor's own working set).
    """

    def __init__(self):
        self.keeping = False
        self._free_mark = None
        set_malloc_policy(**RETURN_FREED)

    def return_freed(self):
        """Return freed memory at once from now on (before an export and its check)."""
        if self.keeping:
            self.keeping = not set_malloc_policy(**RETURN_FREED)

    def after_window(self):
        """Called after each window run by verified programs: keep freed memory for the next one
        (unless :func:`lean_memory`), releasing the heap's holes when they spread."""
        if not self.keeping:
            self.keeping = not lean_memory() and set_malloc_policy(**KEEP_FREED)
            self._free_mark = None
            return
        free = free_heap_bytes()
        if free is None:
            return
        if self._free_mark is None:
            self._free_mark = free
        elif free > self._free_mark + KEEP_SPREAD:
            release_free_heap()
            self._free_mark = free
