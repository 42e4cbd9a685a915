"""The command line under a careless user (issue 19, items 4, 6, 7, 8): every refusal is one line that
names the problem and a fix the command line has, exit code 2, no traceback; nothing silently ignored."""

import json
import os
import shutil
import warnings

import numpy as np
import pytest
from helpers import make_image_folder

pytest.importorskip("tensorflow")

import keras  # noqa: E402

import efficientnet  # noqa: E402
from efficientnet import export as export_lib  # noqa: E402
from efficientnet.cli import main  # noqa: E402
from efficientnet.training import data as data_lib  # noqa: E402
from efficientnet.training import engine  # noqa: E402

API_ONLY = ("skip_mismatch", "by_name", "Traceback", "[Errno", "Unknown EfficientNet variant")


def run_cli(capsys, *argv) -> str:
    """Runs ``efficientnet ARGV`` in-process; asserts exit code 2 and one clean line; returns it."""
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"efficientnet {argv[0]}: error: "), err
    assert not any(word in err for word in API_ONLY), err
    return lines[0]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("data") / "data", ("cat", "coffee"), per_class=4)


def _head(seed: int, classes: int = 2):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(1280, classes)).astype("float32"), rng.normal(size=(classes,)).astype("float32")]


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    """A run directory as train leaves it (untrained Lite0 at 32 px, two classes, a distinct classifier)."""
    run = tmp_path_factory.mktemp("runs") / "run"
    run.mkdir()
    net = engine.build_classifier("lite0", 2, weights=None)
    net.get_layer("predictions").set_weights(_head(0))
    efficientnet.save_weights(net, str(run / "model.weights.h5"))
    (run / "classes.json").write_text(json.dumps(["cat", "coffee"]))
    record = {"model": "efficientnetlite0", "classes": 2, "image_size": 32, "eval_size": 32, "crop_padding": 32}
    record.update(interpolation="bicubic", weights="model.weights.h5", recipe="finetune")
    (run / "run.json").write_text(json.dumps(record))
    (run / "checkpoint").mkdir()
    return run


# -- item 4: the pre-check decodes with the decoder that trains -------------------------------------


def _undecodable(root):
    """A TIFF named .png and a 1-bit BMP: PIL reads both, TensorFlow's decode_image neither."""
    from PIL import Image

    tiff = os.path.join(root, "cat", "tiff_named.png")
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(tiff, format="TIFF")
    bmp = os.path.join(root, "coffee", "one_bit.bmp")
    Image.fromarray((np.indices((40, 40)).sum(0) % 2 * 255).astype(np.uint8)).convert("1").save(bmp)
    return tiff, bmp


def test_images_tensorflow_cannot_decode_are_skipped_by_name(folder, tmp_path):
    root = shutil.copytree(folder, tmp_path / "data")
    tiff, bmp = _undecodable(root)
    with pytest.warns(UserWarning) as record:
        scanned = data_lib.scan_image_folder(root)
    messages = " ".join(str(w.message) for w in record)
    assert repr(tiff) in messages and repr(bmp) in messages
    assert set(scanned.skipped) == {tiff, bmp} and len(scanned) == 8
    # What is left decodes through the evaluation pipeline (it stopped mid-epoch before).
    batches = list(data_lib.eval_dataset(scanned, image_size=32, batch_size=4, one_hot=False))
    assert sum(int(y.shape[0]) for _, y in batches) == 8
    with pytest.raises(data_lib.DatasetError, match="tiff_named.png"):
        data_lib.scan_image_folder(root, on_bad_file="error")


def test_images_in_nested_folders_are_named_in_a_warning(folder, tmp_path):
    root = shutil.copytree(folder, tmp_path / "data")
    os.makedirs(root / "cat" / "more" / "deeper")
    for name in ("more/a.jpg", "more/deeper/b.png"):
        shutil.copy(root / "cat" / "0.jpg", root / "cat" / name)
    with pytest.warns(UserWarning, match=r"2 image\(s\) in sub-folders .*more/a.jpg"):
        scanned = data_lib.scan_image_folder(root)
    assert len(scanned) == 8


# -- item 6: nothing silently accepted ---------------------------------------------------------------


