"""DeepLab's aligned Xception-41/65/71 (tensorflow/models research/deeplab/core/xception.py).

Root: conv 3×3/32 stride 2 and conv 3×3/64. Then units of three DeepLab
separable convolutions (:func:`efficientnet.layers.separable_conv_bn`) where
the third carries the stride (no max-pooling), with a ``conv`` (1×1 + BN),
``sum`` or ``none`` shortcut. Strided convs pad symmetrically (DeepLab's
``fixed_padding``) so features stay aligned. Layer names flatten DeepLab's
scopes: ``entry_flow_block1_unit1_sepconv1_depthwise``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import NamedTuple

import keras
from keras import layers

from .builder import add_head, check_remat, make_constructor, resolve_input, validate_common_arguments
from .layers import BlockOptions, conv_bn, deeplab_separable_names, separable_conv_bn
from .remat import RematModel

__all__ = [
    "XceptionBlock",
    "XCEPTION_BLOCKS",
    "AlignedXception",
    "Xception41",
    "Xception65",
    "Xception71",
]


class XceptionBlock(NamedTuple):
    """One DeepLab Xception block: ``units`` identical units of three separable convs."""

    flow: str  # entry_flow, middle_flow, exit_flow
    index: int  # block number inside the flow
    depths: tuple[int, int, int]
    skip: str  # "conv", "sum" or "none"
    stride: int
    units: int = 1
    activation_in_separable: bool = False  # exit flow block 2: BN+ReLU after every conv


def _entry(*specs: tuple[int, int]) -> list[XceptionBlock]:
    return [XceptionBlock("entry_flow", i + 1, (d, d, d), "conv", s) for i, (d, s) in enumerate(specs)]


def _table(entry: list[XceptionBlock], middle_units: int) -> tuple[XceptionBlock, ...]:
    return (
        *entry,
        XceptionBlock("middle_flow", 1, (728, 728, 728), "sum", 1, units=middle_units),
        XceptionBlock("exit_flow", 1, (728, 1024, 1024), "conv", 2),
        XceptionBlock("exit_flow", 2, (1536, 1536, 2048), "none", 1, activation_in_separable=True),
    )


XCEPTION_BLOCKS: Mapping[str, tuple[XceptionBlock, ...]] = MappingProxyType(
    {
        "xception41": _table(_entry((128, 2), (256, 2), (728, 2)), 8),
        "xception65": _table(_entry((128, 2), (256, 2), (728, 2)), 16),
        "xception71": _table(_entry((128, 2), (256, 1), (256, 2), (728, 1), (728, 2)), 16),
    }
)
DEFAULT_SIZE = 299
OUTPUT_STRIDES = (8, 16, 32)


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
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}.")
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
    current_stride, rate = 2, 1
    blocks = XCEPTION_BLOCKS[variant]
    for block in blocks:
        for unit in range(block.units):
            stride, unit_rate = block.stride, rate
            if stride > 1 and current_stride * stride > output_stride:
                rate *= stride
                stride = 1
            elif stride > 1:
                current_stride *= stride
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
    if weights is not None:
        from .weights import load_weights

        load_weights(model, weights, by_name="auto")
    if features_only:
        from .features import feature_extractor

        features = feature_extractor(model, out_strides)
        return RematModel(features.inputs, features.outputs, name=features.name) if remat else features
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


def _make(variant: str) -> Callable[..., keras.Model]:
    name = f"Xception{variant.removeprefix('xception')}"
    return make_constructor(AlignedXception, variant, name, _doc(variant), __name__, default_weights=None)


Xception41 = _make("xception41")
Xception65 = _make("xception65")
Xception71 = _make("xception71")
