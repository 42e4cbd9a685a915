"""The command line under a careless user: nothing lost, nothing silent (issue 19, items 1, 2, 5 and 9).

- ``export`` never deletes what it did not create: an existing OUT is refused unless ``--overwrite``,
  and then only an earlier export is replaced (swapped in by renames);
- ``train --out`` writes only into a new or empty directory or a run of the same model and classes,
  never into the data, and holds a lock while it trains;
- a missing ``tensorboard``/``matplotlib`` is a warning before anything is written, not a crash;
- early failures leave no directory behind, run files follow the umask, ``--help`` needs no TensorFlow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import make_image_folder

from efficientnet.training import engine
from efficientnet.training.engine import RunError

ROOT = Path(__file__).resolve().parents[1]


def tiny_classifier(classes: int = 3, name: str = "tiny") -> keras.Model:
    """A classifier that trains in a second: the run-directory logic does not depend on the network."""
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2, name="top_dropout")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("data") / "images", per_class=4)


def listing(path) -> dict[str, bytes | None]:
    """Every file under ``path`` with its bytes (directories as ``None``)."""
    out = {}
    for root, dirs, files in os.walk(path):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), path)] = None
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                out[os.path.relpath(os.path.join(root, f), path)] = fh.read()
    return out


def quick_train(data, out_dir, model=None, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return engine.train(
            model if model is not None else tiny_classifier(),
            data,
            out_dir=out_dir,
            epochs=kwargs.pop("epochs", 1),
            batch_size=4,
            image_size=32,
            verbose=0,
            **kwargs,
        )


def fake_run(path, *, model="tiny", classes=("cat", "coffee", "rocket"), weights=False, checkpoint=False):
    os.makedirs(path)
    manifest = {"efficientnet_run": 1, "model": None, "model_name": model, "class_names": list(classes)}
    Path(path, "run.json").write_text(json.dumps(manifest))
    Path(path, "classes.json").write_text(json.dumps(list(classes)))
    Path(path, "history.csv").write_text("epoch,loss\n0,1.0\n")
    if weights:
        Path(path, "model.weights.h5").write_bytes(b"trained weights")
    if checkpoint:
        os.makedirs(os.path.join(path, "checkpoint"))
        Path(path, "checkpoint", "state.json").write_text(json.dumps({"epoch": 1, "epochs": 2, "history": {}}))
    return path


# --- item 2: the run directory ---------------------------------------------------------------


def test_train_refuses_a_directory_that_is_not_a_run(data, tmp_path):
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / "history.csv").write_text("my,own\n1,2\n")
    before = listing(folder)
    for resume in (False, True):
        with pytest.raises(RunError, match="not a training run.*history.csv, notes.txt"):
            quick_train(data, folder, resume=resume)
        assert listing(folder) == before  # no run file, no lock file


@pytest.mark.parametrize("where", ["equal", "inside", "parent"])
def test_train_refuses_an_out_in_or_around_the_data(tmp_path, where):
    data = make_image_folder(tmp_path / "parent" / "images", per_class=2)
    out = {"equal": data, "inside": os.path.join(data, "run"), "parent": str(tmp_path / "parent")}[where]
    before = listing(tmp_path)
    with pytest.raises(RunError, match="data folder"):
        quick_train(data, out)
    assert listing(tmp_path) == before


def test_a_finished_run_without_checkpoint_is_refused(data, tmp_path):
    run = fake_run(tmp_path / "run", weights=True)
    before = listing(run)
    with pytest.raises(RunError, match="finished run"):
        quick_train(data, run, resume=True)
    with pytest.raises(RunError, match="already holds a run|finished run"):
        quick_train(data, run)
    assert listing(run) == before


def test_resume_refuses_another_model_or_other_classes(data, tmp_path):
    run = fake_run(tmp_path / "run", checkpoint=True)
    before = listing(run)
    with pytest.raises(RunError, match="trains 'tiny', not 'other'"):
        quick_train(data, run, model=tiny_classifier(name="other"), resume=True)
    other = fake_run(tmp_path / "other", classes=("a", "b", "c"), checkpoint=True)
    with pytest.raises(RunError, match=r"classes \['a', 'b', 'c'\]"):
        quick_train(data, other, resume=True)
    with pytest.raises(RunError, match="already holds a run"):
        quick_train(data, run)
    assert listing(run) == before


def test_a_run_killed_before_its_first_checkpoint_needs_resume(data, tmp_path):
    run = fake_run(tmp_path / "run")
    with pytest.raises(RunError, match="stopped before its first checkpoint.*--resume"):
        quick_train(data, run)


def _lock_holder(path):
    code = textwrap.dedent(
        f"""
        import fcntl, os, sys, time
        fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        print("locked", flush=True)
        time.sleep(60)
        """
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_train_on_a_locked_run_gets_a_clear_error(data, tmp_path):
    run = fake_run(tmp_path / "run", checkpoint=True)
    before = listing(run)
    holder = _lock_holder(run / ".lock")
    try:
        with pytest.raises(RunError, match=f"in use by another train process \\(PID {holder.pid}\\)"):
            quick_train(data, run, resume=True)
    finally:
        holder.kill()
        holder.wait()
    after = listing(run)
    assert {k: v for k, v in after.items() if k != ".lock"} == before  # nothing recovered or rewritten


def test_the_lock_is_held_while_training_and_released_after(data, tmp_path):
    import fcntl

    seen = []

    class Probe(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            fd = os.open(tmp_path / "run" / ".lock", os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                seen.append("free")
            except OSError:
                seen.append("held")
            finally:
                os.close(fd)

    quick_train(data, tmp_path / "run", callbacks=[Probe()])
    assert seen == ["held"]
    fd = os.open(tmp_path / "run" / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released: no error
    os.close(fd)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["efficientnet_run"] == 1 and run["class_names"] == ["cat", "coffee", "rocket"]


def test_an_early_failure_leaves_no_directory(data, tmp_path):
    out = tmp_path / "new" / "run"
    with pytest.raises(Exception, match="5"):  # the model predicts 5 classes, the data has 3
        quick_train(data, out, model=tiny_classifier(classes=5))
    assert not (tmp_path / "new").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Exception, match="5"):
        quick_train(data, empty, model=tiny_classifier(classes=5))
    assert os.listdir(empty) == []


# --- item 5: optional writers -----------------------------------------------------------------


def test_missing_tensorboard_and_matplotlib_warn_before_anything_is_written(data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard -> ImportError
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "run"
    seen = []
    real_warn = warnings.warn

    def warn(message, *args, **kwargs):
        if "not installed" in str(message):
            seen.append((str(message), sorted(os.listdir(out)) if out.exists() else []))
        return real_warn(message, *args, **kwargs)

    monkeypatch.setattr(engine.warnings, "warn", warn)
    result = quick_train(data, out, epochs=2)
    assert len(result.history["loss"]) == 2
    assert [m.split(" ")[0] for m, _ in seen] == ["tensorboard", "matplotlib"]
    assert all(files in ([], [".lock"]) for _, files in seen), seen  # before run.json and the rest
    files = set(os.listdir(out))
    assert {"run.json", "classes.json", "model.weights.h5", "history.csv", "checkpoint"} <= files
    assert "logs" not in files and "curves.png" not in files


# --- item 9: umask, evaluate's empty classes --------------------------------------------------


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_run_files_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        engine._atomic_write_text(str(tmp_path / "run.json"), "{}")
        model = tiny_classifier()
        model(np.zeros((1, 32, 32, 3), "float32"))
        engine._save_checkpoint(str(tmp_path), model, None, {"epoch": 1, "epochs": 1, "history": {}})
    finally:
        os.umask(old)
    assert (tmp_path / "run.json").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "checkpoint").stat().st_mode & 0o777 == 0o777 & ~mask
    assert (tmp_path / "checkpoint" / "state.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_evaluate_names_a_class_without_images():
    confusion = np.array([[2, 0], [0, 0]])
    result = engine.EvalResult(1.0, None, 0.1, {"cat": 1.0, "dog": float("nan")}, confusion, ("cat", "dog"), 2)
    text = str(result)
    assert "nan" not in text
    assert "dog" in text and "no images" in text.split("dog")[1].splitlines()[0]
    assert "100.00%" in text.split("cat")[1].splitlines()[0]


# --- item 1: export never deletes what it did not create ------------------------------------


@pytest.fixture(scope="module")
def tiny_keras(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    tiny_classifier().save(path)
    return path


def test_export_refuses_an_existing_folder_and_replaces_only_an_export(tiny_keras, tmp_path):
    from efficientnet.export import export_model

    model = keras.saving.load_model(tiny_keras)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    (mine / "saved_model.pb").write_bytes(b"not really")  # a marker alone does not make it an export
    before = listing(mine)
    with pytest.raises(ValueError, match="already exists.*--overwrite"):
        export_model(model, mine, "saved_model")
    with pytest.raises(ValueError, match="not a SavedModel.*not replaced even with --overwrite"):
        export_model(model, mine, "saved_model", overwrite=True)
    assert listing(mine) == before
    assert sorted(os.listdir(tmp_path)) == ["mine"]

    target = tmp_path / "sm"
    export_model(model, target, "saved_model")
    first = listing(target)
    with pytest.raises(ValueError, match="already exists"):
        export_model(model, target, "saved_model")
    assert listing(target) == first
    model.get_layer("predictions").bias.assign(np.ones(3, "float32"))
    export_model(model, target, "saved_model", overwrite=True)
    assert (target / "saved_model.pb").exists() and listing(target) != first
    assert sorted(os.listdir(tmp_path)) == ["mine", "sm"]  # no scratch left


def test_export_refuses_to_replace_a_file_that_is_not_an_export(tiny_keras, tmp_path):
    from efficientnet.export import export_model

    model = keras.saving.load_model(tiny_keras)
    weights = tmp_path / "model.weights.h5"
    weights.write_bytes(b"trained weights")
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="already exists" if not overwrite else "not onnx export"):
            export_model(model, weights, "onnx", overwrite=overwrite)
    assert weights.read_bytes() == b"trained weights"
    target = tmp_path / "m.onnx"
    export_model(model, target, "onnx")
    with pytest.raises(ValueError, match="already exists"):
        export_model(model, target, "onnx")
    export_model(model, target, "onnx", overwrite=True)


def test_export_cli_keeps_an_existing_folder_and_checks_int8_images_first(tiny_keras, tmp_path, monkeypatch, capsys):
    from efficientnet import export as export_lib
    from efficientnet.cli import main

    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "keep.txt").write_text("keep")
    assert main(["export", str(tiny_keras), str(folder), "--format", "saved_model"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", str(tiny_keras), str(folder), "--format", "saved_model", "--overwrite"]) == 2
    assert "not a SavedModel" in capsys.readouterr().err
    assert listing(folder) == {"keep.txt": b"keep"}

    calls = []
    monkeypatch.setattr(export_lib, "export_model", lambda *a, **k: calls.append(a))
    target = tmp_path / "new" / "int8.onnx"
    code = main(["export", str(tiny_keras), str(target), "--format", "onnx", "--int8", str(tmp_path / "missing")])
    assert code == 2 and calls == []
    assert "calibration" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_a_failed_export_removes_the_folders_it_created(tiny_keras, tmp_path, monkeypatch):
    from efficientnet.export import export_model

    model = keras.saving.load_model(tiny_keras)

    def broken(self, filepath, **kwargs):
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(keras.Model, "export", broken)
    with pytest.raises(RuntimeError, match="converter crashed"):
        export_model(model, tmp_path / "a" / "b" / "m.onnx")
    assert os.listdir(tmp_path) == []


# --- item 9: help without TensorFlow, TensorFlow's log level ---------------------------------


def _python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    environ["PYTHONPATH"] = str(ROOT) + os.pathsep + environ.get("PYTHONPATH", "")
    environ.update(env or {})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=300)


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["export", "--help"], ["evaluate", "--help"]])
def test_help_does_not_import_tensorflow(argv):
    code = textwrap.dedent(
        f"""
        import sys
        from efficientnet.cli import main
        try:
            main({argv!r})
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        heavy = sorted(m for m in ("tensorflow", "keras", "jax", "torch") if m in sys.modules)
        print("IMPORTED", heavy)
        """
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert "usage: efficientnet" in done.stdout
    assert "IMPORTED []" in done.stdout, done.stdout[-300:]


def test_the_cli_silences_tensorflow_before_importing_it():
    code = textwrap.dedent(
        """
        import os, sys

        class Watch:  # records TF_CPP_MIN_LOG_LEVEL when tensorflow is first imported
            seen = []

            def find_spec(self, name, path=None, target=None):
                if name == "tensorflow" and not self.seen:
                    self.seen.append(os.environ.get("TF_CPP_MIN_LOG_LEVEL"))
                return None

        sys.meta_path.insert(0, Watch())
        from efficientnet.cli import main
        assert main(["list", "--family", "lite"]) == 0
        print("LEVEL", Watch.seen)
        """
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert "LEVEL ['3']" in done.stdout and "efficientnetlite0" in done.stdout
    assert "cudart_stub" not in done.stderr and "cpu_feature_guard" not in done.stderr
    kept = _python(code, env={"TF_CPP_MIN_LOG_LEVEL": "1"})
    assert "LEVEL ['1']" in kept.stdout  # a level the user set is kept
