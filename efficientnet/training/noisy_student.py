"""Noisy Student (Xie et al., CVPR 2020) and test-resolution fine-tuning.

1. A *teacher* (trained on labeled images with the usual cross-entropy, or any classifier)
   labels *clean* unlabeled images: inference mode (no dropout, no stochastic depth), the
   evaluation crop, no augmentation — soft labels (probabilities, optionally sharpened by a
   temperature) or hard ones (one-hot argmax).
2. :func:`select_and_balance` keeps images whose top confidence is at least 0.3 and makes the
   classes uniform at ``N`` images each: a larger class keeps its ``N`` most confident images, a
   smaller one is repeated up to ``N``.
3. A *student*, equal to or larger than the teacher, trains on labeled and pseudo-labeled images
   together (``ratio`` unlabeled images per labeled image in each batch), noised with dropout,
   stochastic depth and RandAugment (N=2, M=27), cross-entropy on both parts.
4. The student becomes the next teacher (``iterations``).
5. Optionally, :func:`finetune_at_resolution` fine-tunes the last student at the test
   resolution on unaugmented labeled images (1.5 epochs in the paper).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import keras
import numpy as np

__all__ = [
    "NOISE",
    "sharpen",
    "select_and_balance",
    "pseudo_label",
    "pseudo_label_table",
    "student_recipe",
    "NoisyStudentResult",
    "noisy_student",
    "finetune_at_resolution",
]

# The student's input noise in the paper: RandAugment with 2 layers at magnitude 27.
NOISE = {"augmentation": "randaugment", "randaugment_layers": 2, "randaugment_magnitude": 27.0}


def sharpen(probs: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``softmax(log(p) / T)``: ``T < 1`` sharpens, ``T > 1`` flattens, ``T = 1`` is the identity."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}.")
    probs = np.asarray(probs, dtype="float64")
    logits = np.log(np.clip(probs, 1e-30, None)) / temperature
    logits -= logits.max(-1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(-1, keepdims=True)


def select_and_balance(
    probs: np.ndarray,
    threshold: float = 0.3,
    per_class: int | None = None,
    seed: int = 0,
    *,
    hard: bool = False,
    temperature: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The paper's data filtering and balancing of pseudo-labels.

    Args:
        probs: the teacher's ``(n, classes)`` probabilities on the unlabeled images.
        threshold: keep images whose top probability is at least this (0.3 in the paper).
        per_class: ``N``, the images of every class after balancing (the paper: the labeled set's
            images per class). A class (by the teacher's top-1) with more kept images keeps its
            ``N`` most confident ones; one with fewer repeats all of them ``N // n`` times and its
            ``N % n`` most confident ones once more. Classes with no image above the threshold
            stay absent.
        seed: breaks ties between equal confidences.
        hard: one-hot labels of the top-1 class instead of the (sharpened) probabilities.
        temperature: soft labels are ``sharpen(probs, temperature)``.

    Returns:
        ``(indices, labels)``: indices into the unlabeled set (repeated where an image is
        duplicated), grouped by class, most confident first, and the matching ``float32`` label rows.
    """
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"probs must be an (images, classes) array with at least 2 classes, got {probs.shape}.")
    if per_class is None or int(per_class) < 1:
        raise ValueError(f"per_class must be a positive number of images per class, got {per_class!r}.")
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}.")
    per_class = int(per_class)
    confidence = probs.max(1)
    top = probs.argmax(1)
    tie = np.random.default_rng(seed).permutation(len(probs))
    chosen: list[np.ndarray] = []
    for c in range(probs.shape[1]):
        idx = np.flatnonzero((top == c) & (confidence >= threshold))
        if idx.size == 0:
            continue
        order = idx[np.lexsort((tie[idx], -confidence[idx]))]
        if order.size >= per_class:
            chosen.append(order[:per_class])
        else:
            repeats, rest = divmod(per_class, order.size)
            chosen.append(np.concatenate([np.tile(order, repeats), order[:rest]]))
    indices = np.concatenate(chosen) if chosen else np.zeros((0,), np.int64)
    if hard:
        labels = np.eye(probs.shape[1], dtype="float32")[top[indices]]
    else:
        labels = sharpen(probs[indices], temperature).astype("float32")
    return indices.astype(np.int64), labels


