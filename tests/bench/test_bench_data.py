"""bench/bench_data.py compares like with like: its official procedure gives our loader's samples."""

import os
import sys

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO_ROOT, 'bench'))

import bench_data  # noqa: E402
from data.isaid import IMAGENET_MEAN, IMAGENET_STD, ISAIDSegmmDataset, RemoveColorMap  # noqa: E402
from simplecv.api.preprocess import comm, segm  # noqa: E402


class _NoAugmentation:
    """An rng for OfficialSample that never flips and never rotates."""

    def random(self):
        return 1.0

    def integers(self, high):
        return 0


def test_official_procedure_equals_our_sample_without_augmentation(tmp_path):
    image_dir, mask_dir = bench_data.make_scene(str(tmp_path / 'scene'), (300, 700), seed=3)
    transforms = [
        RemoveColorMap(),
        segm.FixedPad((256, 256), 255),
        segm.ToTensor(True),
        comm.THMeanStdNormalize(IMAGENET_MEAN, IMAGENET_STD),
    ]
    dataset = ISAIDSegmmDataset(image_dir, mask_dir, dict(patch_size=256, stride=200), transforms, cache_mb=0)
    official = bench_data.OfficialSample(256)
    assert len(dataset) == 8
    for index in (0, 5, 7):
        file_index, x1, y1, x2, y2 = (int(v) for v in dataset.windows[index])
        image, label = official(*dataset.files[file_index], (x1, y1, x2, y2), _NoAugmentation())
        ours_image, ours_target = dataset[index]
        np.testing.assert_allclose(image, ours_image, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(label, ours_target['cls'])
        assert len(np.unique(label)) > 1


def test_report_counts_workers_for_the_gpu(capsys):
    args = bench_data.parse_args([])
    bench_data.report(args, [('official', 0.5), ('ours', 0.02)], windows=200, cut_seconds=0.1)
    lines = capsys.readouterr().out.splitlines()
    assert 'needs 80 patches/s' in lines[1]
    official, ours = lines[-3].split(), lines[-2].split()
    assert official[-1] == '40' and ours[-1] == '2'
    assert ours[-2] == '25.0x'
