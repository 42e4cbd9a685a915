"""The ``efficientnet`` command: ``predict``, ``train``, ``evaluate``, ``convert`` and ``list``.

efficientnet predict [IMAGE ...] [--model lite0] [--weights imagenet|FILE [--classes N]] [--top 5] [--run RUN] [--json]
efficientnet predict FOLDER_OR_FILES --out preds.csv|.jsonl [--batch-size 32] [--resume] [--runtime keras|onnxruntime]
efficientnet train DATA_DIR --model efficientnet-lite0 --out RUN_DIR  (see ``efficientnet train -h``)
efficientnet evaluate DATA_DIR --run RUN_DIR [--json]
efficientnet export (MODEL_OR_WEIGHTS [--model VARIANT] | --run RUN_DIR) OUT --format onnx
efficientnet noisy-student LABELED_DIR UNLABELED_DIR --teacher lite0 --student lite1 --iterations 2 --out RUN_DIR
efficientnet convert SOURCE OUTPUT.h5 --variant lite0 [--layout efficientnet_pytorch]
efficientnet list
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _check_image_paths(paths: Sequence[str]) -> None:
    """Refuses missing files among ``predict``'s images before a model is built (folders go to folder mode)."""
    for path in paths:
        if not os.path.exists(path):
            raise ValueError(f"{path}: no such file. Pass image files (JPEG, PNG, BMP, GIF).")


def _read_image(path: str):
    """The image as the evaluation pipeline decodes it (TensorFlow's decoder, RGB), so the model sees what
    ``evaluate`` gives it."""
    import tensorflow as tf

    from .training.data import decode_image

    try:
        return decode_image(tf.io.read_file(path)).numpy()
    except (tf.errors.OpError, OSError, ValueError) as exc:
        reason = " ".join(str(getattr(exc, "message", exc)).split())[:200]
        raise ValueError(
            f"{path} is not an image predict can read ({type(exc).__name__}: {reason}). "
            "Pass JPEG, PNG, BMP or GIF files."
        ) from None


def _predict_model(args: argparse.Namespace):
    """The model, its class names (``None``: ImageNet's) and data config that ``predict``'s options ask for."""
    from . import builder, config
    from .preprocessing import data_config
    from .training.cli import check_run_dir, check_variant

    if args.run is not None:
        from .training.engine import load_run, run_data_config

        if args.model is not None or args.weights is not None or args.classes is not None:
            raise ValueError(
                "--run RUN_DIR brings its own model, weights and classes: drop --model, --weights and --classes "
                "(or drop --run)."
            )
        check_run_dir(args.run)
        model, class_names, run = load_run(args.run)
        return model, class_names, run_data_config(run)
    check_variant(args.model)
    variant = config.get_variant(args.model or "lite0")
    weights = args.weights or "imagenet"
    classes, class_names = args.classes, None
    if os.path.isdir(weights) and os.path.isfile(os.path.join(weights, "run.json")):
        raise ValueError(f"--weights {weights} is a train run directory: pass it as --run {weights}.")
    if os.path.isfile(weights):
        from .weights.loader import file_classifier

        found = file_classifier(weights)
        if classes is None and found is not None:
            classes = int(found[0].shape[-1])
        beside = os.path.join(os.path.dirname(os.path.abspath(weights)), "classes.json")
        if classes not in (None, 1000) and os.path.isfile(beside):
            with open(beside) as f:
                names = tuple(json.load(f))
            class_names = names if len(names) == classes else None
        if classes not in (None, 1000) and class_names is None:
            class_names = tuple(f"class {i}" for i in range(classes))
    elif classes is not None and classes != 1000:
        raise ValueError(f"--classes {classes} needs a weights file; the {weights} weights have 1000 classes.")
    if classes is not None and classes < 1:
        raise ValueError(f"--classes must be at least 1, got {classes}.")
    model = builder.EfficientNet(variant, weights=weights, input_shape=None, classes=classes or 1000)
    return model, class_names, data_config(variant.name, weights)


