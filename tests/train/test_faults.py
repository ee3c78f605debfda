"""Faults in the middle of a run (one process): each test asserts the exit code, the one-line message
and that nothing was lost (the last checkpoint and checkpoint_info.json load, and the run resumes).

The split has four 64x64 images read one per step, so "the image of step 3" is known in advance.
"""

import errno
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import paddle
import pytest
from PIL import Image

import apex_train
from fault_helpers import REPO_ROOT, LabelSplit, last_line, remount_read_only, run_script, small_disk, temporaries
from simplecv.core.checkpoint import load_checkpoint, read_checkpoint_info
from simplecv.util import output_guard


def error_line(capsys):
    line = last_line(capsys.readouterr().err)
    assert line.startswith('apex_train.py: error: '), line
    return line


def assert_checkpoint(model_dir, step):
    """The pointer names model-<step>, that file loads and holds that step, and no temporary file is left."""
    info = read_checkpoint_info(str(model_dir))
    assert info['last'] == 'model-%d.pdparams' % step and info['global_step'] == step
    state = load_checkpoint(os.path.join(str(model_dir), info['last']))
    assert state['global_step'] == step and 'opt' in state
    assert temporaries(str(model_dir)) == []


def final_weights(model_dir, step):
    return load_checkpoint(os.path.join(str(model_dir), 'model-%d.pdparams' % step))['model']


def test_bad_label_found_mid_run_stops_saves_and_resumes_exactly(tmp_path, capsys):
    split = LabelSplit(tmp_path, num_iters=4)
    good = split.break_label(step=3)
    model_dir = tmp_path / 'run'
    started = time.time()
    assert apex_train.main(split.argv(model_dir)) == 2
    assert time.time() - started < 60
    line = error_line(capsys)
    assert str(split.label(3)) in line and 'holds label values [77] outside 0..15 and 255' in line
    assert 'the run stopped after step 2' in line and 'run the same command again to continue' in line
    # Steps 1 and 2 are saved by the failure itself (this config saves only at the end).
    assert_checkpoint(model_dir, 2)

    Image.fromarray(good).save(split.label(3))
    assert apex_train.main(split.argv(model_dir)) == 0
    assert_checkpoint(model_dir, 4)
    whole = tmp_path / 'whole'
    assert apex_train.main(split.argv(whole)) == 0
    want, got = final_weights(whole, 4), final_weights(model_dir, 4)
    for name, value in want.items():
        np.testing.assert_array_equal(got[name].numpy(), value.numpy(), err_msg=name)


def test_bad_label_found_by_a_loader_worker_process(tmp_path):
    split = LabelSplit(tmp_path, num_iters=4)
    split.break_label(step=3, value=200)
    model_dir = tmp_path / 'run'
    code, output = run_script(
        ['apex_train.py'] + split.argv(model_dir, 'data.train.params.num_workers', '2'), timeout=120
    )
    assert code == 2, output[-3000:]
    line = last_line(output)
    assert line.startswith('apex_train.py: error: ') and str(split.label(3)) in line and '[200]' in line, line
    assert 'Traceback' not in output
    assert_checkpoint(model_dir, 2)


def test_file_removed_mid_run(tmp_path, capsys, monkeypatch):
    import data.isaid

    split = LabelSplit(tmp_path, num_iters=4)
    image = split.image(3)
    kept = tmp_path / 'kept.png'
    list_pairs = data.isaid.list_pairs

    def list_then_move(*args):
        # The file passes the start-up checks, then disappears (deleted or moved by someone else).
        pairs = list_pairs(*args)
        if str(image) in [pair.image_path for pair in pairs]:
            shutil.move(str(image), kept)
        return pairs

    monkeypatch.setattr(data.isaid, 'list_pairs', list_then_move)
    model_dir = tmp_path / 'run'
    assert apex_train.main(split.argv(model_dir)) == 2
    line = error_line(capsys)
    assert '%s no longer exists' % image in line and 'restore it' in line and 'stopped after step 2' in line
    assert_checkpoint(model_dir, 2)
    monkeypatch.setattr(data.isaid, 'list_pairs', list_pairs)
    shutil.move(kept, image)
    assert apex_train.main(split.argv(model_dir)) == 0
    assert_checkpoint(model_dir, 4)


