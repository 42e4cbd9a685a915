"""examples/noisy_student.py: Noisy Student on the real photos of the fine-tuning example.

The script runs once (a few minutes on two cores); the notebook then shows its JSON instead of
training again. Measured (TensorFlow, CPU, seed 0, deterministic kernels; 14 classes, 5 labeled +
19 unlabeled training crops and 16 held-out crops per class, 96 px, batch 16): held-out top-1
teacher 59.8 %, noisy student 63.8 %, student without noise 79.5 % (chance 7.1 %). The teacher's
pseudo-labels: 159 of 266 unlabeled crops reach 0.3, in 10 classes; 110 used once, 20 duplicated,
29 left out of full classes (N = 16, 160 copies), 93.8 % of the used ones right. Both students
beat the teacher here, but by a margin too small (noisy) to assert; the bounds below leave 0.15.
"""

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MEASURED_TEACHER = 0.598
MEASURED_NOISY = 0.638
MEASURED_NO_NOISE = 0.795
MEASURED_PSEUDO_LABEL_ACCURACY = 0.938

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def noisy_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("noisy_student")
    out_json, out_png = tmp / "noisy_student.json", tmp / "noisy_student.png"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", MPLBACKEND="Agg")
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "noisy_student.py"),
            str(tmp / "photos"),
            "--json",
            str(out_json),
            "--plot",
            str(out_png),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp, json.loads(out_json.read_text()), out_json, out_png, result.stdout


def test_pipeline_ran(noisy_run):
    tmp, results, _, out_png, stdout = noisy_run
    data = tmp / "photos"
    classes = sorted(c["class"] for c in results["dataset"]["classes"])
    labeled = results["dataset"]["labeled_per_class"]
    unlabeled = results["dataset"]["train_per_class"] - labeled
    # The labeled part: a few crops per class; the rest a flat folder of anonymous files.
    assert sorted(p.name for p in (data / "labeled").iterdir()) == classes
    assert all(len(list((data / "labeled" / c).glob("*.jpg"))) == labeled for c in classes)
    files = sorted(p.name for p in (data / "unlabeled").iterdir())
    assert len(files) == unlabeled * len(classes) == results["dataset"]["unlabeled"]
    assert all(p.is_file() and not any(c in p.name for c in classes) for p in (data / "unlabeled").iterdir())
    # Figures of the teacher, the noisy student and the student without noise, on every held-out crop.
    kinds = [f["kind"] for f in results["figures"]]
    assert kinds == ["teacher"] + ["noisy"] * results["iterations"] + ["no_noise"] * results["iterations"]
    assert all(f["num_images"] == results["dataset"]["val_per_class"] * len(classes) for f in results["figures"])
    for name in ("noisy", "no_noise"):
        written = json.loads((data / "runs" / name / "noisy_student.json").read_text())
        assert [f["top1"] for f in written] == [f["top1"] for f in results["runs"][name]]
        assert written[0]["model"] == "teacher" and written[1]["model"] == "student1"
    # Both runs start from the same teacher.
    assert results["runs"]["noisy"][0]["top1"] == results["runs"]["no_noise"][0]["top1"]
    for name in ("noisy", "no_noise"):
        assert (data / "runs" / name / "student1" / "model.weights.h5").is_file()
    assert (data / "runs" / "noisy" / "teacher" / "model.weights.h5").is_file()
    assert "| model | held-out top-1 | held-out loss |" in stdout
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out_png.stat().st_size > 10000


def test_pseudo_label_table_is_consistent(noisy_run):
    tmp, results, _, _, _ = noisy_run
    data = tmp / "photos"
    files = sorted(str(p) for p in (data / "unlabeled").iterdir())
    n = results["per_class"]
    for name in ("noisy", "no_noise"):
        with open(data / "runs" / name / "iteration1" / "pseudo_labels.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        # One row per unlabeled file.
        assert sorted(r["file"] for r in rows) == files
        copies = Counter()
        for r in rows:
            c = int(r["copies"])
            copies[r["class"]] += c
            assert r["status"] == {0: r["status"], 1: "kept"}.get(c, "duplicated")
            if r["status"] == "below threshold":
                assert float(r["confidence"]) < results["threshold"]
        kept_classes = [c for c, k in copies.items() if k]
        # N images per class kept, every kept class exactly N (balanced).
        assert all(copies[c] == n for c in kept_classes)
        assert sum(copies.values()) == n * len(kept_classes)
        stats = results["pseudo_labels"][name][0]
        assert stats["copies"] == n * stats["classes_kept"] == sum(copies.values())
        assert stats["kept"] + stats["duplicated"] + stats["class_full"] + stats["below_threshold"] == len(files)
    # The same teacher labels both runs' unlabeled images identically.
    assert results["pseudo_labels"]["noisy"] == results["pseudo_labels"]["no_noise"]


def test_measured_figures(noisy_run):
    _, results, _, _, _ = noisy_run
    top1 = {f["kind"]: f["top1"] for f in results["figures"]}
    assert top1["teacher"] >= MEASURED_TEACHER - 0.15, results["figures"]
    assert top1["noisy"] >= MEASURED_NOISY - 0.15, results["figures"]
    assert top1["no_noise"] >= MEASURED_NO_NOISE - 0.15, results["figures"]
    stats = results["pseudo_labels"]["noisy"][0]
    assert stats["pseudo_label_accuracy_used"] >= MEASURED_PSEUDO_LABEL_ACCURACY - 0.15, stats
    chance = 1 / results["dataset"]["num_classes"]
    assert min(top1.values()) > 3 * chance, results["figures"]


def test_noisy_student_notebook_shows_the_results(noisy_run, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    _, _, out_json, _, _ = noisy_run
    monkeypatch.setenv("NOISY_STUDENT_RESULTS", str(out_json))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(ROOT / "examples" / "noisy_student.ipynb", as_version=4)
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "".join(o.get("text", "") for o in outputs)
    assert "| model | held-out top-1 | held-out loss |" in text
    assert "| run | iteration | unlabeled | kept | duplicated |" in text
    images = sum("image/png" in o.get("data", {}) for o in outputs)
    assert images >= 2  # the photos and the accuracy plot
