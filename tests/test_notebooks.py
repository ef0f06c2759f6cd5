"""Every notebook in notebooks/ runs top to bottom without an error, so none of them rots."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


@pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks in notebooks/")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
@pytest.mark.timeout(330)
def test_notebook_runs_without_errors(path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    import ember
    if ember.is_initialized():
        ember.shutdown()  # the notebook's kernel starts its own cluster
    nb = nbformat.read(path, as_version=4)
    # "python3" resolves to this interpreter (ipykernel's native kernel), i.e. the venv.
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOKS_DIR)}})
    client.execute()
    errors = [output for cell in nb.cells if cell.cell_type == "code"
              for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    assert errors == []
