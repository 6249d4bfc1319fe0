"""The fine-tuning notebook executes top to bottom (quick mode) and shows a metric table and images."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "finetune_custom_dataset.ipynb"


@pytest.mark.slow
def test_finetune_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("LIGHTDET_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("LIGHTDET_NOTEBOOK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    data = [o.get("data", {}) for o in outputs]
    images = [d for d in data if "image/png" in d]
    assert len(images) >= 2  # the checked ground truth and the predictions
    assert any("| metric | value |" in d.get("text/markdown", "") and "bbox_mAP" in d["text/markdown"] for d in data)
    text = "".join(o.get("text", "") for o in outputs)
    assert "re-initialised 4" in text and "reloaded" in text