def pseudo_label(
    teacher: keras.Model,
    images: Sequence[str],
    *,
    image_size: int,
    batch_size: int = 32,
    crop_padding: int = 32,
    crop_fraction: float | None = None,
    interpolation: str = "bicubic",
) -> np.ndarray:
    """The teacher's probabilities on clean images: evaluation crop, inference mode, no augmentation.

    The crop is ``image_size / (image_size + crop_padding)`` of the shorter side, or ``crop_fraction``."""
    import tensorflow as tf

    from . import data as data_lib

    if not images:
        raise ValueError("No unlabeled images to pseudo-label.")

    def load(path):
        image = data_lib.decode_image(tf.io.read_file(path))
        return data_lib.center_crop_and_resize(
            image, image_size, crop_padding=crop_padding, crop_fraction=crop_fraction, interpolation=interpolation
        )

    ds = tf.data.Dataset.from_tensor_slices(list(images)).map(load, num_parallel_calls=tf.data.AUTOTUNE)
    out = [
        keras.ops.convert_to_numpy(teacher(batch, training=False)).astype("float64")
        for batch in ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    ]
    probs = np.concatenate(out)
    sums = probs.sum(-1)
    if probs.min() < 0 or not np.allclose(sums, 1.0, atol=1e-3):  # a logits head
        probs = sharpen(np.exp(probs - probs.max(-1, keepdims=True)))
    return probs


def pseudo_label_table(
    path: str,
    files: Sequence[str],
    probs: np.ndarray,
    indices: np.ndarray,
    class_names: Sequence[str],
    threshold: float,
) -> None:
    """Writes ``file, class, confidence, status, copies`` for every unlabeled image (atomically)."""
    from .engine import _atomic_write_text

    copies = np.bincount(indices, minlength=len(files)) if len(indices) else np.zeros(len(files), np.int64)
    confidence = probs.max(1)
    top = probs.argmax(1)
    rows = []
    for i, f in enumerate(files):
        if copies[i] > 1:
            status = "duplicated"
        elif copies[i] == 1:
            status = "kept"
        elif confidence[i] < threshold:
            status = "below threshold"
        else:
            status = "class full"
        rows.append([f, class_names[top[i]], f"{confidence[i]:.6f}", status, int(copies[i])])
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["file", "class", "confidence", "status", "copies"])
    writer.writerows(rows)
    _atomic_write_text(path, buffer.getvalue())


def student_recipe(recipe, noise: bool | Mapping = True):
    """The student's recipe: with ``noise``, RandAugment (2, 27) on top of the recipe's dropout and
    stochastic depth; without, all three off (the paper's ablation). A mapping of recipe fields
    changes the noise (e.g. ``{"randaugment_magnitude": 9}``)."""
    from .recipes import recipe as get_recipe

    rec = get_recipe(recipe)
    if isinstance(noise, Mapping):
        return rec.replace(**{**NOISE, **noise})
    if noise:
        return rec.replace(**NOISE)
    return rec.replace(augmentation="none", dropout_rate=0.0, drop_connect_rate=0.0)


@dataclass
class NoisyStudentResult:
    """The last student, every model's record and every model's held-out figures.

    ``models`` has one entry per model (``teacher``, ``student1``, …): its name, what it started
    from (``weights``: ``"imagenet"``, ``"scratch"``, a file, ``"run"`` or ``"given"``), its training
    size and the evaluation size, crop and interpolation it pseudo-labels and is evaluated at.
    """

    model: keras.Model
    class_names: tuple[str, ...]
    figures: list[dict] = field(default_factory=list)
    out_dir: str | None = None
    models: list[dict] = field(default_factory=list)


