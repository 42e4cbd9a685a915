"""Inference-time graph optimisation of functional Keras models.

:func:`optimize_for_inference` rebuilds a functional (or Sequential) model as a
new functional model of new layers, computing the same function in inference
mode with fewer operations:

- **BatchNormalization folding.** A BN whose input is the only use of a
  ``Conv1D/2D/3D``, ``DepthwiseConv1D/2D``, ``SeparableConv1D/2D``,
  ``Conv*DTranspose`` or ``Dense`` output (no activation on the conv, BN over the
  channel axis) is merged into it: per output channel ``s = gamma / sqrt(var + eps)``,
  ``w' = w * s``, ``b' = (b - mean) * s + beta`` (the conv gains a bias). For a
  depthwise conv the output channels are ``in_channels * depth_multiplier``; for a
  separable conv the pointwise kernel is scaled. A BN that cannot be folded (after
  an activation, or after a conv with other consumers) becomes a per-channel
  affine ``Rescaling(scale, offset)`` with the same name: one multiply-add.
- **Dropout removal.** ``Dropout`` (including drop-connect's
  ``Dropout(noise_shape=(None, 1, 1, 1))``), ``SpatialDropout*``, ``GaussianDropout``,
  ``GaussianNoise``, ``AlphaDropout`` and ``ActivityRegularization`` are the
  identity at inference and are dropped.
- **Input normalisation folding.** A chain of ``Rescaling`` / ``Normalization``
  layers from a float model input into a convolution (possibly through a
  ``ZeroPadding2D``) is a per-channel affine map ``a * x + b``. The scale ``a``
  commutes with zero padding, so it is always folded into the conv's kernel. The
  shift ``b`` is folded into the conv's bias only when the conv sees no padding at
  all (``padding="valid"`` and no ``ZeroPadding`` in between): a padded zero would
  otherwise become ``b``-dependent. Where padding exists, the chain becomes one
  ``Rescaling(scale=1, offset=b / a)`` (a per-channel add with baked constants,
  named after the chain's first layer), which keeps the result exact. Every stem of
  this library pads (TensorFlow ``"same"``, or ``ZeroPadding2D`` + ``"valid"`` for
  ``padding="symmetric"``), so for V1, Lite, V2 and Xception the scale is folded
  into the stem conv and the mean subtraction stays as that single add.
- **Swish as sigmoid times input (TensorFlow backend).** ``Activation("swish")``
  (``"silu"``) becomes ``Multiply()([Activation("sigmoid")(x), x])``, the last layer
  keeping the activation's name. Keras' ``silu`` is ``tf.nn.silu``, whose
  ``tf.custom_gradient`` wraps ``x * sigmoid(x)`` in ``IdentityN`` nodes that hide the
  pattern from grappler's remapper when it fuses ``Conv2D + BiasAdd``; written as plain
  ``Sigmoid`` and ``Mul`` after a folded conv, the three become one oneDNN
  ``_FusedConv2D(BiasAdd, _MklSwish)``: B0's stem, expand and top convs, 17 of its
  49 swishes (grappler fuses depthwise convs with ``BiasAdd`` only, and the 16 in
  the SE convs act on 1x1 maps). Same values (the function is the same). ONNX
  exports are unchanged (``Sigmoid`` and ``Mul`` either way, which onnxruntime fuses
  into ``QuickGelu``). Off on other backends, where one ``silu`` kernel beats two.
- **Baked normalisation constants.** Keras' ``Normalization`` keeps its mean and
  variance as variables or captured tensors, which exporters such as tf2onnx turn
  into extra model inputs; every remaining ``Normalization`` becomes a
  ``Rescaling`` with the constants in its config (done even with every other
  optimisation off, see :func:`bake_normalization`).

Nested functional models (a backbone used as a layer) are optimised recursively
and kept nested; shared layers stay shared; multi-input layers (``Add``,
``Multiply``, ``Concatenate``) and multi-output models (feature extractors) are
walked like any other node. Layer names are kept (a folded conv keeps the conv's
name; the folded BN and dropped layers disappear; a split swish's product keeps the
activation's name, its sigmoid is ``<name>_sigmoid``). The original model is not
modified. Outputs match the original in inference mode to float32 rounding (the
tests check 1e-4; measured at most 1.1e-5 on B0, Lite0, V2-B0, features and
DeepLabV3+ outputs of magnitude up to ~15, and 4e-6 relative on Xception41).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import keras
import numpy as np
from keras import layers

__all__ = ["optimize_for_inference", "bake_normalization", "IDENTITY_AT_INFERENCE"]

IDENTITY_AT_INFERENCE: tuple[type, ...] = tuple(
    getattr(layers, name)
    for name in (
        "Dropout",
        "SpatialDropout1D",
        "SpatialDropout2D",
        "SpatialDropout3D",
        "GaussianDropout",
        "GaussianNoise",
        "AlphaDropout",
        "ActivityRegularization",
    )
    if hasattr(layers, name)
)

_DEPTHWISE = tuple(getattr(layers, n) for n in ("DepthwiseConv1D", "DepthwiseConv2D") if hasattr(layers, n))
_SEPARABLE = tuple(getattr(layers, n) for n in ("SeparableConv1D", "SeparableConv2D") if hasattr(layers, n))
_TRANSPOSE = tuple(
    getattr(layers, n) for n in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose") if hasattr(layers, n)
)
_CONV = tuple(getattr(layers, n) for n in ("Conv1D", "Conv2D", "Conv3D") if hasattr(layers, n))
_PADDING = tuple(getattr(layers, n) for n in ("ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D") if hasattr(layers, n))


def optimize_for_inference(
    model: keras.Model,
    *,
    fold_batch_norm: bool = True,
    remove_dropout: bool = True,
    fold_preprocessing: bool = True,
    split_swish: bool | None = None,
) -> keras.Model:
    """A new functional model computing ``model(x, training=False)`` with fewer operations.

    Args:
        model: a functional or Sequential Keras model (with known inputs).
        fold_batch_norm: fold BatchNormalization into the preceding conv/dense
            layer where exact; turn the others into a per-channel ``Rescaling``.
        remove_dropout: drop the layers that are the identity at inference.
        fold_preprocessing: fold the input ``Rescaling``/``Normalization`` chain
            into the first conv where exact (see the module docstring).
        split_swish: write ``Activation("swish")`` as ``sigmoid(x) * x`` so that
            TensorFlow fuses it into the conv before it; ``None`` (default): on the
            TensorFlow backend only.

    ``Normalization`` layers that remain are always replaced by an equivalent
    ``Rescaling`` with baked constants, so that exported graphs have no extra inputs.

    Returns:
        A new ``keras.Model`` with the same inputs (names, shapes, dtypes) and outputs
        (structure, shapes), made of new layers; ``model`` is left untouched.

    Raises:
        ValueError: ``model`` is a subclassed model (no functional graph to rewrite).
    """
    if split_swish is None:
        split_swish = keras.backend.backend() == "tensorflow"
    options = _Options(fold_batch_norm, remove_dropout, fold_preprocessing, split_swish)
    from .builder import deep_graph_recursion

    with deep_graph_recursion():
        return _Rewriter(options, {}).rewrite(model)


def bake_normalization(model: keras.Model) -> keras.Model:
    """A new functional model where each ``Normalization`` is a ``Rescaling`` with baked constants.

    Nothing else changes (BN, dropout, preprocessing stay as they are): the model
    exports with exactly its own inputs.
    """
    return optimize_for_inference(
        model, fold_batch_norm=False, remove_dropout=False, fold_preprocessing=False, split_swish=False
    )


@dataclass(frozen=True)
class _Options:
    fold_batch_norm: bool
    remove_dropout: bool
    fold_preprocessing: bool
    split_swish: bool = False


@dataclass
class _ConvPlan:
    """What to do to one conv/dense node: scale its input channels, add a shift, fold a BN."""

    in_scale: np.ndarray | None = None
    in_shift: np.ndarray | None = None  # folded into the bias (only where no padding)
    bn: layers.BatchNormalization | None = None
    bn_node: object | None = None


@dataclass
class _Plan:
    identity: set = field(default_factory=set)  # node ids whose outputs are their first input
    conv: dict = field(default_factory=dict)  # node id -> _ConvPlan
    shift: dict = field(default_factory=dict)  # node id -> (shift vector, rank) replacing a preprocessing chain head
    affine_bn: set = field(default_factory=set)  # BN node ids to replace by Rescaling
    bake: set = field(default_factory=set)  # Normalization node ids to replace by Rescaling
    swish: set = field(default_factory=set)  # Activation("swish") node ids to write as sigmoid(x) * x


def _functional_graph(model: keras.Model) -> keras.Model:
    if isinstance(model, keras.Sequential):
        functional = getattr(model, "_functional", None)
        if functional is None:
            raise ValueError(
                f"Sequential model {model.name!r} has no known input shape; build it with an "
                "`keras.Input(shape=...)` first layer (or call it once) before optimizing."
            )
        return functional
    if not hasattr(model, "_nodes_by_depth") or not hasattr(model, "_inputs_struct"):
        raise ValueError(
            f"optimize_for_inference needs a functional or Sequential model; {model.name!r} is a "
            f"subclassed {type(model).__name__}. Rebuild it as `keras.Model(inputs, outputs)`."
        )
    return model


def _nodes_in_order(graph: keras.Model) -> list:
    depths = sorted(graph._nodes_by_depth, reverse=True)
    return [node for depth in depths for node in graph._nodes_by_depth[depth]]


def _as_numpy(value) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(value), dtype="float64")


def _channels_axis(node) -> int:
    """The channel axis (non-negative, batch included) of a conv/dense node's output."""
    data_format = getattr(node.operation, "data_format", "channels_last")
    rank = len(node.outputs[0].shape)
    return 1 if data_format == "channels_first" else rank - 1


