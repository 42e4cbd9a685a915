"""Reusable block functions: conv-BN-act, the DeepLab-style separable pair, SE, MBConv.

Every function takes a Keras tensor and returns one, adding named Keras layers
(``keras.layers`` only, so models run on every backend and load without custom
objects). Names follow keras.applications so that official ``.h5`` files load
by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
from keras import layers

from .config import residual_connection

__all__ = [
    "CONV_KERNEL_INITIALIZER",
    "DENSE_KERNEL_INITIALIZER",
    "BlockOptions",
    "channel_axis",
    "conv_bn",
    "separable_conv_bn",
    "deeplab_separable_names",
    "squeeze_excite",
    "mbconv_block",
    "fused_mbconv_block",
]

# The initialisers of the TensorFlow reference implementation.
CONV_KERNEL_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"},
}
DENSE_KERNEL_INITIALIZER = {
    "class_name": "VarianceScaling",
    "config": {"scale": 1.0 / 3.0, "mode": "fan_out", "distribution": "uniform"},
}

PADDING_STYLES = ("same", "symmetric")


@dataclass(frozen=True)
class BlockOptions:
    """Settings shared by every block of one model.

    Attributes:
        activation: activation after each BN that has one.
        bn_momentum, bn_epsilon: BatchNormalization arguments (PyTorch-trained
            weights need ``bn_epsilon=1e-5``).
        padding: ``"same"`` pads strided convs as TensorFlow does (more at the end,
            correct for any input size); ``"symmetric"`` pads ``(k - 1) // 2`` on
            every side as PyTorch does.
    """

    activation: str | Callable = "swish"
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    padding: str = "same"

    def __post_init__(self) -> None:
        if self.padding not in PADDING_STYLES:
            raise ValueError(f"padding must be one of {PADDING_STYLES}, got {self.padding!r}.")

    def bn(self, name: str) -> layers.BatchNormalization:
        return layers.BatchNormalization(
            axis=channel_axis(), momentum=self.bn_momentum, epsilon=self.bn_epsilon, name=name
        )

    def act(self, name: str) -> layers.Activation:
        return layers.Activation(self.activation, name=name)


def channel_axis() -> int:
    return -1 if keras.config.image_data_format() == "channels_last" else 1


def _padding_for(x, kernel_size: int, strides: int, dilation_rate: int, options: BlockOptions, pad_name: str):
    """Returns ``(x, conv_padding)``: explicit symmetric padding where the style needs it."""
    if strides == 1 or options.padding == "same":
        return x, "same"
    pad = (kernel_size - 1) * dilation_rate // 2
    x = layers.ZeroPadding2D(padding=pad, name=pad_name)(x)
    return x, "valid"


def conv_bn(
    x,
    filters: int,
    kernel_size: int,
    options: BlockOptions,
    *,
    strides: int = 1,
    activation: bool = True,
    conv_name: str,
    bn_name: str,
    act_name: str | None = None,
):
    """Conv2D (no bias) → BN → optional activation."""
    x, padding = _padding_for(x, kernel_size, strides, 1, options, f"{conv_name}_pad")
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=False,
        kernel_initializer=CONV_KERNEL_INITIALIZER,
        name=conv_name,
    )(x)
    x = options.bn(bn_name)(x)
    if activation:
        x = options.act(act_name or f"{conv_name}_activation")(x)
    return x


def separable_conv_bn(
    x,
    filters: int,
    kernel_size: int,
    options: BlockOptions,
    *,
    strides: int = 1,
    dilation_rate: int = 1,
    depth_activation: bool = True,
    pointwise_activation: bool | None = None,
    between: Callable | None = None,
    names: dict[str, str],
):
    """DeepLab's separable convolution: depthwise → BN → act → pointwise 1×1 → BN → act.

    Two separate layers (never Keras' fused ``SeparableConv2D``) so that each has
    its own BN, as in DeepLab's ``SepConv_BN`` and in MBConv.

    Args:
        depth_activation: ``True`` puts an activation after each BN; ``False`` puts
            one activation *before* the depthwise conv instead (DeepLab's
            pre-activation form).
        pointwise_activation: overrides whether the pointwise BN is followed by an
            activation (MBConv's linear bottleneck passes ``False``). Defaults to
            ``depth_activation``.
        between: applied between the depthwise and pointwise halves (MBConv's SE).
        names: layer names for ``dwconv``, ``dwbn``, ``dwact``, ``pwconv``, ``pwbn``
            and, where used, ``pwact``, ``preact`` and ``pad``.
    """
    if pointwise_activation is None:
        pointwise_activation = depth_activation
    if not depth_activation:
        x = options.act(names["preact"])(x)
    x, padding = _padding_for(x, kernel_size, strides, dilation_rate, options, names.get("pad", ""))
    x = layers.DepthwiseConv2D(
        kernel_size,
        strides=strides,
        dilation_rate=dilation_rate,
        padding=padding,
        use_bias=False,
        depthwise_initializer=CONV_KERNEL_INITIALIZER,
        name=names["dwconv"],
    )(x)
    x = options.bn(names["dwbn"])(x)
    if depth_activation:
        x = options.act(names["dwact"])(x)
    if between is not None:
        x = between(x)
    x = layers.Conv2D(
        filters,
        1,
        use_bias=False,
        kernel_initializer=CONV_KERNEL_INITIALIZER,
        name=names["pwconv"],
    )(x)
    x = options.bn(names["pwbn"])(x)
    if pointwise_activation:
        x = options.act(names["pwact"])(x)
    return x


def deeplab_separable_names(name: str) -> dict[str, str]:
    """Layer names of one DeepLab separable conv: ``{name}_depthwise``, ``{name}_depthwise_bn``…"""
    return {
        "preact": f"{name}_preact",
        "pad": f"{name}_pad",
        "dwconv": f"{name}_depthwise",
        "dwbn": f"{name}_depthwise_bn",
        "dwact": f"{name}_depthwise_relu",
        "pwconv": f"{name}_pointwise",
        "pwbn": f"{name}_pointwise_bn",
        "pwact": f"{name}_pointwise_relu",
    }


def squeeze_excite(x, reduced_filters: int, options: BlockOptions, prefix: str):
    """Squeeze-and-excitation with biased 1×1 convs: pool → reduce (act) → expand (sigmoid) → gate."""
    filters = x.shape[channel_axis()]
    se = layers.GlobalAveragePooling2D(keepdims=True, name=f"{prefix}se_squeeze")(x)
    se = layers.Conv2D(
        reduced_filters,
        1,
        activation=options.activation,
        kernel_initializer=CONV_KERNEL_INITIALIZER,
        name=f"{prefix}se_reduce",
    )(se)
    se = layers.Conv2D(
        filters,
        1,
        activation="sigmoid",
        kernel_initializer=CONV_KERNEL_INITIALIZER,
        name=f"{prefix}se_expand",
    )(se)
    return layers.multiply([x, se], name=f"{prefix}se_excite")


def _residual(x, inputs, drop_rate: float, prefix: str):
    if drop_rate > 0:
        # Drop-connect: one Bernoulli draw per sample, shared over H, W and C.
        x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{prefix}drop")(x)
    return layers.add([x, inputs], name=f"{prefix}add")


def mbconv_block(
    inputs,
    *,
    filters_in: int,
    filters_out: int,
    kernel_size: int,
    strides: int,
    expand_ratio: int,
    se_ratio: float,
    id_skip: bool,
    drop_rate: float,
    options: BlockOptions,
    prefix: str,
    dilation_rate: int = 1,
    dwconv_name: str = "dwconv",
):
    """Mobile inverted bottleneck: expand 1×1 → separable pair with SE inside → residual."""
    filters = filters_in * expand_ratio
    x = inputs
    if expand_ratio != 1:
        x = conv_bn(
            x,
            filters,
            1,
            options,
            conv_name=f"{prefix}expand_conv",
            bn_name=f"{prefix}expand_bn",
            act_name=f"{prefix}expand_activation",
        )
    between = None
    if 0 < se_ratio <= 1:
        reduced = max(1, int(filters_in * se_ratio))

        def between(t):
            return squeeze_excite(t, reduced, options, prefix)

    x = separable_conv_bn(
        x,
        filters_out,
        kernel_size,
        options,
        strides=strides,
        dilation_rate=dilation_rate,
        depth_activation=True,
        pointwise_activation=False,
        between=between,
        names={
            "pad": f"{prefix}dwconv_pad",
            "dwconv": f"{prefix}{dwconv_name}",
            "dwbn": f"{prefix}bn",
            "dwact": f"{prefix}activation",
            "pwconv": f"{prefix}project_conv",
            "pwbn": f"{prefix}project_bn",
        },
    )
    if residual_connection(id_skip, strides, filters_in, filters_out):
        x = _residual(x, inputs, drop_rate, prefix)
    return x


def fused_mbconv_block(
    inputs,
    *,
    filters_in: int,
    filters_out: int,
    kernel_size: int,
    strides: int,
    expand_ratio: int,
    se_ratio: float,
    id_skip: bool,
    drop_rate: float,
    options: BlockOptions,
    prefix: str,
):
    """EfficientNetV2's Fused-MBConv: k×k expand conv (with the stride) → 1×1 project.

    With ``expand_ratio == 1`` it is a single k×k conv-BN-act named ``project_*``.
    """
    x = inputs
    if expand_ratio != 1:
        x = conv_bn(
            x,
            filters_in * expand_ratio,
            kernel_size,
            options,
            strides=strides,
            conv_name=f"{prefix}expand_conv",
            bn_name=f"{prefix}expand_bn",
            act_name=f"{prefix}expand_activation",
        )
        if 0 < se_ratio <= 1:
            x = squeeze_excite(x, max(1, int(filters_in * se_ratio)), options, prefix)
        x = conv_bn(
            x,
            filters_out,
            1,
            options,
            activation=False,
            conv_name=f"{prefix}project_conv",
            bn_name=f"{prefix}project_bn",
        )
    else:
        x = conv_bn(
            x,
            filters_out,
            kernel_size,
            options,
            strides=strides,
            conv_name=f"{prefix}project_conv",
            bn_name=f"{prefix}project_bn",
            act_name=f"{prefix}project_activation",
        )
    if residual_connection(id_skip, strides, filters_in, filters_out):
        x = _residual(x, inputs, drop_rate, prefix)
    return x
