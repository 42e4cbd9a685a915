"""Input preprocessing, evaluation crops and ImageNet label decoding.

Models built with ``include_preprocessing=True`` (the default, as in
keras.applications) take raw 0–255 RGB pixels and normalise inside the model;
:func:`preprocess_input` is then a pass-through. For models built with
``include_preprocessing=False`` (and efficientnet 1.1.1-style scripts),
``preprocess_input(x, mode=...)`` applies the normalisation the weights need.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

__all__ = [
    "MODES",
    "Normalisation",
    "preprocess_input",
    "center_crop_and_resize",
    "decode_predictions",
    "imagenet_labels",
    "load_image",
    "sample_image_path",
]


class Normalisation(NamedTuple):
    """``(pixels - mean) / std`` per RGB channel, in 0–255 pixel units."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def unit(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance on the 0–1 scale, as Keras' Normalization layer stores them."""
        mean = np.asarray(self.mean, "float32") / 255.0
        std = np.asarray(self.std, "float32") / 255.0
        return mean, std**2


MODES: Mapping[str, Normalisation | None] = MappingProxyType(
    {
        # ImageNet mean/std: V1 and V2-B* weights, torchvision, timm's native models.
        "torch": Normalisation((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
        # [-1, 1]: AdvProp and several TF releases.
        "tf": Normalisation((127.5,) * 3, (127.5,) * 3),
        # EfficientNet-Lite's (x - 127) / 128.
        "lite": Normalisation((127.0,) * 3, (128.0,) * 3),
        # EfficientNetV2-S/M/L/XL's (x - 128) / 128.
        "v2": Normalisation((128.0,) * 3, (128.0,) * 3),
        "none": None,
    }
)


def preprocess_input(x, mode: str | None = None, data_format: str | None = None):
    """Normalises a batch of raw 0–255 RGB images.

    Args:
        x: array-like of shape ``(..., H, W, 3)`` (or channels-first).
        mode: ``None`` (pass-through, as ``keras.applications.efficientnet``:
            the model normalises inside), ``"torch"``, ``"tf"``, ``"lite"``, ``"v2"``
            or ``"none"``.
        data_format: ``"channels_last"`` (default: Keras' setting) or ``"channels_first"``.

    Returns:
        A float32 NumPy array.
    """
    if mode is None or mode == "none":
        return np.asarray(x, dtype="float32") if not _is_tensor(x) else x
    if mode not in MODES:
        raise ValueError(f"Unknown preprocessing mode {mode!r}; choose one of {sorted(MODES)} or None.")
    norm = MODES[mode]
    x = np.asarray(x, dtype="float32")
    if data_format is None:
        import keras

        data_format = keras.config.image_data_format()
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"data_format must be 'channels_last' or 'channels_first' (or None), got {data_format!r}.")
    shape = (3,) if data_format == "channels_last" else (3, 1, 1)
    channels = x.shape[-1] if data_format == "channels_last" else x.shape[-3]
    if channels != 3:
        raise ValueError(
            f"preprocess_input(mode={mode!r}) needs 3 RGB channels, got {channels}; "
            "pass data_format='channels_first' for CHW images."
        )
    mean = np.reshape(np.asarray(norm.mean, "float32"), shape)
    std = np.reshape(np.asarray(norm.std, "float32"), shape)
    return (x - mean) / std


def _is_tensor(x) -> bool:
    return not isinstance(x, (np.ndarray, list, tuple, int, float))


_INTERPOLATION_ORDER = MappingProxyType({"nearest": 0, "bilinear": 1, "biquadratic": 2, "bicubic": 3})


def center_crop_and_resize(
    image: np.ndarray, image_size: int, crop_padding: int = 32, interpolation: str = "bicubic"
) -> np.ndarray:
    """The papers' evaluation crop: centre crop of ``size / (size + crop_padding)``, then resize.

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` array.
        image_size: side of the square output.
        crop_padding: 32 in the EfficientNet papers.
        interpolation: ``nearest``, ``bilinear``, ``biquadratic`` or ``bicubic``.

    Returns:
        ``(image_size, image_size[, C])`` float array in the input's value range.
    """
    from skimage.transform import resize

    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"Expected an (H, W) or (H, W, C) image, got shape {image.shape}.")
    if interpolation not in _INTERPOLATION_ORDER:
        raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATION_ORDER)}, got {interpolation!r}.")
    if isinstance(image_size, (bool, np.bool_)) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer (the output side in pixels), got {image_size!r}.")
    if isinstance(crop_padding, bool) or not isinstance(crop_padding, (int, float, np.number)) or crop_padding < 0:
        raise ValueError(
            f"crop_padding must be a number >= 0 (32 in the papers, 0 for no margin), got {crop_padding!r}."
        )
    h, w = image.shape[:2]
    if h < 1 or w < 1:
        raise ValueError(f"The image is empty (shape {image.shape}); check that it was read correctly.")
    crop = int(image_size / (image_size + crop_padding) * min(h, w))
    if crop < 1:
        raise ValueError(
            f"The image ({h}x{w}) is too small for a centre crop of {image_size}/({image_size}+{crop_padding}) of its "
            "shorter side; use a larger image or crop_padding=0."
        )
    top = (h - crop + 1) // 2
    left = (w - crop + 1) // 2
    cropped = image[top : top + crop, left : left + crop]
    return resize(
        cropped,
        (image_size, image_size),
        order=_INTERPOLATION_ORDER[interpolation],
        preserve_range=True,
        anti_aliasing=False,
    )


@lru_cache(maxsize=1)
def _class_index() -> tuple[tuple[str, str], ...]:
    text = resources.files("efficientnet.data").joinpath("imagenet_class_index.json").read_text()
    index = json.loads(text)
    return tuple(tuple(index[str(i)]) for i in range(len(index)))


def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet class names, in the order of the classifier's outputs."""
    return tuple(name for _, name in _class_index())


def decode_predictions(preds, top: int = 5) -> list[list[tuple[str, str, float]]]:
    """Top-``top`` ``(wordnet_id, label, probability)`` per row, like keras.applications.

    Works offline: the class index ships with the package.
    """
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise ValueError(
            f"decode_predictions expects a batch of ImageNet predictions of shape (samples, 1000), got {preds.shape}."
        )
    if isinstance(top, (bool, np.bool_)) or not isinstance(top, (int, np.integer)):
        raise ValueError(f"top must be a positive integer (how many classes per row), got {top!r}.")
    if top < 1:
        raise ValueError(f"top must be at least 1 (how many classes per row), got {top}; e.g. top=5.")
    index = _class_index()
    results = []
    for row in preds:
        order = np.argsort(row)[::-1][:top]
        results.append([(index[i][0], index[i][1], float(row[i])) for i in order])
    return results


def sample_image_path() -> str:
    """Path of the bundled sample photo (scikit-image's "chelsea", a tabby cat, public domain)."""
    return str(resources.files("efficientnet.data").joinpath("chelsea.jpg"))


def load_image(path: str) -> np.ndarray:
    """Reads an image file as an ``(H, W, 3)`` uint8 RGB array."""
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))
