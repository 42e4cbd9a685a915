"""Noisy Student: selection and balancing, inference-mode teachers, noised students, iterations, FixRes."""

import csv
import importlib
import json
import os
import types

import keras
import numpy as np
import pytest
from helpers import make_image_folder

pytest.importorskip("tensorflow")

import efficientnet  # noqa: E402
from efficientnet.training import data as data_lib  # noqa: E402
from efficientnet.training import engine  # noqa: E402
from efficientnet.training.noisy_student import (  # noqa: E402
    finetune_at_resolution,
    noisy_student,
    pseudo_label,
    select_and_balance,
    sharpen,
    student_recipe,
)

# The module (``efficientnet.training.noisy_student`` the attribute is the function).
ns_module = importlib.import_module("efficientnet.training.noisy_student")

# Six unlabeled images, three classes. Class 0: images 0 (0.9), 1 (0.6), 2 (0.5), 5 (0.2, below 0.3).
# Class 1: image 3 (0.7). Class 2: image 4 (0.4).
PROBS = np.array(
    [
        [0.9, 0.05, 0.05],
        [0.6, 0.3, 0.1],
        [0.5, 0.25, 0.25],
        [0.2, 0.7, 0.1],
        [0.3, 0.3, 0.4],
        [0.2, 0.19, 0.19],  # top-1 class 0 at 0.2 (rows need not sum to 1 for this test)
    ]
)


def test_threshold_and_large_class_keeps_most_confident():
    indices, labels = select_and_balance(PROBS, threshold=0.3, per_class=2, hard=True)
    # class 0 keeps its two most confident (0, 1); class 1 repeats 3 twice; class 2 repeats 4 twice.
    assert indices.tolist() == [0, 1, 3, 3, 4, 4]
    np.testing.assert_array_equal(labels.argmax(1), [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(labels.sum(1), 1.0)
    assert labels.dtype == np.float32


def test_small_classes_are_duplicated_up_to_n():
    indices, _ = select_and_balance(PROBS, threshold=0.3, per_class=5, hard=True)
    # class 0 has 3 images: all twice (6 > 5?) -> divmod(5, 3) = (1, 2): all once, then the 2 most confident.
    assert indices.tolist() == [0, 1, 2, 0, 1] + [3] * 5 + [4] * 5
    counts = np.bincount(PROBS[indices].argmax(1), minlength=3)
    assert counts.tolist() == [5, 5, 5]


def test_threshold_drops_classes_with_nothing_above_it():
    indices, _ = select_and_balance(PROBS, threshold=0.65, per_class=1)
    assert indices.tolist() == [0, 3]  # class 2 (0.4) is absent; image 1 (0.6) is below
    assert 5 not in select_and_balance(PROBS, threshold=0.3, per_class=10)[0]


def test_soft_labels_and_temperature():
    _, soft = select_and_balance(PROBS, per_class=1)
    np.testing.assert_allclose(soft[0], [0.9, 0.05, 0.05], rtol=1e-6)
    _, sharp = select_and_balance(PROBS, per_class=1, temperature=0.5)
    expected = np.array([0.81, 0.0025, 0.0025]) / 0.815  # p^2, renormalised
    np.testing.assert_allclose(sharp[0], expected, rtol=1e-5)
    np.testing.assert_allclose(sharpen(PROBS[:1], 2.0)[0], np.sqrt(PROBS[0]) / np.sqrt(PROBS[0]).sum(), rtol=1e-6)


def test_ties_are_broken_by_the_seed_only():
    probs = np.array([[0.5, 0.5 - 1e-9]] * 6 + [[0.0, 1.0]])
    picks = {tuple(select_and_balance(probs, per_class=2, seed=s)[0][:2]) for s in range(10)}
    assert len(picks) > 1
    assert (
        select_and_balance(probs, per_class=2, seed=3)[0].tolist()
        == select_and_balance(probs, per_class=2, seed=3)[0].tolist()
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"per_class": None}, "per_class"),
        ({"per_class": 0}, "per_class"),
        ({"per_class": 2, "threshold": 1.5}, "threshold"),
        ({"per_class": 2, "temperature": 0.0}, "temperature"),
    ],
)
def test_bad_selection_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        select_and_balance(PROBS, **kwargs)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("ns")
    labeled = make_image_folder(root / "labeled", per_class=4, seed=0)
    unlabeled = make_image_folder(root / "unlabeled", per_class=6, seed=1)
    val = make_image_folder(root / "val", per_class=3, seed=2)
    return labeled, unlabeled, val


