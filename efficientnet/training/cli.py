"""The ``efficientnet train``, ``efficientnet evaluate`` and ``efficientnet noisy-student`` sub-commands.

efficientnet train DATA_DIR --model efficientnet-lite0 --weights imagenet --recipe finetune \\
    [--epochs 5 --batch-size 32 --image-size 224 --val-dir DIR | --val-split 0.2] --out RUN_DIR [--resume]
efficientnet evaluate DATA_DIR (--run RUN_DIR | --model efficientnet-lite0 --weights RUN_DIR/model.weights.h5) \\
    [--image-size 224] [--json]
efficientnet noisy-student LABELED UNLABELED --teacher lite0|RUN_DIR --student lite1 [--iterations 2] \\
    [--teacher-epochs 4 --student-epochs 3 --learning-rate 1e-3 --student-weights recipe|imagenet|scratch] \\
    [--threshold 0.3 --per-class N --ratio 1 --temperature 1 --hard --no-noise --deterministic] --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = ["add_train_parser", "add_evaluate_parser", "add_noisy_student_parser", "UsageError", "check_out_dir"]


class UsageError(ValueError):
    """A command-line argument refused before any work: the message names the option and the fix."""


def _weights(value: str) -> str | None:
    if value.lower() in ("none", "random", "scratch"):
        return None
    if os.path.isdir(value) and os.path.isfile(os.path.join(value, "run.json")):
        with open(os.path.join(value, "run.json")) as f:
            return os.path.join(value, json.load(f).get("weights", "model.weights.h5"))
    if _looks_like_path(value) and not os.path.exists(value):
        raise UsageError(
            f"--weights {value}: no such file. Pass an existing weights file (e.g. RUN_DIR/model.weights.h5), "
            "a train run directory, imagenet, or none."
        )
    return value


def _looks_like_path(value: str) -> bool:
    return os.sep in value or value.startswith(".") or value.endswith((".h5", ".keras")) or os.path.exists(value)


def check_variant(value: str | None, flag: str = "--model") -> None:
    """Refuses a path given where a variant name belongs, naming the option that takes it."""
    if value is None or not _looks_like_path(value):
        return
    if os.path.isdir(value) and os.path.isfile(os.path.join(value, "run.json")):
        raise UsageError(
            f"{flag} takes a variant name (e.g. lite0, b0; `efficientnet list` shows them), but {value!r} is a "
            "train run directory: pass it as --run (predict, evaluate, export) or --weights (train)."
        )
    raise UsageError(
        f"{flag} takes a variant name (e.g. lite0, b0; `efficientnet list` shows them), but {value!r} is a path"
        f"{'' if os.path.exists(value) else ' that does not exist'}. Pass weights files with --weights and "
        "run directories with --run."
    )


def check_run_dir(value: str, flag: str = "--run") -> None:
    """Refuses a missing path, a file or a directory without ``run.json`` as a train run directory."""
    if not os.path.exists(value):
        raise UsageError(f"{flag} {value}: no such directory. Pass the --out directory of a finished train run.")
    if not os.path.isdir(value) or not os.path.isfile(os.path.join(value, "run.json")):
        raise UsageError(
            f"{flag} {value}: not a train run directory (no run.json in it). Pass the --out directory of a "
            "train run; for a weights file use --model VARIANT --weights FILE."
        )


def check_out_dir(value: str, flag: str = "--out") -> None:
    """Refuses an output directory that is a file or cannot be created or written, before any work."""
    if os.path.exists(value) and not os.path.isdir(value):
        raise UsageError(f"{flag} {value}: it is an existing file, not a directory. Choose a directory path.")
    probe = os.path.abspath(value)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise UsageError(f"{flag} {value}: {probe} is a file, so the directory cannot be created. Choose another path.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(
            f"{flag} {value}: cannot write in {probe} (permission denied). Choose a directory you can write to."
        )


def check_at_least(value: float | None, minimum: float, flag: str, what: str = "") -> None:
    if value is not None and value < minimum:
        raise UsageError(f"{flag} must be at least {minimum}{what}, got {value}.")


def _check_resume_model(args: argparse.Namespace) -> None:
    """``--resume`` of a run with another ``--model``: name the run's model before anything is built."""
    from ..config import get_variant

    path = os.path.join(args.out, "run.json")
    if not args.resume or not os.path.isfile(path):
        return
    try:
        with open(path) as f:
            saved = json.load(f).get("model")
    except (OSError, ValueError, AttributeError):
        return
    if saved and get_variant(args.model).name != saved:
        raise UsageError(
            f"--resume: the run in {args.out} trains {saved}, not {get_variant(args.model).name}. "
            f"Resume with --model {saved}, or train {args.model} into a new --out directory."
        )


