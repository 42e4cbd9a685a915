"""The examples run: the classification script writes its figure, the notebook executes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_classify_script(tmp_path):
    out = tmp_path / "top5.png"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", MPLBACKEND="Agg")
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "classify.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.stat().st_size > 5000
    assert any(cat in result.stdout.splitlines()[0] for cat in ("tabby", "tiger cat", "Egyptian cat"))


def test_classify_notebook_executes():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(ROOT / "examples" / "classify.ipynb", as_version=4)
    os.environ.setdefault("MPLBACKEND", "Agg")
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3").execute()
    outputs = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "cat" in outputs
