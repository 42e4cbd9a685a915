"""Fine-tune EfficientNet-Lite0 on real photos, and train the same model from scratch for comparison.

The data are photos that scikit-image ships (they load offline). Each photo is one class;
square crops of varied size from the left 60 % of a photo make its training images, crops
from the right 40 % its held-out images, so no held-out pixel is ever seen in training.
The crops are written as an image folder (``train/<class>/*.jpg`` and ``val/<class>/*.jpg``).

The same network, recipe (``finetune``: AdamW, cosine decay, flip + random-resized crop),
image size, batch size, seed and number of steps is trained twice: once from the ImageNet
weights that ship with the package (``weights="imagenet"``, offline), once from random
initialisation (``weights=None``). The held-out top-1 after every epoch is printed as a
table, written as JSON (``--json``) and plotted (``--plot``).

    python examples/finetune.py DATA_DIR [--json finetune.json] [--plot finetune.png] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

# (class name, skimage.data loader name); grey photos are repeated into RGB.
PHOTOS = (
    ("astronaut", "astronaut"),
    ("cat", "chelsea"),
    ("coffee", "coffee"),
    ("rocket", "rocket"),
    ("motorcycle", "stereo_motorcycle"),
    ("tissue", "immunohistochemistry"),
    ("galaxies", "hubble_deep_field"),
    ("cameraman", "camera"),
    ("coins", "coins"),
    ("moon", "moon"),
    ("grass", "grass"),
    ("gravel", "gravel"),
    ("brick", "brick"),
    ("clock", "clock"),
)
TRAIN_FRACTION = 0.6  # of each photo's width: training crops left of it, held-out crops right of it
CROP_RANGE = (0.25, 0.6)  # crop side as a fraction of the held-out region's shorter side
SAVE_SIZE = 128  # crops are resized to this many pixels square and saved as JPEG


def load_photo(loader: str) -> np.ndarray:
    """A ``skimage.data`` photo as ``(H, W, 3)`` uint8 RGB (grey repeated, alpha dropped)."""
    import skimage.data

    image = getattr(skimage.data, loader)()
    if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
        image = image[0]
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return np.ascontiguousarray(image[..., :3]).astype("uint8")


def _crops(image: np.ndarray, x0: int, x1: int, count: int, side_range: tuple[int, int], rng) -> list[np.ndarray]:
    """``count`` random square crops lying inside columns ``[x0, x1)`` of ``image``."""
    height = image.shape[0]
    out = []
    for _ in range(count):
        side = int(rng.integers(side_range[0], side_range[1] + 1))
        y = int(rng.integers(0, height - side + 1))
        x = int(rng.integers(x0, x1 - side + 1))
        out.append(image[y : y + side, x : x + side])
    return out


def make_dataset(
    root: str | os.PathLike,
    *,
    classes: int = len(PHOTOS),
    train_per_class: int = 24,
    val_per_class: int = 16,
    crop_range: tuple[float, float] = CROP_RANGE,
    seed: int = 0,
) -> dict:
    """Writes ``root/train/<class>/*.jpg`` and ``root/val/<class>/*.jpg``; returns a description."""
    from PIL import Image

    root = Path(root)
    rng = np.random.default_rng(seed)
    described = []
    for name, loader in PHOTOS[:classes]:
        image = load_photo(loader)
        height, width = image.shape[:2]
        split = int(round(width * TRAIN_FRACTION))
        # Same side range in both splits, bounded by the smaller (held-out) region.
        limit = min(height, width - split)
        sides = (max(16, int(crop_range[0] * limit)), int(crop_range[1] * limit))
        for part, (x0, x1), count in (("train", (0, split), train_per_class), ("val", (split, width), val_per_class)):
            folder = root / part / name
            folder.mkdir(parents=True, exist_ok=True)
            for i, crop in enumerate(_crops(image, x0, x1, count, sides, rng)):
                resized = Image.fromarray(crop).resize((SAVE_SIZE, SAVE_SIZE), Image.BICUBIC)
                resized.save(folder / f"{name}_{i:03d}.jpg", quality=90)
        described.append(
            {"class": name, "photo": f"skimage.data.{loader}", "size": [height, width], "crop_sides": list(sides)}
        )
    return {
        "classes": described,
        "train_per_class": train_per_class,
        "val_per_class": val_per_class,
        "train_columns": f"left {TRAIN_FRACTION:.0%} of the width",
        "val_columns": f"right {1 - TRAIN_FRACTION:.0%} of the width",
        "saved_size": SAVE_SIZE,
    }


def compare(
    data_dir: str | os.PathLike,
    *,
    epochs: int = 5,
    image_size: int = 96,
    batch_size: int = 16,
    learning_rate: float | None = None,
    seed: int = 0,
    verbose: int = 0,
) -> dict:
    """Trains ``efficientnet-lite0`` from ImageNet weights and from scratch; returns the per-epoch figures."""
    from efficientnet.training import train

    data_dir = Path(data_dir)
    overrides = {} if learning_rate is None else {"learning_rate": learning_rate}
    runs = {}
    for label, weights in (("pretrained", "imagenet"), ("scratch", None)):
        start = time.perf_counter()
        result = train(
            "efficientnet-lite0",
            str(data_dir / "train"),
            recipe="finetune",
            val_data=str(data_dir / "val"),
            weights=weights,
            epochs=epochs,
            batch_size=batch_size,
            image_size=image_size,
            seed=seed,
            deterministic=True,
            verbose=verbose,
            **overrides,
        )
        runs[label] = {
            "weights": weights,
            "val_accuracy": [round(v, 4) for v in result.history["val_accuracy"]],
            "val_loss": [round(v, 4) for v in result.history["val_loss"]],
            "train_accuracy": [round(v, 4) for v in result.history["accuracy"]],
            "seconds": round(time.perf_counter() - start, 1),
        }
    return {
        "model": "efficientnet-lite0",
        "recipe": "finetune",
        "epochs": epochs,
        "image_size": image_size,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "seed": seed,
        "runs": runs,
        "margin": round(runs["pretrained"]["val_accuracy"][-1] - runs["scratch"]["val_accuracy"][-1], 4),
    }


def table(results: dict) -> str:
    """The per-epoch held-out top-1 of both runs as a Markdown table."""
    pre, scr = results["runs"]["pretrained"]["val_accuracy"], results["runs"]["scratch"]["val_accuracy"]
    lines = ["| epoch | ImageNet weights | from scratch |", "|---:|---:|---:|"]
    lines += [f"| {e + 1} | {p:.1%} | {s:.1%} |" for e, (p, s) in enumerate(zip(pre, scr))]
    return "\n".join(lines)


def plot(results: dict, path: str | os.PathLike | None = None):
    """Held-out top-1 per epoch for both runs; saved to ``path`` if given. Returns the figure."""
    import matplotlib

    if path is not None and "MPLBACKEND" not in os.environ:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    chance = 1 / results["dataset"]["num_classes"] if "dataset" in results else None
    for label, style in (("pretrained", "o-"), ("scratch", "s--")):
        acc = results["runs"][label]["val_accuracy"]
        ax.plot(
            range(1, len(acc) + 1), acc, style, label="ImageNet weights" if label == "pretrained" else "from scratch"
        )
    if chance:
        ax.axhline(chance, color="grey", lw=0.8, ls=":", label="chance")
    ax.set_xlabel("epoch")
    ax.set_ylabel("held-out top-1")
    ax.set_ylim(0, 1.02)
    ax.set_xticks(range(1, results["epochs"] + 1))
    ax.set_title(f"EfficientNet-Lite0, {results['image_size']} px, finetune recipe")
    ax.legend(loc="center right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", help="where to write the image folder (train/ and val/)")
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--plot", help="save the held-out accuracy plot to this PNG")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--classes", type=int, default=len(PHOTOS))
    parser.add_argument("--train-per-class", type=int, default=24)
    parser.add_argument("--val-per-class", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=None, help="override the recipe's 1e-4")
    parser.add_argument("--quick", action="store_true", help="a much smaller run (a smoke test, not the comparison)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.classes, args.train_per_class, args.val_per_class = 2, 4, 8, 4

    start = time.perf_counter()
    if Path(args.data_dir).exists() and any(Path(args.data_dir).iterdir()):
        parser.error(f"{args.data_dir} is not empty; give a new or empty directory")
    dataset = make_dataset(
        args.data_dir,
        classes=args.classes,
        train_per_class=args.train_per_class,
        val_per_class=args.val_per_class,
        seed=args.seed,
    )
    dataset["num_classes"] = args.classes
    results = compare(
        args.data_dir,
        epochs=args.epochs,
        image_size=args.image_size,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
    )
    results["dataset"] = dataset
    results["seconds"] = round(time.perf_counter() - start, 1)
    print(
        f"{args.classes} photos as classes, {args.train_per_class} training / {args.val_per_class} held-out crops each"
    )
    print(table(results))
    print(f"pretrained - scratch after {args.epochs} epochs: {results['margin']:+.1%} ({results['seconds']:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.plot:
        plot(results, args.plot)
    return results


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
