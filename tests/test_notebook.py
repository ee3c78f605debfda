"""main.ipynb: committed without outputs, and run top to bottom in a real Jupyter kernel."""

import json
import os
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, 'main.ipynb')
TIMEOUT = 900  # seconds per cell; the whole notebook takes ~1.5 min on 2 loaded cores


def code_cells():
    nbformat = pytest.importorskip('nbformat')
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    return notebook, [cell for cell in notebook.cells if cell.cell_type == 'code']


def test_notebook_is_committed_without_outputs():
    _, cells = code_cells()
    assert cells
    for index, cell in enumerate(cells):
        assert cell.outputs == [], 'code cell %d has outputs: clear them before committing' % index
        assert cell.execution_count is None, 'code cell %d has an execution count' % index


def test_first_code_cell_sets_threads_and_mkl_before_paddle():
    _, cells = code_cells()
    first = cells[0].source
    assert "os.environ.setdefault('OMP_NUM_THREADS', '2')" in first
    assert 'import simplecv.util.mkl_env' in first
    assert 'import paddle' not in first and 'from paddle' not in first
    imports_paddle = [i for i, cell in enumerate(cells) if 'import paddle' in cell.source]
    assert imports_paddle and imports_paddle[0] > 0


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    nbclient = pytest.importorskip('nbclient')
    pytest.importorskip('ipykernel')
    notebook, _ = code_cells()
    work = tmp_path / 'notebook_run'
    monkeypatch.setenv('FACTSEG_NOTEBOOK_WORK', str(work))  # the kernel inherits the environment
    monkeypatch.delenv('FACTSEG_NOTEBOOK_INSTALL', raising=False)
    monkeypatch.setenv('FACTSEG_PTH', str(tmp_path / 'absent.pth'))
    client = nbclient.NotebookClient(
        notebook, timeout=TIMEOUT, kernel_name='python3', resources={'metadata': {'path': REPO}}
    )
    start = time.time()
    client.execute()  # raises CellExecutionError naming the cell on any error
    seconds = time.time() - start

    outputs = [output for cell in notebook.cells if cell.cell_type == 'code' for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == 'error']
    text = ''.join(output.get('text', '') for output in outputs if output.output_type == 'stream')
    assert 'skipping pip' in text
    assert 'conversion skipped' in text
    assert 'CRS kept:       True' in text and 'transform kept: True' in text
    inline_images = [output for output in outputs if 'image/png' in output.get('data', {})]
    assert len(inline_images) >= 5  # sample, curves, comparison, reference comparison, GeoTIFF

    run = work / 'demo_output'
    assert (run / 'training_curves.png').is_file()
    assert (run / 'model-best.pdparams').is_file()
    records = [json.loads(line) for line in (run / 'eval_log.jsonl').read_text().splitlines()]
    assert [record['step'] for record in records] == [10, 20]
    summary = json.loads((work / 'eval' / 'eval_summary.json').read_text())
    assert [entry['global_step'] for entry in summary['checkpoints']] == [10, 20]
    # the library evaluation reproduces what the in-training evaluation recorded
    assert [entry['miou'] for entry in summary['checkpoints']] == pytest.approx([r['miou'] for r in records])
    assert (work / 'comparison.png').is_file()
    assert (work / 'inference_model' / 'deploy.json').is_file()

    rasterio = pytest.importorskip('rasterio')
    with (
        rasterio.open(work / 'geotiff_in' / 'scene.tif') as source,
        rasterio.open(work / 'geotiff_out' / 'scene.tif') as prediction,
    ):
        assert prediction.count == 1 and prediction.shape == source.shape
        assert prediction.crs == source.crs and prediction.transform == source.transform
        assert int(prediction.read(1).max()) < 16
    print('notebook ran in %.0f s' % seconds)