def _train(args: argparse.Namespace) -> int:
    from .engine import train

    check_variant(args.model)
    check_at_least(args.image_size, 32, "--image-size", " (pixels)")
    check_at_least(args.batch_size, 1, "--batch-size")
    check_at_least(args.epochs, 1, "--epochs")
    check_at_least(args.seed, 0, "--seed")
    if args.val_split is not None and not 0 < args.val_split < 1:
        raise UsageError(f"--val-split must lie between 0 and 1 (a fraction of each class), got {args.val_split}.")
    check_out_dir(args.out)
    _check_resume_model(args)

    overrides = {}
    if args.learning_rate is not None:
        overrides["base_learning_rate"] = args.learning_rate
    if args.remat:
        overrides["remat"] = True
    if args.freeze_bn is not None:
        overrides["freeze_bn"] = args.freeze_bn
    result = train(
        args.model,
        args.data_dir,
        recipe=args.recipe,
        epochs=args.epochs,
        batch_size=args.batch_size,
        image_size=args.image_size,
        val_data=args.val_dir,
        val_split=args.val_split,
        out_dir=args.out,
        weights=_weights(args.weights) if args.weights is not None else _recipe_default(),
        seed=args.seed,
        resume=args.resume,
        verbose=1 if not args.quiet else 2,
        on_bad_file="error" if args.strict_files else "skip",
        deterministic=args.deterministic,
        progressive=args.progressive,
        strategy=args.strategy,
        synchronized_bn=args.synchronized_bn,
        **overrides,
    )
    last = {k: v[-1] for k, v in result.history.items() if v}
    figures = ", ".join(f"{k} {v:.4f}" for k, v in sorted(last.items()))
    print(f"Finished: {figures}")
    print(f"Weights: {result.weights_path} ({len(result.class_names)} classes, {args.out}/classes.json)")
    return 0


def _recipe_default():
    from .engine import _DEFAULT

    return _DEFAULT


def _evaluate(args: argparse.Namespace) -> int:
    from .engine import evaluate

    check_at_least(args.batch_size, 1, "--batch-size")
    check_at_least(args.image_size, 32, "--image-size", " (pixels)")
    if args.run is not None:
        if args.model is not None or args.weights is not None:
            raise UsageError(
                "evaluate takes --run RUN_DIR (the run's model and weights) or --model with --weights, not both."
            )
        check_run_dir(args.run)
    elif args.model is None or args.weights is None:
        raise UsageError("evaluate needs --run RUN_DIR, or --model VARIANT with --weights FILE.")
    else:
        check_variant(args.model)
        _check_weights_classes(args)
    if args.out is not None:
        check_out_dir(args.out)
    result = evaluate(
        args.run if args.run is not None else args.model,
        args.data_dir,
        weights=args.weights,
        image_size=args.image_size,
        batch_size=args.batch_size,
        out_dir=args.out,
        on_bad_file="error" if args.strict_files else "skip",
    )
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=1)
        print()
    else:
        print(result)
        for kind, path in result.files.items():
            print(f"Wrote {kind}: {path}")
    return 0


def _check_weights_classes(args: argparse.Namespace) -> None:
    """``evaluate --model --weights FILE``: the file's classifier must have the data's number of classes."""
    from ..weights.loader import describe_non_weights_file, file_classifier

    if not _looks_like_path(args.weights):
        return
    problem = describe_non_weights_file(args.weights)
    if problem is not None:
        raise UsageError(f"--weights: {problem}")
    found = file_classifier(args.weights)
    if found is None:
        return
    n = int(found[0].shape[-1])
    beside = os.path.join(os.path.dirname(os.path.abspath(args.weights)), "classes.json")
    where = f"{beside} names" if os.path.isfile(beside) else f"{args.data_dir} has"
    if os.path.isfile(beside):
        with open(beside) as f:
            count = len(json.load(f))
    elif os.path.isdir(args.data_dir):
        count = len([e for e in os.scandir(args.data_dir) if e.is_dir() and not e.name.startswith(".")])
    else:
        return
    if count != n:
        run = os.path.dirname(os.path.abspath(args.weights))
        raise UsageError(
            f"--weights {args.weights} has a classifier for {n} classes but {where} {count}. Pass the weights "
            f"trained on these classes, or the run directory they come from with --run (e.g. --run {run})."
        )


