"""``efficientnet train`` / ``evaluate`` / ``predict --run``: runs, exact resume, reloading, bad input."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import make_image_folder

pytest.importorskip("tensorflow")

import efficientnet  # noqa: E402
from efficientnet.training import data as data_lib  # noqa: E402
from efficientnet.training import engine  # noqa: E402

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", MPLBACKEND="Agg", CUDA_VISIBLE_DEVICES="")
TRAIN_ARGS = ["--model", "efficientnet-lite0", "--epochs", "2", "--batch-size", "8", "--image-size", "64",
              "--deterministic", "--quiet"]  # fmt: skip

# Runs the CLI with a callback that SIGKILLs the process at the end of epoch 2, before its checkpoint.
KILLED = textwrap.dedent(
    """
    import os, signal, sys, keras
    from efficientnet.training import engine
    class Kill(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                os.kill(os.getpid(), signal.SIGKILL)
    original = engine.train
    engine.train = lambda *a, **k: original(*a, callbacks=[Kill()], **k)
    from efficientnet.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def cli(*args, script=None, check=True):
    cmd = [sys.executable, "-c", script, *args] if script else [sys.executable, "-m", "efficientnet.cli", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=900)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return make_image_folder(root / "train"), make_image_folder(root / "val", per_class=4, seed=1)


def _h5_arrays(path):
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, np.asarray(obj)) if hasattr(obj, "shape") else None)
    return out


