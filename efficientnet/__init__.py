"""EfficientNet V1, Lite, V2 and aligned Xception for Keras 3.

Drop-in for ``keras.applications.EfficientNet*`` and for efficientnet 1.1.1
(``import efficientnet.tfkeras as efn`` keeps working).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# The API is imported on first use (``efficientnet.EfficientNetB0``, ``from efficientnet import …``):
# ``import efficientnet`` alone, and so ``efficientnet --help``, does not start Keras and TensorFlow.
if TYPE_CHECKING:
    from .builder import EfficientNet
    from .config import (
        DEFAULT_BLOCKS_ARGS,
        LITE_BLOCKS_ARGS,
        V2_BLOCKS_ARGS,
        VARIANTS,
        BlockArgs,
        Variant,
        get_variant,
        round_filters,
        round_repeats,
    )
    from .features import endpoint_names, endpoints, feature_extractor
    from .inference import optimize_for_inference
    from .layers import separable_conv_bn
    from .models import (
        EfficientNetB0,
        EfficientNetB1,
        EfficientNetB2,
        EfficientNetB3,
        EfficientNetB4,
        EfficientNetB5,
        EfficientNetB6,
        EfficientNetB7,
        EfficientNetB8,
        EfficientNetL2,
        EfficientNetLite0,
        EfficientNetLite1,
        EfficientNetLite2,
        EfficientNetLite3,
        EfficientNetLite4,
        EfficientNetV2B0,
        EfficientNetV2B1,
        EfficientNetV2B2,
        EfficientNetV2B3,
        EfficientNetV2L,
        EfficientNetV2M,
        EfficientNetV2S,
        EfficientNetV2XL,
    )
    from .preprocessing import center_crop_and_resize, decode_predictions, preprocess_input
    from .registry import ModelInfo, create_model, get_model_info, list_models
    from .weights import LoadReport, WeightsError, load_weights, save_weights
    from .xception import AlignedXception, Xception41, Xception65, Xception71

__version__ = "2.0.0"

__all__ = [
    "DEFAULT_BLOCKS_ARGS",
    "LITE_BLOCKS_ARGS",
    "V2_BLOCKS_ARGS",
    "VARIANTS",
    "BlockArgs",
    "EfficientNet",
    "EfficientNetB0",
    "EfficientNetB1",
    "EfficientNetB2",
    "EfficientNetB3",
    "EfficientNetB4",
    "EfficientNetB5",
    "EfficientNetB6",
    "EfficientNetB7",
    "EfficientNetB8",
    "EfficientNetL2",
    "EfficientNetLite0",
    "EfficientNetLite1",
    "EfficientNetLite2",
    "EfficientNetLite3",
    "EfficientNetLite4",
    "EfficientNetV2B0",
    "EfficientNetV2B1",
    "EfficientNetV2B2",
    "EfficientNetV2B3",
    "EfficientNetV2L",
    "EfficientNetV2M",
    "EfficientNetV2S",
    "EfficientNetV2XL",
    "LoadReport",
    "ModelInfo",
    "Variant",
    "WeightsError",
    "AlignedXception",
    "Xception41",
    "Xception65",
    "Xception71",
    "__version__",
    "center_crop_and_resize",
    "create_model",
    "decode_predictions",
    "endpoint_names",
    "endpoints",
    "feature_extractor",
    "get_model_info",
    "get_variant",
    "list_models",
    "load_weights",
    "optimize_for_inference",
    "preprocess_input",
    "round_filters",
    "round_repeats",
    "save_weights",
    "separable_conv_bn",
]

# Where the names of ``__all__`` live; the first use of any of them imports all these modules
# (as ``import efficientnet`` did before it was lazy), so registrations happen as they used to.
_MODULES = (
    "builder",
    "config",
    "features",
    "inference",
    "layers",
    "models",
    "preprocessing",
    "registry",
    "weights",
    "xception",
)


def __getattr__(name: str):
    import importlib

    if name in __all__:
        modules = [importlib.import_module(f".{module}", __name__) for module in _MODULES]
        for module in modules:
            if hasattr(module, name):
                value = getattr(module, name)
                globals()[name] = value
                return value
    try:  # a sub-module (``efficientnet.weights``) used as an attribute
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
