"""glibc's malloc policy for prediction: freed memory kept in the heap, its holes released."""

import os

import numpy as np
import pytest

from simplecv.inference import heap

needs_mallinfo2 = pytest.mark.skipif(heap.free_heap_bytes() is None, reason='needs glibc 2.33 or later (mallinfo2)')


def _resident_bytes():
    with open('/proc/self/statm') as stream:
        return int(stream.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


@needs_mallinfo2
def test_kept_heap_holes_are_counted_and_released():
    """Under KEEP_FREED freed blocks stay resident in the heap; release_free_heap gives their pages back."""
    assert heap.set_malloc_policy(**heap.KEEP_FREED)
    try:
        blocks = [np.ones(1 << 18, np.float32) for _ in range(64)]  # 64 blocks of 1 MiB, from the heap
        free_before = heap.free_heap_bytes()
        del blocks[::2]  # 32 MiB of holes between blocks still in use
        assert heap.free_heap_bytes() - free_before >= 30 << 20
        resident = _resident_bytes()
        heap.release_free_heap()
        assert resident - _resident_bytes() >= 24 << 20
        del blocks
    finally:
        heap.set_malloc_policy(**heap.RETURN_FREED)


@needs_mallinfo2
def test_return_freed_gives_large_blocks_back_at_free():
    heap.set_malloc_policy(**heap.RETURN_FREED)
    block = np.ones(16 << 18, np.float32)  # 16 MiB: its own mapping
    resident = _resident_bytes()
    del block
    assert resident - _resident_bytes() >= 15 << 20


def test_the_keeper_keeps_after_verified_windows_and_releases_spreading_holes(monkeypatch):
    free = iter([100 << 20, 150 << 20, (164 << 20) + 1, 200 << 20, (229 << 20) + 1])
    policies, released = [], []
    monkeypatch.setattr(heap, 'set_malloc_policy', lambda **policy: policies.append(policy) or True)
    monkeypatch.setattr(heap, 'free_heap_bytes', lambda: next(free))
    monkeypatch.setattr(heap, 'release_free_heap', lambda: released.append(1) or True)
    keeper = heap.HeapKeeper()
    keeper.after_window()
    assert policies == [heap.RETURN_FREED, heap.KEEP_FREED] and keeper.keeping
    for expected in ([], [], [1], [1], [1, 1]):  # the mark at 100 MiB, then releases past 164 and 229 MiB
        keeper.after_window()
        assert released == expected
    keeper.return_freed()
    assert policies[-1] == heap.RETURN_FREED and not keeper.keeping


@pytest.mark.parametrize(('value', 'lean'), [('1', True), ('yes', True), ('0', False), ('', False)])
def test_lean_memory_setting(monkeypatch, value, lean):
    monkeypatch.setenv(heap.LEAN_MEMORY_ENV, value)
    policies = []
    monkeypatch.setattr(heap, 'set_malloc_policy', lambda **policy: policies.append(policy) or True)
    keeper = heap.HeapKeeper()
    keeper.after_window()
    assert heap.lean_memory() is lean and keeper.keeping is not lean
    assert policies == [heap.RETURN_FREED] if lean else [heap.RETURN_FREED, heap.KEEP_FREED]
