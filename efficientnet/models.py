"""One constructor per variant of :data:`efficientnet.config.VARIANTS`.

``EfficientNetB0`` … ``EfficientNetB8``, ``EfficientNetL2``,
``EfficientNetLite0`` … ``Lite4`` and ``EfficientNetV2B0`` … ``EfficientNetV2XL``
are written out (so that editors, ``help()`` and static tools see them) as thin
calls of :func:`efficientnet.builder.EfficientNet` with keras.applications'
signature; their docstrings are filled in from the variant table, and a test
checks that constructors and table agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras

from .builder import EfficientNet
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
        res=variant.default_size,
        dropout=variant.dropout,
        blocks=variant.num_blocks,
        stem=variant.round_filters(variant.stem_filters, fixed=variant.fix_stem_head),
        head=variant.round_filters(variant.head_filters, fixed=variant.fix_stem_head),
        weight_sets=", ".join(available_weights(variant.name)) or "none (weights=None or a file path)",
        name=variant.name,
    )


def _documented(variant_name: str) -> Callable[[Callable[..., keras.Model]], Callable[..., keras.Model]]:
    """Fills a constructor's docstring with its variant's figures."""

    def decorate(constructor: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        constructor.__doc__ = _doc(VARIANTS[variant_name])
        constructor.variant = variant_name
        return constructor

    return decorate


Shape = Sequence[int | None] | None
Activation = str | Callable | None


@_documented("efficientnetb0")
def EfficientNetB0(
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape: Shape = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Activation = "softmax",
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    return EfficientNet(
        "efficientnetb0",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


@_documented("efficientnetb1")
def EfficientNetB1(
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape: Shape = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Activation = "softmax",
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    return EfficientNet(
        "efficientnetb1",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


@_documented("efficientnetb2")
def EfficientNetB2(
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape: Shape = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Activation = "softmax",
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    return EfficientNet(
        "efficientnetb2",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


@_documented("efficientnetb3")
def EfficientNetB3(
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape: Shape = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Activation = "softmax",
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    return EfficientNet(
        "efficientnetb3",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


@_documented("efficientnetb4")
def EfficientNetB4(
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape: Shape = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Activation = "softmax",
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    return EfficientNet(
        "efficientnetb4",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


@_documented("efficientnetb5")
def EfficientNetB5(
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape: Shape = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Activation = "softmax",
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    return EfficientNet(
        "efficientnetb5",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


@_documented("efficientnetb6")
def EfficientNetB6(
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape: Shape = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Activation = "softmax",
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    return EfficientNet(
        "efficientnetb6",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


@_documented("efficientnetb7")
def EfficientNetB7(
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape: Shape = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Activation = "softmax",
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    return EfficientNet(
        "efficientnetb7",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


@_documented("efficientnetb8")
def EfficientNetB8(
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape: Shape = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Activation = "softmax",
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    return EfficientNet(
        "efficientnetb8",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


@_documented("efficientnetl2")
def EfficientNetL2(
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape: Shape = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Activation = "softmax",
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    return EfficientNet(
        "efficientnetl2",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


@_documented("efficientnetlite0")
def EfficientNetLite0(
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape: Shape = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Activation = "softmax",
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    return EfficientNet(
        "efficientnetlite0",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


@_documented("efficientnetlite1")
def EfficientNetLite1(
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape: Shape = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Activation = "softmax",
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    return EfficientNet(
        "efficientnetlite1",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


@_documented("efficientnetlite2")
def EfficientNetLite2(
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape: Shape = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Activation = "softmax",
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    return EfficientNet(
        "efficientnetlite2",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


@_documented("efficientnetlite3")
def EfficientNetLite3(
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape: Shape = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Activation = "softmax",
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    return EfficientNet(
        "efficientnetlite3",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


@_documented("efficientnetlite4")
def EfficientNetLite4(
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape: Shape = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Activation = "softmax",
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    return EfficientNet(
        "efficientnetlite4",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


@_documented("efficientnetv2-b0")
def EfficientNetV2B0(
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape: Shape = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Activation = "softmax",
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    return EfficientNet(
        "efficientnetv2-b0",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


@_documented("efficientnetv2-b1")
def EfficientNetV2B1(
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape: Shape = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Activation = "softmax",
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    return EfficientNet(
        "efficientnetv2-b1",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


@_documented("efficientnetv2-b2")
def EfficientNetV2B2(
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape: Shape = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Activation = "softmax",
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    return EfficientNet(
        "efficientnetv2-b2",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


@_documented("efficientnetv2-b3")
def EfficientNetV2B3(
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape: Shape = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Activation = "softmax",
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    return EfficientNet(
        "efficientnetv2-b3",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


@_documented("efficientnetv2-s")
def EfficientNetV2S(
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape: Shape = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Activation = "softmax",
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    return EfficientNet(
        "efficientnetv2-s",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


@_documented("efficientnetv2-m")
def EfficientNetV2M(
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape: Shape = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Activation = "softmax",
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    return EfficientNet(
        "efficientnetv2-m",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


@_documented("efficientnetv2-l")
def EfficientNetV2L(
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape: Shape = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Activation = "softmax",
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    return EfficientNet(
        "efficientnetv2-l",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )


@_documented("efficientnetv2-xl")
def EfficientNetV2XL(
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape: Shape = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: Activation = "softmax",
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    return EfficientNet(
        "efficientnetv2-xl",
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        name,
        **kwargs,
    )