def _foldable_kind(layer) -> str | None:
    """``"conv"``, ``"depthwise"``, ``"separable"``, ``"transpose"``, ``"dense"`` or ``None``."""
    if getattr(layer, "lora_enabled", False):
        return None
    policy = getattr(layer, "dtype_policy", None)
    if getattr(policy, "quantization_mode", None) is not None:
        return None
    names = {v.name for v in layer.weights}
    if isinstance(layer, _SEPARABLE):
        kind, allowed = "separable", {"depthwise_kernel", "pointwise_kernel", "bias"}
    elif isinstance(layer, _DEPTHWISE):
        kind, allowed = "depthwise", {"kernel", "bias"}
    elif isinstance(layer, _TRANSPOSE):
        kind, allowed = "transpose", {"kernel", "bias"}
    elif isinstance(layer, _CONV):
        kind, allowed = "conv", {"kernel", "bias"}
    elif type(layer) is layers.Dense:
        kind, allowed = "dense", {"kernel", "bias"}
    else:
        return None
    if not names <= allowed:
        return None
    return kind


def _linear(layer) -> bool:
    activation = getattr(layer, "activation", None)
    return activation is None or activation is keras.activations.linear or activation == "linear"


def _bn_params(bn) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(scale, offset)`` of an inference-mode BatchNormalization."""
    mean = _as_numpy(bn.moving_mean)
    variance = _as_numpy(bn.moving_variance)
    gamma = _as_numpy(bn.gamma) if bn.scale else np.ones_like(mean)
    beta = _as_numpy(bn.beta) if bn.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(variance + bn.epsilon)
    return scale, beta - mean * scale


def _weights_by_name(layer) -> dict[str, np.ndarray]:
    return {v.name: _as_numpy(v) for v in layer.weights}


def _input_affine(layer, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(a, b)`` per channel if ``layer`` computes ``a * x + b`` over the channel axis, else None."""
    channels_first = keras.config.image_data_format() == "channels_first"
    if isinstance(layer, layers.Rescaling):
        a, b = np.asarray(layer.scale, "float64"), np.asarray(layer.offset, "float64")
        # Rescaling reshapes a non-scalar scale (not offset) to (C, 1, 1) when channels-first.
        if (a.size > 1 or b.size > 1) and channels_first and (a.ndim != 3 or b.ndim != 3):
            return None
        out = []
        for v in (a, b):
            if v.size == 1:
                v = np.full(channels, float(v.reshape(())))
            elif v.size == channels and v.shape[-1 if not channels_first else 0] == channels:
                v = v.reshape(channels)
            else:
                return None
            out.append(v)
        return out[0], out[1]
    if isinstance(layer, layers.Normalization):
        if layer.invert or layer.mean is None:
            return None
        rank = len(layer.input.shape)
        keep = getattr(layer, "_keep_axis", None)
        axis = rank - 1 if not channels_first else 1
        if keep is None or tuple(keep) != (axis,):
            return None
        mean = _as_numpy(layer.mean).reshape(-1)
        variance = _as_numpy(layer.variance).reshape(-1)
        if mean.size != channels or variance.size != channels:
            return None
        std = np.maximum(np.sqrt(variance), keras.config.epsilon())
        return 1.0 / std, -mean / std
    return None


