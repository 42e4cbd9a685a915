"""One factor at a time: what each setting of the ``finetune`` recipe buys on real photos.

Every row trains ``efficientnet-lite0`` from the shipped ImageNet weights on the committed flower
photos (``examples/data/flowers``; independent photos, split by photographer) with the
``finetune`` recipe and ONE setting changed, same seed, image size, batch size and epochs; the
last row is the hand-written Keras script of ``examples/finetune.py`` (``keras_script``), run in
the same process, for reference. Prints held-out top-1 and training accuracy of the last epoch.

    python bench/finetune_ablation.py [--epochs 5] [--image-size 128] [--batch-size 16] [--json out.json]
    python bench/finetune_ablation.py --rows default freeze_bn=False   # a subset
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

# (row name, recipe overrides); the defaults are the finetune recipe's.
ROWS: tuple[tuple[str, dict], ...] = (
    ("default", {}),
    ("freeze_bn=False", {"freeze_bn": False}),
    ("random_crop=False", {"random_crop": False}),
    ("crop_area_min=0.25", {"crop_area_min": 0.25}),
    ("crop_area_min=0.5", {"crop_area_min": 0.5}),
    ("eval crop 1.0 (crop_padding=0)", {"crop_padding": 0}),
    ("schedule=constant", {"schedule": "constant"}),
    ("zero_head=False", {"zero_head": False}),
    ("label_smoothing=0", {"label_smoothing": 0.0}),
    ("freeze_bn=False, random_crop=False", {"freeze_bn": False, "random_crop": False}),
    (
        "as the Keras script: BN trained, no crop, no smoothing, constant lr, no decay, reference head",
        {
            "freeze_bn": False,
            "random_crop": False,
            "label_smoothing": 0.0,
            "schedule": "constant",
            "decoupled_weight_decay": 0.0,
            "zero_head": False,
        },
    ),
)


def run_row(overrides: dict, data: Path, *, epochs: int, image_size: int, batch_size: int, seed: int) -> dict:
    from efficientnet.training import train

    start = time.perf_counter()
    history = train(
        "efficientnet-lite0",
        str(data / "train"),
        recipe="finetune",
        val_data=str(data / "test"),
        epochs=epochs,
        image_size=image_size,
        batch_size=batch_size,
        seed=seed,
        deterministic=True,
        verbose=0,
        **overrides,
    ).history
    return {
        "val_accuracy": history["val_accuracy"],
        "train_accuracy": history["accuracy"],
        "seconds": time.perf_counter() - start,
    }


def main(argv: list[str] | None = None) -> dict:
    from finetune import keras_script
    from photos import photo_set_dir

    names = [name for name, _ in ROWS] + ["keras_script"]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", nargs="+", choices=names, default=names)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", help="a photo set with train/ and test/ (default: the committed flower photos)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    data = Path(args.data) if args.data else photo_set_dir()
    common = dict(epochs=args.epochs, image_size=args.image_size, batch_size=args.batch_size, seed=args.seed)
    results = {}
    print(
        f"| finetune recipe, one change | held-out top-1 | train accuracy | seconds |  ({args.epochs} epochs, "
        f"{args.image_size} px, batch {args.batch_size}, seed {args.seed})"
    )
    print("|---|---:|---:|---:|")
    for name in args.rows:
        if name == "keras_script":
            start = time.perf_counter()
            history = keras_script(str(data / "train"), str(data / "test"), **common)
            row = {
                "val_accuracy": history["val_accuracy"],
                "train_accuracy": history["accuracy"],
                "seconds": time.perf_counter() - start,
            }
        else:
            row = run_row(dict(ROWS)[name], data, **common)
        results[name] = row
        print(
            f"| {name} | {row['val_accuracy'][-1]:.1%} | {row['train_accuracy'][-1]:.1%} | {row['seconds']:.0f} |",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": common, "rows": results}, indent=1) + "\n")
    return results


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
