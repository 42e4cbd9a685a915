"""V2 progressive learning against training at the last stage's size only, on real photos.

What users report from practice: "progressive learning is slow and gains little; training directly
at the last stage's size with strong regularisation does as well". This example measures it on the
flower photos (``examples/data/flowers``, independent photos split by photographer). No V2 weights
can be fetched here and a V2 from scratch does not leave chance level in a run this CPU can afford
(``efficientnetv2-b0``, 8 epochs: 19.5 % and 25.5 % held-out top-1 for the two set-ups below, chance
20 %), so the model is ``efficientnet-lite0`` fine-tuned from the ImageNet weights that ship with the
package: the same recipe (``finetune`` with the reference RandAugment), seed, batch size and number
of epochs, twice:

1. progressive: 4 stages, image size, RandAugment magnitude and dropout growing linearly
   (the V2 paper's rule, scaled to this CPU: 64 → 128 px, magnitude 5 → 15, dropout 0.1 → 0.3);
2. last stage only: every epoch at 128 px, magnitude 15, dropout 0.3.

Both evaluate at 128 px. Wall time and held-out top-1 are printed side by side and written as
JSON (``--json``).

    python examples/progressive.py [--data DIR] [--epochs 8] [--json progressive.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from photos import photo_set_dir  # noqa: E402

MODEL = "efficientnet-lite0"


def schedule(first_size: int, last_size: int, magnitudes=(5.0, 15.0), dropouts=(0.1, 0.3), stages: int = 4):
    from efficientnet.training.progressive import ProgressiveSchedule

    return ProgressiveSchedule(
        size=(first_size, last_size),
        randaugment=magnitudes,
        mixup=(0.0, 0.0),
        dropout=dropouts,
        eval_size=last_size,
        num_stages=stages,
    )


def compare(
    data_dir: str | os.PathLike,
    *,
    epochs: int = 8,
    first_size: int = 64,
    last_size: int = 128,
    batch_size: int = 16,
    seed: int = 0,
    verbose: int = 0,
) -> dict:
    """Progressive vs last-stage-only training of the same model on ``data_dir/train``, scored on ``test``."""
    from efficientnet.training import train

    data_dir = Path(data_dir)
    plan = schedule(first_size, last_size)
    last = plan.stages(epochs)[-1]
    common = dict(
        recipe="finetune",
        augmentation="randaugment",
        val_data=str(data_dir / "test"),
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        deterministic=True,
        verbose=verbose,
    )
    runs = {}
    for name, kwargs in (
        ("progressive", dict(progressive=plan, image_size=last_size)),
        (
            "last_stage_only",
            dict(
                image_size=last.image_size,
                randaugment_magnitude=last.randaugment_magnitude,
                dropout_rate=last.dropout_rate,
            ),
        ),
    ):
        start = time.perf_counter()
        history = train(MODEL, str(data_dir / "train"), **common, **kwargs).history
        runs[name] = {
            "val_accuracy": [round(float(v), 4) for v in history["val_accuracy"]],
            "train_accuracy": [round(float(v), 4) for v in history["accuracy"]],
            "seconds": round(time.perf_counter() - start, 1),
        }
    return {
        "model": MODEL,
        "weights": "imagenet",
        "recipe": "finetune + randaugment",
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "stages": [
            {
                "epochs": [s.first_epoch, s.end_epoch],
                "size": s.image_size,
                "magnitude": s.randaugment_magnitude,
                "dropout": s.dropout_rate,
            }
            for s in plan.stages(epochs)
        ],  # fmt: skip
        "runs": runs,
    }


def table(results: dict) -> str:
    lines = ["| | held-out top-1 (last epoch) | best epoch | train accuracy | wall time |", "|---|---:|---:|---:|---:|"]
    for name, run in results["runs"].items():
        lines.append(
            f"| {name.replace('_', ' ')} | {run['val_accuracy'][-1]:.1%} | {max(run['val_accuracy']):.1%} "
            f"| {run['train_accuracy'][-1]:.1%} | {run['seconds']:.0f} s |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="a photo set with train/ and test/ (default: the committed flower photos)")
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--first-size", type=int, default=64)
    parser.add_argument("--last-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a much smaller run (a smoke test, not the comparison)")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.first_size, args.last_size = 4, 32, 48
    data_dir = Path(args.data) if args.data else photo_set_dir()
    results = compare(
        data_dir,
        epochs=args.epochs,
        first_size=args.first_size,
        last_size=args.last_size,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    print(f"{MODEL} from ImageNet weights, {args.epochs} epochs, batch {args.batch_size}:")
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
