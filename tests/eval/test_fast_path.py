import numpy as np
import paddle
import pytest

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
