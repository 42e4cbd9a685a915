"""Test helpers: seeded randomisation of BN statistics, inputs, eager predictions."""

from __future__ import annotations

import keras
import numpy as np


def randomize_statistics(model: keras.Model, seed: int = 0) -> None:
    """Gives every BatchNormalization non-trivial statistics so that parity tests can fail."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            shapes = [w.shape for w in layer.weights]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, shapes[0]),
                    rng.normal(0, 0.1, shapes[1]),
                    rng.normal(0, 0.1, shapes[2]),
                    rng.uniform(0.5, 1.5, shapes[3]),
                ]
            )
        elif isinstance(layer, keras.layers.Dense):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel * 30.0, rng.normal(0, 0.5, bias.shape)])


def images(batch: int = 2, size: int = 224, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (batch, size, size, 3)).astype("float32")


def predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=False))


def import_timm():
    """timm, with the workaround for PyPI's CUDA torchvision beside the CPU torch (see shared/README)."""
    import sys
    import types

    import pytest

    pytest.importorskip("torch")
    try:
        import torchvision  # noqa: F401
    except RuntimeError:
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
    return pytest.importorskip("timm")


def randomize_torch_statistics(module, seed: int = 0):
    """Non-trivial BN statistics and affine parameters for a PyTorch model, in eval mode."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1, generator=gen)
            m.running_var.uniform_(0.5, 1.5, generator=gen)
            m.weight.data.uniform_(0.5, 1.5, generator=gen)
            m.bias.data.normal_(0, 0.1, generator=gen)
    return module.eval()


def weights_snapshot(model: keras.Model) -> list[np.ndarray]:
    return [np.array(w) for w in model.get_weights()]


def assert_unchanged(model: keras.Model, snapshot: list[np.ndarray]) -> None:
    for before, after in zip(snapshot, model.get_weights()):
        np.testing.assert_array_equal(before, after)


def make_image_folder(root, classes=("cat", "coffee", "rocket"), per_class: int = 8, seed: int = 0) -> str:
    """An image folder of real photos: random square crops of scikit-image's photos, JPEG and PNG."""
    import os

    import skimage.data
    from PIL import Image

    photos = {"cat": "chelsea", "coffee": "coffee", "rocket": "rocket", "astronaut": "astronaut", "horse": "horse"}
    rng = np.random.default_rng(seed)
    for cls in classes:
        image = getattr(skimage.data, photos.get(cls, cls))()
        if image.ndim == 2:
            image = np.stack([image] * 3, -1)
        os.makedirs(os.path.join(root, cls), exist_ok=True)
        h, w = image.shape[:2]
        for i in range(per_class):
            s = int(rng.integers(min(h, w) // 3, min(h, w) // 2))
            y, x = int(rng.integers(0, h - s)), int(rng.integers(0, w - s))
            ext = "png" if i % 2 else "jpg"
            Image.fromarray(image[y : y + s, x : x + s, :3]).save(os.path.join(root, cls, f"{i}.{ext}"))
    return str(root)


def photo_set(tmp_path):
    """The examples' flower photos and ``True``, or a small stand-in folder of scikit-image crops and ``False``.

    The flower set is not committed (examples/data/README.md says where it comes from); where
    ``photo_set_dir()`` does not find it the examples can still be run on the stand-in, which checks
    their pipeline but not their figures.
    """
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from photos import photo_set_dir

    try:
        return photo_set_dir(), True
    except FileNotFoundError:
        classes = ("cat", "coffee", "rocket")
        make_image_folder(Path(tmp_path) / "stand_in" / "train", classes, per_class=16, seed=0)
        make_image_folder(Path(tmp_path) / "stand_in" / "test", classes, per_class=6, seed=1)
        return Path(tmp_path) / "stand_in", False