def test_train_image_size_zero_is_refused(capsys, folder, tmp_path):
    line = run_cli(capsys, "train", folder, "--image-size", "0", "--out", str(tmp_path / "r"), "--epochs", "1")
    assert "--image-size must be at least 32" in line
    assert not (tmp_path / "r").exists()
    with pytest.raises(ValueError, match="image_size must be at least 32, got 0"):
        engine.train("lite0", folder, image_size=0, weights=None, epochs=1)


def test_evaluate_image_size_below_32_is_refused(capsys, folder, fake_run):
    assert "--image-size must be at least 32" in run_cli(
        capsys, "evaluate", folder, "--run", str(fake_run), "--image-size", "8"
    )


def test_predict_run_with_model_is_refused(capsys, fake_run):
    line = run_cli(capsys, "predict", "--run", str(fake_run), "--model", "b0")
    assert "drop --model" in line


def test_weights_of_a_run_keep_its_trained_classifier(fake_run):
    weights = str(fake_run / "model.weights.h5")
    net = engine.build_classifier("lite0", 2, weights=weights)
    for got, want in zip(net.get_layer("predictions").get_weights(), _head(0)):
        np.testing.assert_array_equal(got, want)
    with pytest.warns(UserWarning, match="classifier for 2 classes but the data has 3"):
        other = engine.build_classifier("lite0", 3, weights=weights)
    assert not np.any(other.get_layer("predictions").get_weights()[0])  # zero_head: a new classifier


# -- item 7: a trained run from the command line --------------------------------------------------------


@pytest.fixture
def exported(monkeypatch):
    calls = []
    monkeypatch.setattr(export_lib, "export_model", lambda model, path, fmt, **kw: calls.append(model) or path)
    return calls


def test_export_a_run_and_its_weights(capsys, fake_run, exported, tmp_path):
    out = str(tmp_path / "m.onnx")
    assert main(["export", "--run", str(fake_run), out, "--format", "onnx"]) == 0
    model = exported[-1]
    assert model.output_shape == (None, 2) and tuple(model.inputs[0].shape[1:]) == (32, 32, 3)
    np.testing.assert_array_equal(model.get_layer("predictions").get_weights()[1], _head(0)[1])
    weights = str(fake_run / "model.weights.h5")
    assert main(["export", weights, out, "--format", "onnx", "--model", "lite0"]) == 0  # classes read from the file
    assert exported[-1].output_shape == (None, 2)
    line = run_cli(capsys, "export", weights, out, "--format", "onnx", "--model", "lite0", "--classes", "5")
    assert "--classes N" in line and "--run RUN_DIR" in line
    line = run_cli(capsys, "export", "--run", str(fake_run), out, "--format", "onnx", "--model", "b0")
    assert "drop MODEL_OR_WEIGHTS, --model" in line
    line = run_cli(capsys, "export", weights, out, "--format", "onnx", "--model", str(fake_run))
    assert "--model takes a variant name" in line and "--run RUN_DIR" in line


