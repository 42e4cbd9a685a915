"""``efficientnet predict FOLDER --out``: batched folder prediction (issue 19, item 11)."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
from helpers import make_image_folder

from efficientnet import batch_predict
from efficientnet.cli import main


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    make_image_folder(root, classes=("cat", "coffee"), per_class=4)
    os.makedirs(root / "cat" / "nested")
    from PIL import Image

    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(root / "cat" / "nested" / "deep.jpg")
    (root / "broken.jpg").write_bytes(b"not a jpeg at all")
    (root / "notes.txt").write_text("not an image")
    return str(root)


def _images(folder):
    return sorted(
        os.path.normpath(os.path.join(p, n))
        for p, _, names in os.walk(folder)
        for n in names
        if n.endswith((".jpg", ".png")) and n != "broken.jpg"
    )


def _error(capsys, *argv) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 2
    return capsys.readouterr().err


def _read_csv(path):
    with open(path, newline="") as f:
        return {row["file"]: row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def single(folder, tmp_path_factory):
    """The single-image path's top-5 (``predict IMAGE ... --json``), one model.predict per file."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["predict", *_images(folder), "--json"]) == 0
    return {os.path.normpath(r["image"]): r["top"] for r in json.loads(buf.getvalue())["images"]}


def test_folder_matches_single_image_path_and_names_the_broken_file(folder, single, tmp_path, capsys):
    out = str(tmp_path / "preds.csv")
    assert main(["predict", folder, "--out", out, "--batch-size", "4"]) == 0
    rows = _read_csv(out)
    images = _images(folder)
    assert len(images) == 9 and any("nested" in f for f in images)
    assert sorted(rows) == sorted(images + [os.path.join(folder, "broken.jpg")])
    for f in images:
        assert rows[f]["error"] == ""
        for k, expected in enumerate(single[f], 1):
            assert rows[f][f"label_{k}"] == expected["label"]
            assert float(rows[f][f"probability_{k}"]) == pytest.approx(expected["probability"], abs=1e-5)
    broken = rows[os.path.join(folder, "broken.jpg")]
    assert broken["error"] and broken["label_1"] == ""
    assert "broken.jpg" in capsys.readouterr().err
    assert [n for n in os.listdir(tmp_path) if n != "preds.csv"] == []


def test_jsonl_one_object_per_image(folder, single, tmp_path):
    out = str(tmp_path / "preds.jsonl")
    assert main(["predict", folder, "--out", out, "--batch-size", "3", "--top", "2"]) == 0
    with open(out) as f:
        records = [json.loads(line) for line in f]
    assert len(records) == 10
    by_file = {r["file"]: r for r in records}
    for f in _images(folder):
        assert [t["label"] for t in by_file[f]["top"]] == [t["label"] for t in single[f][:2]]
        assert by_file[f]["error"] is None
    assert by_file[os.path.join(folder, "broken.jpg")]["top"] == []


def _spy(monkeypatch):
    seen = []
    original = batch_predict.predict_dataset

    def spy(files, config, batch_size):
        seen.extend(files)
        return original(files, config, batch_size)

    monkeypatch.setattr(batch_predict, "predict_dataset", spy)
    return seen


def test_resume_predicts_only_the_missing_files(folder, single, tmp_path, monkeypatch, capsys):
    out = str(tmp_path / "preds.csv")
    images = _images(folder)
    assert main(["predict", *images[:4], "--out", out]) == 0
    before = _read_csv(out)
    assert sorted(before) == images[:4]
    assert "exists: pass --resume" in _error(capsys, "predict", folder, "--out", out)
    seen = _spy(monkeypatch)
    assert main(["predict", folder, "--out", out, "--resume", "--batch-size", "4"]) == 0
    assert sorted(seen) == sorted(images[4:] + [os.path.join(folder, "broken.jpg")])
    with open(out, newline="") as f:
        files = [row["file"] for row in csv.DictReader(f)]
    assert sorted(files) == sorted(images + [os.path.join(folder, "broken.jpg")])  # each once
    after = _read_csv(out)
    for f in images[:4]:
        assert after[f] == before[f]
    for f in images:
        assert float(after[f]["probability_1"]) == pytest.approx(single[f][0]["probability"], abs=1e-5)


def test_failure_mid_way_leaves_no_partial_file_and_the_old_one_intact(folder, tmp_path, monkeypatch):
    calls = []
    original = batch_predict._runner

    def failing(model, runtime, size):
        run = original(model, runtime, size)

        def call(x):
            calls.append(len(x))
            if len(calls) > 1:
                raise RuntimeError("model failed mid-way")
            return run(x)

        return call

    monkeypatch.setattr(batch_predict, "_runner", failing)
    out = tmp_path / "preds.csv"
    with pytest.raises(RuntimeError, match="mid-way"):
        main(["predict", folder, "--out", str(out), "--batch-size", "4"])
    assert calls == [4, 4] and os.listdir(tmp_path) == []
    out.write_text("file,label_1,probability_1,error\nold.jpg,cat,0.5,\n")
    calls.clear()
    with pytest.raises(RuntimeError, match="mid-way"):
        main(["predict", folder, "--out", str(out), "--batch-size", "4", "--resume", "--top", "1"])
    assert out.read_text() == "file,label_1,probability_1,error\nold.jpg,cat,0.5,\n"
    assert os.listdir(tmp_path) == ["preds.csv"]


def test_options_checked(folder, tmp_path, capsys):
    assert "is a folder: pass --out" in _error(capsys, "predict", folder)
    assert ".csv or .jsonl" in _error(capsys, "predict", folder, "--out", str(tmp_path / "x.txt"))
    assert "go with --out" in _error(capsys, "predict", "--batch-size", "4")
    assert "at least 1" in _error(capsys, "predict", folder, "--out", str(tmp_path / "x.csv"), "--batch-size", "0")
    assert os.listdir(tmp_path) == []


def test_onnxruntime_agrees_with_keras(folder, single, tmp_path):
    pytest.importorskip("onnxruntime")
    out = str(tmp_path / "preds.csv")
    assert main(["predict", folder, "--out", out, "--batch-size", "4", "--runtime", "onnxruntime"]) == 0
    rows = _read_csv(out)
    for f in _images(folder):
        for k, expected in enumerate(single[f], 1):
            assert float(rows[f][f"probability_{k}"]) == pytest.approx(expected["probability"], abs=1e-4)
    assert rows[os.path.join(folder, "broken.jpg")]["error"]
