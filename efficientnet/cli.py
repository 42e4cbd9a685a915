"""The ``efficientnet`` command: ``predict``, ``train``, ``evaluate``, ``convert`` and ``list``.

efficientnet predict [IMAGE ...] [--model lite0] [--weights imagenet] [--top 5] [--run RUN_DIR] [--json]
efficientnet train DATA_DIR --model efficientnet-lite0 --out RUN_DIR  (see ``efficientnet train -h``)
efficientnet evaluate DATA_DIR --run RUN_DIR [--json]
efficientnet export MODEL_OR_WEIGHTS OUT --format onnx [--model VARIANT]
efficientnet noisy-student LABELED_DIR UNLABELED_DIR --teacher lite0 --student lite1 --iterations 2 --out RUN_DIR
efficientnet convert SOURCE OUTPUT.h5 --variant lite0 [--layout efficientnet_pytorch]
efficientnet list
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _predict(args: argparse.Namespace) -> int:
    import json

    import numpy as np
    import tensorflow as tf

    from . import builder
    from .preprocessing import data_config, decode_predictions, sample_image_path
    from .training.data import decode_image

    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}.")
    class_names = None
    if args.run is not None:
        from .training.engine import load_run, run_data_config

        model, class_names, run = load_run(args.run)
        config = run_data_config(run)
    else:
        config = data_config(args.model, args.weights)
        model = builder.EfficientNet(args.model, weights=args.weights, input_shape=None)
    records = []
    for path in args.images or [sample_image_path()]:
        # The evaluation pipeline's decoder and crop: the model sees what `evaluate` gives it.
        image = decode_image(tf.io.read_file(path)).numpy()
        probs = np.asarray(model.predict(config.eval_transform(image)[None], verbose=0))[0]
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="efficientnet", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="print the top ImageNet labels of images")
    p.add_argument("images", nargs="*", help="image files (default: the bundled sample photo)")
    p.add_argument("--model", default="lite0", help="variant name (default: lite0, whose weights ship offline)")
    p.add_argument("--weights", default="imagenet", help="weight set or .h5 path (default: imagenet)")
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--run", default=None, help="a train run directory: its model, weights, classes and data config")
    p.add_argument("--json", action="store_true", help="print the probabilities and the data config as JSON")
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
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:
        print(f"efficientnet {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