def _random_head(model):
    head = model.get_layer("predictions")
    head.kernel.assign(np.random.default_rng(0).normal(0, 0.05, head.kernel.shape).astype("float32"))
    return model


def test_teacher_labels_in_inference_mode_and_student_is_noised(sets):
    teacher = engine.build_classifier("lite0", 3, weights="imagenet", recipe=student_recipe("finetune", noise=True))
    _random_head(teacher)
    assert teacher.get_layer("top_dropout").rate > 0
    files = data_lib.list_images(sets[1])
    first = pseudo_label(teacher, files, image_size=64)
    second = pseudo_label(teacher, files, image_size=64)
    np.testing.assert_array_equal(first, second)  # no dropout, no stochastic depth
    np.testing.assert_allclose(first.sum(1), 1.0, atol=1e-5)
    assert first.std(0).max() > 1e-3  # the images get different labels
    x = np.asarray(
        next(iter(data_lib.eval_dataset(data_lib.scan_image_folder(sets[0]), image_size=64, batch_size=8)))[0]
    )
    noisy = _random_head(engine.build_classifier("lite0", 3, weights=None, recipe=student_recipe("finetune")))
    a, b = np.asarray(noisy(x, training=True)), np.asarray(noisy(x, training=True))
    assert np.abs(a - b).max() > 1e-4  # dropout and stochastic depth are on while training
    quiet = _random_head(engine.build_classifier("lite0", 3, weights=None, recipe=student_recipe("finetune", False)))
    np.testing.assert_allclose(np.asarray(quiet(x, training=True)), np.asarray(quiet(x, training=True)), atol=1e-6)
    assert student_recipe("finetune").randaugment_layers == 2 and student_recipe("finetune").randaugment_magnitude == 27


def test_smaller_student_is_refused(sets, tmp_path):
    with pytest.raises(ValueError, match="fewer parameters than the teacher.*allow_smaller_student"):
        noisy_student(sets[0], sets[1], teacher="efficientnet-lite1", student="efficientnet-lite0", out_dir=tmp_path)
    assert not os.listdir(tmp_path)  # refused before anything was trained or written


def test_two_iterations_train_two_students_each_from_the_last_labels(sets, tmp_path):
    labeled, unlabeled, val = sets
    result = noisy_student(
        labeled, unlabeled, teacher="lite0", student="lite0", iterations=2, teacher_epochs=1, student_epochs=1,
        batch_size=8, image_size=64, val_data=val, out_dir=tmp_path, verbose=0,
    )  # fmt: skip
    assert [row["model"] for row in result.figures] == ["teacher", "student1", "student2"]
    for name in ("teacher", "student1", "student2"):
        assert (tmp_path / name / "model.weights.h5").exists()
    figures = json.loads((tmp_path / "noisy_student.json").read_text())
    assert figures == result.figures
    files = list(data_lib.list_images(unlabeled))
    for it, labeler in ((1, "teacher"), (2, "student1")):
        with open(tmp_path / f"iteration{it}" / "pseudo_labels.csv") as f:
            rows = list(csv.DictReader(f))
        assert [r["file"] for r in rows] == files
        model, names, _ = engine.load_run(tmp_path / labeler)
        probs = pseudo_label(model, files, image_size=64)
        np.testing.assert_allclose([float(r["confidence"]) for r in rows], probs.max(1), atol=1e-4)
        assert [r["class"] for r in rows] == [names[i] for i in probs.argmax(1)]
        kept = sum(int(r["copies"]) for r in rows)
        counts = {c: sum(int(r["copies"]) for r in rows if r["class"] == c) for c in names}
        assert kept == sum(counts.values()) and set(counts.values()) <= {0, 4}  # N = 4 labeled images per class
        assert all(r["status"] == "below threshold" for r in rows if float(r["confidence"]) < 0.3)
    for record in result.models:  # each model's recorded size is the one its run evaluates at
        run = json.loads((tmp_path / record["model"] / "run.json").read_text())
        assert record["eval_size"] == run["eval_size"] == 64 and record["run"] == str(tmp_path / record["model"])
    assert [m["weights"] for m in result.models] == ["imagenet"] * 3  # the finetune recipe's start
    first = engine.load_run(tmp_path / "student1")[0].get_layer("predictions").kernel
    last = result.model.get_layer("predictions").kernel
    assert np.abs(np.asarray(first) - np.asarray(last)).max() > 1e-6  # the second student is a new model