def add_train_parser(sub) -> None:
    t = sub.add_parser("train", help="train or fine-tune a classifier on an image folder")
    t.add_argument("data_dir", help="training images, one sub-folder per class")
    t.add_argument("--model", default="efficientnet-lite0", help="variant (default: efficientnet-lite0)")
    t.add_argument(
        "--weights", default=None, help="imagenet, none, or a weights file to start from (default: the recipe's)"
    )
    t.add_argument("--recipe", default="finetune", help="finetune (default), efficientnet or efficientnetv2")
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--batch-size", type=int, default=None, help="global batch size (default: the recipe's)")
    t.add_argument("--image-size", type=int, default=None, help="training size (default: the variant's)")
    t.add_argument("--learning-rate", type=float, default=None, help="the recipe's base learning rate")
    group = t.add_mutually_exclusive_group()
    group.add_argument("--val-dir", default=None, help="held-out images with the same class folders")
    group.add_argument("--val-split", type=float, default=None, help="hold out this fraction of each class")
    t.add_argument("--out", required=True, help="the run directory (checkpoints, logs, weights)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--deterministic", action="store_true", help="deterministic TensorFlow kernels")
    t.add_argument("--strict-files", action="store_true", help="stop at an unreadable image instead of skipping it")
    t.add_argument("--quiet", action="store_true", help="one line per epoch instead of a progress bar")
    t.add_argument(
        "--progressive",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="EfficientNetV2 progressive learning in google/automl's 4 stages (default: the recipe's; "
        "on in efficientnetv2)",
    )
    t.add_argument(
        "--freeze-bn",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep BatchNormalization frozen (inference mode) throughout (default: the recipe's; "
        "finetune freezes it when starting from weights)",
    )
    t.add_argument(
        "--strategy",
        default="none",
        choices=["auto", "none", "mirrored", "multiworker", "tpu", "data-parallel"],
        help="distributed engine (tf.distribute or keras.distribution on JAX); --batch-size is the global batch",
    )
    t.add_argument("--synchronized-bn", action="store_true", help="cross-replica batch norm (TensorFlow strategies)")
    t.add_argument("--remat", action="store_true", help="recompute each block in the backward pass (less memory)")
    t.set_defaults(func=_train)


def add_evaluate_parser(sub) -> None:
    e = sub.add_parser("evaluate", help="top-1/top-5, per-class accuracy and a confusion matrix")
    e.add_argument("data_dir", help="held-out images, one sub-folder per class")
    e.add_argument("--run", default=None, help="a train run directory (model, weights and classes)")
    e.add_argument("--model", default=None, help="variant, with --weights")
    e.add_argument("--weights", default=None, help="trained weights (classes.json beside it names the classes)")
    e.add_argument("--image-size", type=int, default=None)
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--out", default=None, help="write confusion.png and metrics.json here")
    e.add_argument("--json", action="store_true", help="print the figures as JSON")
    e.add_argument("--strict-files", action="store_true", help="stop at an unreadable image instead of skipping it")
    e.set_defaults(func=_evaluate)


def _student_weights(value: str) -> str | None:
    if value.lower() == "recipe":
        return "recipe"
    return _weights(value)


def _noisy_student(args: argparse.Namespace) -> int:
    from .noisy_student import noisy_student

    check_variant(args.student, "--student")
    if _looks_like_path(args.teacher):
        check_run_dir(args.teacher, "--teacher")
    for flag, value in (("--image-size", args.image_size), ("--teacher-image-size", args.teacher_image_size)):
        check_at_least(value, 32, flag, " (pixels)")
    check_at_least(args.batch_size, 1, "--batch-size")
    check_at_least(args.seed, 0, "--seed")
    check_out_dir(args.out)
    overrides = {}
    if args.learning_rate is not None:
        overrides["base_learning_rate"] = args.learning_rate
    result = noisy_student(
        args.labeled_dir,
        args.unlabeled_dir,
        teacher=args.teacher,
        student=args.student,
        iterations=args.iterations,
        recipe=args.recipe,
        teacher_epochs=args.teacher_epochs if args.teacher_epochs is not None else args.epochs,
        student_epochs=args.student_epochs if args.student_epochs is not None else args.epochs,
        batch_size=args.batch_size,
        ratio=args.ratio,
        image_size=args.image_size,
        teacher_image_size=args.teacher_image_size,
        student_weights=_student_weights(args.student_weights),
        threshold=args.threshold,
        per_class=args.per_class,
        hard=args.hard,
        temperature=args.temperature,
        noise=not args.no_noise,
        val_data=args.val_dir,
        allow_smaller_student=args.allow_smaller_student,
        finetune_epochs=args.finetune_epochs,
        finetune_size=args.finetune_size,
        out_dir=args.out,
        resume=args.resume,
        seed=args.seed,
        deterministic=args.deterministic,
        verbose=1 if not args.quiet else 2,
        **overrides,
    )
    for row in result.models:
        start = {"imagenet": "ImageNet weights", "scratch": "scratch (random initialisation)"}.get(
            row["weights"], row["weights"]
        )
        print(
            f"{row['model']:<10s} {row['name']:<24s} starts from {start}; labels/evaluated at {row['eval_size']} px"
            + (f", held-out top-1 {row['top1']:.2%}" if "top1" in row else "")
        )
    print(f"Runs, pseudo-label tables, iteration records and noisy_student.json in {args.out}")
    return 0


def add_noisy_student_parser(sub) -> None:
    n = sub.add_parser("noisy-student", help="Noisy Student: teacher, pseudo-labels, noised students")
    n.add_argument("labeled_dir", help="labeled images, one sub-folder per class")
    n.add_argument("unlabeled_dir", help="unlabeled images (any layout)")
    n.add_argument("--teacher", default="efficientnet-lite0", help="variant to train, or a train run directory")
    n.add_argument("--student", default="efficientnet-lite0", help="student variant (at least the teacher's size)")
    n.add_argument(
        "--student-weights",
        default="recipe",
        help="what each student starts from: recipe (default: the recipe's, imagenet for finetune), imagenet, "
        "scratch (the paper's students) or a weights file",
    )
    n.add_argument("--iterations", type=int, default=1)
    n.add_argument("--recipe", default="finetune")
    n.add_argument("--epochs", type=int, default=None, help="epochs of the teacher and of each student")
    n.add_argument("--teacher-epochs", type=int, default=None, help="the teacher's epochs (overrides --epochs)")
    n.add_argument("--student-epochs", type=int, default=None, help="each student's epochs (overrides --epochs)")
    n.add_argument("--learning-rate", type=float, default=None, help="the recipe's base learning rate")
    n.add_argument("--batch-size", type=int, default=None)
    n.add_argument("--ratio", type=int, default=1, help="unlabeled images per labeled image in a batch")
    n.add_argument(
        "--image-size", type=int, default=None, help="training size of the models trained here (default: each one's)"
    )
    n.add_argument(
        "--teacher-image-size", type=int, default=None, help="a teacher run's labeling size (default: its eval size)"
    )
    n.add_argument("--threshold", type=float, default=0.3)
    n.add_argument("--per-class", type=int, default=None, help="images per class after balancing")
    n.add_argument("--hard", action="store_true", help="one-hot pseudo-labels instead of probabilities")
    n.add_argument("--temperature", type=float, default=1.0)
    n.add_argument("--no-noise", action="store_true", help="train students without RandAugment/dropout/depth")
    n.add_argument("--val-dir", default=None)
    n.add_argument("--allow-smaller-student", action="store_true")
    n.add_argument("--finetune-epochs", type=float, default=0.0, help="test-resolution fine-tune at the end")
    n.add_argument("--finetune-size", type=int, default=None)
    n.add_argument("--out", required=True)
    n.add_argument("--resume", action="store_true")
    n.add_argument("--seed", type=int, default=0)
    n.add_argument("--deterministic", action="store_true", help="deterministic TensorFlow kernels")
    n.add_argument("--quiet", action="store_true")
    n.set_defaults(func=_noisy_student)
