import os

import numpy as np
import paddle
import pytest

from simplecv.inference import fast_path
from simplecv.inference.fast_path import DygraphForward, OneDNNForward, build_forward, onednn_available
from simplecv.inference.sliding_window import SlidingWindowPredictor, predict_per_window

needs_onednn = pytest.mark.skipif(not onednn_available(), reason='needs a CPU Paddle build with oneDNN')


@needs_onednn
def test_onednn_fast_path_matches_dygraph_and_keeps_the_model_dygraph(tiny_factseg, random_image):
    image = random_image(100, 90, seed=3)
    dygraph = DygraphForward(tiny_factseg)
    reference_probs, reference_labels = predict_per_window(dygraph, image, (64, 64), 40)
    fast = OneDNNForward(tiny_factseg)
    labels, probs = SlidingWindowPredictor(fast, 64, 40).predict(image, with_probabilities=True)
    assert fast.fallback is None and fast.max_difference < 1e-4
    np.testing.assert_allclose(probs, reference_probs, rtol=0, atol=1e-4)
    assert (labels != reference_labels).mean() < 1e-3
    # exporting must not turn the model's own forward into a static function, nor change its ops
    assert type(tiny_factseg.forward).__name__ == 'method'
    assert tiny_factseg.interpolation == 'native' and tiny_factseg.logsumexp == 'native'
    assert tiny_factseg.fgfpn.interpolation == 'native'
    fast.close()


@needs_onednn
def test_fast_path_falls_back_to_dygraph_with_a_warning_when_the_check_fails(tiny_factseg, random_image, factseg_log):
    image = random_image(64, 64)
    fast = OneDNNForward(tiny_factseg, atol=-1.0)  # no difference can pass
    labels, probs = SlidingWindowPredictor(fast, 64, 32).predict(image, with_probabilities=True)
    assert fast.fallback is fast.dygraph and 'oneDNN fast path disabled' in factseg_log.text
    reference_probs, _ = predict_per_window(DygraphForward(tiny_factseg), image, (64, 64), 32)
    np.testing.assert_array_equal(probs, reference_probs)


@needs_onednn
def test_fast_path_falls_back_when_export_fails(random_image, factseg_log):
    class Unexportable(paddle.nn.Layer):
        def forward(self, x):
            values = np.tile(x.numpy(), (1, 6, 1, 1))[:, :16]  # NumPy inside forward: not traceable
            return paddle.nn.functional.softmax(paddle.to_tensor(values), axis=1)

    fast = OneDNNForward(Unexportable())
    out = fast(np.zeros((1, 3, 32, 32), np.float32))
    assert fast.fallback is not None and tuple(out.shape) == (1, 16, 32, 32)
    assert 'oneDNN fast path disabled' in factseg_log.text


def test_build_forward_choices():
    model = paddle.nn.Identity()
    assert isinstance(build_forward(model, 'dygraph'), DygraphForward)
    assert isinstance(build_forward(model, 'auto', amp='bf16'), DygraphForward)
    with pytest.raises(ValueError, match='backend must be'):
        build_forward(model, 'tensorrt')
    with pytest.raises(ValueError, match='amp'):
        build_forward(model, 'onednn', amp='fp16')


def _resident_bytes():
    with open('/proc/self/statm') as stream:
        return int(stream.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


@pytest.mark.skipif(fast_path.free_heap_bytes() is None, reason='needs glibc 2.33 or later (mallinfo2)')
def test_kept_heap_holes_are_counted_and_released():
    """Under KEEP_FREED freed blocks stay resident in the heap; release_free_heap gives their pages back."""
    assert fast_path.set_malloc_policy(**fast_path.KEEP_FREED)
    try:
        blocks = [np.ones(1 << 18, np.float32) for _ in range(64)]  # 64 blocks of 1 MiB, from the heap
        free_before = fast_path.free_heap_bytes()
        del blocks[::2]  # 32 MiB of holes between blocks still in use
        assert fast_path.free_heap_bytes() - free_before >= 30 << 20
        resident = _resident_bytes()
        fast_path.release_free_heap()
        assert resident - _resident_bytes() >= 24 << 20
        del blocks
    finally:
        fast_path.set_malloc_policy(**fast_path.RETURN_FREED)


@needs_onednn
def test_the_heap_is_released_when_its_free_part_spreads(tiny_factseg, monkeypatch):
    free = iter([100 << 20, 150 << 20, (164 << 20) + 1, 200 << 20, (229 << 20) + 1])
    released = []
    monkeypatch.setattr(fast_path, 'set_malloc_policy', lambda **policy: True)
    monkeypatch.setattr(fast_path, 'free_heap_bytes', lambda: next(free))
    monkeypatch.setattr(fast_path, 'release_free_heap', lambda: released.append(1) or True)
    monkeypatch.setattr(fast_path, 'KEEP_SPREAD', 64 << 20)
    forward = OneDNNForward(tiny_factseg, cache_dir='none')
    batch = np.zeros((1, 3, 64, 64), np.float32)
    forward(batch)  # exported and checked, then KEEP_FREED
    for expected in ([], [], [1], [1], [1, 1]):  # the mark at 100 MiB, then releases past 164 and 229 MiB
        forward(batch)
        assert released == expected
    forward.close()