def _broadcast_shape(channels: int, rank: int, axis: int) -> tuple[int, ...]:
    """Shape of a per-channel constant broadcasting over ``(batch, ...)`` tensors of ``rank`` dims."""
    return tuple(channels if d == axis else 1 for d in range(1, rank)) if axis != rank - 1 else (channels,)


def _affine_layer(scale: np.ndarray, offset: np.ndarray, rank: int, axis: int, name: str, dtype) -> layers.Layer:
    shape = _broadcast_shape(scale.size, rank, axis)
    scale_value = 1.0 if np.all(scale == 1.0) else scale.astype("float32").reshape(shape).tolist()
    return layers.Rescaling(
        scale=scale_value,
        offset=offset.astype("float32").reshape(shape).tolist(),
        name=name,
        dtype=dtype,
    )


def _affine_supported(rank: int, axis: int) -> bool:
    # Rescaling broadcasts a (C,) constant over the last axis, and reshapes a
    # non-scalar scale to (C, 1, 1) under channels_first: only these layouts are safe.
    if axis == rank - 1:
        return keras.config.image_data_format() == "channels_last" or rank - 1 == 3
    return rank - 1 == 3


class _Rewriter:
    def __init__(self, options: _Options, cache: dict):
        self.options = options
        self.cache = cache  # id(original nested model) -> rewritten model

    # -- analysis ---------------------------------------------------------------------------------

    def _plan(self, graph: keras.Model) -> _Plan:
        nodes = [n for n in _nodes_in_order(graph) if n.operation is not None and not n.is_input]
        consumers: dict[int, list] = {}
        calls: dict[int, int] = {}
        for node in nodes:
            calls[id(node.operation)] = calls.get(id(node.operation), 0) + 1
            for x in node.input_tensors:
                consumers.setdefault(id(x), []).append(node)
        outputs = {id(x) for x in graph.outputs}

        def only_consumer(tensor):
            users = consumers.get(id(tensor), [])
            if id(tensor) in outputs or len(users) != 1:
                return None
            return users[0]

        def single_call(node):
            return calls[id(node.operation)] == 1 and len(node.outputs) == 1

        plan = _Plan()
        producer = {id(x): node for node in nodes for x in node.outputs}
        opts = self.options

        if opts.remove_dropout:
            for node in nodes:
                op = node.operation
                if isinstance(op, IDENTITY_AT_INFERENCE) and len(node.input_tensors) == 1 and len(node.outputs) == 1:
                    x, y = node.input_tensors[0], node.outputs[0]
                    if keras.backend.standardize_dtype(x.dtype) == keras.backend.standardize_dtype(y.dtype):
                        plan.identity.add(id(node))

        if opts.fold_batch_norm:
            for node in nodes:
                bn = node.operation
                if not isinstance(bn, layers.BatchNormalization) or len(node.input_tensors) != 1:
                    continue
                x = node.input_tensors[0]
                rank = len(x.shape)
                axis = bn.axis % rank if isinstance(bn.axis, int) else None
                conv_node = producer.get(id(x))
                if (
                    axis is not None
                    and conv_node is not None
                    and single_call(node)
                    and single_call(conv_node)
                    and only_consumer(x) is node
                    and _foldable_kind(conv_node.operation) is not None
                    and _linear(conv_node.operation)
                    and _channels_axis(conv_node) == axis
                    and not getattr(bn, "renorm", False)
                ):
                    plan.conv.setdefault(id(conv_node), _ConvPlan()).bn = bn
                    plan.conv[id(conv_node)].bn_node = node
                    plan.identity.add(id(node))
                elif axis is not None and _affine_supported(rank, axis) and x.shape[axis] is not None:
                    plan.affine_bn.add(id(node))

        if opts.fold_preprocessing:
            for x in graph.inputs:
                self._plan_preprocessing(x, plan, only_consumer, single_call)

        for node in nodes:
            if isinstance(node.operation, layers.Normalization) and id(node) not in plan.identity:
                if id(node) not in plan.shift:
                    plan.bake.add(id(node))

        if opts.split_swish:
            for node in nodes:
                if _is_swish(node.operation) and len(node.input_tensors) == 1 and single_call(node):
                    plan.swish.add(id(node))
        return plan

    def _plan_preprocessing(self, x, plan: _Plan, only_consumer, single_call) -> None:
        """Folds a Rescaling/Normalization chain starting at model input ``x`` into the next conv."""
        if not keras.backend.standardize_dtype(x.dtype).startswith("float") or len(x.shape) < 3:
            return
        channels_first = keras.config.image_data_format() == "channels_first"
        rank = len(x.shape)
        axis = 1 if channels_first else rank - 1
        channels = x.shape[axis]
        if channels is None:
            return
        a, b = np.ones(channels), np.zeros(channels)
        chain, tensor = [], x
        while True:
            node = only_consumer(tensor)
            if node is None or not single_call(node) or id(node) in plan.identity:
                break
            affine = _input_affine(node.operation, channels)
            if affine is None:
                break
            a, b = affine[0] * a, affine[0] * b + affine[1]
            chain.append(node)
            tensor = node.outputs[0]
        if not chain or np.any(a == 0):
            return
        padded = False
        node = only_consumer(tensor)
        if node is not None and isinstance(node.operation, _PADDING) and single_call(node):
            padded = True
            node = only_consumer(node.outputs[0])
        if node is None or not single_call(node):
            return
        conv = node.operation
        kind = _foldable_kind(conv)
        if kind not in ("conv", "depthwise") or getattr(conv, "groups", 1) != 1:
            return
        if getattr(conv, "data_format", "channels_last") != ("channels_first" if channels_first else "channels_last"):
            return
        padded = padded or conv.padding != "valid"
        conv_plan = plan.conv.setdefault(id(node), _ConvPlan())
        conv_plan.in_scale = a
        for chain_node in chain:
            plan.identity.add(id(chain_node))
        if padded:
            shift = b / a
            if np.any(shift != 0):
                plan.identity.discard(id(chain[0]))
                plan.shift[id(chain[0])] = (shift, rank, axis)
        else:
            conv_plan.in_shift = b

    # -- rebuilding -------------------------------------------------------------------------------

    def rewrite(self, model: keras.Model) -> keras.Model:
        graph = _functional_graph(model)
        plan = self._plan(graph)
        tensors: dict[int, object] = {}
        new_inputs = []
        for x in graph.inputs:
            source = x._keras_history.operation
            new = keras.Input(
                batch_shape=tuple(x.shape),
                dtype=x.dtype,
                sparse=getattr(x, "sparse", False),
                name=getattr(source, "name", None),
            )
            tensors[id(x)] = new
            new_inputs.append(new)

        clones: dict[int, layers.Layer] = {}
        names = {layer.name for layer in graph.layers}
        for node in _nodes_in_order(graph):
            if node.operation is None or node.is_input:
                continue
            args, kwargs = node.arguments.fill_in(tensors)
            nid = id(node)
            if nid in plan.identity:
                outputs = [tensors[id(node.input_tensors[0])]]
            elif nid in plan.conv:
                outputs = [self._folded_conv(node, plan.conv[nid], args, kwargs)]
            elif nid in plan.shift:
                shift, rank, axis = plan.shift[nid]
                layer = _affine_layer(
                    np.ones_like(shift), shift, rank, axis, node.operation.name, _float_policy(node.operation)
                )
                outputs = [layer(*args, **kwargs)]
            elif nid in plan.affine_bn:
                bn = node.operation
                scale, offset = _bn_params(bn)
                rank = len(node.input_tensors[0].shape)
                outputs = [_affine_layer(scale, offset, rank, bn.axis % rank, bn.name, bn.dtype_policy)(args[0])]
            elif nid in plan.swish:
                outputs = [_sigmoid_times_input(node.operation, args[0], names)]
            elif nid in plan.bake:
                layer = node.operation
                rank = len(node.input_tensors[0].shape)
                affine = _input_affine(layer, node.input_tensors[0].shape[layer._keep_axis[0]])
                if affine is None or not _affine_supported(rank, layer._keep_axis[0]):
                    outputs = [self._clone(node.operation, clones, args, kwargs)]
                else:
                    scale, offset = affine
                    new = _affine_layer(scale, offset, rank, layer._keep_axis[0], layer.name, _float_policy(layer))
                    outputs = [new(args[0])]
            else:
                outputs = [self._clone(node.operation, clones, args, kwargs)]
            outputs = keras.tree.flatten(outputs)
            for x, y in zip(node.outputs, outputs):
                tensors[id(x)] = y

        new_outputs = [tensors[id(x)] for x in graph.outputs]
        inputs = keras.tree.pack_sequence_as(graph._inputs_struct, new_inputs)
        outputs = keras.tree.pack_sequence_as(graph._outputs_struct, new_outputs)
        return keras.Model(inputs, outputs, name=model.name)

    def _clone(self, op, clones: dict, args, kwargs):
        """Calls a clone of ``op``, made once per layer so that shared layers stay shared."""
        if id(op) not in clones:
            clone, source = op, None
            if isinstance(op, keras.Model) and (isinstance(op, keras.Sequential) or hasattr(op, "_nodes_by_depth")):
                clone = self.cache.get(id(op))
                if clone is None:
                    clone = self.cache[id(op)] = self.rewrite(op)
            elif isinstance(op, layers.Layer):
                try:
                    clone, source = type(op).from_config(op.get_config()), op
                except Exception as exc:  # a layer that cannot be rebuilt from its config
                    if op.weights:
                        warnings.warn(
                            f"optimize_for_inference: layer {op.name!r} ({type(op).__name__}) cannot be "
                            f"rebuilt from its config ({exc}); the new model shares it with the original.",
                            stacklevel=4,
                        )
            # else: a stateless keras.ops operation, reused as is.
            clones[id(op)] = [clone, source]
        entry = clones[id(op)]
        outputs = entry[0](*args, **kwargs)
        if entry[1] is not None:  # first call built the clone: copy the weights once
            if entry[1].weights:
                entry[0].set_weights(entry[1].get_weights())
            entry[1] = None
        return outputs

    def _folded_conv(self, node, conv_plan: _ConvPlan, args, kwargs):
        layer = node.operation
        kind = _foldable_kind(layer)
        weights = _weights_by_name(layer)
        kernel_name = "pointwise_kernel" if kind == "separable" else "kernel"
        bias = weights.get("bias")
        if bias is None:
            channels = _output_channels(kind, weights)
            bias = np.zeros(channels)

        if conv_plan.in_scale is not None:  # per input channel: kernel axis -2 (conv, depthwise)
            kernel = weights["kernel"]
            a = conv_plan.in_scale
            if conv_plan.in_shift is not None:
                b = conv_plan.in_shift
                flat = kernel.reshape(-1, *kernel.shape[-2:])
                if kind == "conv":
                    bias = bias + np.einsum("kco,c->o", flat, b)
                else:  # depthwise: output channel c * multiplier + m
                    bias = bias + np.einsum("kcm,c->cm", flat, b).reshape(-1)
            weights["kernel"] = kernel * a[:, None]

        if conv_plan.bn is not None:
            scale, offset = _bn_params(conv_plan.bn)
            kernel = weights[kernel_name]
            if kind == "depthwise":
                kernel = kernel * scale.reshape(kernel.shape[-2], kernel.shape[-1])
            elif kind == "transpose":
                kernel = kernel * scale[:, None]
            else:
                kernel = kernel * scale
            weights[kernel_name] = kernel
            bias = bias * scale + offset

        use_bias = conv_plan.bn is not None or conv_plan.in_shift is not None or "bias" in weights
        weights["bias"] = bias
        config = layer.get_config()
        config["use_bias"] = use_bias
        new = type(layer).from_config(config)
        outputs = new(*args, **kwargs)
        new.set_weights([weights[v.name].astype(keras.backend.standardize_dtype(v.dtype)) for v in new.weights])
        return outputs


