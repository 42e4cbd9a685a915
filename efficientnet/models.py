"""One constructor per variant, generated from :data:`efficientnet.config.VARIANTS`.

``EfficientNetB0`` … ``EfficientNetB8``, ``EfficientNetL2``,
``EfficientNetLite0`` … ``Lite4`` and ``EfficientNetV2B0`` … ``EfficientNetV2XL``
are thin wrappers over :func:`efficientnet.builder.EfficientNet` with
keras.applications' signature.
"""

from __future__ import annotations

from .builder import EfficientNet, make_constructor
from .config import VARIANTS, Variant
from .weights.registry import available_weights

__all__ = [
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
    "EfficientNetV2S",
    "EfficientNetV2M",
    "EfficientNetV2L",
    "EfficientNetV2XL",
    "constructor_name",
]

_FAMILY_TEXT = {
    "v1": "EfficientNet (Tan & Le, ICML 2019, arXiv:1905.11946): MBConv blocks with SE, swish",
    "lite": "EfficientNet-Lite (TensorFlow's edge variant): MBConv without SE, ReLU6, stem 32 and head 1280 "
    "unscaled, first and last stage repeats unscaled",
    "v2": "EfficientNetV2 (Tan & Le, ICML 2021, arXiv:2104.00298): Fused-MBConv early stages, MBConv with SE "
    "later, swish. Block tables as released in google/automl (V2-S ends with 256 channels and a 1280 head, "
    "not the paper's 272/1792)",
}

_DOC = """Builds {title}.

{family}.

Figures: width {width}, depth {depth}, input {res}x{res} (the resolution the
weights were evaluated at; any size >= 32 works), dropout {dropout},
{blocks} MBConv blocks, stem {stem} and head {head} channels.
Registered weight sets: {weight_sets}.

Args:
    include_top: include the ``avg_pool``/``top_dropout``/``predictions`` head.
    weights: ``None``, a registered weight set, or a path to a ``.h5`` /
        ``.weights.h5`` file. Loading is strict: every weight is set or a
        ``WeightsError`` is raised.
    input_tensor: optional Keras tensor to use as the image input.
    input_shape: ``(height, width, 3)``; defaults to ``({res}, {res}, 3)`` with
        the top and ``(None, None, 3)`` without.
    pooling: ``None``, ``"avg"`` or ``"max"`` when ``include_top=False``.
    classes: classifier outputs (1000 with pretrained weights and the top).
    classifier_activation: ``"softmax"``, ``None`` (logits) or any activation.
    name: model name; defaults to ``"{name}"``.
    **kwargs: ``include_preprocessing`` (default True: raw 0-255 RGB input),
        ``dropout_rate``, ``drop_connect_rate``, ``activation``, ``padding``,
        ``bn_epsilon``, ``bn_momentum``, ``output_stride`` (32, 16, 8);
        see :func:`efficientnet.builder.EfficientNet`.

Returns:
    A ``keras.Model`` with keras.applications' layer names.
"""


def constructor_name(variant: Variant) -> str:
    """``efficientnetv2-s`` → ``EfficientNetV2S``; ``efficientnetlite0`` → ``EfficientNetLite0``."""
    suffix = variant.name.replace("efficientnet", "").replace("-", "")
    if suffix.startswith("lite"):
        return "EfficientNetLite" + suffix[4:]
    return "EfficientNet" + suffix.upper()


def _doc(variant: Variant) -> str:
    return _DOC.format(
        title=variant.official_name,
        family=_FAMILY_TEXT[variant.family],
        width=variant.width,
        depth=variant.depth,
        res=variant.resolution,
        dropout=variant.dropout,
        blocks=variant.num_blocks,
        stem=variant.round_filters(variant.stem_filters, fixed=variant.fix_stem_head),
        head=variant.round_filters(variant.head_filters, fixed=variant.fix_stem_head),
        weight_sets=", ".join(available_weights(variant.name)) or "none (weights=None or a file path)",
        name=variant.name,
    )


for _variant in VARIANTS.values():
    globals()[constructor_name(_variant)] = make_constructor(
        EfficientNet, _variant, constructor_name(_variant), _doc(_variant), __name__
    )
del _variant
