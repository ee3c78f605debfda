import os

import numpy as np

from data.isaid import ISAIDSegmmDataset, RemoveColorMap
from simplecv.api.preprocess import segm
from tools.cut_patches import cut_patches, main


def test_pre_cut_patches_give_the_same_samples(demo_split, tmp_path):
    count = cut_patches(*demo_split, str(tmp_path), patch_size=64, stride=48)
    source = ISAIDSegmmDataset(*demo_split, dict(patch_size=64, stride=48))
    cut = ISAIDSegmmDataset(
        str(tmp_path / 'images'),
        str(tmp_path / 'masks'),
        dict(patch_size=64, stride=48),
        [RemoveColorMap(), segm.ToTensor(True)],
        mask_format='label',
    )
    assert count == len(source) == len(cut)
    stems = [os.path.basename(p)[: -len('.png')] for p, _ in source.files]
    by_name = {os.path.basename(p): i for i, (p, _) in enumerate(cut.files)}
    for index, (file_index, x1, y1, _, _) in enumerate(source.windows):
        cut_index = by_name['%s_%d_%d.png' % (stems[file_index], x1, y1)]
        for a, b in zip(source.read(index), cut.read(cut_index), strict=True):
            np.testing.assert_array_equal(a, b)
    assert os.path.isfile(str(tmp_path / 'masks' / ('%s_0_0_label.png' % stems[0])))


def test_command_line_with_two_workers(demo_split, tmp_path):
    main(
        [
            '--image_dir',
            demo_split[0],
            '--mask_dir',
            demo_split[1],
            '--out',
            str(tmp_path),
            '--patch_size',
            '100',
            '--stride',
            '100',
            '--workers',
            '2',
        ]
    )
    assert len(os.listdir(str(tmp_path / 'images'))) == 2 * 4
