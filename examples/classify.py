"""Classify a photo with EfficientNet-Lite0's ImageNet weights (shipped, offline) and plot the top-5.

python examples/classify.py [IMAGE] [--out top5.png]
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import efficientnet  # noqa: E402
from efficientnet.preprocessing import (  # noqa: E402
    center_crop_and_resize,
    decode_predictions,
    load_image,
    sample_image_path,
)


def classify(path: str, top: int = 5) -> tuple[np.ndarray, list[tuple[str, str, float]]]:
    model = efficientnet.EfficientNetLite0(weights="imagenet")
    image = center_crop_and_resize(load_image(path), 224)
    probs = model.predict(image[None].astype("float32"), verbose=0)
    return image, decode_predictions(probs, top=top)[0]


def plot(image: np.ndarray, predictions, out: str) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.imshow(image.astype("uint8"))
    left.set_axis_off()
    labels = [label for _, label, _ in predictions][::-1]
    right.barh(labels, [p for _, _, p in predictions][::-1], color="tab:blue")
    right.set_xlim(0, 1)
    right.set_xlabel("probability")
    right.set_title("EfficientNet-Lite0 top-5")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("image", nargs="?", default=sample_image_path())
    parser.add_argument("--out", default="top5.png")
    args = parser.parse_args()
    image, predictions = classify(args.image)
    for _, label, p in predictions:
        print(f"{label:<30s} {p:.3f}")
    plot(image, predictions, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
