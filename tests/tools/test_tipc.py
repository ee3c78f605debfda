"""The TIPC chain end to end: demo data → train → evaluate → export → static inference."""
import json
import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_lite_chain_produces_every_output(tmp_path):
    out = tmp_path / 'tipc'
    result = subprocess.run(['bash', os.path.join(REPO, 'test_tipc', 'test_train_inference_python.sh'),
                             'lite_train_lite_infer', str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'TIPC lite_train_lite_infer passed' in result.stdout
    info = json.load(open(out / 'train' / 'checkpoint_info.json'))
    assert info['last'] == 'model-6.pdparams'
    assert (out / 'inference_model' / 'model.pdiparams').is_file()
    labels = sorted(p.name for p in (out / 'predictions').iterdir() if p.name.endswith('_label.png'))
    assert labels == sorted(p.name.replace('.png', '_label.png') for p in (out / 'data' / 'val' / 'images').iterdir())