def test_finetune_at_resolution_trains_at_the_new_size_and_reloads(sets, tmp_path):
    labeled = data_lib.scan_image_folder(sets[0])
    model = engine.build_classifier("lite0", 3, weights="imagenet")
    before = [np.array(w) for w in model.get_weights()]
    seen = []
    original = data_lib.train_dataset

    def spy(*args, **kwargs):
        seen.append(kwargs["image_size"])
        return original(*args, **kwargs)

    data_lib.train_dataset = spy
    try:
        finetune_at_resolution(model, labeled, 96, epochs=1.5, batch_size=4, verbose=0)
    finally:
        data_lib.train_dataset = original
    assert seen and set(seen) == {96}
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    path = str(tmp_path / "fixres.h5")
    efficientnet.save_weights(model, path)
    fixed = efficientnet.EfficientNetLite0(weights=path, classes=3, input_shape=(96, 96, 3))
    x = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(fixed(x)), np.asarray(model(x, training=False)), atol=1e-5)
    with pytest.raises(ValueError, match="built for 96x96"):
        finetune_at_resolution(fixed, labeled, 128, epochs=1, batch_size=4)


def test_noisy_student_command(sets, tmp_path):
    import subprocess
    import sys

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", MPLBACKEND="Agg")
    args = [sys.executable, "-m", "efficientnet.cli", "noisy-student", sets[0], sets[1], "--teacher", "lite1",
            "--student", "lite0", "--out", str(tmp_path / "r")]  # fmt: skip
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 2 and "--allow-smaller-student" in result.stderr
    assert keras.backend.backend() == os.environ.get("KERAS_BACKEND", "tensorflow")  # importing changed nothing


# --- every model at its own size, class names, settings, parameter counts, students' start, the CLI ----------


def _confident_probs(files, classes=3):
    probs = np.full((len(files), classes), 0.1 / (classes - 1))
    probs[np.arange(len(files)), np.arange(len(files)) % classes] = 0.9
    return probs


@pytest.fixture
def spies(monkeypatch):
    """``train`` builds an untrained classifier (no fitting), ``pseudo_label`` and ``evaluate`` record their sizes."""
    calls = types.SimpleNamespace(train=[], label=[], evaluate=[])

    def fake_train(model, data, **kwargs):
        calls.train.append((model, data, kwargs))
        net = engine.build_classifier(model, data.num_classes if hasattr(data, "num_classes") else 3, weights=None)
        return engine.TrainResult(net, {}, tuple(data.class_names), kwargs.get("image_size") or 0, None, None)

    def fake_label(model, files, *, image_size, **kwargs):
        calls.label.append((model.name, image_size, kwargs.get("crop_fraction"), kwargs.get("interpolation")))
        return _confident_probs(files, model.output_shape[-1])

    def fake_evaluate(model, data, *, image_size=None, **kwargs):
        calls.evaluate.append((model.name, image_size))
        return types.SimpleNamespace(top1=0.5, loss=1.0, num_images=len(data.files))

    monkeypatch.setattr(engine, "train", fake_train)
    monkeypatch.setattr(ns_module, "pseudo_label", fake_label)
    monkeypatch.setattr(engine, "evaluate", fake_evaluate)
    return calls


def test_each_model_labels_and_is_evaluated_at_its_own_eval_size(sets, tmp_path, spies):
    labeled, unlabeled, val = sets
    result = noisy_student(
        labeled, unlabeled, teacher="lite0", student="lite1", iterations=2, val_data=val, out_dir=tmp_path, verbose=0
    )
    # The registry's evaluation sizes: Lite0 224, Lite1 240 (bicubic, crop size / (size + 32)).
    assert (
        efficientnet.get_model_info("lite0").eval_size == 224 and efficientnet.get_model_info("lite1").eval_size == 240
    )
    assert spies.label == [
        ("efficientnetlite0", 224, 224 / 256, "bicubic"),
        ("efficientnetlite1", 240, 240 / 272, "bicubic"),
    ]
    assert spies.evaluate == [("efficientnetlite0", 224), ("efficientnetlite1", 240), ("efficientnetlite1", 240)]
    assert [kw["image_size"] for _, _, kw in spies.train] == [None, None, None]  # train picks each variant's own size
    assert [(m["model"], m["train_size"], m["eval_size"]) for m in result.models] == [
        ("teacher", 224, 224), ("student1", 240, 240), ("student2", 240, 240)
    ]  # fmt: skip
    assert [row["eval_size"] for row in result.figures] == [224, 240, 240]
    for it, (labeler, size) in enumerate((("teacher", 224), ("student1", 240)), 1):
        record = json.loads((tmp_path / f"iteration{it}" / "record.json").read_text())
        assert record["labeler"]["model"] == labeler and record["labeler"]["eval_size"] == size
        assert record["student"]["eval_size"] == 240 and record["student"]["name"] == "lite1"


