"""The one builder behind every EfficientNet constructor (V1, Lite, V2).

:func:`EfficientNet` takes a :class:`~efficientnet.config.Variant` (or its name)
and the keras.applications arguments, validates them, builds a functional
model with keras.applications' layer names and loads the requested weights
strictly.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from contextlib import contextmanager

import keras
import numpy as np
from keras import layers

from . import config
from .config import BlockArgs, Variant
from .layers import (
    DENSE_KERNEL_INITIALIZER,
    BlockOptions,
    channel_axis,
    conv_bn,
    fused_mbconv_block,
    mbconv_block,
)
from .preprocessing import MODES
from .remat import RematModel

__all__ = [
    "EfficientNet",
    "validate_common_arguments",
    "resolve_input",
    "add_head",
    "drop_connect_rates",
    "make_constructor",
]

MIN_INPUT_SIZE = 32
OUTPUT_STRIDES = (8, 16, 32)


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
        overrides["resolution"] = default_size
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
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}.")
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
        default_size=variant.resolution,
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
    current_stride, dilation = 2, 1
    for (prefix, block), rate in zip(config.scaled_blocks(variant), rates):
        strides, block_dilation = block.strides, dilation
        if current_stride * strides > output_stride:
            dilation *= strides
            strides = 1
        else:
            current_stride *= strides
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
    if normalization is not None:
        weights_lib.set_normalization(normalization, _normalisation_for(variant, weight_spec))
    if weights is not None:
        weights_lib.load_requested_weights(model, weights, weight_spec)
    if features_only:
        from .features import feature_extractor

        features = feature_extractor(model, out_strides)
        return RematModel(features.inputs, features.outputs, name=features.name) if remat else features
    return model


@contextmanager
def deep_graph_recursion(limit: int = 20000):
    """Keras walks a functional graph recursively: V2-XL's ~1,500 layers need a deeper stack."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


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


def _normalisation_for(variant: Variant, weight_spec):
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
    norm = _normalisation_for(variant, weight_spec)
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


def check_remat(remat) -> None:
    if not isinstance(remat, (bool, np.bool_)):
        raise ValueError(
            f"remat must be True or False, got {remat!r}: True recomputes each block in the backward pass "
            "to save training memory."
        )


def validate_common_arguments(
    *,
    include_top: bool,
    weights,
    pretrained: bool,
    pooling,
    classes: int,
    classifier_activation,
) -> int:
    """The keras.applications argument checks, each naming the fix; returns ``classes`` as an int.

    ``classes`` may be any integer type (``numpy.int64`` from a label array) but not a bool.
    """
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', got {pooling!r}.")
    if isinstance(classes, (bool, np.bool_)) or not isinstance(classes, (int, np.integer)) or classes < 1:
        raise ValueError(
            f"classes must be a positive integer (the number of output classes), got {classes!r}"
            f"{' (a bool)' if isinstance(classes, (bool, np.bool_)) else ''}."
        )
    classes = int(classes)
    if pretrained and include_top and classes != 1000:
        raise ValueError(
            f"weights={weights!r} with include_top=True has 1000 ImageNet classes, but classes={classes}. "
            "Use include_top=False (and add your own classifier) or classes=1000."
        )
    if pretrained and include_top and classifier_activation not in (None, "softmax"):
        raise ValueError(
            f"With pretrained weights, classifier_activation must be None or 'softmax', got {classifier_activation!r}."
        )
    return classes


def _shape_tuple(value, what: str) -> tuple:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise ValueError(f"{what} must be a tuple (height, width, channels) such as (224, 224, 3), got {value!r}.")
    shape = tuple(value)
    for dim in shape:
        if dim is not None and (isinstance(dim, (bool, np.bool_)) or not isinstance(dim, (int, np.integer))):
            raise ValueError(f"{what} must hold integers or None, got {value!r}; e.g. (224, 224, 3).")
    return tuple(None if d is None else int(d) for d in shape)


