"""efficientnet 1.1.1's ``efficientnet.model`` API on this library.

Scripts and segmentation_models 1.0.1 call ``EfficientNetB3(..., backend=,
layers=, models=, utils=)``: those arguments are accepted and ignored (Keras 3
is the only Keras). 1.1.1's conventions hold here: no in-model preprocessing
(use :func:`preprocess_input`, ImageNet mean/std), models named
``efficientnet-b0``, ``weights='imagenet'`` meaning 1.1.1's own AutoAugment
release (same file names, so an existing 1.1.1 download cache is reused) and
``weights='noisy-student'``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras

from .builder import EfficientNet as _build
from .config import DEFAULT_BLOCKS_ARGS, VARIANTS, Variant
from .preprocessing import preprocess_input as _preprocess

__all__ = [
    "DEFAULT_BLOCKS_ARGS",
    "EfficientNet",
    "EfficientNetB0",
    "EfficientNetB1",
    "EfficientNetB2",
    "EfficientNetB3",
    "EfficientNetB4",
    "EfficientNetB5",
    "EfficientNetB6",
    "EfficientNetB7",
    "EfficientNetL2",
    "preprocess_input",
]

_KERAS_MODULE_KWARGS = ("backend", "layers", "models", "utils")
_WEIGHT_SETS = {"imagenet": "autoaugment"}


def _pop_keras_modules(kwargs: dict) -> dict:
    for key in _KERAS_MODULE_KWARGS:
        kwargs.pop(key, None)
    return kwargs


def preprocess_input(x, **kwargs):
    """1.1.1's preprocessing: ImageNet mean/std ("torch" mode) on 0-255 RGB input."""
    _pop_keras_modules(kwargs)
    return _preprocess(x, mode="torch", **kwargs)


def EfficientNet(
    width_coefficient: float,
    depth_coefficient: float,
    default_resolution: int,
    dropout_rate: float = 0.2,
    drop_connect_rate: float = 0.2,
    depth_divisor: int = 8,
    blocks_args=DEFAULT_BLOCKS_ARGS,
    model_name: str = "efficientnet",
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape=None,
    pooling: str | None = None,
    classes: int = 1000,
    **kwargs,
) -> keras.Model:
    """1.1.1's generic builder signature."""
    _pop_keras_modules(kwargs)
    if depth_divisor != 8:
        raise ValueError("Only depth_divisor=8 is supported.")
    variant = _variant_for(model_name, width_coefficient, depth_coefficient, default_resolution, dropout_rate)
    weights = _WEIGHT_SETS.get(weights, weights) if isinstance(weights, str) else weights
    return _build(
        variant,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling=pooling,
        classes=classes,
        name=model_name,
        include_preprocessing=False,
        drop_connect_rate=drop_connect_rate,
        blocks_args=blocks_args,
        **kwargs,
    )


def _variant_for(model_name: str, width: float, depth: float, resolution: int, dropout: float) -> Variant:
    """The registered variant with these coefficients (so its weights resolve), else a custom one."""
    for variant in VARIANTS.values():
        coefficients = (variant.width, variant.depth, variant.default_size)
        if variant.family == "v1" and coefficients == (width, depth, resolution):
            return dataclasses.replace(variant, dropout=dropout)
    return Variant(
        name=model_name,
        family="v1",
        width=width,
        depth=depth,
        default_size=resolution,
        dropout=dropout,
        blocks=DEFAULT_BLOCKS_ARGS,
    )


def _make(width: float, depth: float, resolution: int, dropout: float, model_name: str) -> Callable[..., keras.Model]:
    def constructor(
        include_top: bool = True,
        weights: str | None = "imagenet",
        input_tensor=None,
        input_shape=None,
        pooling: str | None = None,
        classes: int = 1000,
        **kwargs,
    ) -> keras.Model:
        return EfficientNet(
            width,
            depth,
            resolution,
            dropout,
            model_name=model_name,
            include_top=include_top,
            weights=weights,
            input_tensor=input_tensor,
            input_shape=input_shape,
            pooling=pooling,
            classes=classes,
            **kwargs,
        )

    suffix = model_name.split("-")[1].upper()
    constructor.__name__ = constructor.__qualname__ = f"EfficientNet{suffix}"
    constructor.__doc__ = (
        f"{model_name} with efficientnet 1.1.1's conventions: inputs preprocessed by "
        "`preprocess_input`, `weights` in {None, 'imagenet', 'noisy-student', path}; "
        "`backend`, `layers`, `models`, `utils` are accepted and ignored."
    )
    return constructor


EfficientNetB0 = _make(1.0, 1.0, 224, 0.2, "efficientnet-b0")
EfficientNetB1 = _make(1.0, 1.1, 240, 0.2, "efficientnet-b1")
EfficientNetB2 = _make(1.1, 1.2, 260, 0.3, "efficientnet-b2")
EfficientNetB3 = _make(1.2, 1.4, 300, 0.3, "efficientnet-b3")
EfficientNetB4 = _make(1.4, 1.8, 380, 0.4, "efficientnet-b4")
EfficientNetB5 = _make(1.6, 2.2, 456, 0.4, "efficientnet-b5")
EfficientNetB6 = _make(1.8, 2.6, 528, 0.5, "efficientnet-b6")
EfficientNetB7 = _make(2.0, 3.1, 600, 0.5, "efficientnet-b7")
EfficientNetL2 = _make(4.3, 5.3, 800, 0.5, "efficientnet-l2")