@pytest.mark.parametrize("recipe", ["finetune", "efficientnet"])
def test_killed_and_resumed_run_equals_an_uninterrupted_one(photos, tmp_path, recipe):
    train_dir, val_dir = photos
    args = [train_dir, *TRAIN_ARGS, "--recipe", recipe, "--val-dir", val_dir]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    cli("train", *args, "--out", str(whole))
    result = cli("train", *args, "--out", str(killed), script=KILLED, check=False)
    assert result.returncode == -9, result.stderr[-2000:]
    state = json.loads((killed / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 1 and not (killed / "model.weights.h5").exists()
    # Resuming without --resume is refused; with it, the run ends where the uninterrupted one did.
    refused = cli("train", *args, "--out", str(killed), check=False)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    cli("train", *args, "--out", str(killed), "--resume")
    a, b = _h5_arrays(whole / "model.weights.h5"), _h5_arrays(killed / "model.weights.h5")
    assert a.keys() == b.keys() and len(a) > 100
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=0, atol=1e-6, err_msg=key)
    before = _h5_arrays(whole / "checkpoint" / "train_state.weights.h5")
    assert any("optimizer" in k for k in before)
    history = (killed / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch") and len(history) == 3  # header + 2 epochs, no duplicate
    for name in ("curves.png", "classes.json", "run.json", "logs"):
        assert (whole / name).exists(), name
    if recipe == "efficientnet":  # the EMA average is what is saved, and it was checkpointed
        assert (whole / "checkpoint" / "ema.npz").exists()


@pytest.fixture(scope="module")
def run(photos, tmp_path_factory):
    train_dir, val_dir = photos
    out = tmp_path_factory.mktemp("run") / "run"
    result = engine.train(
        "efficientnet-lite0",
        train_dir,
        epochs=2,
        batch_size=8,
        image_size=64,
        val_data=val_dir,
        out_dir=out,
        verbose=0,
    )
    return result, out


def test_trained_weights_reload_through_the_constructor(run, photos):
    result, out = run
    assert json.loads((out / "classes.json").read_text()) == ["cat", "coffee", "rocket"]
    model = efficientnet.EfficientNetLite0(weights=str(out / "model.weights.h5"), classes=3, input_shape=(64, 64, 3))
    images = next(iter(data_lib.eval_dataset(data_lib.scan_image_folder(photos[1]), image_size=64, batch_size=6)))[0]
    expected = np.asarray(result.model(images, training=False))
    np.testing.assert_allclose(np.asarray(model(images, training=False)), expected, atol=1e-5)
    assert result.history["val_accuracy"] and len(result.history["loss"]) == 2


def test_evaluate_command_prints_accuracy_and_json(run, photos):
    _, out = run
    text = cli("evaluate", photos[1], "--run", str(out), "--out", str(out / "eval")).stdout
    assert "12 images: top-1" in text and "coffee" in text
    assert (out / "eval" / "confusion.png").stat().st_size > 1000
    figures = json.loads(cli("evaluate", photos[1], "--run", str(out), "--json").stdout)
    confusion = np.asarray(figures["confusion"])
    assert confusion.sum() == 12 and confusion.sum(1).tolist() == [4, 4, 4]
    assert figures["top1"] == pytest.approx(np.trace(confusion) / 12)
    by_weights = json.loads(
        cli(
            "evaluate",
            photos[1],
            "--model",
            "lite0",
            "--weights",
            str(out / "model.weights.h5"),
            "--json",
            "--image-size",
            "64",
        ).stdout  # fmt: skip
    )
    assert by_weights["top1"] == figures["top1"]


def test_evaluate_matches_a_direct_computation(run, photos):
    result, out = run
    folder = data_lib.scan_image_folder(photos[1])
    figures = engine.evaluate(result.model, folder, image_size=64)
    probs, labels = [], []
    for x, y in data_lib.eval_dataset(folder, image_size=64, batch_size=5, one_hot=False):
        probs.append(np.asarray(result.model(x, training=False)))
        labels.append(np.asarray(y))
    probs, labels = np.concatenate(probs), np.concatenate(labels)
    assert figures.top1 == pytest.approx(float((probs.argmax(-1) == labels).mean()))
    assert figures.top5 is None  # 3 classes
    per_class = [(probs.argmax(-1)[labels == i] == i).mean() for i in range(3)]
    assert list(figures.per_class.values()) == pytest.approx(per_class)


def test_predict_accepts_a_run_directory(run, photos):
    _, out = run
    image = os.path.join(photos[1], "coffee", "0.jpg")
    text = cli("predict", image, "--run", str(out), "--top", "2").stdout
    lines = text.splitlines()
    assert lines[0].endswith("0.jpg:") and len(lines) == 3
    assert all(any(name in line for name in ("cat", "coffee", "rocket")) for line in lines[1:])


def test_labels_that_do_not_match_the_model(photos):
    model = efficientnet.EfficientNetLite0(weights=None, classes=5, input_shape=(64, 64, 3))
    with pytest.raises(data_lib.DatasetError, match="3 classes.*predicts 5"):
        engine.train(model, photos[0], epochs=1, batch_size=8)


def test_run_directory_errors(photos, tmp_path):
    with pytest.raises(engine.RunError, match="Nothing to resume"):
        engine.train("lite0", photos[0], epochs=1, batch_size=8, image_size=64, out_dir=tmp_path, resume=True)
    with pytest.raises(engine.RunError, match="needs out_dir"):
        engine.train("lite0", photos[0], epochs=1, batch_size=8, resume=True)
    with pytest.raises(engine.RunError, match="not a training run"):
        engine.load_run(tmp_path)


def test_validation_classes_must_match(photos, tmp_path):
    make_image_folder(tmp_path / "val", classes=("cat", "coffee", "astronaut"), per_class=2)
    with pytest.raises(data_lib.DatasetError, match="'astronaut'.*not trained on"):
        engine.train("lite0", photos[0], epochs=1, batch_size=8, val_data=tmp_path / "val")


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "/nonexistent/folder", "--out", "{tmp}/r"], "does not exist"),
        (["train", "{train}", "--out", "{tmp}/r", "--batch-size", "100"], "fewer than one batch"),
        (["train", "{train}", "--out", "{tmp}/r", "--recipe", "imagenet"], "Unknown recipe"),
        (["train", "{train}", "--out", "{tmp}/r", "--model", "b99"], "Unknown EfficientNet variant"),
        (["train", "{train}", "--out", "{tmp}/r", "--val-split", "2"], "split"),
        (["evaluate", "{train}"], "needs --run"),
        (["predict", "--top", "0"], "--top must be at least 1"),
    ],
)
def test_cli_bad_input(photos, tmp_path, args, message):
    args = [a.format(tmp=tmp_path, train=photos[0]) for a in args]
    result = cli(*args, check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert not (tmp_path / "r" / "checkpoint").exists()


BACKEND_STEP = textwrap.dedent(
    """
    import sys, numpy as np, keras, efficientnet
    from efficientnet.training import train
    model = efficientnet.EfficientNetB0(weights=None, classes=3, input_shape=(32, 32, 3))
    before = [np.array(w) for w in model.get_weights()]
    result = train(model, sys.argv[1], recipe="efficientnet", epochs=1, batch_size=4, image_size=32, verbose=0)
    loss = result.history["loss"][0]
    changed = sum(not np.array_equal(a, np.array(b)) for a, b in zip(before, model.get_weights()))
    print("RESULT", keras.backend.backend(), loss, changed)
    """
)


@pytest.mark.parametrize(
    "backend",
    ["tensorflow", pytest.param("jax", marks=pytest.mark.slow), pytest.param("torch", marks=pytest.mark.slow)],
)
def test_one_efficientnet_recipe_epoch_on_each_backend(backend, tmp_path):
    pytest.importorskip(backend)
    folder = make_image_folder(tmp_path / "d", per_class=4)
    env = dict(ENV, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", BACKEND_STEP, folder], capture_output=True, text=True, env=env, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    line = [x for x in result.stdout.splitlines() if x.startswith("RESULT")][-1].split()
    assert line[1] == backend
    assert np.isfinite(float(line[2])) and 0.5 < float(line[2]) < 20
    assert int(line[3]) > 200  # kernels, biases and BN statistics moved