def _weights_label(weights) -> str:
    return "scratch" if weights is None else os.fspath(weights)


def _variant_record(role: str, name: str, rec, image_size: int | None, weights) -> dict:
    """How :func:`~efficientnet.training.train` trains and evaluates ``name`` with ``rec`` (its own rule):
    the training size is ``image_size`` or the recipe's or the registry's; the evaluation size the
    recipe's or the training size (the registry's evaluation size when nothing is overridden)."""
    from ..registry import get_model_info
    from .engine import eval_data_config
    from .recipes import recipe as get_recipe

    info = get_model_info(name)
    r = get_recipe(rec, variant=name)
    train_size = int(image_size or r.train_size or info.default_size)
    eval_size = int(r.eval_size or train_size)
    config = eval_data_config(r, name, train_size, eval_size)
    return {
        "model": role,
        "name": name,
        "weights": _weights_label(weights),
        "train_size": train_size,
        "eval_size": eval_size,
        "crop_fraction": config.crop_fraction_at(eval_size),
        "interpolation": config.interpolation,
    }


def _run_record(role: str, path: str, run: dict, size: int | None) -> dict:
    """A trained run's own evaluation settings (``run.json``); ``size`` overrides its evaluation size."""
    from ..registry import get_model_info
    from .engine import run_data_config

    eval_size = size or run.get("eval_size") or run.get("image_size")
    if not eval_size and run.get("model"):
        eval_size = get_model_info(run["model"]).eval_size
    config = run_data_config(run)
    return {
        "model": role,
        "name": path,
        "weights": "run",
        "train_size": run.get("image_size"),
        "eval_size": int(eval_size),
        "crop_fraction": config.crop_fraction_at(int(eval_size)),
        "interpolation": config.interpolation,
    }


def _model_record(model: keras.Model, size: int | None, image_size: int | None) -> dict:
    """A given Keras teacher: ``teacher_image_size``, its fixed input side, ``image_size``, or its name's
    registry evaluation size, in that order."""
    from ..preprocessing import CROP_PADDING
    from ..registry import get_model_info

    shape = model.input_shape if isinstance(model.input_shape, tuple) else None
    side = shape[1] if shape is not None and len(shape) == 4 else None
    eval_size = size or side or image_size
    try:
        info = get_model_info(model.name)
    except (ValueError, KeyError, TypeError):
        info = None
    if not eval_size:
        if info is None:
            raise ValueError(
                f"The teacher {model.name!r} takes any input size and is no registered model: pass "
                "teacher_image_size= (the size it was trained and evaluated at) to pseudo-label with it."
            )
        eval_size = info.eval_size
    eval_size = int(eval_size)
    if info is not None:  # a registered model's own evaluation crop and interpolation
        config = info.data_config
        crop, interpolation = config.crop_fraction_at(eval_size), config.interpolation
    else:
        crop, interpolation = eval_size / (eval_size + CROP_PADDING), "bicubic"
    return {
        "model": "teacher",
        "name": model.name,
        "weights": "given",
        "train_size": None,
        "eval_size": eval_size,
        "crop_fraction": crop,
        "interpolation": interpolation,
    }


def _read_run_classes(path: str) -> tuple[tuple[str, ...], dict]:
    """The class names and ``run.json`` of a run directory, without building its model."""
    from .engine import CLASSES_FILE, RUN_FILE, RunError

    files = [os.path.join(path, RUN_FILE), os.path.join(path, CLASSES_FILE)]
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise RunError(
            f"The teacher {path!r} is not a training run directory (no {os.path.basename(missing[0])}). "
            "Pass the --out of an `efficientnet train` run, or a variant name to train a teacher here."
        )
    with open(files[0]) as f:
        run = json.load(f)
    with open(files[1]) as f:
        names = tuple(json.load(f))
    return names, run