def _predict(args: argparse.Namespace) -> int:
    import numpy as np

    from .preprocessing import decode_predictions, sample_image_path

    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}.")
    paths = args.images or [sample_image_path()]
    if args.out is not None or any(os.path.isdir(p) for p in paths):
        return _predict_folder(args, paths)
    if args.resume or args.runtime != "keras" or args.batch_size is not None:
        raise ValueError("--batch-size, --resume and --runtime go with --out FILE (folder prediction).")
    _check_image_paths(paths)
    model, class_names, config = _predict_model(args)
    records = []
    for path in paths:
        # The evaluation pipeline's decoder and crop (the model's or the run's data config).
        probs = np.asarray(model.predict(config.eval_transform(_read_image(path))[None], verbose=0))[0]
        if class_names is not None:
            top = [(None, class_names[i], float(probs[i])) for i in np.argsort(-probs)[: args.top]]
        else:
            top = decode_predictions(probs[None], top=args.top)[0]
        records.append((path, probs, top))
    if args.json:
        out = {
            "data_config": config.to_dict(),
            "images": [
                {
                    "image": path,
                    "probabilities": probs.tolist(),
                    "top": [{"label": label, "probability": p, "wnid": wnid} for wnid, label, p in top],
                }
                for path, probs, top in records
            ],
        }
        json.dump(out, sys.stdout, indent=1)
        print()
        return 0
    for path, _, top in records:
        print(f"{path}:")
        for rank, (wnid, label, p) in enumerate(top, 1):
            print(f"  {rank}. {label:<30s} {p:7.2%}" + (f"  ({wnid})" if wnid else ""))
    return 0


def _predict_folder(args: argparse.Namespace, paths: Sequence[str]) -> int:
    """``predict FOLDER_OR_FILES --out``: batched through a tf.data pipeline, written atomically."""
    if args.out is None:
        raise ValueError(
            f"{next(p for p in paths if os.path.isdir(p))} is a folder: pass --out preds.csv (or .jsonl) to "
            "predict every image in it, or pass image files."
        )
    if not args.out.lower().endswith((".csv", ".jsonl")):
        raise ValueError(f"--out {args.out}: name a .csv or .jsonl file.")
    if os.path.isdir(args.out):
        raise ValueError(f"--out {args.out} is a directory: name a .csv or .jsonl file.")
    if os.path.exists(args.out) and not args.resume:
        raise ValueError(f"--out {args.out} exists: pass --resume to add the missing images, or another --out.")
    if args.json:
        raise ValueError("--json prints single-image predictions: with --out, name a .jsonl file instead.")
    batch_size = 32 if args.batch_size is None else args.batch_size
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}.")
    for path in paths:
        if not os.path.exists(path):
            raise ValueError(f"{path}: no such file or folder.")
    from .batch_predict import run_folder_predict

    model, class_names, config = _predict_model(args)
    done, skipped = run_folder_predict(
        model,
        paths,
        config,
        out=args.out,
        class_names=class_names,
        top=args.top,
        batch_size=batch_size,
        runtime=args.runtime,
        resume=args.resume,
    )
    print(f"{done} images predicted, {skipped} skipped: {args.out}", file=sys.stderr)
    return 0


def _convert(args: argparse.Namespace) -> int:
    from .convert import convert_file

    model = convert_file(args.source, args.output, args.variant, layout=args.layout, progress=not args.quiet)
    print(f"Wrote {args.output}: {model.name}, {model.count_params():,} parameters.")
    return 0


def _list(args: argparse.Namespace) -> int:
    from .registry import list_models

    print(f"{'model':<20s} {'constructor':<20s} {'size':>5s} {'train':>5s} {'crop':>6s} {'params':>13s}  weights")
    for info in list_models(args.family, pretrained=args.pretrained):
        sets = ", ".join(info.weights) or "-"
        print(
            f"{info.name:<20s} {info.constructor_name:<20s} {info.default_size:>5d} {info.train_size:>5d} "
            f"{info.crop:>6.3f} {info.params:>13,d}  {sets}"
        )
    return 0


# Advice that only the Python API can follow, and what the command line offers instead.
_API_ONLY = re.compile(r"skip_mismatch|by_name=|include_top|save_weights\(|load_weights\(|\bmodel\.save\(")
_CLI_FIX = {
    "predict": "Pass the --model the weights were trained with and --classes N for their classifier, or "
    "--run RUN_DIR for a train run.",
    "export": "Pass the --model the weights were trained with and --classes N for their classifier, or "
    "--run RUN_DIR for a train run.",
    "evaluate": "Pass the --model the weights were trained with, or --run RUN_DIR for a train run.",
    "train": "Pass the --model the weights were saved from, or --weights imagenet/none.",
    "noisy-student": "Pass the --teacher/--student variant the weights were saved from, or a teacher run directory.",
}


