"""The ``efficientnet`` command: ``predict``, ``train``, ``evaluate``, ``convert`` and ``list``.

efficientnet predict [IMAGE ...] [--model lite0] [--weights imagenet] [--top 5] [--run RUN_DIR]
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
    import numpy as np

    from . import builder, config
    from .preprocessing import center_crop_and_resize, decode_predictions, load_image, sample_image_path

    if args.top < 1:
        raise ValueError(f"--top must be at least 1, got {args.top}.")
    class_names = None
    if args.run is not None:
        from .training.engine import load_run

        model, class_names, run = load_run(args.run)
        size = run["eval_size"]
    else:
        variant = config.get_variant(args.model)
        model = builder.EfficientNet(variant, weights=args.weights, input_shape=None)
        size = variant.default_size
    paths = args.images or [sample_image_path()]
    for path in paths:
        image = center_crop_and_resize(load_image(path), size).astype("float32")
        probs = np.asarray(model.predict(image[None], verbose=0))
        print(f"{path}:")
        if class_names is not None:
            for rank, index in enumerate(np.argsort(-probs[0])[: args.top], 1):
                print(f"  {rank}. {class_names[index]:<30s} {probs[0, index]:7.2%}")
            continue
        for rank, (wnid, label, p) in enumerate(decode_predictions(probs, top=args.top)[0], 1):
            print(f"  {rank}. {label:<30s} {p:7.2%}  ({wnid})")
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
    p.add_argument("--run", default=None, help="a train run directory: its model, weights and class names")
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
