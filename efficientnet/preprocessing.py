"""Input preprocessing, evaluation crops, the data config of every weight set and ImageNet label decoding.

:func:`data_config` is the one record of what a model's weights expect of their
input (normalisation, training and evaluation size, evaluation crop,
interpolation, padding style, BN epsilon): the registry, ``efficientnet
predict``, ``evaluate``, the training pipeline's evaluation crop, training runs'
``run.json`` and the int8 calibration of ``export`` all read it from here.

Models built with ``include_preprocessing=True`` (the default, as in
keras.applications) take raw 0–255 RGB pixels and normalise inside the model;
:func:`preprocess_input` is then a pass-through. For models built with
``include_preprocessing=False`` (and efficientnet 1.1.1-style scripts),
``preprocess_input(x, mode=...)`` applies the normalisation the weights need.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from functools import cache, lru_cache
from importlib import resources
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

__all__ = [
    "CROP_PADDING",
    "IMAGE_EXTENSIONS",
    "MODES",
    "DataConfig",
    "Normalisation",
    "data_config",
    "preprocess_input",
    "center_crop_and_resize",
    "decode_predictions",
    "imagenet_labels",
    "load_image",
    "sample_image_path",
]


CROP_PADDING = 32  # the EfficientNet papers' evaluation crop: size / (size + 32) of the shorter side
# Files the image folders (training, evaluation, unlabeled data) and the int8 calibration read:
# what tf.io.decode_image decodes.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# Methods of the evaluation resize (tf.image.resize's).
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area", "lanczos3", "lanczos5", "mitchellcubic", "gaussian")


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


def _check_crop_args(image_size, crop_padding, crop_fraction, interpolation) -> None:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {interpolation!r}.")
    if isinstance(image_size, (bool, np.bool_)) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer (the output side in pixels), got {image_size!r}.")
    if isinstance(crop_padding, bool) or not isinstance(crop_padding, (int, float, np.number)) or crop_padding < 0:
        raise ValueError(
            f"crop_padding must be a number >= 0 (32 in the papers, 0 for no margin), got {crop_padding!r}."
        )
    if crop_fraction is not None and not (
        isinstance(crop_fraction, (int, float, np.number)) and not isinstance(crop_fraction, bool)
    ):
        raise ValueError(f"crop_fraction must be a number in (0, 1] or None, got {crop_fraction!r}.")
    if crop_fraction is not None and not 0 < crop_fraction <= 1:
        raise ValueError(f"crop_fraction must lie in (0, 1] (1.0: the whole shorter side), got {crop_fraction!r}.")


def center_crop_and_resize(
    image: np.ndarray,
    image_size: int,
    crop_padding: float = CROP_PADDING,
    interpolation: str = "bicubic",
    *,
    crop_fraction: float | None = None,
) -> np.ndarray:
    """The evaluation crop: centre square of ``size / (size + crop_padding)`` of the shorter side, resized.

    NumPy in, NumPy out; the work is done by the TensorFlow implementation that training,
    ``evaluate`` and ``predict`` use (:func:`efficientnet.training.data.center_crop_and_resize`,
    ``tf.image.resize`` without antialiasing, clipped to 0–255), so a photo prepared here gives
    the model exactly the pixels the evaluation pipeline gives it.

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` array of 0–255 pixels.
        image_size: side of the square output.
        crop_padding: 32 in the EfficientNet papers (0: the whole shorter side).
        interpolation: a ``tf.image.resize`` method: ``nearest``, ``bilinear``, ``bicubic``,
            ``area``, ``lanczos3``, ``lanczos5``, ``mitchellcubic`` or ``gaussian``.
        crop_fraction: the crop as a fraction of the shorter side (V2's 1.0, Xception's 0.903);
            overrides ``crop_padding``.

    Returns:
        ``(image_size, image_size[, C])`` float32 array.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"Expected an (H, W) or (H, W, C) image, got shape {image.shape}.")
    _check_crop_args(image_size, crop_padding, crop_fraction, interpolation)
    h, w = image.shape[:2]
    if h < 1 or w < 1:
        raise ValueError(f"The image is empty (shape {image.shape}); check that it was read correctly.")
    fraction = crop_fraction if crop_fraction is not None else image_size / (image_size + crop_padding)
    if int(fraction * min(h, w)) < 1:
        raise ValueError(
            f"The image ({h}x{w}) is too small for a centre crop of {image_size}/({image_size}+{crop_padding}) of its "
            "shorter side; use a larger image or crop_padding=0."
        )
    import tensorflow as tf

    from .training.data import center_crop_and_resize as tf_center_crop_and_resize

    x = image[..., None] if image.ndim == 2 else image
    if x.dtype not in (np.uint8, np.float32):
        x = x.astype("float32")
    out = tf_center_crop_and_resize(
        tf.constant(x), image_size, crop_fraction=fraction, interpolation=interpolation
    ).numpy()
    return out[..., 0] if image.ndim == 2 else out


@dataclass(frozen=True)
class DataConfig:
    """What one set of weights expects of its input: the single record of the library.

    The models take raw 0–255 RGB pixels (``input_range``) and normalise inside with
    ``(x - mean) / std`` (``normalisation`` names the :data:`MODES` entry). Evaluation
    takes the centre ``crop_fraction_at(eval_size)`` of the shorter side and resizes it
    to ``eval_size`` with ``interpolation``.

    Attributes:
        model: the model name (``efficientnetb0``); ``None`` for a custom model.
        weights: the weight set (``imagenet``…), ``"run"`` for a training run's, or ``None``.
        normalisation: a key of :data:`MODES` (``"torch"``, ``"tf"``, ``"lite"``, ``"v2"``), or
            ``None`` when not known (a custom model).
        mean, std: per channel, in 0–255 units (``None`` with ``normalisation=None``).
        input_range: the pixel range the model takes.
        train_size, eval_size: the training and evaluation sides.
        crop_padding: the evaluation crop is ``size / (size + crop_padding)`` (the papers' 32)…
        crop_fraction: …or this fixed fraction (V2's 1.0, Xception's 0.903) when not ``None``.
        interpolation: the resize method (``tf.image.resize``'s name).
        padding: ``"same"`` (TensorFlow-trained) or ``"symmetric"`` (PyTorch-trained).
        bn_epsilon: the BN epsilon of the weights.
    """

    model: str | None
    weights: str | None
    normalisation: str | None
    mean: tuple[float, float, float] | None
    std: tuple[float, float, float] | None
    train_size: int
    eval_size: int
    crop_padding: float | None = CROP_PADDING
    crop_fraction: float | None = None
    interpolation: str = "bicubic"
    padding: str = "same"
    bn_epsilon: float = 1e-3
    input_range: tuple[float, float] = (0.0, 255.0)

    def __post_init__(self) -> None:
        if (self.crop_padding is None) == (self.crop_fraction is None):
            raise ValueError("A DataConfig has a crop_padding or a crop_fraction, exactly one of them.")
        _check_crop_args(self.eval_size, self.crop_padding or 0, self.crop_fraction, self.interpolation)

    def crop_fraction_at(self, size: int | None = None) -> float:
        """The evaluation crop's fraction of the shorter side at ``size`` (default: ``eval_size``)."""
        if self.crop_fraction is not None:
            return float(self.crop_fraction)
        size = self.eval_size if size is None else size
        return float(size) / float(size + self.crop_padding)

    @property
    def crop(self) -> float:
        """The evaluation crop fraction at ``eval_size``."""
        return self.crop_fraction_at()

    def eval_transform(self, image: np.ndarray, size: int | None = None) -> np.ndarray:
        """Centre crop and resize of one ``(H, W, 3)`` image for evaluation: float32 0–255 pixels."""
        size = self.eval_size if size is None else size
        return center_crop_and_resize(
            image, size, interpolation=self.interpolation, crop_fraction=self.crop_fraction_at(size)
        )

    def replace(self, **changes) -> DataConfig:
        """A copy with ``changes`` (``dataclasses.replace``)."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        """JSON-ready (``run.json``'s ``data_config``)."""
        out = asdict(self)
        for key in ("mean", "std", "input_range"):
            out[key] = None if out[key] is None else list(out[key])
        return out

    @classmethod
    def from_dict(cls, record: Mapping) -> DataConfig:
        """The inverse of :meth:`to_dict`; unknown keys are refused."""
        record = dict(record)
        unknown = sorted(set(record) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"Unknown data config keys {unknown}.")
        for key in ("mean", "std", "input_range"):
            if record.get(key) is not None:
                record[key] = tuple(float(v) for v in record[key])
        return cls(**record)


# EfficientNetV2 trains smaller than it evaluates (google/automl's hparams).
_V2_TRAIN_SIZES = MappingProxyType(
    {
        "efficientnetv2-b0": 192,
        "efficientnetv2-b1": 192,
        "efficientnetv2-b2": 208,
        "efficientnetv2-b3": 240,
        "efficientnetv2-s": 300,
        "efficientnetv2-m": 384,
        "efficientnetv2-l": 384,
        "efficientnetv2-xl": 384,
    }
)
_XCEPTION_CROP = 0.903  # timm's xception65.tf_in1k / DeepLab's ImageNet evaluation at 299
_XCEPTION_NORMALISATION = "tf"  # DeepLab's [-1, 1]


def _make(model: str, weights: str | None, normalisation: str | None, **fields) -> DataConfig:
    norm = MODES.get(normalisation) if normalisation is not None else None
    return DataConfig(
        model=model,
        weights=weights,
        normalisation=normalisation,
        mean=None if norm is None else tuple(norm.mean),
        std=None if norm is None else tuple(norm.std),
        **fields,
    )


@cache
def _model_config(name: str) -> DataConfig:
    from . import config

    if config.model_family(name) == "xception":
        from .xception import DEFAULT_SIZE

        key = config.normalise_name(name)
        return _make(
            key,
            None,
            _XCEPTION_NORMALISATION,
            train_size=DEFAULT_SIZE,
            eval_size=DEFAULT_SIZE,
            crop_padding=None,
            crop_fraction=_XCEPTION_CROP,
            padding="symmetric",
        )
    variant = config.get_variant(name)
    size = variant.default_size
    v2 = variant.family == "v2"
    return _make(
        variant.name,
        None,
        variant.preprocessing,
        train_size=_V2_TRAIN_SIZES.get(variant.name, size),
        eval_size=size,
        crop_padding=None if v2 else CROP_PADDING,
        crop_fraction=1.0 if v2 else None,
        bn_epsilon=variant.bn_epsilon,
    )


def data_config(model: str, weights: str | None = None, *, include_top: bool = True) -> DataConfig:
    """The data config of ``model`` (any common spelling) with the registered weight set ``weights``.

    ``weights=None`` (or a file path) gives the architecture's own: the sizes, crop and
    normalisation its registered weights were evaluated with. A registered weight set adds
    what its file needs (normalisation, padding style, BN epsilon).
    """
    base = _model_config(model)
    if weights is None:
        return base
    from .weights.registry import REGISTRY

    spec = REGISTRY.get((base.model, weights, include_top))
    if spec is None:
        return base
    changes = {"weights": weights, "padding": spec.padding}
    if spec.bn_epsilon is not None:
        changes["bn_epsilon"] = spec.bn_epsilon
    if spec.preprocessing != base.normalisation:
        norm = MODES[spec.preprocessing]
        changes.update(
            normalisation=spec.preprocessing,
            mean=None if norm is None else tuple(norm.mean),
            std=None if norm is None else tuple(norm.std),
        )
    return base.replace(**changes)


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
