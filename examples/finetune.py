"""Fine-tune EfficientNet-Lite0 on real, independent photos; compare with the plain Keras script and from scratch.

The data are the committed flower photos (``examples/data/flowers``: 5 classes of Flickr photos,
CC BY 2.0, split by photographer so no held-out photo shares a photographer with a training
photo; see its README). Three runs, each given its own best fair set-up, same network
(``efficientnet-lite0``), image size, batch size, number of epochs and seed:

1. ``efficientnet.training.train(..., recipe="finetune")`` from the ImageNet weights that ship
   with the package;
2. the ten-line script a Keras user writes by hand (:func:`keras_script`):
   ``image_dataset_from_directory``, the same backbone with ``weights="imagenet"``,
   ``Dropout(0.2)`` + ``Dense``, Adam 1e-4, horizontal flips, the whole image resized, BN training;
3. ``recipe="scratch"`` from random initialisation: a recipe fit for training from scratch (a
   higher learning rate with warm-up, BN momentum 0.9 so the moving statistics follow a short
   run, BN trained) rather than the fine-tuning recipe with ``weights=None``.

Held-out top-1 and training accuracy after every epoch are printed as a table, written as JSON
(``--json``) and plotted (``--plot``).

    python examples/finetune.py [--data DIR] [--json finetune.json] [--plot finetune.png] [--quick]
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
RUNS = (
    ("finetune", "efficientnet train, finetune recipe (ImageNet weights)"),
    ("keras_script", "hand-written Keras script (ImageNet weights)"),
    ("scratch", "efficientnet train, scratch recipe (random init)"),
)


def keras_script(train_dir, test_dir, *, image_size: int, batch_size: int, epochs: int, seed: int = 0) -> dict:
    """The obvious hand-written Keras fine-tuning script, as a user writes it; returns Keras' history."""
    import keras

    import efficientnet

    keras.utils.set_random_seed(seed)
    load = dict(image_size=(image_size, image_size), batch_size=batch_size, label_mode="categorical")
    train = keras.utils.image_dataset_from_directory(train_dir, seed=seed, verbose=False, **load)
    test = keras.utils.image_dataset_from_directory(test_dir, shuffle=False, verbose=False, **load)
    classes = len(train.class_names)
    flip = keras.layers.RandomFlip("horizontal", seed=seed)
    train = train.map(lambda x, y: (flip(x, training=True), y))
    base = efficientnet.EfficientNetLite0(
        include_top=False, weights="imagenet", input_shape=(image_size, image_size, 3), pooling="avg"
    )
    outputs = keras.layers.Dense(classes, activation="softmax")(keras.layers.Dropout(0.2)(base.output))
    model = keras.Model(base.input, outputs)
    model.compile(keras.optimizers.Adam(1e-4), "categorical_crossentropy", metrics=["accuracy"])
    return model.fit(train, epochs=epochs, validation_data=test, verbose=0).history


def compare(
    data_dir: str | os.PathLike,
    *,
    epochs: int = 5,
    image_size: int = 128,
    batch_size: int = 16,
    seed: int = 0,
    runs: tuple[str, ...] = tuple(name for name, _ in RUNS),
    verbose: int = 0,
) -> dict:
    """Trains each of ``runs`` on ``data_dir/train``, scoring ``data_dir/test`` after every epoch."""
    from efficientnet.training import train

    data_dir = Path(data_dir)
    train_dir, test_dir = str(data_dir / "train"), str(data_dir / "test")
    results = {}
    for name in runs:
        start = time.perf_counter()
        if name == "keras_script":
            history = keras_script(
                train_dir, test_dir, image_size=image_size, batch_size=batch_size, epochs=epochs, seed=seed
            )
        else:
            history = train(
                MODEL,
                train_dir,
                recipe=name,
                val_data=test_dir,
                epochs=epochs,
                batch_size=batch_size,
                image_size=image_size,
                seed=seed,
                deterministic=True,
                verbose=verbose,
            ).history
        results[name] = {
            "val_accuracy": [round(float(v), 4) for v in history["val_accuracy"]],
            "train_accuracy": [round(float(v), 4) for v in history["accuracy"]],
            "val_loss": [round(float(v), 4) for v in history["val_loss"]],
            "seconds": round(time.perf_counter() - start, 1),
        }
    return {
        "model": MODEL,
        "epochs": epochs,
        "image_size": image_size,
        "batch_size": batch_size,
        "seed": seed,
        "runs": results,
    }