def test_image_size_overrides_every_trained_model_and_matches_its_run(sets, tmp_path, spies):
    labeled, unlabeled, val = sets
    result = noisy_student(labeled, unlabeled, teacher="lite0", student="lite1", image_size=64, out_dir=tmp_path)
    assert [kw["image_size"] for _, _, kw in spies.train] == [64, 64]
    assert spies.label == [("efficientnetlite0", 64, 64 / 96, "bicubic")]
    assert [m["eval_size"] for m in result.models] == [64, 64]


def _fake_run(path, classes, eval_size=64, model="lite0"):
    """A finished run directory of an untrained classifier (real weights file, run.json, classes.json)."""
    os.makedirs(path, exist_ok=True)
    net = engine.build_classifier(model, len(classes), weights=None)
    net.save_weights(os.path.join(path, "model.weights.h5"))
    run = {"model": efficientnet.get_model_info(model).name, "weights": "model.weights.h5", "image_size": eval_size,
           "eval_size": eval_size, "crop_padding": 32, "interpolation": "bilinear"}  # fmt: skip
    with open(os.path.join(path, "run.json"), "w") as f:
        json.dump(run, f)
    with open(os.path.join(path, "classes.json"), "w") as f:
        json.dump(list(classes), f)
    return str(path)


def test_teacher_run_labels_at_its_recorded_size_in_its_class_order(sets, tmp_path, spies):
    labeled, unlabeled, _ = sets
    run = _fake_run(tmp_path / "teacher", ["rocket", "cat", "coffee"], eval_size=72)
    result = noisy_student(labeled, unlabeled, teacher=run, student="lite0", out_dir=tmp_path / "out")
    assert spies.label == [("efficientnetlite0", 72, 72 / 104, "bilinear")]
    assert result.models[0]["weights"] == "run" and result.models[0]["eval_size"] == 72
    (_, mixed, _) = spies.train[0]
    assert mixed.class_names == ("rocket", "cat", "coffee") == result.class_names
    src = mixed.labeled
    for f, label in zip(src.files, src.labels):  # every labeled image keeps its folder's class, by name
        assert src.class_names[label] == os.path.basename(os.path.dirname(f))
    with open(tmp_path / "out" / "iteration1" / "pseudo_labels.csv") as f:
        rows = list(csv.DictReader(f))
    files = list(data_lib.list_images(unlabeled))
    probs = _confident_probs(files)
    assert [r["class"] for r in rows] == [("rocket", "cat", "coffee")[i] for i in probs.argmax(1)]


@pytest.mark.parametrize("classes", [["cat", "coffee", "horse"], ["cat", "coffee", "rocket", "horse"]])
def test_teacher_run_of_other_classes_is_refused_before_any_work(sets, tmp_path, spies, classes):
    labeled, unlabeled, _ = sets
    run = _fake_run(tmp_path / "teacher", classes)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"trained on the classes \[.*horse.*\].*\['cat', 'coffee', 'rocket'\]") as e:
        noisy_student(labeled, unlabeled, teacher=run, student="lite0", out_dir=out)
    assert "rename the class folders" in str(e.value)
    assert not spies.label and not spies.train and not out.exists()  # no pseudo_labels.csv left behind


def test_keras_teacher_with_another_class_count_is_refused(sets, tmp_path, spies):
    teacher = engine.build_classifier("lite0", 4, weights=None)
    with pytest.raises(ValueError, match="predicts 4 classes.*have 3"):
        noisy_student(sets[0], sets[1], teacher=teacher, student="lite0", out_dir=tmp_path / "out")
    assert not spies.label and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": -0.1}, "threshold"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"per_class": 0}, "per_class"),
        ({"ratio": 0}, "ratio"),
        ({"iterations": 0}, "iterations"),
    ],
)
def test_bad_settings_are_refused_before_the_teacher_trains(sets, tmp_path, spies, kwargs, message):
    with pytest.raises(ValueError, match=message):
        noisy_student(sets[0], sets[1], teacher="lite0", student="lite0", out_dir=tmp_path / "out", **kwargs)
    assert not spies.train and not spies.label and not (tmp_path / "out").exists()


