"""Feature extraction: the endpoint table of every family and multi-output feature models.

The rule, the same for every family and stable across versions: the endpoint
at stride ``s`` (``s < 32``) is the tensor that *enters* the convolution
taking stride ``s`` to ``2s`` (the pre-downsampling tensor); stride 32 is the
last feature map.

- V1 and Lite: the first block of each downsampling stage starts with its 1×1
  expansion, so the endpoints are ``block2a/3a/4a/6a_expand_activation`` and
  ``top_activation`` — exactly what segmentation_models taps.
- V2: Fused-MBConv stages expand *with* the stride, so strides 2 and 4 are the
  output of the stage before (``block1{x}_…``, ``block2{x}_add``); strides 8 and 16
  are ``block4a/6a_expand_activation`` as in V1; 32 is ``top_activation``.
- Aligned Xception: the ReLU entering each strided separable conv
  (``…_sepconv3_preact``, timm's taps), and ``exit_flow_block2_unit1_sepconv3_pointwise_relu``.

Names do not change with ``output_stride``: a dilated model keeps every
endpoint below its output stride at its real stride, and has none beyond.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import NamedTuple

import keras

from . import config
from .config import XCEPTION_BLOCKS, BlockArgs, Variant

__all__ = ["STRIDES", "FeatureInfo", "endpoint_names", "endpoints", "feature_extractor", "feature_info", "known_tables"]

STRIDES = (2, 4, 8, 16, 32)


def _block_output(prefix: str, block: BlockArgs) -> str:
    """The name of the last layer of a block."""
    if block.has_residual:
        return f"{prefix}add"
    if block.fused and block.expand_ratio == 1:
        return f"{prefix}project_activation"
    return f"{prefix}project_bn"


def _efficientnet_names(variant: Variant) -> dict[int, str]:
    names, stride, previous = {}, 2, "stem_activation"
    for prefix, block in config.scaled_blocks(variant):
        if block.strides == 2:
            entering = previous if block.fused or block.expand_ratio == 1 else f"{prefix}expand_activation"
            names[stride] = entering
            stride *= 2
        previous = _block_output(prefix, block)
    names[stride] = "top_activation"
    return names


def _xception_names(variant: str) -> dict[int, str]:
    names, stride = {}, 2
    for block in XCEPTION_BLOCKS[variant]:
        for unit in range(block.units):
            if block.stride == 2:
                names[stride] = f"{block.flow}_block{block.index}_unit{unit + 1}_sepconv3_preact"
                stride *= 2
    last = XCEPTION_BLOCKS[variant][-1]
    names[stride] = f"{last.flow}_block{last.index}_unit{last.units}_sepconv3_pointwise_relu"
    return names


def known_tables() -> dict[str, dict[int, str]]:
    """stride → layer name for every built-in variant, keyed by variant name."""
    return {name: dict(table) for name, table in _known_tables().items()}


@lru_cache(maxsize=1)
def _known_tables() -> dict[str, dict[int, str]]:
    tables = {name: _efficientnet_names(v) for name, v in config.VARIANTS.items()}
    tables.update({name: _xception_names(name) for name in XCEPTION_BLOCKS})
    return tables


def endpoint_names(variant: str | Variant) -> dict[int, str]:
    """stride → layer name for a variant (``"b0"``, ``"efficientnetv2-s"``, ``"xception65"``, a Variant)."""
    if isinstance(variant, str) and config.model_family(variant) == "xception":
        return _xception_names(config.normalise_name(variant))
    variant = config.get_variant(variant) if isinstance(variant, str) else variant
    return _efficientnet_names(variant)


class FeatureInfo(NamedTuple):
    """One endpoint of a built model: its stride, channels and the layer whose output it is."""

    stride: int
    channels: int
    layer: str


def feature_info(model: keras.Model, table: Mapping[int, str]) -> tuple[FeatureInfo, ...]:
    """The endpoints of a model being built, from its own block table; the builders record them as
    ``model.feature_info``. A dilated model keeps every name (its features past the output
    stride have the output stride; :func:`feature_extractor` refuses them)."""
    channel_axis = -1 if keras.config.image_data_format() == "channels_last" else 1
    return tuple(
        FeatureInfo(stride, int(model.get_layer(name).output.shape[channel_axis]), name)
        for stride, name in sorted(table.items())
    )


def _table_for(model: keras.Model) -> dict[int, str]:
    recorded = getattr(model, "feature_info", None)
    if recorded:
        return {i.stride: i.layer for i in recorded}
    names = {layer.name for layer in model.layers}
    tables = known_tables()
    if model.name in tables and set(tables[model.name].values()) <= names:
        return tables[model.name]
    candidates = [t for t in tables.values() if set(t.values()) <= names]
    if not candidates:
        raise ValueError(
            f"{model.name} is not a model of this library (no endpoint table fits its layer names); "
            "pass layer_names={stride: name} to feature_extractor."
        )
    # A shallower variant's names can all exist in a deeper one (V2-B0's in V2-S): the table
    # of the model's own variant is the one whose stage ends come last.
    order = {layer.name: i for i, layer in enumerate(model.layers)}
    return max(candidates, key=lambda t: sum(order[n] for n in t.values()))


def endpoints(model: keras.Model, strides: Sequence[int] = STRIDES) -> dict[int, tuple[str, int]]:
    """stride → (layer name, channels) for a built model of this library."""
    table = _table_for(model)
    result = {}
    for stride in strides:
        if stride not in table:
            raise ValueError(f"No endpoint at stride {stride}; strides are {sorted(table)}.")
        name = table[stride]
        result[stride] = (name, int(model.get_layer(name).output.shape[-1]))
    return result


def _real_stride(model: keras.Model, names: Mapping[int, str]) -> dict[int, int]:
    """Strides measured by shape inference (at the model's input size, or a 512×512 probe)."""
    channels_last = keras.config.image_data_format() == "channels_last"
    shape = list(model.inputs[0].shape)
    shape[0] = 1
    spatial = [1, 2] if channels_last else [2, 3]
    for axis in spatial:
        shape[axis] = shape[axis] or 512
    sub = keras.Model(model.inputs, [model.get_layer(n).output for n in names.values()])
    spec = sub.compute_output_spec(keras.KerasTensor(tuple(shape)))
    spec = spec if isinstance(spec, (list, tuple)) else [spec]
    size = shape[spatial[0]]
    return {s: 2 ** round(math.log2(size / out.shape[spatial[0]])) for s, out in zip(names, spec)}


def feature_extractor(
    model: keras.Model,
    out_strides: Sequence[int] = (4, 8, 16, 32),
    layer_names: Mapping[int, str] | None = None,
    name: str | None = None,
    *,
    strides: Sequence[int] | None = None,
) -> keras.Model:
    """A multi-output model returning ``model``'s features at ``out_strides`` (shallowest first).

    The outputs are a list, shallowest first, named by stride: ``output_names`` is
    ``["stride_4", "stride_8", ...]`` (so ``dict(zip(m.output_names, m(x)))`` keys them).

    Args:
        model: a model of this library (any family, include_top either way), or any
            model with ``layer_names`` given.
        out_strides: a subset of 2, 4, 8, 16, 32 (the name ``features_only`` uses).
        layer_names: overrides the endpoint table.
        strides: the former name of ``out_strides``, still accepted.

    Raises:
        ValueError: a stride the model does not have (e.g. 32 with ``output_stride=16``).
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"feature_extractor needs a keras.Model, got {type(model).__name__}; build one first, e.g. "
            "efficientnet.EfficientNetB0(include_top=False, weights=None), or use features_only=True."
        )
    if strides is not None:
        if out_strides != (4, 8, 16, 32) and list(out_strides) != list(strides):
            raise ValueError(f"Pass out_strides or its old name strides, not both ({out_strides!r}, {strides!r}).")
        out_strides = strides
    strides = out_strides
    if isinstance(strides, (str, bytes)) or not hasattr(strides, "__iter__"):
        raise TypeError(f"strides must be a sequence of strides such as (4, 8, 16, 32), got {strides!r}.")
    strides = list(strides)
    if not strides:
        raise ValueError(f"strides is empty: name at least one of {STRIDES}, e.g. (4, 8, 16, 32).")
    strides = sorted(set(strides))
    table = dict(layer_names) if layer_names is not None else _table_for(model)
    missing = [s for s in strides if s not in table]
    if missing:
        raise ValueError(f"No endpoint at strides {missing}; available: {sorted(table)}.")
    chosen = {s: table[s] for s in strides}
    known = {layer.name for layer in model.layers}
    absent = {s: n for s, n in chosen.items() if n not in known}
    if absent:
        raise ValueError(
            f"{model.name} has no layers named {', '.join(repr(n) for n in absent.values())} (asked for strides "
            f"{sorted(absent)}); layer_names must name layers of the model (see model.summary() or "
            "efficientnet.features.endpoint_names)."
        )
    real = _real_stride(model, chosen)
    wrong = {s: r for s, r in real.items() if r != s}
    if wrong:
        raise ValueError(
            f"{model.name} has no features at strides {sorted(wrong)} (its output stride is "
            f"{max(real.values())}; a dilated model keeps the strides below its output stride)."
        )
    # Each output is named by its stride (model.output_names == ["stride_4", "stride_8", ...]).
    outputs = [keras.layers.Identity(name=f"stride_{s}")(model.get_layer(n).output) for s, n in chosen.items()]
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    extractor = keras.Model(inputs, outputs, name=name or f"{model.name}_features")
    extractor.feature_info = feature_info(model, chosen)
    return extractor
