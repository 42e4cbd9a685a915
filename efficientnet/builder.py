"""The one builder behind every EfficientNet constructor (V1, Lite, V2).

:func:`EfficientNet` takes a :class:`~efficientnet.config.Variant` (or its name)
and the keras.applications arguments, validates them, builds a functional
model with keras.applications' layer names and loads the requested weights
strictly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import keras
from keras import layers

from . import config
from .applications import (
    Atrous,
    add_head,
    check_remat,
    deep_graph_recursion,
    resolve_input,
    validate_common_arguments,
)
from .config import BlockArgs, Variant
from .features import endpoint_names, feature_extractor, feature_info
from .layers import BlockOptions, channel_axis, conv_bn, fused_mbconv_block, mbconv_block
from .preprocessing import MODES
from .remat import RematModel, rematerialised

__all__ = ["EfficientNet", "drop_connect_rates"]


def EfficientNet(
    variant: str | Variant,
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | Callable | None = "softmax",
    name: str | None = None,
    *,
    include_preprocessing: bool = True,
    dropout_rate: float | None = None,
    drop_connect_rate: float | None = None,
    activation: str | Callable | None = None,
    padding: str | None = None,
    bn_epsilon: float | None = None,
    bn_momentum: float | None = None,
    output_stride: int = 32,
    features_only: bool = False,
    out_strides: Sequence[int] = (4, 8, 16, 32),
    blocks_args: Sequence[BlockArgs | dict] | None = None,
    width_coefficient: float | None = None,
    depth_coefficient: float | None = None,
    default_size: int | None = None,
    remat: bool = False,
) -> keras.Model:
    """Builds an EfficientNet (V1, Lite or V2) from its variant table entry.

    Args:
        variant: a :class:`Variant` or a name (``"b3"``, ``"efficientnet-lite0"``, ``"efficientnetv2-s"``).
        include_top, weights, input_tensor, input_shape, pooling, classes,
            classifier_activation, name: as in ``keras.applications.EfficientNetB0``.
            ``weights`` is ``None``, a weight-set name from
            :mod:`efficientnet.weights` (``"imagenet"``, ``"noisy-student"``…) or a
            path to a ``.h5`` / ``.weights.h5`` file; loading is all-or-nothing.
        include_preprocessing: normalise raw 0–255 pixels inside the model
            (``Rescaling`` + ``Normalization``, keras.applications' layers).
        dropout_rate: before the classifier; defaults to the variant's.
        drop_connect_rate: the last block's drop-connect rate bound; block ``b`` of
            ``N`` (after depth scaling) drops with ``drop_connect_rate * b / N``.
        activation: defaults to the variant's (``swish``; ``relu6`` for Lite).
        padding: ``"same"`` (TensorFlow) or ``"symmetric"`` (PyTorch-trained weights).
        bn_epsilon, bn_momentum: BatchNormalization arguments (PyTorch uses ``1e-5``).
        output_stride: 32, 16 or 8. Past it, strides become 1 and depthwise convs
            dilate (DeepLab's atrous rule); weights stay compatible.
        features_only: return a multi-output model of the features at ``out_strides``
            (see :mod:`efficientnet.features`) instead of the classifier; implies
            ``include_top=False``.
        blocks_args, width_coefficient, depth_coefficient, default_size: override
            the variant's table and scaling, for custom networks.
        remat: recompute each block in the backward pass instead of keeping its
            activations (:class:`efficientnet.remat.RematModel`): less training
            memory for more compute; same layers, weights, outputs and gradients.
    """
    variant = config.get_variant(variant) if isinstance(variant, str) else variant
    if features_only:
        include_top, pooling = False, None
    overrides = {}
    if blocks_args is not None:
        overrides["blocks"] = tuple(b if isinstance(b, BlockArgs) else _block_from_dict(b) for b in blocks_args)
    if width_coefficient is not None:
        overrides["width"] = width_coefficient
    if depth_coefficient is not None:
        overrides["depth"] = depth_coefficient
    if default_size is not None:
        overrides["default_size"] = default_size
    if overrides:
        variant = dataclasses.replace(variant, **overrides)

    from . import weights as weights_lib

    weight_spec = weights_lib.resolve_weight_spec(variant, weights, include_top)
    classes = validate_common_arguments(
        include_top=include_top,
        weights=weights,
        pretrained=weight_spec is not None,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
    )
    atrous = Atrous(output_stride, stride=2)  # the stem has stride 2
    check_remat(remat)

    defaults = weight_spec.build_overrides() if weight_spec is not None else {}
    options = BlockOptions(
        activation=activation or variant.activation,
        bn_momentum=bn_momentum if bn_momentum is not None else variant.bn_momentum,
        bn_epsilon=bn_epsilon if bn_epsilon is not None else defaults.get("bn_epsilon", variant.bn_epsilon),
        padding=padding or defaults.get("padding", "same"),
    )
    drop_connect_rate = variant.drop_connect_rate if drop_connect_rate is None else drop_connect_rate
    dropout_rate = variant.dropout if dropout_rate is None else dropout_rate
    if not 0 <= drop_connect_rate < 1 or not 0 <= dropout_rate < 1:
        raise ValueError(
            f"dropout_rate and drop_connect_rate must lie in [0, 1), got {dropout_rate} and {drop_connect_rate}."
        )

    img_input, inputs = resolve_input(
        input_tensor,
        input_shape,
        default_size=variant.default_size,
        include_top=include_top,
        require_rgb=weight_spec is not None or include_preprocessing,
    )

    x = img_input
    normalization = None
    if include_preprocessing:
        x, normalization = _preprocessing(x, variant, weight_spec)

    x = conv_bn(
        x,
        variant.round_filters(variant.stem_filters, fixed=variant.fix_stem_head),
        3,
        options,
        strides=2,
        conv_name="stem_conv",
        bn_name="stem_bn",
        act_name="stem_activation",
    )

    rates = drop_connect_rates(variant, drop_connect_rate)
    for (prefix, block), rate in zip(config.scaled_blocks(variant), rates):
        strides, block_dilation = atrous.step(block.strides)
        kwargs = dict(
            filters_in=block.filters_in,
            filters_out=block.filters_out,
            kernel_size=block.kernel_size,
            strides=strides,
            expand_ratio=block.expand_ratio,
            se_ratio=block.se_ratio,
            id_skip=block.id_skip,
            drop_rate=rate,
            options=options,
            prefix=prefix,
        )
        if block.fused:
            if block_dilation != 1 or strides != block.strides:
                raise ValueError(f"output_stride={output_stride} would dilate Fused-MBConv block {prefix[:-1]}.")
            x = fused_mbconv_block(x, **kwargs)
        else:
            x = mbconv_block(
                x,
                dilation_rate=block_dilation,
                dwconv_name="dwconv2" if variant.family == "v2" else "dwconv",
                **kwargs,
            )

    x = conv_bn(
        x,
        variant.round_filters(variant.head_filters, fixed=variant.fix_stem_head),
        1,
        options,
        conv_name="top_conv",
        bn_name="top_bn",
        act_name="top_activation",
    )
    x = add_head(
        x,
        include_top=include_top,
        pooling=pooling,
        classes=classes,
        dropout_rate=dropout_rate,
        classifier_activation=classifier_activation,
    )
    with deep_graph_recursion():
        model = (RematModel if remat else keras.Model)(inputs, x, name=name or variant.name)
    model.feature_info = feature_info(model, endpoint_names(variant))
    if normalization is not None:
        weights_lib.set_normalization(normalization, _normalization_for(variant, weight_spec))
    if weights is not None:
        weights_lib.load_requested_weights(model, weights, weight_spec)
    if features_only:
        features = feature_extractor(model, out_strides)
        return rematerialised(features) if remat else features
    return model


def _block_from_dict(args: dict) -> BlockArgs:
    """Accepts keras.applications' V1 (``repeats``/``filters_in``) and V2 (``num_repeat``…) dicts."""
    renames = {"num_repeat": "repeats", "input_filters": "filters_in", "output_filters": "filters_out"}
    args = {renames.get(k, k): v for k, v in args.items()}
    if "conv_type" in args:
        args["fused"] = bool(args.pop("conv_type"))
    try:
        return BlockArgs(**args)
    except TypeError as exc:
        raise ValueError(f"Invalid block arguments {args}: {exc}.") from None


def drop_connect_rates(variant: Variant, drop_connect_rate: float) -> list[float]:
    """Per-block drop-connect rates: ``rate * b / N`` over the *scaled* block count ``N``."""
    total = variant.num_blocks
    return [drop_connect_rate * b / total for b in range(total)]


def _normalization_for(variant: Variant, weight_spec):
    mode = weight_spec.preprocessing if weight_spec is not None else variant.preprocessing
    return MODES[mode]


def _preprocessing(x, variant: Variant, weight_spec):
    """keras.applications' in-model preprocessing.

    V1/Lite: ``Rescaling(1/255)`` then a ``Normalization`` layer whose statistics
    are weights (as in keras.applications' V1 files, so they load by position).
    V2: constants, no weights, as in keras.applications' V2: per-channel mean/std
    as ``Rescaling`` + ``Normalization``, a scalar one as a single ``Rescaling``.
    """
    if variant.family != "v2":
        x = layers.Rescaling(1.0 / 255.0, name="rescaling")(x)
        normalization = layers.Normalization(axis=channel_axis(), name="normalization")
        return normalization(x), normalization
    norm = _normalization_for(variant, weight_spec)
    if norm is None:
        return x, None
    if len(set(norm.mean)) == 1 and len(set(norm.std)) == 1:
        scale = 1.0 / norm.std[0]
        return layers.Rescaling(scale, offset=-norm.mean[0] * scale, name="rescaling")(x), None
    x = layers.Rescaling(1.0 / 255.0, name="rescaling")(x)
    mean, variance = norm.unit()
    if x.shape[channel_axis()] != 3:
        mean, variance = float(mean.mean()), float(variance.mean())
    else:
        mean, variance = mean.tolist(), variance.tolist()
    return layers.Normalization(mean=mean, variance=variance, axis=channel_axis(), name="normalization")(x), None
