"""The oneDNN program cache: reuse, rebuild on any change of what determines the program, repair."""

import json
import os
import shutil
import sys

import numpy as np
import paddle
import pytest

from simplecv.inference.fast_path import OneDNNForward, onednn_available
from simplecv.inference.program_cache import ProgramCache, default_cache_dir, resolve_cache_dir
from tools import program_cache as cache_tool

pytestmark = pytest.mark.skipif(not onednn_available(), reason='needs a CPU Paddle build with oneDNN')


def _batch(size=64, seed=0):
    return np.random.RandomState(seed).randn(1, 3, size, size).astype(np.float32)


def _run(model, cache_dir, batch, config=None):
    forward = OneDNNForward(model, cache_dir=cache_dir, config=config)
    out = forward(batch)
    assert forward.fallback is None
    forward.close()
    return forward, out


def _entries(cache_dir):
    return [folder for folder, _ in ProgramCache(cache_dir).entries()]


@pytest.fixture(scope='module')
def built(tiny_factseg, tmp_path_factory):
    """A cache holding the checked program of ``tiny_factseg`` at 64x64, and its output."""
    cache_dir = str(tmp_path_factory.mktemp('built_cache'))
    forward, out = _run(tiny_factseg, cache_dir, _batch())
    assert forward.cache_hits == 0 and len(_entries(cache_dir)) == 1
    return cache_dir, out


@pytest.fixture
def cache_copy(built, tmp_path):
    """A private copy of the ``built`` cache: ``(cache dir, expected output)``."""
    cache_dir = str(tmp_path / 'cache')
    shutil.copytree(built[0], cache_dir)
    return cache_dir, built[1]


def test_second_run_uses_the_cached_program_without_export_or_check(tiny_factseg, cache_copy, monkeypatch):
    cache_dir, out = cache_copy
    with open(os.path.join(_entries(cache_dir)[0], 'entry.json')) as stream:
        entry = json.load(stream)
    assert entry['check']['max_abs_diff'] <= 1e-4 and entry['fields']['input_shape'] == [1, 3, 64, 64]

    import simplecv.inference.fast_path as fast_path

    def no_export(*args, **kwargs):
        raise AssertionError('a cached program must not be exported again')

    monkeypatch.setattr(fast_path, 'export_onednn_program', no_export)
    second = OneDNNForward(tiny_factseg, cache_dir=cache_dir)
    second.dygraph = None  # the check must not run again either
    again = second(_batch())
    assert second.fallback is None and second.cache_hits == 1
    np.testing.assert_array_equal(again, out)
    second.close()


def test_changed_weights_input_size_or_config_build_new_programs(tiny_factseg, cache_copy):
    cache_dir, _ = cache_copy
    forward, _ = _run(tiny_factseg, cache_dir, _batch(96))
    assert forward.cache_hits == 0 and len(_entries(cache_dir)) == 2
    forward, _ = _run(tiny_factseg, cache_dir, _batch(), config=dict(num_classes=16))
    assert forward.cache_hits == 0 and len(_entries(cache_dir)) == 3
    weight = tiny_factseg.bi_cls.weight
    saved = weight.numpy().copy()
    try:
        with paddle.no_grad():
            weight.set_value(saved * 1.5)
        changed, out = _run(tiny_factseg, cache_dir, _batch())
        assert changed.cache_hits == 0 and len(_entries(cache_dir)) == 4
        with paddle.no_grad():
            expected = tiny_factseg(paddle.to_tensor(_batch())).numpy()
        np.testing.assert_allclose(out, expected, atol=1e-4)
    finally:
        with paddle.no_grad():
            weight.set_value(saved)
    forward, _ = _run(tiny_factseg, cache_dir, _batch())  # the original weights: the first entry again
    assert forward.cache_hits == 1 and len(_entries(cache_dir)) == 4


@pytest.mark.parametrize('damage', ['params', 'entry', 'stale', 'missing'])
def test_corrupt_or_stale_entries_are_detected_and_rebuilt(tiny_factseg, cache_copy, factseg_log, damage):
    cache_dir, out = cache_copy
    folder = _entries(cache_dir)[0]
    if damage == 'params':
        with open(os.path.join(folder, 'model.pdiparams'), 'r+b') as stream:
            stream.seek(100)
            stream.write(b'\xff' * 16)
    elif damage == 'entry':
        with open(os.path.join(folder, 'entry.json'), 'w') as stream:
            stream.write('{"trunc')
    elif damage == 'stale':
        with open(os.path.join(folder, 'entry.json')) as stream:
            entry = json.load(stream)
        entry['fields']['paddle'] = '0.0.0'
        with open(os.path.join(folder, 'entry.json'), 'w') as stream:
            json.dump(entry, stream)
    else:
        os.remove(os.path.join(folder, 'model.json'))
    forward, again = _run(tiny_factseg, cache_dir, _batch())
    assert forward.cache_hits == 0
    expected = {'params': 'corrupt', 'entry': 'corrupt', 'stale': 'stale', 'missing': 'corrupt'}[damage]
    assert 'entry %s is %s' % (folder, expected) in factseg_log.text
    np.testing.assert_allclose(again, out, atol=1e-5)
    forward, _ = _run(tiny_factseg, cache_dir, _batch())  # the rebuilt entry is valid
    assert forward.cache_hits == 1


