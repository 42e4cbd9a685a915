"""Segmentation heads on any backbone of this library: DeepLabV3+ and U-Net.

Both are plain functional Keras models of built-in layers (``.keras`` round
trip without custom objects, every backend, mixed precision with a float32
output). The backbone is given by name (``"efficientnetb3"``, ``"lite0"``,
``"efficientnetv2-s"``, ``"xception65"``) or as a model of this library; its
endpoints come from :mod:`efficientnet.features`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np
from keras import layers

from .features import feature_extractor
from .layers import BlockOptions, channel_axis, conv_bn, deeplab_separable_names, separable_conv_bn

__all__ = ["DeepLabV3Plus", "Unet", "build_backbone"]

_ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36), 32: (3, 6, 9)}


def build_backbone(
    backbone: str | keras.Model,
    input_shape: Sequence[int],
    weights: str | None = None,
    output_stride: int = 32,
) -> keras.Model:
    """A headless backbone by name (any constructor's variant name) or the model itself."""
    if isinstance(backbone, keras.Model):
        return backbone
    if not isinstance(backbone, str):
        raise ValueError(f"backbone must be a variant name or a keras.Model, got {backbone!r}.")
    from .registry import create_model

    return create_model(
        backbone, include_top=False, weights=weights, input_shape=input_shape, output_stride=output_stride
    )


def _static_size(input_shape: Sequence[int], multiple: int) -> tuple[int, int]:
    if input_shape is None or len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {input_shape!r}.")
    h, w = (input_shape[0], input_shape[1]) if channel_axis() == -1 else (input_shape[1], input_shape[2])
    if not h or not w or h % multiple or w % multiple:
        raise ValueError(
            f"Segmentation models need a static input size divisible by {multiple}, got {input_shape}; "
            f"pad or resize your images (e.g. to {max(multiple, (h or 256) // multiple * multiple)})."
        )
    return h, w


def _positive_int(value, name: str, hint: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer ({hint}), got {value!r}.")
    return int(value)


def _check_rate(value, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.floating)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}; 0 disables it.")
    return float(value)


def _check_backbone_model(backbone) -> None:
    """A given backbone must be headless: a 4-D feature map, not class scores."""
    if isinstance(backbone, keras.Model) and len(backbone.outputs[0].shape) != 4:
        raise ValueError(
            f"The backbone {backbone.name} outputs {tuple(backbone.outputs[0].shape)}, not a feature map: build it "
            "with include_top=False and pooling=None, or pass its variant name."
        )


def _classifier(x, classes: int, activation, name: str):
    x = layers.Conv2D(classes, 1, name=f"{name}_logits")(x)
    return layers.Activation(activation or "linear", dtype="float32", name=f"{name}_output")(x)


def DeepLabV3Plus(
    backbone: str | keras.Model = "efficientnetb3",
    classes: int = 21,
    *,
    input_shape: Sequence[int] = (512, 512, 3),
    backbone_weights: str | None = None,
    output_stride: int = 16,
    activation: str | Callable | None = "softmax",
    decoder_filters: int = 256,
    aspp_filters: int = 256,
    low_level_filters: int = 48,
    dropout_rate: float = 0.1,
    bn_momentum: float = 0.99,
    bn_epsilon: float = 1e-5,
    name: str = "deeplabv3plus",
) -> keras.Model:
    """DeepLabV3+ (Chen et al., ECCV 2018) on a backbone of this library.

    ASPP on the deepest features (stride ``output_stride``): a 1×1 branch, three
    DeepLab separable 3×3 branches at rates (6, 12, 18) for stride 16 or
    (12, 24, 36) for stride 8, and image pooling; concatenated, projected by
    1×1 to ``aspp_filters`` and dropped out. The decoder upsamples by bilinear
    interpolation to stride 4, concatenates the stride-4 endpoint projected to
    ``low_level_filters`` channels, applies two separable 3×3 convs of
    ``decoder_filters`` and upsamples to the input size.

    Args:
        backbone: a variant name or a headless model of this library. A given
            model must have been built with the requested ``output_stride``.
        output_stride: 16 or 8 (32 works too, with rates (3, 6, 9)).
        input_shape: static, divisible by ``output_stride``.
        backbone_weights: weights for a backbone given by name.
        activation: of the final layer (``None``: logits).
        decoder_filters: channels of the decoder's separable convs.
        bn_momentum, bn_epsilon: of the head's BNs (DeepLab trains 30k+ steps with momentum
            0.9997; Keras' 0.99 suits short fine-tuning; DeepLab's epsilon 1e-5).

    Every argument after ``classes`` is keyword-only, with the same meaning in :func:`Unet`.

    Returns:
        A model mapping ``(batch, H, W, 3)`` raw pixels to ``(batch, H, W, classes)``.
    """
    if output_stride not in _ASPP_RATES:
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride!r}.")
    classes = _positive_int(classes, "classes", "the number of segmentation classes, e.g. 21 for PASCAL VOC")
    aspp_filters = _positive_int(aspp_filters, "aspp_filters", "e.g. 256")
    decoder_filters = _positive_int(decoder_filters, "decoder_filters", "e.g. 256")
    low_level_filters = _positive_int(low_level_filters, "low_level_filters", "e.g. 48")
    dropout_rate = _check_rate(dropout_rate, "dropout_rate")
    _check_backbone_model(backbone)
    if isinstance(backbone, keras.Model):
        input_shape = tuple(backbone.inputs[0].shape[1:])
    height, _ = _static_size(input_shape, max(output_stride, 4))
    base = build_backbone(backbone, input_shape, backbone_weights, output_stride)
    features = feature_extractor(base, out_strides=(4,), name=f"{name}_low_level")
    low = features.outputs[0]
    high = base.outputs[0]
    if high.shape[1] * output_stride != height:
        raise ValueError(
            f"The backbone's output stride is {height // high.shape[1]}, not {output_stride}; build it with "
            f"output_stride={output_stride}."
        )
    options = BlockOptions(activation="relu", bn_momentum=bn_momentum, bn_epsilon=bn_epsilon)
    branches = [conv_bn(high, aspp_filters, 1, options, conv_name="aspp0", bn_name="aspp0_bn", act_name="aspp0_relu")]
    for i, rate in enumerate(_ASPP_RATES[output_stride], start=1):
        branches.append(_sepconv(high, aspp_filters, rate, options, f"aspp{i}"))
    pooled = layers.GlobalAveragePooling2D(keepdims=True, name="image_pooling")(high)
    pooled = conv_bn(
        pooled,
        aspp_filters,
        1,
        options,
        conv_name="image_pooling_conv",
        bn_name="image_pooling_bn",
        act_name="image_pooling_relu",
    )
    pooled = layers.UpSampling2D(size=tuple(high.shape[1:3]), interpolation="nearest", name="image_pooling_up")(pooled)
    x = layers.Concatenate(axis=channel_axis(), name="aspp_concat")([pooled, *branches])
    x = conv_bn(x, aspp_filters, 1, options, conv_name="concat_projection", bn_name="concat_projection_bn")
    x = layers.Dropout(dropout_rate, name="aspp_dropout")(x)

    x = layers.UpSampling2D(size=output_stride // 4, interpolation="bilinear", name="decoder_upsample")(x)
    low = conv_bn(
        low,
        low_level_filters,
        1,
        options,
        conv_name="feature_projection0",
        bn_name="feature_projection0_bn",
        act_name="feature_projection0_relu",
    )
    x = layers.Concatenate(axis=channel_axis(), name="decoder_concat")([x, low])
    x = _sepconv(x, decoder_filters, 1, options, "decoder_conv0")
    x = _sepconv(x, decoder_filters, 1, options, "decoder_conv1")
    x = layers.Conv2D(classes, 1, name="logits")(x)
    x = layers.UpSampling2D(size=4, interpolation="bilinear", name="logits_upsample")(x)
    x = layers.Activation(activation or "linear", dtype="float32", name="segmentation_output")(x)
    return keras.Model(base.input, x, name=name)


def _sepconv(x, filters: int, rate: int, options: BlockOptions, name: str):
    """DeepLab's ``SepConv_BN`` with ``depth_activation=True``."""
    return separable_conv_bn(
        x,
        filters,
        3,
        options,
        dilation_rate=rate,
        depth_activation=True,
        names=deeplab_separable_names(name),
    )


def Unet(
    backbone: str | keras.Model = "efficientnetb0",
    classes: int = 1,
    *,
    input_shape: Sequence[int] = (256, 256, 3),
    backbone_weights: str | None = None,
    activation: str | Callable | None = "sigmoid",
    decoder_filters: Sequence[int] = (256, 128, 64, 32, 16),
    bn_momentum: float = 0.99,
    bn_epsilon: float = 1e-3,
    name: str = "unet",
) -> keras.Model:
    """U-Net (Ronneberger et al., 2015) with a backbone of this library as encoder.

    The decoder starts from the stride-32 features and, per stage, upsamples ×2,
    concatenates the endpoint at the new stride (16, 8, 4, 2; none at 1) and
    applies two 3×3 conv-BN-ReLU of ``decoder_filters[i]`` channels, as
    segmentation_models' U-Net does. Arguments after ``classes`` are keyword-only and
    mean what they mean in :func:`DeepLabV3Plus` (``decoder_filters`` here: one per stage;
    BN as segmentation_models: momentum 0.99, epsilon 1e-3).

    Returns:
        A model mapping ``(batch, H, W, 3)`` raw pixels to ``(batch, H, W, classes)``.
    """
    sized = hasattr(decoder_filters, "__len__") and not isinstance(decoder_filters, (str, bytes))
    if not sized or len(decoder_filters) != 5:
        raise ValueError(f"decoder_filters needs 5 values (strides 16, 8, 4, 2, 1), got {decoder_filters!r}.")
    decoder_filters = [
        _positive_int(f, "every decoder_filters value", "e.g. (256, 128, 64, 32, 16)") for f in decoder_filters
    ]
    classes = _positive_int(classes, "classes", "the number of segmentation classes; 1 for a binary mask")
    _check_backbone_model(backbone)
    if isinstance(backbone, keras.Model):
        input_shape = tuple(backbone.inputs[0].shape[1:])
    _static_size(input_shape, 32)
    base = build_backbone(backbone, input_shape, backbone_weights)
    features = feature_extractor(base, out_strides=(2, 4, 8, 16, 32), name=f"{name}_encoder")
    skips = list(features.outputs[:-1])[::-1]  # strides 16, 8, 4, 2
    x = features.outputs[-1]
    options = BlockOptions(activation="relu", bn_momentum=bn_momentum, bn_epsilon=bn_epsilon)
    for i, filters in enumerate(decoder_filters):
        stage = f"decoder_stage{i}"
        x = layers.UpSampling2D(size=2, name=f"{stage}_upsample")(x)
        if i < len(skips):
            x = layers.Concatenate(axis=channel_axis(), name=f"{stage}_concat")([x, skips[i]])
        for j in ("a", "b"):
            x = conv_bn(x, filters, 3, options, conv_name=f"{stage}{j}_conv", bn_name=f"{stage}{j}_bn")
    return keras.Model(base.input, _classifier(x, classes, activation, "final"), name=name)