def describe(data_dir: str | os.PathLike) -> dict:
    """Classes and image counts of the photo set."""
    data_dir = Path(data_dir)
    classes = sorted(p.name for p in (data_dir / "train").iterdir() if p.is_dir())
    counts = {
        split: {c: len(list((data_dir / split / c).glob("*.jpg"))) for c in classes} for split in ("train", "test")
    }
    return {"path": str(data_dir), "classes": classes, "num_classes": len(classes), "counts": counts}


def table(results: dict) -> str:
    """Held-out top-1 (training accuracy in brackets) per epoch of every run, as a Markdown table."""
    names = [name for name, _ in RUNS if name in results["runs"]]
    labels = dict(RUNS)
    lines = ["| epoch | " + " | ".join(labels[n] for n in names) + " |", "|---:" + "|---:" * len(names) + "|"]
    for e in range(results["epochs"]):
        cells = [
            f"{results['runs'][n]['val_accuracy'][e]:.1%} ({results['runs'][n]['train_accuracy'][e]:.1%})"
            for n in names
        ]
        lines.append(f"| {e + 1} | " + " | ".join(cells) + " |")
    lines.append("| seconds | " + " | ".join(f"{results['runs'][n]['seconds']:.0f}" for n in names) + " |")
    return "\n".join(lines)


def plot(results: dict, path: str | os.PathLike | None = None):
    """Held-out top-1 per epoch of every run; saved to ``path`` if given. Returns the figure."""
    import matplotlib

    if path is not None and "MPLBACKEND" not in os.environ:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for (name, label), style in zip(RUNS, ("o-", "^-", "s--")):
        if name in results["runs"]:
            acc = results["runs"][name]["val_accuracy"]
            ax.plot(range(1, len(acc) + 1), acc, style, label=label)
    if "dataset" in results:
        ax.axhline(1 / results["dataset"]["num_classes"], color="grey", lw=0.8, ls=":", label="chance")
    ax.set_xlabel("epoch")
    ax.set_ylabel("held-out top-1")
    ax.set_ylim(0, 1.02)
    ax.set_xticks(range(1, results["epochs"] + 1))
    ax.set_title(f"EfficientNet-Lite0 on flower photos, {results['image_size']} px")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="a photo set with train/ and test/ (default: the committed flower photos)")
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--plot", help="save the held-out accuracy plot to this PNG")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--runs", nargs="+", choices=[n for n, _ in RUNS], default=[n for n, _ in RUNS])
    parser.add_argument("--quick", action="store_true", help="a much smaller run (a smoke test, not the comparison)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.image_size = 1, 64

    start = time.perf_counter()
    data_dir = Path(args.data) if args.data else photo_set_dir()
    results = compare(
        data_dir,
        epochs=args.epochs,
        image_size=args.image_size,
        batch_size=args.batch_size,
        seed=args.seed,
        runs=tuple(args.runs),
    )
    results["dataset"] = describe(data_dir)
    results["seconds"] = round(time.perf_counter() - start, 1)
    counts = results["dataset"]["counts"]
    print(
        f"{results['dataset']['num_classes']} classes, {sum(counts['train'].values())} training and "
        f"{sum(counts['test'].values())} held-out photos; held-out top-1 (training accuracy):"
    )
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.plot:
        plot(results, args.plot)
    return results


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