def _match_classes(labeled_src, teacher_names: Sequence[str], teacher: str, labeled):
    """The labeled set with the teacher's class order, or a refusal naming both class lists."""
    from dataclasses import replace

    from . import data as data_lib

    names = tuple(labeled_src.class_names)
    teacher_names = tuple(teacher_names)
    if names == teacher_names:
        return labeled_src
    if sorted(names) != sorted(teacher_names):
        raise data_lib.DatasetError(
            f"The teacher {teacher!r} was trained on the classes {list(teacher_names)}, but the labeled images in "
            f"{os.fspath(labeled)!r} have the classes {list(names)}: its pseudo-labels would name the wrong classes. "
            "Pass a teacher trained on these class folders, rename the class folders to the teacher's, or pass a "
            "variant name (e.g. --teacher efficientnet-lite0) to train a new teacher on them."
        )
    order = [teacher_names.index(n) for n in names]  # the same classes in another order: relabel by name
    return replace(labeled_src, class_names=teacher_names, labels=tuple(order[i] for i in labeled_src.labels))


def _check_settings(iterations, ratio, threshold, per_class, temperature, finetune_epochs) -> None:
    def integer(value) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    if not integer(iterations) or iterations < 1:
        raise ValueError(f"iterations must be a whole number of at least 1, got {iterations!r}.")
    if not integer(ratio) or ratio < 1:
        raise ValueError(f"ratio must be a whole number of unlabeled images per labeled image (≥ 1), got {ratio!r}.")
    if not (isinstance(threshold, (int, float, np.number)) and 0 <= threshold <= 1):
        raise ValueError(f"threshold must be a confidence in [0, 1], got {threshold!r}.")
    if per_class is not None and (not integer(per_class) or per_class < 1):
        raise ValueError(f"per_class must be a positive whole number of images per class (or None), got {per_class!r}.")
    if not (isinstance(temperature, (int, float, np.number)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}.")
    if not finetune_epochs >= 0:
        raise ValueError(f"finetune_epochs must be 0 (none) or positive, got {finetune_epochs!r}.")


def noisy_student(
    labeled,
    unlabeled,
    *,
    teacher: str | keras.Model = "efficientnet-lite0",
    student: str = "efficientnet-lite0",
    iterations: int = 1,
    recipe="finetune",
    teacher_epochs: int | None = None,
    student_epochs: int | None = None,
    batch_size: int | None = None,
    ratio: int = 1,
    image_size: int | None = None,
    teacher_image_size: int | None = None,
    student_weights: str | None = "recipe",
    threshold: float = 0.3,
    per_class: int | None = None,
    hard: bool = False,
    temperature: float = 1.0,
    noise: bool | Mapping = True,
    val_data=None,
    allow_smaller_student: bool = False,
    finetune_epochs: float = 0.0,
    finetune_size: int | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    seed: int = 0,
    deterministic: bool = False,
    verbose="auto",
    **recipe_overrides,
) -> NoisyStudentResult:
    """Noisy Student training: teacher → pseudo-labels → noised student, ``iterations`` times.

    Every model pseudo-labels and is evaluated at its own evaluation size, crop and interpolation:
    a variant trained here at the size :func:`~efficientnet.training.train` evaluates it at (the
    registry's evaluation size, e.g. 224 for Lite0 and 240 for Lite1, unless ``image_size`` or the
    recipe says otherwise), a teacher run at its ``run.json`` ``eval_size``. ``result.models`` and
    ``iteration{i}/record.json`` record them.

    Args:
        labeled: an image folder with one sub-folder per class.
        unlabeled: a folder of images (any layout; sub-folder names are ignored).
        teacher: a variant name (trained here on ``labeled`` with ``recipe``), a run directory,
            or a trained Keras classifier (its outputs are the labeled set's classes in sorted
            order). A run's class names must be the labeled set's (in any order; labels follow the
            run's order); another set of classes is refused before anything is done.
        student: the student variant; it must have at least the teacher's parameters (all of
            them, ``count_params()``, trainable or not) unless ``allow_smaller_student=True``.
        iterations: students trained in turn, each labeled by the one before.
        recipe: the recipe of the teacher and (with :data:`NOISE` when ``noise``) the students.
        ratio: unlabeled images per labeled image in every student batch.
        image_size: the training size of every model trained here (default: each variant's own);
            their evaluation size follows it as in :func:`~efficientnet.training.train`.
        teacher_image_size: the size a given teacher (run or Keras model) labels and is evaluated
            at (default: the run's ``eval_size``; a model's fixed input side, ``image_size`` or its
            registered evaluation size).
        student_weights: what every student starts from: ``"recipe"`` (default: the recipe's,
            ImageNet for ``finetune``, scratch for ``efficientnet``/``efficientnetv2``),
            ``"imagenet"``, ``None`` (scratch: the paper's students) or a weights file.
        threshold, per_class, hard, temperature: see :func:`select_and_balance`; ``per_class``
            defaults to the labeled set's images per class (the largest class).
        noise: RandAugment (2, 27), dropout and stochastic depth on the student (off: the ablation;
            a mapping of recipe fields changes the noise, e.g. ``{"randaugment_magnitude": 9}``).
        val_data: held-out images; every model's figures are logged on them.
        finetune_epochs, finetune_size: a last :func:`finetune_at_resolution` of the final student
            (``finetune_size`` defaults to its evaluation size).
        out_dir: ``teacher/``, ``student1/``, … run directories, ``iteration{i}/pseudo_labels.csv``,
            ``iteration{i}/record.json`` (who labeled at which size, the selection, the student and
            what it starts from) and ``noisy_student.json``; with ``resume`` a finished step is
            loaded, not redone.
        seed, deterministic: as in :func:`efficientnet.training.train`, for every model trained.

    Raises:
        ValueError: a bad setting, a smaller student, or a teacher of other classes — all before
            any model is trained or any file written.
    """
    from . import data as data_lib
    from .engine import build_classifier, evaluate, load_run, train
    from .recipes import recipe as get_recipe

    _check_settings(iterations, ratio, threshold, per_class, temperature, finetune_epochs)
    if "learning_rate" in recipe_overrides:
        recipe_overrides["base_learning_rate"] = recipe_overrides.pop("learning_rate")
    rec = get_recipe(recipe, **recipe_overrides)
    if isinstance(student_weights, str) and student_weights.lower() in ("none", "scratch", "random"):
        student_weights = None
    start = rec.weights if student_weights == "recipe" else student_weights

    teacher_run = None
    if isinstance(teacher, (str, os.PathLike)) and os.path.isdir(os.fspath(teacher)):
        teacher_run = os.fspath(teacher)
        teacher_names, run_info = _read_run_classes(teacher_run)
    labeled_src = data_lib.scan_image_folder(labeled)
    if teacher_run is not None:
        labeled_src = _match_classes(labeled_src, teacher_names, teacher_run, labeled)
    elif isinstance(teacher, keras.Model):
        outputs = teacher.output_shape[-1]
        if outputs != labeled_src.num_classes:
            raise data_lib.DatasetError(
                f"The teacher {teacher.name!r} predicts {outputs} classes, but the labeled images in "
                f"{os.fspath(labeled)!r} have {labeled_src.num_classes}: {list(labeled_src.class_names)}. "
                "Pass a teacher trained on these classes, or a variant name to train one here."
            )
    names = labeled_src.class_names
    files = list(data_lib.list_images(unlabeled))
    val_src = data_lib.scan_image_folder(val_data, class_names=names) if val_data is not None else None
    if per_class is None:
        per_class = max(labeled_src.counts().values())

    # The student's size is checked before anything is trained: all its parameters against all the
    # teacher's (a frozen backbone still counts: the paper's students are at least the teacher's size).
    probe = build_classifier(student, len(names), weights=None, recipe=rec)
    student_params = int(probe.count_params())
    del probe

    out = os.fspath(out_dir) if out_dir is not None else None

    def sub(name):
        return os.path.join(out, name) if out is not None else None

    def finished(path):
        return path is not None and resume and os.path.isfile(os.path.join(path, "model.weights.h5"))

    def started(path):
        return path is not None and (
            os.path.isdir(os.path.join(path, "checkpoint")) or os.path.isfile(os.path.join(path, "run.json"))
        )

    def check_size(teacher_params: int, name) -> None:
        if teacher_params > student_params:
            _refuse(name, student, allow_smaller_student)

    if isinstance(teacher, keras.Model):
        check_size(int(teacher.count_params()), teacher.name)
        teacher_model, teacher_record = teacher, _model_record(teacher, teacher_image_size, image_size)
    elif teacher_run is not None:
        teacher_model, _, _ = load_run(teacher_run)
        check_size(int(teacher_model.count_params()), teacher_run)
        teacher_record = _run_record("teacher", teacher_run, run_info, teacher_image_size)
    else:
        check_size(int(build_classifier(teacher, len(names), weights=None, recipe=rec).count_params()), teacher)
        teacher_record = _variant_record("teacher", str(teacher), rec, image_size, rec.weights)
    if out is not None:
        os.makedirs(out, exist_ok=True)

    figures: list[dict] = []
    common = dict(
        batch_size=batch_size,
        image_size=image_size,
        val_data=val_src,
        seed=seed,
        verbose=verbose,
        deterministic=deterministic,
    )
    if teacher_run is None and not isinstance(teacher, keras.Model):
        path = sub("teacher")
        teacher_record["run"] = path
        if finished(path):
            teacher_model, _, _ = load_run(path)
        else:
            teacher_model = train(
                teacher, labeled_src, recipe=rec, epochs=teacher_epochs, out_dir=path,
                resume=resume and started(path), **common,
            ).model  # fmt: skip
    records = [teacher_record]

    def score(model, record) -> None:
        if val_src is None:
            return
        result = evaluate(
            model, val_src, image_size=record["eval_size"], crop_fraction=record["crop_fraction"],
            interpolation=record["interpolation"],
        )  # fmt: skip
        record.update(_figures(result))
        figures.append({k: record[k] for k in ("model", "name", "eval_size", "top1", "loss", "num_images")})

    score(teacher_model, teacher_record)

    student_rec = student_recipe(rec, noise)
    current, labeler = teacher_model, teacher_record
    for it in range(1, iterations + 1):
        probs = pseudo_label(
            current, files, image_size=labeler["eval_size"], crop_fraction=labeler["crop_fraction"],
            interpolation=labeler["interpolation"],
        )  # fmt: skip
        indices, labels = select_and_balance(probs, threshold, per_class, seed + it, hard=hard, temperature=temperature)
        if len(indices) == 0:
            raise data_lib.DatasetError(
                f"No unlabeled image reaches the confidence threshold {threshold}; lower it or train a better teacher."
            )
        path = sub(f"student{it}")
        student_record = _variant_record(f"student{it}", student, student_rec, image_size, start)
        student_record["run"] = path
        record = {
            "iteration": it,
            "labeler": {k: labeler[k] for k in ("model", "name", "eval_size", "crop_fraction", "interpolation")},
            "threshold": threshold,
            "per_class": int(per_class),
            "hard": hard,
            "temperature": temperature,
            "unlabeled": len(files),
            "pseudo_labeled": int(len(indices)),
            "ratio": ratio,
            "noise": dict(noise) if isinstance(noise, Mapping) else noise,
            "student": dict(student_record),
        }
        if out is not None:
            from .engine import _atomic_write_text

            os.makedirs(sub(f"iteration{it}"), exist_ok=True)
            pseudo_label_table(
                os.path.join(sub(f"iteration{it}"), "pseudo_labels.csv"), files, probs, indices, names, threshold
            )
            _atomic_write_text(os.path.join(sub(f"iteration{it}"), "record.json"), json.dumps(record, indent=1))
        if finished(path):
            current, _, _ = load_run(path)
        else:
            mixed = data_lib.MixedSource(
                labeled_src, data_lib.SoftLabels(tuple(files[i] for i in indices), labels, names), ratio
            )
            current = train(
                student, mixed, recipe=student_rec, epochs=student_epochs, out_dir=path, weights=start,
                resume=resume and started(path), **common,
            ).model  # fmt: skip
        records.append(student_record)
        score(current, student_record)
        labeler = student_record

    if finetune_epochs:
        test_size = int(finetune_size or labeler["eval_size"])
        current = finetune_at_resolution(
            current, labeled_src, test_size, finetune_epochs, batch_size=batch_size or rec.batch_size,
            seed=seed, verbose=verbose,
        )  # fmt: skip
        finetuned = {**labeler, "model": "finetuned", "weights": labeler["model"], "train_size": test_size,
                     "eval_size": test_size, "run": None}  # fmt: skip
        for key in ("top1", "loss", "num_images"):
            finetuned.pop(key, None)
        records.append(finetuned)
        score(current, finetuned)
    if out is not None:
        from .engine import _atomic_write_text

        _atomic_write_text(os.path.join(out, "noisy_student.json"), json.dumps(figures, indent=1))
    return NoisyStudentResult(current, tuple(names), figures, out, records)


def _figures(result) -> dict:
    return {"top1": result.top1, "loss": result.loss, "num_images": result.num_images}


def _refuse(teacher, student, allowed: bool) -> None:
    if allowed:
        return
    raise ValueError(
        f"The student {student!r} has fewer parameters than the teacher {teacher!r}; Noisy Student needs an equal "
        "or larger student. Choose a larger student or pass allow_smaller_student=True (--allow-smaller-student)."
    )


def finetune_at_resolution(
    model: keras.Model,
    data,
    size: int,
    epochs: float = 1.5,
    *,
    batch_size: int = 32,
    learning_rate: float = 1e-5,
    seed: int = 0,
    class_names: Sequence[str] | int | None = None,
    verbose="auto",
) -> keras.Model:
    """Fine-tunes ``model`` at ``size`` on unaugmented labeled images, for ``epochs`` (may be fractional).

    FixRes / Noisy Student: a model trained at a lower resolution and tested at a higher one gains
    from a short fine-tune at the test size. Images get the evaluation crop (no augmentation); the
    whole network trains (BatchNormalization statistics adapt to the new size) with Adam at
    ``learning_rate``. The model is updated in place and returned; its weights load into a model
    built for ``size``. A model built for a fixed input size must be rebuilt with a free one first.
    """
    import tensorflow as tf

    from . import data as data_lib
    from .engine import _num_outputs, _source

    if epochs <= 0:
        raise ValueError(f"epochs must be positive, got {epochs}.")
    fixed = model.input_shape[1:3]
    if any(s is not None and s != size for s in fixed):
        raise ValueError(
            f"{model.name!r} is built for {fixed[0]}x{fixed[1]} inputs; build it with input_shape=(None, None, 3) "
            f"(or ({size}, {size}, 3)) and load its weights to fine-tune at {size}."
        )
    source = _source(data, class_names=class_names)
    if _num_outputs(model) != source.num_classes:
        raise data_lib.DatasetError(
            f"The data has {source.num_classes} classes but the model predicts {_num_outputs(model)}."
        )
    per_epoch = len(source) // batch_size
    if per_epoch < 1:
        raise data_lib.DatasetError(f"{len(source)} images fill no batch of {batch_size}; lower the batch size.")
    steps = max(1, math.ceil(epochs * per_epoch))
    passes = math.ceil(steps / per_epoch)
    ds = None
    for k in range(passes):
        part = data_lib.train_dataset(
            source, image_size=size, batch_size=batch_size, seed=seed, epoch=k, random_crop=False
        )
        ds = part if ds is None else ds.concatenate(part)
    ds = ds.take(steps).prefetch(tf.data.AUTOTUNE)
    for layer in model._flatten_layers(include_self=False):
        if not layer._layers:
            layer.trainable = True
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=keras.losses.CategoricalCrossentropy())
    model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=verbose)
    return model