def test_a_failed_check_is_never_cached(tiny_factseg, tmp_path):
    cache_dir = str(tmp_path / 'cache')
    forward = OneDNNForward(tiny_factseg, cache_dir=cache_dir, atol=-1.0)
    forward(_batch(32))
    assert forward.fallback is not None and _entries(cache_dir) == []
    assert not [name for name in os.listdir(ProgramCache(cache_dir).root) if name.startswith('.staging')]


def test_cache_dir_defaults_env_and_off(tmp_path, monkeypatch):
    monkeypatch.setenv('FACTSEG_CACHE_DIR', str(tmp_path / 'env'))
    assert default_cache_dir() == str(tmp_path / 'env') and resolve_cache_dir() == str(tmp_path / 'env')
    assert resolve_cache_dir('none') is None and resolve_cache_dir('off') is None
    monkeypatch.delenv('FACTSEG_CACHE_DIR')
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    assert default_cache_dir() == str(tmp_path / 'xdg' / 'factseg-paddle')


def test_without_a_cache_nothing_is_written(tiny_factseg, tmp_path, monkeypatch):
    monkeypatch.setenv('FACTSEG_CACHE_DIR', str(tmp_path / 'unused'))
    forward, _ = _run(tiny_factseg, 'none', _batch(32))
    assert forward.cache is None and not os.path.exists(tmp_path / 'unused')


def test_cache_tool_lists_and_clears(cache_copy, capsys):
    cache_dir, _ = cache_copy
    assert cache_tool.main(['--cache_dir', cache_dir]) == 0
    assert '1 cached programs' in capsys.readouterr().out
    assert cache_tool.main(['--cache_dir', cache_dir, '--clear']) == 0
    assert 'deleted 1 cached programs' in capsys.readouterr().out
    assert _entries(cache_dir) == []


def test_code_digest_covers_the_functions_a_forward_calls(tiny_factseg, monkeypatch):
    import simplecv.module.export_ops
    from simplecv.inference import program_cache

    hashed = []
    real_file_digest = program_cache.file_digest
    monkeypatch.setattr(program_cache, 'file_digest', lambda path: hashed.append(path) or real_file_digest(path))
    program_cache.code_digest(tiny_factseg)
    # export_ops defines no layer, but the model's upsampling and loss functions call it
    assert os.path.abspath(simplecv.module.export_ops.__file__) in hashed
    assert not any(os.sep + 'paddle' + os.sep in path for path in hashed)


def test_the_model_is_let_go_once_verified_and_rebuilt_when_needed_again(tiny_factseg, cache_copy):
    """With ``reload`` the dygraph model is dropped after the check (or a cache hit) and rebuilt for a new shape."""
    cache_dir, expected = cache_copy
    reloads = []

    def reload():
        reloads.append(1)
        return tiny_factseg

    forward = OneDNNForward(tiny_factseg, cache_dir=cache_dir, reload=reload)
    np.testing.assert_array_equal(forward(_batch()), expected)  # cached program: verified at once
    assert forward.model is None and forward.dygraph is None and not reloads
    np.testing.assert_array_equal(forward(_batch()), expected)
    out = forward(_batch(96))  # a new shape: exported and checked with the rebuilt model, then let go again
    assert reloads == [1] and forward.fallback is None and forward.model is None
    np.testing.assert_allclose(out, OneDNNForward(tiny_factseg, cache_dir='none')(_batch(96)), rtol=0, atol=1e-6)
    forward.close()


def test_freed_memory_is_kept_only_while_verified_programs_run(tiny_factseg, cache_copy, monkeypatch):
    """Export and check return freed memory to the system; the sweep over verified programs keeps it."""
    from simplecv.inference import heap

    assert heap.set_malloc_policy(**heap.RETURN_FREED) == (sys.platform == 'linux')
    policies = []
    monkeypatch.setattr(heap, 'set_malloc_policy', lambda **policy: policies.append(policy) or True)
    cache_dir, expected = cache_copy
    forward = OneDNNForward(tiny_factseg, cache_dir=cache_dir)
    assert policies == [heap.RETURN_FREED]
    np.testing.assert_array_equal(forward(_batch()), expected)  # cached program: verified at once
    np.testing.assert_array_equal(forward(_batch()), expected)
    assert policies == [heap.RETURN_FREED, heap.KEEP_FREED]
    forward(_batch(96))  # a new shape is exported and checked, then the sweep goes on
    assert policies == [heap.RETURN_FREED, heap.KEEP_FREED, heap.RETURN_FREED, heap.KEEP_FREED]
    forward.close()  # the process goes back to returning freed memory
    assert policies[-1] == heap.RETURN_FREED and not forward.heap.keeping
    failing = OneDNNForward(tiny_factseg, cache_dir='none', atol=-1.0)  # the check fails: dygraph from then on
    failing(_batch())
    failing(_batch())
    assert failing.fallback is not None and policies[-1] == heap.RETURN_FREED


def test_lean_memory_keeps_returning_freed_memory(tiny_factseg, cache_copy, monkeypatch):
    from simplecv.inference import heap

    policies = []
    monkeypatch.setattr(heap, 'set_malloc_policy', lambda **policy: policies.append(policy) or True)
    monkeypatch.setenv(heap.LEAN_MEMORY_ENV, '1')
    cache_dir, expected = cache_copy
    forward = OneDNNForward(tiny_factseg, cache_dir=cache_dir)
    np.testing.assert_array_equal(forward(_batch()), expected)
    np.testing.assert_array_equal(forward(_batch()), expected)
    assert forward.verified and policies == [heap.RETURN_FREED]
    forward.close()
