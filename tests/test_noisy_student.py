"""Noisy Student: selection and balancing, inference-mode teachers, noised students, iterations, FixRes."""

import csv
import json
import os

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
    assert keras.backend.backend()  # the package imports cleanly alongside