KILLED_WHILE_SAVING = """
import sys
import time

import paddle

import apex_train


def save_forever(state, path):
    with open(path, 'wb') as stream:
        stream.write(b'half a checkpoint' * 4096)
        stream.flush()
        print('WRITING', path, flush=True)
        time.sleep(600)


paddle.save = save_forever
sys.exit(apex_train.main(sys.argv[1:]))
"""


def test_sigkill_while_a_checkpoint_is_written(tmp_path, capsys):
    split = LabelSplit(tmp_path, num_iters=2)
    model_dir = tmp_path / 'run'
    assert apex_train.main(split.argv(model_dir, 'train.num_iters', '1')) == 0
    env = dict(os.environ, OMP_NUM_THREADS='2', PYTHONPATH=REPO_ROOT)
    process = subprocess.Popen(
        [sys.executable, '-c', KILLED_WHILE_SAVING] + split.argv(model_dir),
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = []
        for line in process.stdout:
            output.append(line)
            if line.startswith('WRITING'):
                process.kill()
                break
    finally:
        process.kill()
        process.wait(60)
    assert process.returncode == -signal.SIGKILL, ''.join(output)[-3000:]
    assert 'model-2.pdparams.tmp' in output[-1]
    # The half-written file is all that is left of step 2; step 1 is untouched.
    assert temporaries(str(model_dir)) == [os.path.basename(output[-1].split()[1])]
    assert not (model_dir / 'model-2.pdparams').exists()
    info = read_checkpoint_info(str(model_dir))
    assert info['last'] == 'model-1.pdparams'
    assert load_checkpoint(str(model_dir / 'model-1.pdparams'))['global_step'] == 1

    capsys.readouterr()
    assert apex_train.main(split.argv(model_dir)) == 0
    assert 'left by a run that was killed while writing it' in (model_dir / 'train.log').read_text()
    assert_checkpoint(model_dir, 2)


def _inject_enospc(monkeypatch, step):
    save = paddle.save

    def save_until_full(state, path, *args, **kwargs):
        if int(state.get('global_step', -1)) != step:
            return save(state, path, *args, **kwargs)
        with open(path, 'wb') as stream:
            stream.write(b'\0' * 65536)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(paddle, 'save', save_until_full)


def test_full_disk_while_saving_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    split = LabelSplit(tmp_path, num_iters=2, save_every=1)
    model_dir = tmp_path / 'disk'
    moved = tmp_path / 'moved'
    # A checkpoint of the test model is 90 MB: a 130 MB disk holds one, and fills while writing the second.
    with small_disk(model_dir, 130) as mounted:
        if not mounted:
            _inject_enospc(monkeypatch, step=2)
        assert apex_train.main(split.argv(model_dir)) == 2
        line = error_line(capsys)
        assert 'cannot write the checkpoint %s' % (model_dir / 'model-2.pdparams') in line
        assert '[Errno 28] No space left on device' in line and 'free space on the disk of %s' % model_dir in line
        assert 'the last complete checkpoint %s is unchanged' % (model_dir / 'model-1.pdparams') in line
        assert_checkpoint(model_dir, 1)
        if mounted:
            # Warned at the start: the 130 MB disk cannot hold a 90 MB checkpoint beside another.
            assert 'MB free on the disk of %s' % model_dir in (model_dir / 'train.log').read_text()
        shutil.copytree(model_dir, moved)
    monkeypatch.undo()
    assert apex_train.main(split.argv(moved)) == 0
    assert_checkpoint(moved, 2)


def test_read_only_model_dir_is_refused_before_training(tmp_path, capsys, monkeypatch):
    split = LabelSplit(tmp_path, num_iters=1)
    model_dir = tmp_path / 'ro'
    with small_disk(model_dir, 200) as mounted:
        assert apex_train.main(split.argv(model_dir)) == 0
        if not (mounted and remount_read_only(model_dir)):

            def read_only(path, *args, **kwargs):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)

            monkeypatch.setattr(output_guard, 'open', read_only, raising=False)
        capsys.readouterr()
        assert apex_train.main(split.argv(model_dir, 'train.num_iters', '2')) == 2
        line = error_line(capsys)
        assert 'cannot write the --model_dir folder %s ([Errno 30] Read-only file system)' % model_dir in line
        assert 'make %s writable or choose another --model_dir' % model_dir in line
        assert_checkpoint(model_dir, 1)


