"""Set-ups for the fault tests: a label-mask split read one image per step, small disks, subprocess runs."""

import contextlib
import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image

from data.isaid import decode_color_mask
from simplecv.data.sampler import StepBatchSampler
from train_helpers import write_tiny_config

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LABEL_FORMAT = ['data.train.params.mask_format', 'label']


class LabelSplit:
    """Four 64x64 demo images with label-PNG masks and a test-sized config reading one image per step.

    Attributes:
        config (str): the config file.
        order (list): image names in the order the first epoch reads them (step 1 reads ``order[0]``).
        image_dir, mask_dir (pathlib.Path): the split's folders.
    """

    def __init__(self, folder, num_iters=4, save_every=0):
        self.config = write_tiny_config(
            folder, num_iters=num_iters, batch_size=1, patch=64, num_images=4, image_size=64, save_every=save_every
        )
        self.image_dir = folder / 'data' / 'train' / 'images'
        self.mask_dir = folder / 'data' / 'train' / 'masks'
        names = sorted(path.stem for path in self.image_dir.glob('*.png'))
        for name in names:
            with Image.open(self.mask_dir / (name + '_instance_color_RGB.png')) as mask:
                label = decode_color_mask(np.asarray(mask.convert('RGB')))
            Image.fromarray(label).save(self.mask_dir / (name + '_label.png'))
        # The loader's sampler seed is 2333 by default; one sample per step.
        self.order = [names[i] for i in StepBatchSampler(len(names), 1, seed=2333).epoch_indices(0)]

    def argv(self, model_dir, *extra):
        return ['--config_path', self.config, '--model_dir', str(model_dir)] + LABEL_FORMAT + list(extra)

    def image(self, step):
        """The image file read at ``step`` (1-based) of the first epoch."""
        return self.image_dir / (self.order[step - 1] + '.png')

    def label(self, step):
        """The label file read at ``step`` (1-based) of the first epoch."""
        return self.mask_dir / (self.order[step - 1] + '_label.png')

    def break_label(self, step, value=77):
        """Write ``value`` into one pixel of the label read at ``step``; return the good array."""
        path = self.label(step)
        good = np.array(Image.open(path))
        broken = good.copy()
        broken[5, 5] = value
        Image.fromarray(broken).save(path)
        return good


def run_script(argv, timeout=180, **popen):
    """Run ``python argv...`` from the repository root; return ``(returncode, combined output)``."""
    env = dict(os.environ, OMP_NUM_THREADS='2', PYTHONPATH=REPO_ROOT)
    process = subprocess.run(
        [sys.executable] + argv,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
        **popen,
    )
    return process.returncode, process.stdout.decode(errors='replace')


def last_line(text):
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ''


def temporaries(folder):
    return [name for name in os.listdir(folder) if '.tmp' in name]


@contextlib.contextmanager
def small_disk(folder, size_mb):
    """Mount a ``size_mb`` tmpfs on ``folder`` and yield True, or yield False when mounting is not allowed."""
    os.makedirs(folder, exist_ok=True)
    mounted = (
        shutil.which('mount') is not None
        and subprocess.run(
            ['mount', '-t', 'tmpfs', '-o', 'size=%dm' % size_mb, 'tmpfs', str(folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ).returncode
        == 0
    )
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(['umount', '-l', str(folder)], check=False)


def remount_read_only(folder):
    """Make the tmpfs on ``folder`` read-only; return whether that worked."""
    return (
        subprocess.run(
            ['mount', '-o', 'remount,ro', str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ).returncode
        == 0
    )
