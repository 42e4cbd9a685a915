"""The keras.applications plumbing every constructor shares.

Argument checks that name the fix, the image input (``input_tensor`` /
``input_shape``), the classifier head with keras.applications' layer names, the
atrous rule for ``output_stride`` and the thin constructor signature. The
EfficientNet builder and the aligned Xception both build on it; it imports
nothing else from the package but :mod:`efficientnet.layers`.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

import keras
import numpy as np
from keras import layers

from .layers import DENSE_KERNEL_INITIALIZER

__all__ = [
    "MIN_INPUT_SIZE",
    "OUTPUT_STRIDES",
    "Atrous",
    "add_head",
    "check_remat",
    "deep_graph_recursion",
    "resolve_input",
    "validate_common_arguments",
]

MIN_INPUT_SIZE = 32
OUTPUT_STRIDES = (8, 16, 32)


class Atrous:
    """DeepLab's atrous rule, one place for every family: past ``output_stride``, a stride becomes
    a dilation of the convolutions that follow.

    ``step(strides)`` is called once per strided unit in network order and returns
    ``(strides, dilation)`` for it: the stride to apply and the dilation rate the
    unit's own convolutions use (the rate *before* this unit's stride is absorbed).
    ``stride`` is the feature stride reached so far.
    """

    def __init__(self, output_stride: int, stride: int = 1):
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}.")
        self.output_stride = output_stride
        self.stride = stride
        self.dilation = 1

    def step(self, strides: int) -> tuple[int, int]:
        dilation = self.dilation
        if strides > 1 and self.stride * strides > self.output_stride:
            self.dilation *= strides
            return 1, dilation
        self.stride *= strides
        return strides, dilation


@contextmanager
def deep_graph_recursion(limit: int = 20000):
    """Keras walks a functional graph recursively: V2-XL's ~1,500 layers need a deeper stack."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


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
    if include_top and classifier_activation is not None:
        try:
            keras.activations.get(classifier_activation)
        except (ValueError, TypeError):
            raise ValueError(
                f"classifier_activation must be 'softmax', None (logits) or a Keras activation name or function "
                f"such as 'sigmoid', got {classifier_activation!r}."
            ) from None
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