def test_predict_and_evaluate_with_a_weights_file(capsys, fake_run, folder, tmp_path):
    weights = str(fake_run / "model.weights.h5")
    image = os.path.join(folder, "cat", "0.jpg")
    assert main(["predict", image, "--weights", weights, "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "cat" in out and "coffee" in out  # the names in classes.json beside the file
    line = run_cli(capsys, "predict", image, "--weights", weights, "--classes", "3")
    assert "--classes N" in line
    lone = tmp_path / "lone.weights.h5"
    shutil.copy(weights, lone)
    three = make_image_folder(tmp_path / "three", ("cat", "coffee", "rocket"), per_class=1)
    line = run_cli(capsys, "evaluate", three, "--model", "lite0", "--weights", str(lone))
    assert "classifier for 2 classes" in line and "--run" in line


# -- item 8: one clear line each ----------------------------------------------------------------------


def test_argument_errors_are_one_clear_line(capsys, folder, fake_run, tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("not an image")
    out = str(tmp_path / "out")
    cases = [
        (["evaluate", folder, "--run", str(fake_run), "--batch-size", "0"], "--batch-size must be at least 1"),
        (["evaluate", folder, "--run", "/missing/run"], "--run /missing/run: no such directory"),
        (["train", folder, "--model", "/missing/run", "--out", out], "--model takes a variant name"),
        (["noisy-student", folder, folder, "--teacher", "/missing/run", "--out", out], "--teacher /missing/run"),
        (["train", folder, "--out", str(afile)], "existing file, not a directory"),
        (["train", folder, "--out", str(afile / "sub")], "is a file, so the directory cannot be created"),
        (["train", folder, "--seed", "-1", "--out", out], "--seed must be at least 0"),
        (
            ["train", folder, "--model", "b0", "--resume", "--out", str(fake_run)],
            "Resume with --model efficientnetlite0",
        ),
        (["predict", str(afile)], "is not an image predict can read"),
        (["predict", str(tmp_path / "missing.jpg")], "no such file"),
        (["predict", folder], "is a folder: pass --out preds.csv"),
    ]
    for argv, expected in cases:
        assert expected in run_cli(capsys, *argv), argv
    assert not os.path.exists(out)


def test_strategy_tpu_without_a_tpu(capsys, folder, tmp_path):
    line = run_cli(capsys, "train", folder, "--strategy", "tpu", "--out", str(tmp_path / "r"), "--weights", "none")
    assert "found no TPU" in line and "--strategy auto" in line


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_resume_with_a_damaged_state_json(capsys, folder, fake_run, tmp_path, damage):
    run = shutil.copytree(fake_run, tmp_path / "run")
    (run / "checkpoint" / "train_state.weights.h5").write_bytes(b"x")
    if damage == "truncated":
        (run / "checkpoint" / "state.json").write_text('{"epoch": 1, "ep')
    argv = ["train", folder, "--out", str(run), "--resume", "--weights", "none", "--image-size", "32"]
    line = run_cli(capsys, *argv)
    assert ("is incomplete" if damage == "deleted" else "is damaged") in line and "state.json" in line
    assert "checkpoint' to train this run again from the start" in line


@pytest.mark.slow
def test_resume_with_a_truncated_or_other_model_checkpoint(capsys, folder, tmp_path):
    run = tmp_path / "run"
    argv = ["train", folder, "--out", str(run), "--weights", "none", "--image-size", "32", "--batch-size", "4"]
    assert main([*argv, "--epochs", "1", "--quiet"]) == 0
    state = run / "checkpoint" / "train_state.weights.h5"
    state.write_bytes(state.read_bytes()[:1000])
    line = run_cli(capsys, *argv, "--epochs", "2", "--resume")
    assert "train_state.weights.h5' does not load into this model" in line
    with pytest.raises(engine.RunError, match="Resume with --model efficientnetlite0"):
        engine.train("b0", folder, out_dir=run, resume=True, weights=None, epochs=2, image_size=32, batch_size=4)


def test_bogus_classifier_activation():
    with pytest.raises(ValueError, match="classifier_activation must be 'softmax', None .* got 'bogus'"):
        efficientnet.EfficientNetLite0(weights=None, classifier_activation="bogus", input_shape=(32, 32, 3))


def test_corrupt_file_in_the_weights_cache_is_named(tmp_path, monkeypatch):
    from efficientnet.weights import WeightsDownloadError, download, registry

    spec = registry.find_weight_spec("efficientnetb0", "imagenet", True)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("EFFICIENTNET_WEIGHTS_URL", "http://127.0.0.1:9/closed")
    monkeypatch.delenv("EFFICIENTNET_WEIGHTS_DIR", raising=False)
    cached = os.path.join(download.cache_dir(), spec.file_name)
    os.makedirs(os.path.dirname(cached))
    with open(cached, "wb") as f:
        f.write(b"garbage")
    with pytest.raises(WeightsDownloadError) as info:
        download.fetch(spec)
    message = str(info.value)
    assert f"the file already at {cached} is damaged" in message
    assert f"place it at {cached}" not in message


def test_library_advice_is_translated_for_the_command_line():
    from efficientnet.cli import _cli_message
    from efficientnet.weights import WeightsMismatchError

    exc = WeightsMismatchError(
        "1 layers have weights of other shapes in the file, e.g. predictions. The file is for another variant "
        "or number of classes; pass skip_mismatch=True to load the rest."
    )
    message = _cli_message(exc, "predict")
    assert "skip_mismatch" not in message and "--classes N" in message and "The file is for another variant" in message
    assert _cli_message(PermissionError(13, "Permission denied", "/root/x"), "train").startswith(
        "/root/x: Permission denied. Check the path"
    )
    assert keras.backend.backend() == "tensorflow"