def _is_swish(layer) -> bool:
    if type(layer) is not layers.Activation:
        return False
    activation = layer.activation
    swishes = {getattr(keras.activations, n, None) for n in ("silu", "swish")} - {None}
    return activation in swishes or getattr(activation, "__name__", None) in ("silu", "swish")


def _sigmoid_times_input(layer, x, names: set):
    """``Multiply()([sigmoid(x), x])``, the product named as ``layer`` (sigmoid first: grappler's pattern)."""
    sigmoid_name = f"{layer.name}_sigmoid"
    while sigmoid_name in names:
        sigmoid_name += "_"
    names.add(sigmoid_name)
    policy = layer.dtype_policy
    gate = layers.Activation("sigmoid", name=sigmoid_name, dtype=policy)(x)
    return layers.Multiply(name=layer.name, dtype=policy)([gate, x])


def _output_channels(kind: str, weights: dict[str, np.ndarray]) -> int:
    if kind == "separable":
        return weights["pointwise_kernel"].shape[-1]
    kernel = weights["kernel"]
    if kind == "depthwise":
        return kernel.shape[-2] * kernel.shape[-1]
    if kind == "transpose":
        return kernel.shape[-2]
    return kernel.shape[-1]


def _float_policy(layer):
    """The layer's dtype policy, or float32 for a preprocessing layer with a non-float policy."""
    policy = layer.dtype_policy
    return policy if keras.backend.standardize_dtype(policy.compute_dtype).startswith("float") else "float32"
