"""The architecture registry: every model of the library by name, with the figures a user needs.

``list_models()`` returns one :class:`ModelInfo` per architecture (V1, Lite, V2,
aligned Xception): its constructor, input sizes, evaluation crop and
interpolation, registered weight sets and parameter count. ``create_model(name,
**kwargs)`` builds one by any common spelling (``"b3"``, ``"EfficientNet-B3"``,
``"efficientnetv2-s"``, ``"xception65"``). The command line (``efficientnet
list``), the segmentation heads and the converters look models up here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import keras

from . import config, models, xception
from .preprocessing import DataConfig, data_config
from .weights.registry import available_weights

__all__ = ["ModelInfo", "create_model", "get_model_info", "list_models"]

# model.count_params() with the 1000-class top at the default size (keras.applications' figures for
# B0-B7 and V2-B0..L; tests/test_registry.py builds every model and checks them).
_PARAMS: Mapping[str, int] = MappingProxyType(
    {
        "efficientnetb0": 5_330_571,
        "efficientnetb1": 7_856_239,
        "efficientnetb2": 9_177_569,
        "efficientnetb3": 12_320_535,
        "efficientnetb4": 19_466_823,
        "efficientnetb5": 30_562_527,
        "efficientnetb6": 43_265_143,
        "efficientnetb7": 66_658_687,
        "efficientnetb8": 87_793_181,
        "efficientnetl2": 481_400_003,
        "efficientnetlite0": 4_694_031,
        "efficientnetlite1": 5_470_351,
        "efficientnetlite2": 6_150_175,
        "efficientnetlite3": 8_273_775,
        "efficientnetlite4": 13_118_943,
        "efficientnetv2-b0": 7_200_312,
        "efficientnetv2-b1": 8_212_124,
        "efficientnetv2-b2": 10_178_374,
        "efficientnetv2-b3": 14_467_622,
        "efficientnetv2-s": 21_612_360,
        "efficientnetv2-m": 54_431_388,
        "efficientnetv2-l": 119_027_848,
        "efficientnetv2-xl": 208_896_832,
        "xception41": 27_084_872,
        "xception65": 40_101_512,
        "xception71": 42_537_712,
    }
)


@dataclass(frozen=True)
class ModelInfo:
    """One architecture of the library.

    Attributes:
        name: the model name (the built model's default ``name``): ``efficientnetb3``.
        family: ``"v1"``, ``"lite"``, ``"v2"`` or ``"xception"``.
        constructor: ``efficientnet.EfficientNetB3`` and so on.
        default_size: the constructor's input size with the top, which is the size the
            weights are evaluated at (keras.applications' ``default_size``).
        train_size: the papers' training size (smaller for V2; the same otherwise).
        crop: the evaluation centre-crop fraction (``size / (size + 32)`` for V1 and Lite,
            1.0 for V2, timm's 0.903 for Xception), rounded to 4 digits.
        interpolation: the evaluation resize method.
        All four come from :attr:`data_config` (:func:`efficientnet.preprocessing.data_config`).
        weights: the registered weight sets (``weights=`` names that need no file).
        params: ``count_params()`` with the 1000-class top.
    """

    name: str
    family: str
    constructor: Callable[..., keras.Model]
    default_size: int
    train_size: int
    crop: float
    interpolation: str
    weights: tuple[str, ...]
    params: int

    @property
    def eval_size(self) -> int:
        """The evaluation size (the default size)."""
        return self.default_size

    @property
    def data_config(self) -> DataConfig:
        """The architecture's data config (normalisation, sizes, crop, interpolation, padding, BN epsilon)."""
        return data_config(self.name)

    @property
    def constructor_name(self) -> str:
        return self.constructor.__name__


def _info(name: str, family: str, constructor: Callable[..., keras.Model]) -> ModelInfo:
    data = data_config(name)
    return ModelInfo(
        name=name,
        family=family,
        constructor=constructor,
        default_size=data.eval_size,
        train_size=data.train_size,
        crop=round(data.crop, 4),
        interpolation=data.interpolation,
        weights=tuple(available_weights(name)),
        params=_PARAMS[name],
    )


def _entries() -> dict[str, ModelInfo]:
    entries = {}
    for variant in config.VARIANTS.values():
        constructor = getattr(models, models.constructor_name(variant))
        entries[variant.name] = _info(variant.name, variant.family, constructor)
    for name in config.XCEPTION_BLOCKS:
        entries[name] = _info(name, "xception", getattr(xception, f"Xception{name.removeprefix('xception')}"))
    return entries


_REGISTRY: Mapping[str, ModelInfo] = MappingProxyType(_entries())


def list_models(family: str | None = None, *, pretrained: bool = False) -> list[ModelInfo]:
    """Every registered model, in table order; only ``family``'s, or only those with registered weights."""
    if family is not None and family not in config.FAMILIES:
        raise ValueError(f"family must be one of {config.FAMILIES} or None, got {family!r}.")
    return [
        info
        for info in _REGISTRY.values()
        if (family is None or info.family == family) and (info.weights or not pretrained)
    ]


def get_model_info(name: str) -> ModelInfo:
    """The entry of a model by any common spelling (``"B3"``, ``"efficientnet-b3"``, ``"xception65"``)."""
    if not isinstance(name, str):
        raise TypeError(f"A model name is a string such as 'efficientnetb0', got {type(name).__name__}.")
    family = config.model_family(name)  # raises for unknown names, listing the known ones
    key = config.normalise_name(name) if family == "xception" else config.get_variant(name).name
    return _REGISTRY[key]


def create_model(name: str, **kwargs) -> keras.Model:
    """Builds a registered model by name with its constructor's arguments.

    ``create_model("b3", weights="imagenet")`` is ``EfficientNetB3(weights="imagenet")``.
    """
    return get_model_info(name).constructor(**kwargs)