@pytest.mark.skipif(not os.path.exists('/dev/full'), reason='needs /dev/full')
@pytest.mark.parametrize('name', ['train.log', 'train_log.jsonl'])
def test_full_disk_under_the_logs(tmp_path, capsys, name):
    split = LabelSplit(tmp_path, num_iters=1)
    model_dir = tmp_path / 'run'
    model_dir.mkdir()
    # Every write to /dev/full fails with ENOSPC, as on a full disk.
    os.symlink('/dev/full', model_dir / name)
    assert apex_train.main(split.argv(model_dir)) == 2
    line = error_line(capsys)
    assert 'cannot write the training log %s' % (model_dir / name) in line
    assert '[Errno 28] No space left on device' in line
    assert read_checkpoint_info(str(model_dir)) is None


def test_sigterm_finishes_the_step_saves_and_exits_143(tmp_path):
    split = LabelSplit(tmp_path, num_iters=4)
    model_dir = tmp_path / 'run'
    env = dict(os.environ, OMP_NUM_THREADS='2', PYTHONPATH=REPO_ROOT)
    process = subprocess.Popen(
        [sys.executable, 'apex_train.py'] + split.argv(model_dir, 'train.num_iters', '10000'),
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    log = model_dir / 'train_log.jsonl'
    try:
        deadline = time.time() + 120
        while not (log.is_file() and log.read_text()):
            assert process.poll() is None and time.time() < deadline, process.stdout.read().decode()[-3000:]
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=120)[0].decode()
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, output[-3000:]
    assert 'SIGTERM: stopping after this step and saving a checkpoint' in output
    step = read_checkpoint_info(str(model_dir))['global_step']
    assert last_line(output).endswith(
        'stopped by SIGTERM at step %d of 10000; run the same command again to continue' % step
    )
    assert_checkpoint(model_dir, step)
    assert 'Traceback' not in output and 'FatalError' not in output


def test_config_typo_on_the_command_line_stops_before_training(tmp_path, capsys):
    split = LabelSplit(tmp_path, num_iters=1)
    model_dir = tmp_path / 'run'
    assert apex_train.main(split.argv(model_dir, 'train.num_iterz', '3')) == 2
    line = error_line(capsys)
    assert "unknown config key 'train.num_iterz'; did you mean 'train.num_iters'?" in line
    assert 'given on the command line' in line
    assert not model_dir.exists()


def test_visualdl_records_on_a_full_disk_stop_the_run(tmp_path):
    from types import SimpleNamespace

    from simplecv.core.errors import OutputError
    from simplecv.core.trainer import StepResult
    from simplecv.engine.hooks import VisualDLHook

    folder = tmp_path / 'vdl'
    with small_disk(folder, 1) as mounted:
        if not mounted:
            pytest.skip('needs a tmpfs mount (root): VisualDL writes from its own thread, nothing to inject into')
        hook = VisualDLHook(str(folder), interval=1)
        hook.before_train(None)
        trainer = SimpleNamespace(
            global_step=1, skipped_steps=0, last_step=StepResult({'joint_loss': 1.5}, 0.007, 2.0, False, 2)
        )
        hook.after_step(trainer)
        with open(folder / 'filler', 'wb', buffering=0) as stream:
            for chunk in (65536, 1):  # to the last byte
                with pytest.raises(OSError):
                    while True:
                        stream.write(b'\0' * chunk)
        # The file's last page still takes a few records; the first record past it fails.
        with pytest.raises(OutputError, match=r'cannot write the VisualDL log .*vdlrecords.*its writer thread failed'):
            for trainer.global_step in range(2, 200):
                hook.after_step(trainer)
        assert trainer.global_step < 20
        os.remove(folder / 'filler')
        hook._writer = None
