"""Train DeepLabV3+ with an EfficientNet-Lite0 backbone on a synthetic shapes data set.

The example makes its own data: textured backgrounds with random circles,
rectangles and triangles (classes 1-3; 0 is background). The backbone starts
from the ImageNet weights that ship with the package, so it runs offline.
It prints the held-out mean IoU after every epoch and saves a figure with
input, ground truth and prediction side by side.

    python examples/train_deeplab.py [--epochs 6] [--train 480] [--out deeplab_shapes.png]
"""

from __future__ import annotations

import argparse

import keras
import numpy as np

CLASSES = ("background", "circle", "rectangle", "triangle")


def make_shapes(count: int, size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` RGB images (0-255 float32) with 1-3 shapes each and their integer masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    images = np.empty((count, size, size, 3), "float32")
    masks = np.zeros((count, size, size), "int32")
    for n in range(count):
        base = rng.uniform(40, 200, 3)
        noise = rng.normal(0, 18, (size, size, 3))
        stripes = 20 * np.sin(xx / rng.uniform(2, 6) + yy / rng.uniform(2, 6))[..., None]
        image = base + noise + stripes
        for _ in range(rng.integers(1, 4)):
            kind = int(rng.integers(1, 4))
            cy, cx = rng.uniform(size * 0.2, size * 0.8, 2)
            r = rng.uniform(size * 0.1, size * 0.22)
            if kind == 1:
                region = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
            elif kind == 2:
                h, w = r * rng.uniform(0.6, 1.4), r * rng.uniform(0.6, 1.4)
                region = (np.abs(yy - cy) <= h) & (np.abs(xx - cx) <= w)
            else:
                region = (yy - cy >= -r) & (np.abs(xx - cx) <= (yy - cy + r) / 2) & (yy - cy <= r)
            image[region] = rng.uniform(0, 255, 3) + rng.normal(0, 8, (int(region.sum()), 3))
            masks[n][region] = kind
        images[n] = np.clip(image, 0, 255)
    return images, masks


def mean_iou(y_true: np.ndarray, y_pred: np.ndarray, classes: int = len(CLASSES)) -> float:
    """Mean over classes present in either mask of intersection over union."""
    ious = []
    for c in range(classes):
        t, p = y_true == c, y_pred == c
        union = np.logical_or(t, p).sum()
        if union:
            ious.append(np.logical_and(t, p).sum() / union)
    return float(np.mean(ious))


def build_model(size: int = 64, backbone_weights: str | None = "imagenet") -> keras.Model:
    from efficientnet.segmentation import DeepLabV3Plus

    return DeepLabV3Plus(
        "lite0",
        classes=len(CLASSES),
        output_stride=16,
        input_shape=(size, size, 3),
        backbone_weights=backbone_weights,
        aspp_filters=128,
        decoder_filters=128,
    )


def train(epochs: int = 6, train_count: int = 480, val_count: int = 96, size: int = 64, seed: int = 0, verbose=True):
    """Trains and returns ``(model, per-epoch held-out mean IoU, (val_x, val_y))``."""
    keras.utils.set_random_seed(seed)
    x_train, y_train = make_shapes(train_count, size, seed)
    x_val, y_val = make_shapes(val_count, size, seed + 1)
    model = build_model(size)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(),
    )
    history = []
    for epoch in range(epochs):
        model.fit(x_train, y_train, batch_size=16, epochs=1, verbose=0, shuffle=True)
        pred = np.argmax(model.predict(x_val, batch_size=32, verbose=0), axis=-1)
        history.append(mean_iou(y_val, pred))
        if verbose:
            print(f"epoch {epoch + 1}: held-out mean IoU {history[-1]:.3f}", flush=True)
    return model, history, (x_val, y_val)


def save_figure(model: keras.Model, x_val: np.ndarray, y_val: np.ndarray, out: str, rows: int = 3) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pred = np.argmax(model.predict(x_val[:rows], verbose=0), axis=-1)
    fig, axes = plt.subplots(rows, 3, figsize=(7, 2.4 * rows))
    for i in range(rows):
        for ax, img, title in zip(
            axes[i], (x_val[i].astype("uint8"), y_val[i], pred[i]), ("input", "ground truth", "prediction")
        ):
            ax.imshow(img, vmin=0, vmax=len(CLASSES) - 1, cmap=None if img.ndim == 3 else "viridis")
            ax.set_title(title, fontsize=9)
            ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train", type=int, default=480)
    parser.add_argument("--out", default="deeplab_shapes.png")
    args = parser.parse_args()
    model, history, (x_val, y_val) = train(args.epochs, args.train)
    save_figure(model, x_val, y_val, args.out)
    print(f"final held-out mean IoU {history[-1]:.3f}; wrote {args.out}")


if __name__ == "__main__":
    main()