def _cli_message(exc: BaseException, command: str) -> str:
    """One line naming the problem and a fix this command line has (library-only advice replaced)."""
    errno_, filename = getattr(exc, "errno", None), getattr(exc, "filename", None)
    if isinstance(exc, OSError) and errno_ is not None and exc.strerror:
        where = f"{filename}: " if filename else ""
        return f"{where}{exc.strerror}. Check the path, and that you may read (inputs) or write (outputs) there."
    text = " ".join(str(exc).split())
    sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z(])", text)
    kept, dropped = [], False
    for sentence in sentences:
        clauses = [c for c in re.split(r";\s+", sentence) if c]
        good = [c for c in clauses if not _API_ONLY.search(c)]
        dropped |= len(good) < len(clauses)
        if good:
            line = "; ".join(good)
            kept.append(line if line.endswith((".", "!", "?", ")")) else line + ".")
    if dropped:
        kept.append(_CLI_FIX.get(command, "See --help for the options."))
    return " ".join(kept) or text


# absl's lines from before its logging is initialised, which TF_CPP_MIN_LOG_LEVEL does not silence
# (TensorFlow 2.18+: "WARNING: All log messages before absl::InitializeLog() …", cudart_stub's
# "Could not find cuda drivers"), and absl-formatted C++ log lines ("I0000 00:00:… file.cc:31] …").
_ABSL_PREAMBLE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR\n?"
)
_ABSL_LINE = re.compile(r"^[IWEF]\d{4} [\d:.]+ +\d+ [^ \]]+:\d+\] ")


def _import_backend_quietly() -> None:
    """Imports Keras (and TensorFlow) with the C++ start-up log lines left out of stderr.

    Only with ``TF_CPP_MIN_LOG_LEVEL=3`` (the command's default); everything else written to
    stderr meanwhile is passed on, and all of it if the import fails.
    """
    if "keras" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "3":
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        failed = True
        try:
            import keras  # noqa: F401

            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode(errors="replace")
            if not failed:
                text = _ABSL_PREAMBLE.sub("", text)
                text = "".join(line for line in text.splitlines(True) if not _ABSL_LINE.match(line))
            sys.stderr.write(text)
            sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    # Before anything imports TensorFlow (the commands import it lazily; ``--help`` never does):
    # its C++ start-up log lines are silenced unless the user chose a level.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = argparse.ArgumentParser(prog="efficientnet", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="print the top ImageNet labels of images")
    p.add_argument("images", nargs="*", help="image files (default: the bundled sample photo)")
    p.add_argument("--model", default=None, help="variant name (default: lite0, whose weights ship offline)")
    p.add_argument("--weights", default=None, help="weight set or .h5 path (default: imagenet)")
    p.add_argument(
        "--classes", type=int, default=None, help="classes of a weights file's classifier (default: read from the file)"
    )
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print the probabilities and the data config as JSON")
    p.add_argument("--run", default=None, help="a train run directory: its model, weights and class names")
    p.add_argument("--out", default=None, help="write predictions of folders/files to a .csv or .jsonl file")
    p.add_argument("--batch-size", type=int, default=None, help="images per batch with --out (default: 32)")
    p.add_argument("--resume", action="store_true", help="with --out: keep its rows and predict only the rest")
    p.add_argument("--runtime", default="keras", choices=("keras", "onnxruntime"), help="with --out (default: keras)")
    p.set_defaults(func=_predict)

    from .training.cli import add_evaluate_parser, add_noisy_student_parser, add_train_parser

    add_train_parser(sub)
    add_evaluate_parser(sub)
    add_noisy_student_parser(sub)

    from .export import add_export_parser

    add_export_parser(sub)

    c = sub.add_parser("convert", help="convert a PyTorch state dict or TensorFlow checkpoint to .h5")
    c.add_argument("source", help=".pth/.pt file, or a TensorFlow checkpoint prefix")
    c.add_argument("output", help="the .h5 file to write (atomically)")
    c.add_argument("--variant", required=True, help="e.g. b0, lite0, efficientnetv2-s")
    c.add_argument(
        "--layout",
        choices=["timm-tf", "timm", "torchvision", "efficientnet_pytorch", "tf"],
        help="source layout (detected where possible)",
    )
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=_convert)

    ls = sub.add_parser("list", help="list the models: sizes, crop, parameters and registered weights")
    ls.add_argument("--family", choices=("v1", "lite", "v2", "xception"), default=None)
    ls.add_argument("--pretrained", action="store_true", help="only models with registered weights")
    ls.set_defaults(func=_list)

    args = parser.parse_args(argv)
    _import_backend_quietly()
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:
        print(f"efficientnet {args.command}: error: {_cli_message(exc, args.command)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