def test_frozen_backbone_teacher_counts_all_its_parameters(sets, tmp_path, spies):
    teacher = engine.build_classifier("lite1", 3, weights=None)
    for layer in teacher.layers:
        layer.trainable = layer.name == "predictions"
    lite0 = engine.build_classifier("lite0", 3, weights=None)
    trainable = sum(int(np.prod(w.shape)) for w in teacher.trainable_weights)
    assert trainable < lite0.count_params() < teacher.count_params()  # trainable weights alone would let it through
    with pytest.raises(ValueError, match="fewer parameters than the teacher"):
        noisy_student(sets[0], sets[1], teacher=teacher, student="lite0", out_dir=tmp_path / "out")
    assert not spies.label and not spies.train
    for layer in lite0.layers:  # an equal student is accepted, frozen or not
        layer.trainable = layer.name == "predictions"
    noisy_student(sets[0], sets[1], teacher=lite0, student="lite0", teacher_image_size=64)
    assert spies.label == [("efficientnetlite0", 64, 64 / 96, "bicubic")]


@pytest.mark.parametrize("weights, expected, recorded", [("recipe", "imagenet", "imagenet"), (None, None, "scratch"),
                                                         ("scratch", None, "scratch")])  # fmt: skip
def test_student_weights_reach_train_and_are_recorded(sets, tmp_path, spies, weights, expected, recorded):
    result = noisy_student(
        sets[0], sets[1], teacher="lite0", student="lite0", iterations=2, student_weights=weights, out_dir=tmp_path
    )
    teacher_kwargs, *student_kwargs = [kw for _, _, kw in spies.train]
    assert "weights" not in teacher_kwargs  # the teacher starts from the recipe's (ImageNet for finetune)
    assert [kw["weights"] for kw in student_kwargs] == [expected, expected]
    assert [m["weights"] for m in result.models] == ["imagenet", recorded, recorded]
    for it in (1, 2):
        assert json.loads((tmp_path / f"iteration{it}" / "record.json").read_text())["student"]["weights"] == recorded


def test_cli_flags_reach_noisy_student(monkeypatch, tmp_path, capsys):
    from efficientnet import cli

    seen = {}

    def fake(labeled, unlabeled, **kwargs):
        seen.update(kwargs, labeled=labeled, unlabeled=unlabeled)
        models = [
            {"model": "teacher", "name": "lite0", "weights": "imagenet", "eval_size": 224, "top1": 0.5},
            {"model": "student1", "name": "lite1", "weights": "scratch", "eval_size": 240, "top1": 0.75},
        ]
        return ns_module.NoisyStudentResult(None, ("a", "b"), [], str(tmp_path), models)

    monkeypatch.setattr(ns_module, "noisy_student", fake)
    argv = ["noisy-student", "L", "U", "--teacher", "lite0", "--student", "lite1", "--learning-rate", "1e-3",
            "--teacher-epochs", "4", "--student-epochs", "3", "--deterministic", "--student-weights", "scratch",
            "--threshold", "0.4", "--ratio", "2", "--per-class", "16", "--temperature", "0.5",
            "--teacher-image-size", "96", "--out", str(tmp_path)]  # fmt: skip
    assert cli.main(argv) == 0
    assert (seen["labeled"], seen["unlabeled"], seen["teacher"], seen["student"]) == ("L", "U", "lite0", "lite1")
    assert seen["base_learning_rate"] == 1e-3
    assert (seen["teacher_epochs"], seen["student_epochs"]) == (4, 3)
    assert seen["deterministic"] is True and seen["student_weights"] is None
    assert (seen["threshold"], seen["ratio"], seen["per_class"], seen["temperature"]) == (0.4, 2, 16, 0.5)
    assert seen["teacher_image_size"] == 96
    printed = capsys.readouterr().out
    assert "starts from scratch" in printed and "starts from ImageNet" in printed and "240 px" in printed
    seen.clear()
    assert cli.main(["noisy-student", "L", "U", "--epochs", "5", "--student-epochs", "2", "--out", str(tmp_path)]) == 0
    assert (seen["teacher_epochs"], seen["student_epochs"]) == (5, 2)
    assert seen["student_weights"] == "recipe" and seen["deterministic"] is False
    assert "base_learning_rate" not in seen


def test_noise_can_be_tuned_by_recipe_fields():
    from efficientnet.training.noisy_student import student_recipe

    paper = student_recipe("finetune", True)
    assert (paper.augmentation, paper.randaugment_layers, paper.randaugment_magnitude) == ("randaugment", 2, 27.0)
    milder = student_recipe("finetune", {"randaugment_magnitude": 9})
    assert (milder.augmentation, milder.randaugment_magnitude) == ("randaugment", 9.0)
    assert milder.drop_connect_rate == paper.drop_connect_rate > 0
    off = student_recipe("finetune", False)
    assert (off.augmentation, off.dropout_rate, off.drop_connect_rate) == ("none", 0.0, 0.0)