def resolve_input(
    input_tensor,
    input_shape,
    *,
    default_size: int,
    include_top: bool,
    require_rgb: bool,
):
    """Returns ``(image_input_tensor, model_inputs)`` after checking shape and channels.

    ``input_shape`` given with ``input_tensor`` must agree with the tensor's shape.
    """
    channels_last = keras.config.image_data_format() == "channels_last"
    what = "input_shape"
    if input_tensor is not None:
        if not hasattr(input_tensor, "shape"):
            raise ValueError(
                f"input_tensor must be a tensor such as keras.Input((224, 224, 3)), got {type(input_tensor).__name__}."
            )
        tensor_shape = tuple(input_tensor.shape[1:])
        if input_shape is not None:
            given = _shape_tuple(input_shape, "input_shape")
            if len(given) != len(tensor_shape) or any(
                a is not None and b is not None and a != b for a, b in zip(given, tensor_shape)
            ):
                raise ValueError(
                    f"input_shape={given} conflicts with the shape of input_tensor, {tensor_shape} (without the "
                    "batch axis). Pass only one of them, or make them agree."
                )
        else:
            input_shape, what = tensor_shape, "The shape of input_tensor (without the batch axis)"
    if input_shape is None:
        side = default_size if include_top else None
        input_shape = (side, side, 3) if channels_last else (3, side, side)
    input_shape = _shape_tuple(input_shape, what)
    if len(input_shape) != 3:
        raise ValueError(f"{what} must be (height, width, channels), got {input_shape}.")
    spatial = input_shape[:2] if channels_last else input_shape[1:]
    channels = input_shape[-1] if channels_last else input_shape[0]
    if channels is None:
        raise ValueError(f"The channel dimension of {what} must be known, got {input_shape}.")
    if channels < 1:
        raise ValueError(f"{what} {input_shape} has {channels} channels; images have at least 1 (RGB: 3).")
    if require_rgb and channels != 3:
        raise ValueError(
            f"input_shape {input_shape} has {channels} channels, but pretrained weights and the in-model "
            "ImageNet normalisation expect 3 (RGB). Use weights=None with include_preprocessing=False for "
            "other channel counts."
        )
    for side in spatial:
        if side is not None and side < MIN_INPUT_SIZE:
            raise ValueError(
                f"Input size must be at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}, got input_shape={input_shape}. "
                f"Resize your images (the variant was trained at {default_size}x{default_size})."
            )
    if input_tensor is None:
        img_input = layers.Input(shape=input_shape)
        return img_input, img_input
    if not keras.backend.is_keras_tensor(input_tensor):
        img_input = layers.Input(tensor=input_tensor, shape=input_shape)
        return img_input, img_input
    return input_tensor, keras.utils.get_source_inputs(input_tensor)


def add_head(x, *, include_top: bool, pooling, classes: int, dropout_rate: float, classifier_activation):
    """keras.applications' head: ``avg_pool`` → ``top_dropout`` → ``predictions``, or pooling only.

    The classifier computes in float32 so that mixed-precision models return
    float32 probabilities.
    """
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout_rate > 0:
            x = layers.Dropout(dropout_rate, name="top_dropout")(x)
        return layers.Dense(
            classes,
            activation=classifier_activation,
            kernel_initializer=DENSE_KERNEL_INITIALIZER,
            dtype="float32",
            name="predictions",
        )(x)
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def make_constructor(
    build: Callable[..., keras.Model],
    variant,
    name: str,
    doc: str,
    module: str,
    default_weights: str | None = "imagenet",
) -> Callable[..., keras.Model]:
    """A thin constructor with keras.applications' signature calling ``build(variant, ...)``."""

    def constructor(
        include_top: bool = True,
        weights: str | None = default_weights,
        input_tensor=None,
        input_shape: Sequence[int | None] | None = None,
        pooling: str | None = None,
        classes: int = 1000,
        classifier_activation: str | Callable | None = "softmax",
        name: str | None = None,
        **kwargs,
    ) -> keras.Model:
        return build(
            variant,
            include_top=include_top,
            weights=weights,
            input_tensor=input_tensor,
            input_shape=input_shape,
            pooling=pooling,
            classes=classes,
            classifier_activation=classifier_activation,
            name=name,
            **kwargs,
        )

    constructor.__name__ = constructor.__qualname__ = name
    constructor.__module__ = module
    constructor.__doc__ = doc
    return constructor
