"""examples/progressive.py: V2 progressive learning against last-stage-only training, same epochs.

On the flower photos when they are here (defaults), else ``--quick`` on scikit-image crops
(the pipeline only). The figures are reported, not asserted as a margin either way: the point of
the example is to measure the claim, whatever it shows.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import photo_set

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_progressive_and_last_stage_only_both_ran(tmp_path):
    data, real = photo_set(tmp_path)
    out_json = tmp_path / "progressive.json"
    args = ["--data", str(data), "--json", str(out_json)] + ([] if real else ["--quick"])
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "progressive.py"), *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(out_json.read_text())
    assert set(results["runs"]) == {"progressive", "last_stage_only"}
    stages = results["stages"]
    # Four stages covering every epoch, growing in size and regularisation, ending at the last stage's values.
    assert [s["epochs"][0] for s in stages][0] == 0 and stages[-1]["epochs"][1] == results["epochs"]
    assert [s["size"] for s in stages] == sorted(s["size"] for s in stages) and stages[0]["size"] < stages[-1]["size"]
    assert stages[0]["magnitude"] < stages[-1]["magnitude"] and stages[0]["dropout"] < stages[-1]["dropout"]
    for run in results["runs"].values():
        assert len(run["val_accuracy"]) == results["epochs"] and run["seconds"] > 0
    if real:  # both learn something on five classes
        assert min(max(r["val_accuracy"]) for r in results["runs"].values()) > 0.3, results["runs"]
    assert "| progressive |" in result.stdout and "| last stage only |" in result.stdout
