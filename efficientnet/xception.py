"""DeepLab's aligned Xception-41/65/71 (tensorflow/models research/deeplab/core/xception.py).

Root: conv 3×3/32 stride 2 and conv 3×3/64. Then units of three DeepLab
separable convolutions (:func:`efficientnet.layers.separable_conv_bn`) where
the third carries the stride (no max-pooling), with a ``conv`` (1×1 + BN),
``sum`` or ``none`` shortcut. Strided convs pad symmetrically (DeepLab's
``fixed_padding``) so features stay aligned. Layer names flatten DeepLab's
scopes: ``entry_flow_block1_unit1_sepconv1_depthwise``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import keras
from keras import layers

from .applications import Atrous, add_head, check_remat, resolve_input, validate_common_arguments
from .config import XCEPTION_BLOCKS, XceptionBlock
from .features import endpoint_names, feature_extractor, feature_info
from .layers import BlockOptions, conv_bn, deeplab_separable_names, separable_conv_bn
from .remat import RematModel, rematerialised

__all__ = [
    "XceptionBlock",
    "XCEPTION_BLOCKS",  # re-exported from efficientnet.config
    "AlignedXception",
    "Xception41",
    "Xception65",
    "Xception71",
]


DEFAULT_SIZE = 299


def _unit(x, block: XceptionBlock, prefix: str, options: BlockOptions, stride: int, rates: Sequence[int]):
    shortcut = x
    for i, depth in enumerate(block.depths):
        name = f"{prefix}_sepconv{i + 1}"
        x = separable_conv_bn(
            x,
            depth,
            3,
            options,
            strides=stride if i == 2 else 1,
            dilation_rate=rates[i],
            depth_activation=block.activation_in_separable,
            names=deeplab_separable_names(name),
        )
    if block.skip == "conv":
        shortcut = conv_bn(
            shortcut,
            block.depths[-1],
            1,
            options,
            strides=stride,
            activation=False,
            conv_name=f"{prefix}_shortcut",
            bn_name=f"{prefix}_shortcut_bn",
        )
    if block.skip in ("conv", "sum"):
        x = layers.add([x, shortcut], name=f"{prefix}_add")
    return x


class _XceptionName(NamedTuple):
    name: str


def AlignedXception(
    variant: str = "xception65",
    include_top: bool = True,
    weights: str | None = None,
    input_tensor=None,
    input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | Callable | None = "softmax",
    name: str | None = None,
    *,
    include_preprocessing: bool = True,
    dropout_rate: float = 0.0,
    output_stride: int = 32,
    features_only: bool = False,
    out_strides: Sequence[int] = (4, 8, 16, 32),
    multi_grid: Sequence[int] = (1, 1, 1),
    bn_epsilon: float = 1e-3,
    bn_momentum: float = 0.9997,
    remat: bool = False,
) -> keras.Model:
    """Builds DeepLab's aligned Xception.

    Args:
        variant: ``"xception41"``, ``"xception65"`` or ``"xception71"``.
        weights: ``None`` or a path to a ``.h5`` file (e.g. from
            ``efficientnet convert`` of timm's ``xception65``); loaded strictly.
        include_preprocessing: scale raw 0–255 pixels to [-1, 1] inside the model.
        output_stride: 32, 16 or 8: past it, strides become 1 and convs dilate.
        multi_grid: DeepLab's unit rates for the last block's three convs.
        features_only: return the features at ``out_strides`` (see :mod:`efficientnet.features`).
        remat: recompute each unit in the backward pass (:class:`efficientnet.remat.RematModel`).
        Other arguments as in keras.applications.
    """
    if features_only:
        include_top, pooling = False, None
    if variant not in XCEPTION_BLOCKS:
        raise ValueError(f"Unknown Xception variant {variant!r}; choose one of {sorted(XCEPTION_BLOCKS)}.")
    atrous = Atrous(output_stride, stride=2)  # the root's first conv has stride 2
    if len(multi_grid) != 3 or any(int(r) < 1 for r in multi_grid):
        raise ValueError(f"multi_grid must be three positive rates, got {multi_grid!r}.")
    check_remat(remat)
    if isinstance(dropout_rate, bool) or not isinstance(dropout_rate, (int, float)) or not 0 <= dropout_rate < 1:
        raise ValueError(f"dropout_rate must be a number in [0, 1), got {dropout_rate!r}; 0 disables dropout.")
    if weights is not None:
        # Before building (Xception-65 takes seconds): no weights are registered, so a name is refused
        # with how to get weights, and a path must be a weights file.
        from .weights import resolve_weight_spec

        resolve_weight_spec(_XceptionName(variant), weights, include_top)
    classes = validate_common_arguments(
        include_top=include_top,
        weights=weights,
        pretrained=False,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
    )
    img_input, inputs = resolve_input(
        input_tensor, input_shape, default_size=DEFAULT_SIZE, include_top=include_top, require_rgb=include_preprocessing
    )
    options = BlockOptions(activation="relu", bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, padding="symmetric")
    x = img_input
    if include_preprocessing:
        x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescaling")(x)
    x = conv_bn(
        x,
        32,
        3,
        options,
        strides=2,
        conv_name="entry_flow_conv1_1",
        bn_name="entry_flow_conv1_1_bn",
        act_name="entry_flow_conv1_1_relu",
    )
    x = conv_bn(
        x,
        64,
        3,
        options,
        conv_name="entry_flow_conv1_2",
        bn_name="entry_flow_conv1_2_bn",
        act_name="entry_flow_conv1_2_relu",
    )
    blocks = XCEPTION_BLOCKS[variant]
    for block in blocks:
        for unit in range(block.units):
            stride, unit_rate = atrous.step(block.stride)
            last = block is blocks[-1]
            rates = [unit_rate * int(m) for m in multi_grid] if last else [unit_rate] * 3
            x = _unit(x, block, f"{block.flow}_block{block.index}_unit{unit + 1}", options, stride, rates)
    x = add_head(
        x,
        include_top=include_top,
        pooling=pooling,
        classes=classes,
        dropout_rate=dropout_rate,
        classifier_activation=classifier_activation,
    )
    model = (RematModel if remat else keras.Model)(inputs, x, name=name or variant)
    model.feature_info = feature_info(model, endpoint_names(variant))
    if weights is not None:
        from .weights import load_weights

        load_weights(model, weights, by_name="auto")
    if features_only:
        features = feature_extractor(model, out_strides)
        return rematerialised(features) if remat else features
    return model


def _doc(variant: str) -> str:
    blocks = XCEPTION_BLOCKS[variant]
    entry = ", ".join(f"[{b.depths[0]}]s{b.stride}" for b in blocks if b.flow == "entry_flow")
    middle = next(b.units for b in blocks if b.flow == "middle_flow")
    return f"""Builds DeepLab's aligned Xception-{variant.removeprefix("xception")}.

Entry flow {entry}, middle flow [728]x3 with sum shortcuts repeated {middle} times,
exit flow [728, 1024, 1024]s2 and [1536, 1536, 2048] with BN+ReLU after every conv.
Input 299x299 by default (any size >= 32), scaled to [-1, 1] inside the model.
Arguments as :func:`AlignedXception` (``output_stride``, ``multi_grid``, ``features_only``…).
"""


def _documented(variant: str) -> Callable[[Callable[..., keras.Model]], Callable[..., keras.Model]]:
    def decorate(constructor: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        constructor.__doc__ = _doc(variant)
        constructor.variant = variant
        return constructor

    return decorate


@_documented("xception41")
def Xception41(
    include_top: bool = True,
    weights: str | None = None,
    input_tensor=None,
    input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | Callable | None = "softmax",
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    return AlignedXception(
        "xception41",
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


@_documented("xception65")
def Xception65(
    include_top: bool = True,
    weights: str | None = None,
    input_tensor=None,
    input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | Callable | None = "softmax",
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    return AlignedXception(
        "xception65",
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


@_documented("xception71")
def Xception71(
    include_top: bool = True,
    weights: str | None = None,
    input_tensor=None,
    input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | Callable | None = "softmax",
    name: str | None = None,
    **kwargs,
) -> keras.Model:
    return AlignedXception(
        "xception71",
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
