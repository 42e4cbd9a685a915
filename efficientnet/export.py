"""Export to SavedModel, ONNX, OpenVINO IR and LiteRT (TFLite), on Keras' own ``model.export``.

:func:`export_model` exports the inference-optimised model
(:func:`efficientnet.inference.optimize_for_inference`: BN folded, dropout removed,
input normalisation folded or baked as constants) with one input per model input
(one image input for every model of this library) and, unless ``batch_size`` is
given, a dynamic batch dimension. Keras' plain ``model.export(format="onnx")`` of an
EfficientNet has three inputs, because its ``Normalization`` statistics are captured
tensors that tf2onnx turns into graph inputs; here they are constants, also with
``optimize=False`` (which keeps every other layer as it is).

An optimised ONNX export is also rewritten at the graph level for onnxruntime
(:func:`simplify_onnx`; the values stay those of the Keras model): the batch dimension
of inputs and outputs is named ``batch``; tf2onnx's no-op ``Reshape`` s around the
squeeze-excitation (SE) convs and the multiplication by 1 left by the folded input
scale are removed; the per-channel input shift (the ImageNet mean) is stored at the
input's full size; each SE gate is resized to its activation's shape with that shape
declared, and SE convs with a channel count that is not a multiple of 16 get zero
channels. What each fixes, from onnxruntime's per-op profile (B0, batch 16, one thread):
the broadcast add over the trailing 3-channel axis took 17 ms of 230 in float32 and
50 ms of 315 in int8 (after: 1.4 ms); the ``Reshape`` s left the SE blocks' batch
dimension unknown, which kept the residual ``Add`` s out of onnxruntime's blocked
(NCHWc) convolutions; and the gate's broadcast ``Mul``, which onnxruntime runs only in
plain NCHW, made every SE block convert its expanded activation out of the blocked
layout and back (39 + 16 reorders, 12 % of the time; after: none on B0, 5 small ones
on B3). Float32 B0 went from 237 to 202 ms per batch of 16 on one thread, 1.06x to
1.24x timm's export of the same network (``tf_efficientnet_b0``) in the same session.

The export is atomic: it is written to a temporary directory beside the target and
renamed into place, so a failed export leaves any previous file untouched.

Packages (the ``export`` extra): ONNX needs ``tf2onnx`` and ``onnx`` (run it with
``onnxruntime``), OpenVINO needs ``openvino``; SavedModel and LiteRT need only
TensorFlow (run ``.tflite`` files with ``ai-edge-litert``). Tested with the
TensorFlow backend.

Command line: ``efficientnet export MODEL_OR_WEIGHTS OUT --format onnx [--model lite0]``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import itertools
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:  # imported where used: `efficientnet export --help` starts without Keras and TensorFlow
    import keras

    from .preprocessing import DataConfig

__all__ = ["FORMATS", "export_model", "add_export_parser", "quantize_onnx", "simplify_onnx"]

FORMATS = ("saved_model", "onnx", "openvino", "litert")
_KERAS_FORMATS = {"saved_model": "tf_saved_model", "onnx": "onnx", "openvino": "openvino", "litert": "litert"}
_SUFFIXES = {"openvino": ".xml", "litert": ".tflite"}
_DUMMY_SIZE = 64  # spatial size of the dummy batch for models with unknown input size


def _required_packages(format: str) -> list[tuple[str, str]]:
    """``(module, pip requirement)`` pairs the export needs on the current backend."""
    import keras

    backend = keras.backend.backend()
    if format == "saved_model":
        return [("tensorflow", "tensorflow")]
    if format == "onnx":
        if backend == "tensorflow":
            return [("tf2onnx", "tf2onnx"), ("onnx", "onnx")]
        if backend == "jax":
            return [("jax2onnx", "jax2onnx"), ("onnx", "onnx")]
        return [("onnx", "onnx"), ("onnxscript", "onnxscript")]
    if format == "openvino":
        return [("openvino", "openvino")] + ([("tensorflow", "tensorflow")] if backend == "jax" else [])
    if format == "litert":
        if backend == "torch":
            return [("litert_torch", "litert-torch")]
        return [("tensorflow", "tensorflow")]
    return []


def _check_format(format: str, path: Path) -> None:
    if format not in FORMATS:
        raise ValueError(f"Unknown export format {format!r}; choose one of {', '.join(FORMATS)}.")
    missing = [pip for module, pip in _required_packages(format) if importlib.util.find_spec(module) is None]
    if missing:
        raise ValueError(
            f"Exporting to {format} needs the package(s) {', '.join(missing)}; install them with "
            f"`pip install {' '.join(missing)}`."
        )
    suffix = _SUFFIXES.get(format)
    if suffix and path.suffix != suffix:
        raise ValueError(
            f"A {format} export must be written to a '{suffix}' file, got {str(path)!r}; use e.g. "
            f"{str(path.with_suffix(suffix))!r}."
        )


def _input_signature(model: keras.Model, batch_size: int | None):
    """The model's input structure as ``keras.InputSpec``s named after its input layers."""
    import keras

    def spec(x):
        shape = (batch_size, *tuple(x.shape)[1:])
        name = getattr(x._keras_history.operation, "name", None)
        return keras.InputSpec(shape=shape, dtype=keras.backend.standardize_dtype(x.dtype), name=name)

    return [keras.tree.map_structure(spec, model._inputs_struct)]


def _ensure_called(model: keras.Model) -> None:
    """Runs the model once on a zero batch: Keras refuses to export a never-called model."""
    import keras

    if getattr(model, "_called", False):
        return

    def dummy(x):
        shape = [1] + [_DUMMY_SIZE if d is None else d for d in tuple(x.shape)[1:]]
        return np.zeros(shape, keras.backend.standardize_dtype(x.dtype))

    inputs = keras.tree.map_structure(dummy, model._inputs_struct)
    model(inputs, training=False)


def _check_onnx_inputs(path: Path, model: keras.Model) -> None:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in initializers]
    if len(inputs) != len(model.inputs):
        raise RuntimeError(
            f"The ONNX graph has inputs {inputs} where the model has {len(model.inputs)}: a layer captures "
            "tensors that tf2onnx turns into inputs. Export with optimize=True, or store such constants in the "
            "layer's config."
        )


# What a SavedModel directory holds: a directory with anything else is not replaced, even with overwrite.
_SAVED_MODEL_ENTRIES = frozenset(
    {
        "saved_model.pb",
        "saved_model.pbtxt",
        "variables",
        "assets",
        "assets.extra",
        "fingerprint.pb",
        "keras_metadata.pb",
    }
)


def _is_export(path: Path, format: str) -> bool:
    """Whether an existing ``path`` is an export of ``format`` (what ``overwrite=True`` may replace)."""
    if format == "saved_model":
        if not path.is_dir() or path.is_symlink():
            return False
        entries = set(os.listdir(path))
        return bool(entries & {"saved_model.pb", "saved_model.pbtxt"}) and entries <= _SAVED_MODEL_ENTRIES
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        head = f.read(4096)
    if format == "litert":
        return head[4:8] == b"TFL3"
    if format == "openvino":
        return b"<net " in head
    try:  # onnx
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
    except Exception:
        return False
    return proto.ir_version > 0 and len(proto.graph.node) > 0


def _check_target(target: Path, format: str, overwrite: bool) -> None:
    """Refuses to replace anything but an earlier export, and that only with ``overwrite``."""
    paths = [target, target.with_suffix(".bin")] if format == "openvino" else [target]
    existing = [p for p in paths if os.path.lexists(p) and not (p.is_dir() and not os.listdir(p))]
    if not existing:
        if format != "saved_model" and target.is_dir():  # an empty directory where a file is asked for
            raise ValueError(f"{str(target)!r} is a directory; give a file path for a {format} export.")
        return
    if format == "saved_model" and not target.is_dir():
        raise ValueError(f"{str(target)!r} exists and is not a directory; a SavedModel is a directory.")
    if format != "saved_model" and target.is_dir():
        raise ValueError(f"{str(target)!r} is a directory; give a file path for a {format} export.")
    what = "a non-empty directory" if target.is_dir() else "a file"
    if not overwrite:
        raise ValueError(
            f"{str(existing[0])!r} already exists ({what}). Choose a new path, or pass --overwrite "
            "(overwrite=True) to replace an earlier export there."
        )
    if not _is_export(target, format) or (format == "openvino" and target.with_suffix(".bin").is_dir()):
        kind = "a SavedModel (no saved_model.pb, or other files beside it)" if format == "saved_model" else format
        raise ValueError(
            f"{str(target)!r} is not {kind} export, so it is not replaced even with --overwrite: "
            "choose another path (or move it away yourself)."
        )


def _move_into_place(staged: Path, target: Path, format: str, scratch: Path, overwrite: bool) -> None:
    _check_target(target, format, overwrite)  # again: the target may have changed during the export
    if format == "openvino":  # the .bin first: the .xml names the model and refers to it
        os.replace(staged.with_suffix(".bin"), target.with_suffix(".bin"))
        os.replace(staged, target)
    elif staged.is_dir():
        if target.is_dir() and os.listdir(target):  # an earlier export (checked): swap it out, then in
            old = scratch / "previous"
            os.replace(target, old)
            try:
                os.replace(staged, target)
            except BaseException:
                os.replace(old, target)
                raise
        else:
            os.replace(staged, target)
    else:
        os.replace(staged, target)


def export_model(
    model: keras.Model,
    path: str | os.PathLike,
    format: str = "onnx",
    *,
    optimize: bool = True,
    batch_size: int | None = None,
    verbose: bool = False,
    overwrite: bool = False,
) -> Path:
    """Exports ``model`` for inference, atomically, with one input per model input.

    Args:
        model: a functional Keras model (any model of this library, a segmentation
            head, a feature extractor...).
        path: the target: a directory for ``"saved_model"``, a ``.xml`` file for
            ``"openvino"`` (its ``.bin`` is written beside it), a ``.tflite`` file for
            ``"litert"``, a file (``.onnx``) for ``"onnx"``.
        format: ``"saved_model"``, ``"onnx"``, ``"openvino"`` or ``"litert"``.
        optimize: export :func:`~efficientnet.inference.optimize_for_inference`'s
            model (BN folded, dropout removed, input normalisation folded) and, for
            ONNX, clean the graph with :func:`simplify_onnx`. With ``False`` the
            layers stay as they are, except that ``Normalization`` layers become
            ``Rescaling`` with baked constants (no extra inputs).
        batch_size: a fixed batch size; ``None`` (default) exports a dynamic one.
        verbose: let Keras and the converters print their messages.
        overwrite: replace an earlier export at ``path`` (swapped in by renames once the
            new one is complete). Without it an existing file or non-empty directory is
            refused; with it, anything that is not an export of ``format`` still is.

    Returns:
        The path written.

    Raises:
        ValueError: an unknown format, a missing export package (named, with the
            ``pip install`` line), a path of the wrong kind or one that exists (see ``overwrite``).
    """
    from .inference import bake_normalization, optimize_for_inference

    target = Path(path)
    _check_format(format, target)
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be None (dynamic) or a positive integer, got {batch_size!r}.")
    _check_target(target, format, overwrite)
    exported = optimize_for_inference(model) if optimize else bake_normalization(model)
    _ensure_called(exported)
    created = _make_parents(target)
    try:
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except BaseException:
        _remove_created(created)
        raise
    try:
        staged = scratch / target.name
        exported.export(
            str(staged),
            format=_KERAS_FORMATS[format],
            input_signature=_input_signature(exported, batch_size),
            verbose=verbose,
        )
        if format == "onnx":
            _check_onnx_inputs(staged, exported)
            if optimize:
                _simplify_onnx_file(staged)
        _move_into_place(staged, target, format, scratch, overwrite)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        _remove_created(created)
        raise
    shutil.rmtree(scratch, ignore_errors=True)
    return target


def _make_parents(target: Path) -> Path | None:
    """Creates ``target``'s missing parent directories; returns the topmost one created."""
    top = None
    parent = target.absolute().parent
    while not parent.exists() and parent != parent.parent:
        top, parent = parent, parent.parent
    target.parent.mkdir(parents=True, exist_ok=True)
    return top


def _remove_created(top: Path | None) -> None:
    """Removes the directories :func:`_make_parents` created, if a failed export left them empty."""
    if top is None:
        return
    for directory in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [top]:
        with contextlib.suppress(OSError):
            directory.rmdir()


# -- ONNX graph clean-up ---------------------------------------------------------------------------

_SIMPLIFY_MAX_BYTES = 1 << 30  # larger files (protobuf's 2 GB limit, external data) are left as exported
_EXPAND_MAX_ELEMENTS = 1 << 24  # a full-size input constant is at most this large (64 MB of float32)
_SMALL_CONSTANT = 1 << 16  # constants read back from the graph (shapes, scalars, per-channel vectors)


def simplify_onnx(model, *, onnxruntime_layout: bool = True):
    """Rewrites an ONNX model, in place, into an equivalent graph that runs faster; returns it.

    Every rewrite is exact (the outputs are bitwise those of the original graph, or differ
    by float32 summation order where a conv gains zero channels):

    - the first (batch) dimension of every graph input and output that is dynamic is
      named ``batch``, and stale ``value_info`` is dropped;
    - a ``Reshape`` to the shape its input already has (tf2onnx wraps the 1x1 convs of
      squeeze-excitation in ``Reshape(x, [-1, C, 1, 1])``), an ``Identity``, a ``Mul`` or
      ``Div`` by a constant of ones and an ``Add`` or ``Sub`` of a constant of zeros that
      does not broadcast its input to a larger shape are bypassed;
    - an elementwise ``Add``/``Sub``/``Mul``/``Div`` of a graph input and a small
      non-scalar constant (a per-channel mean) gets the constant broadcast to the
      input's full static shape (batch excluded): runtimes then take their same-shape
      path instead of broadcasting over a short trailing axis.

    With ``onnxruntime_layout`` (default), two rewrites keep squeeze-excitation blocks in
    onnxruntime's blocked NCHWc layout, which its CPU convolutions use (without them,
    every SE block converts its expanded activation to NCHW and back, for the gate's
    broadcast ``Mul``, which onnxruntime does not run blocked):

    - the gate ``Mul(x, g)``, ``g`` of shape ``(N, C, 1, 1)`` and ``x`` of static
      ``(C, H, W)``, becomes ``Mul(x, Resize(g, scales=(1, 1, H, W), nearest))`` with the
      resized gate's shape declared (``value_info``, batch dimension named as ``x``'s), so
      that onnxruntime proves the two shapes equal and runs both in NCHWc;
    - the SE convs on the ``(N, C, 1, 1)`` path whose channel count is not a multiple of
      16 (B3's 34 and 58 reduced channels) get zero channels up to one (zero filters and
      bias in the reducing conv, zero input weights in the expanding one), as
      onnxruntime's NCHWc convolutions want.

    :func:`quantize_onnx` undoes the gate resizing (int8 kernels broadcast directly).
    Shapes come from ONNX shape inference; a node whose shapes are not all known is left
    alone. Needs the ``onnx`` package.
    """
    graph = model.graph
    del graph.value_info[:]
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"
    for _ in range(8):  # a pass can make more shapes known; two suffice for every model here
        if not _bypass_identities(graph, _inferred_shapes(model)):
            break
    _expand_input_constants(graph, _inferred_shapes(model))
    if onnxruntime_layout and _opset(model) >= 11:  # Resize with scales
        _pad_se_channels(graph, _inferred_shapes(model))
        _upsample_se_gates(graph, _inferred_shapes(model))
    _drop_unused_initializers(graph)
    return model


def _opset(model) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _simplify_onnx_file(path: Path) -> None:
    import onnx

    if path.stat().st_size > _SIMPLIFY_MAX_BYTES:
        return
    model = onnx.load(str(path))
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in model.graph.initializer):
        return
    onnx.save(simplify_onnx(model), str(path))


class _Shape(NamedTuple):
    dims: list  # ints, None where unknown
    elem_type: int
    params: list  # the symbolic names of the unknown dims ("" where none)


def _inferred_shapes(model) -> dict:
    """``name -> _Shape`` of every tensor ONNX shape inference knows the rank of."""
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(model)
    shapes = {}
    for value in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        tensor = value.type.tensor_type
        if tensor.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
            shapes[value.name] = _Shape(dims, tensor.elem_type, [d.dim_param for d in tensor.shape.dim])
    return shapes


class _Constants:
    """The graph's initializers, readable as numpy arrays when small."""

    def __init__(self, graph):
        from onnx import numpy_helper

        self._numpy_helper = numpy_helper
        self.protos = {init.name: init for init in graph.initializer}

    def value(self, name: str) -> np.ndarray | None:
        """The constant ``name`` if it is small (a shape, a scalar, a per-channel vector), else None."""
        init = self.protos.get(name)
        if init is None or int(np.prod(init.dims, dtype=np.int64)) > _SMALL_CONSTANT:
            return None
        return self._numpy_helper.to_array(init)

    def array(self, name: str) -> np.ndarray | None:
        init = self.protos.get(name)
        return None if init is None else self._numpy_helper.to_array(init)

    def make(self, array: np.ndarray, name: str):
        return self._numpy_helper.from_array(array, name)


def _identity_reshape(node, constants: _Constants, shapes: dict) -> str | None:
    target = constants.value(node.input[1]) if len(node.input) == 2 else None
    dims = shapes[node.input[0]].dims if node.input[0] in shapes else None
    if target is None or not dims or len(dims) != target.size or None in dims[1:]:
        return None
    copy_zero = not any(a.name == "allowzero" and a.i for a in node.attribute)  # 0 copies the input's dim
    target = [int(t) for t in target.reshape(-1)]
    first = target[0] == -1 or (target[0] == 0 and copy_zero) or target[0] == dims[0]
    rest = all(t == d or (t == 0 and copy_zero) for t, d in zip(target[1:], dims[1:]))
    return node.input[0] if first and rest else None


def _identity_arithmetic(node, constants: _Constants, shapes: dict) -> str | None:
    neutral = {"Mul": 1, "Div": 1, "Add": 0, "Sub": 0}[node.op_type]
    positions = (0, 1) if node.op_type in ("Mul", "Add") else (1,)  # x / 1 and x - 0, never 1 / x or 0 - x
    for position in positions:
        value = constants.value(node.input[position])
        x = node.input[1 - position]
        if value is None or x not in shapes or not np.all(value == neutral):
            continue
        dims, elem_type, _ = shapes[x]
        if elem_type != constants.protos[node.input[position]].data_type or value.ndim > len(dims):
            continue
        trailing = dims[len(dims) - value.ndim :]
        if all(c == 1 or c == d for c, d in zip(value.shape, trailing)):  # x keeps its shape
            return x
    return None


def _passed_through(node, constants: _Constants, shapes: dict) -> str | None:
    """The input that ``node`` returns unchanged, or None."""
    if node.op_type == "Identity":
        return node.input[0]
    if node.op_type == "Reshape":
        return _identity_reshape(node, constants, shapes)
    if node.op_type in ("Mul", "Div", "Add", "Sub") and len(node.input) == 2:
        return _identity_arithmetic(node, constants, shapes)
    return None


def _bypass_identities(graph, shapes: dict) -> bool:
    constants = _Constants(graph)
    graph_outputs = {value.name for value in graph.output}
    changed = False
    for node in list(graph.node):
        source = _passed_through(node, constants, shapes)
        if source is None or node.output[0] in graph_outputs:
            continue
        old = node.output[0]
        graph.node.remove(node)
        for other in graph.node:
            for i, name in enumerate(other.input):
                if name == old:
                    other.input[i] = source
        changed = True
    return changed


def _full_shape(x_dims: list, value: np.ndarray) -> list | None:
    """``[1, *x_dims[1:]]`` if ``value`` broadcasts to it without growing ``x``, else None."""
    if len(x_dims) < 3 or None in x_dims[1:] or value.ndim > len(x_dims) or value.size <= 1:
        return None
    full = [1, *x_dims[1:]]
    if int(np.prod(full)) > _EXPAND_MAX_ELEMENTS:
        return None
    try:
        return full if list(np.broadcast_shapes(tuple(full), value.shape)) == full else None
    except ValueError:
        return None


def _expand_input_constants(graph, shapes: dict) -> None:
    constants = _Constants(graph)
    inputs = {value.name for value in graph.input} - set(constants.protos)
    for node in graph.node:
        if node.op_type not in ("Add", "Sub", "Mul", "Div") or len(node.input) != 2:
            continue
        for position in (0, 1):
            x, name = node.input[1 - position], node.input[position]
            value = constants.value(name)
            if x not in inputs or x not in shapes or value is None:
                continue
            full = _full_shape(shapes[x][0], value)
            if full is None:
                continue
            expanded = name + "_full"
            while expanded in constants.protos:
                expanded += "_"
            array = np.broadcast_to(value.reshape((1,) * (len(full) - value.ndim) + value.shape), full)
            proto = constants.make(np.ascontiguousarray(array, dtype=value.dtype), expanded)
            graph.initializer.append(proto)
            constants.protos[expanded] = proto
            node.input[position] = expanded


_NCHWC_BLOCK = 16  # onnxruntime's NCHWc block on AVX-512 (8 on AVX2): channel counts it handles best
_ELEMENTWISE = {"Sigmoid", "Relu", "Clip", "Tanh", "HardSigmoid", "LeakyRelu", "Mul", "Add"}


def _consumers(graph) -> dict:
    users: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users


def _attribute(node, name: str, default):
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _pointwise_conv(node, constants: _Constants):
    """The 4-D weight array of a group-1 1x1 stride-1 unpadded ``Conv``, else None."""
    if node.op_type != "Conv" or _attribute(node, "group", 1) != 1:
        return None
    if any(v != 1 for v in _attribute(node, "strides", [1])) or any(v != 0 for v in _attribute(node, "pads", [0])):
        return None
    init = constants.protos.get(node.input[1])
    if init is None or len(init.dims) != 4 or list(init.dims[2:]) != [1, 1]:
        return None
    return constants.array(node.input[1])


def _pad_se_channels(graph, shapes: dict) -> None:
    """Zero channels after 1x1 convs on ``(N, C, 1, 1)`` maps up to a multiple of the NCHWc block.

    A reducing conv qualifies when its output's only consumers are elementwise ops among
    themselves (the activation) that end in 1x1 convs, all on 1x1 maps.
    """
    constants = _Constants(graph)
    users = _consumers(graph)
    outputs = {value.name for value in graph.output}
    for node in list(graph.node):
        weight = _pointwise_conv(node, constants)
        if weight is None or node.output[0] not in shapes or node.output[0] in outputs:
            continue
        channels = weight.shape[0]
        padded = -(-channels // _NCHWC_BLOCK) * _NCHWC_BLOCK
        if padded == channels or shapes[node.output[0]].dims[2:] != [1, 1]:
            continue
        sinks = _se_activation_sinks(node.output[0], users, constants, outputs)
        if not sinks:
            continue
        bias = constants.value(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        new_weight = np.zeros((padded, *weight.shape[1:]), weight.dtype)
        new_weight[:channels] = weight
        new_bias = np.zeros(padded, weight.dtype)
        if bias is not None:
            new_bias[:channels] = bias
        name = node.output[0] + "_padded"
        graph.initializer.extend([constants.make(new_weight, name + "_w"), constants.make(new_bias, name + "_b")])
        del node.input[1:]
        node.input.extend([name + "_w", name + "_b"])
        for sink in sinks:
            sink_weight = _pointwise_conv(sink, constants)
            widened = np.zeros((sink_weight.shape[0], padded, 1, 1), sink_weight.dtype)
            widened[:, :channels] = sink_weight
            sink_name = sink.output[0] + "_widened_w"
            graph.initializer.append(constants.make(widened, sink_name))
            sink.input[1] = sink_name


def _se_activation_sinks(start: str, users: dict, constants: _Constants, outputs: set) -> list:
    """The 1x1 convs that end the activation after ``start``, if nothing else reads it, else []."""

    def elementwise(node) -> bool:  # an activation of region tensors (Clip's bounds may be constants)
        if node.op_type not in _ELEMENTWISE:
            return False
        inputs = [i for i in node.input if i]
        if node.op_type in ("Mul", "Add"):
            return all(i in region for i in inputs)  # a per-channel constant would need zeros too
        return inputs[0] in region and all(i in constants.protos for i in inputs[1:])

    region, changed = {start}, True
    while changed:  # the activation's tensors: elementwise results of region tensors only
        changed = False
        for tensor in list(region):
            for user in users.get(tensor, []):
                if user.output[0] not in region and elementwise(user):
                    region.add(user.output[0])
                    changed = True
    sinks = {}
    for tensor in region:
        if tensor in outputs or not users.get(tensor):
            return []
        for user in users[tensor]:
            if _pointwise_conv(user, constants) is not None and user.input[0] == tensor:
                sinks[id(user)] = user
            elif not (elementwise(user) and user.output[0] in region):
                return []
    return list(sinks.values())


def _upsample_se_gates(graph, shapes: dict) -> None:
    """``Mul(x, g)`` with ``g`` ``(N, C, 1, 1)`` -> ``Mul(x, Resize(g))``, the resized shape declared.

    A gate resized by an earlier call only gets its declaration back (``simplify_onnx``
    drops ``value_info`` first), so the rewrite is idempotent.
    """
    from onnx import TensorProto, helper

    constants = _Constants(graph)
    producers = {name: node for node in graph.node for name in node.output}
    for node in list(graph.node):
        if node.op_type != "Mul" or len(node.input) != 2:
            continue
        for position in (0, 1):
            x, gate = node.input[1 - position], node.input[position]
            if x not in shapes or gate in constants.protos or x in constants.protos:
                continue
            xs = shapes[x]
            if len(xs.dims) != 4 or None in xs.dims[1:] or xs.elem_type != TensorProto.FLOAT or xs.dims[2:] == [1, 1]:
                continue
            batch = xs.dims[0] if xs.dims[0] is not None else xs.params[0]
            resize = producers.get(gate)
            source = resize.input[0] if _gate_resize(resize, xs.dims[2:], constants) else gate
            gs = shapes.get(source)
            if not batch or gs is None or gs.dims[1:] != [xs.dims[1], 1, 1]:
                continue
            if gs.dims[0] != xs.dims[0] or gs.params[0] != xs.params[0]:
                continue  # the declared shape must be provably that of x
            if source == gate:
                base = f"{node.name or node.output[0]}/gate_resize"
                scales = constants.make(np.asarray([1, 1, *xs.dims[2:]], "float32"), base + "/scales")
                roi = constants.make(np.zeros(0, "float32"), base + "/roi")
                graph.initializer.extend([scales, roi])
                resize = helper.make_node(
                    "Resize",
                    [gate, roi.name, scales.name],
                    [base + "/output"],
                    name=base,
                    mode="nearest",
                    coordinate_transformation_mode="asymmetric",
                    nearest_mode="floor",
                )
                graph.node.insert(list(graph.node).index(node), resize)
                node.input[position] = resize.output[0]
            declared = helper.make_tensor_value_info(resize.output[0], TensorProto.FLOAT, [batch, *xs.dims[1:]])
            graph.value_info.append(declared)
            break


def _gate_resize(node, spatial: list, constants: _Constants) -> bool:
    """Whether ``node`` is a nearest ``Resize`` by ``(1, 1, *spatial)`` (one of ours)."""
    if node is None or node.op_type != "Resize" or len(node.input) != 3:
        return False
    scales = constants.value(node.input[2])
    mode = _attribute(node, "mode", b"nearest")
    return scales is not None and mode in (b"nearest", "nearest") and scales.tolist() == [1, 1, *spatial]


def _collapse_gate_resizes(model) -> int:
    """Undoes :func:`_upsample_se_gates`: a nearest ``Resize`` of a 1x1 map feeding only ``Mul`` s."""
    graph = model.graph
    users = _consumers(graph)
    shapes = _inferred_shapes(model)
    removed = 0
    for node in list(graph.node):
        if node.op_type != "Resize" or _attribute(node, "mode", b"nearest") not in (b"nearest", "nearest"):
            continue
        source = shapes.get(node.input[0])
        if source is None or len(source.dims) != 4 or source.dims[2:] != [1, 1]:
            continue
        consumers = users.get(node.output[0], [])
        if not consumers or any(user.op_type != "Mul" for user in consumers):
            continue
        for user in consumers:
            for i, name in enumerate(user.input):
                if name == node.output[0]:
                    user.input[i] = node.input[0]
        graph.node.remove(node)
        removed += 1
    kept = [value for value in graph.value_info if any(value.name in n.output for n in graph.node)]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    _drop_unused_initializers(graph)
    return removed


def _drop_unused_initializers(graph) -> None:
    used = {name for node in graph.node for name in node.input} | {value.name for value in graph.output}
    unused = [init for init in graph.initializer if init.name not in used]
    for init in unused:
        graph.initializer.remove(init)
    names = {init.name for init in unused}
    for value in [value for value in graph.input if value.name in names]:
        graph.input.remove(value)


def quantize_onnx(
    model_path: str | os.PathLike,
    output_path: str | os.PathLike,
    calibration_images: str | os.PathLike | Sequence[str | os.PathLike] | np.ndarray,
    *,
    image_size: int | None = None,
    per_channel: bool = True,
    limit: int = 128,
    keep_float: Sequence[str] | None = None,
    percentile: float | None = 99.999,
    data_config: DataConfig | None = None,
    overwrite: bool = False,
) -> Path:
    """Static int8 quantisation of an exported ONNX model with onnxruntime, calibrated on images.

    By default the stem and first block and the classifier stay in float (about 3% of
    B0's or Lite0's compute): their int8 weights cost the most accuracy (Lite0's
    block-1a depthwise conv alone takes the logits' signal-to-noise ratio to 18 dB), and
    activation ranges come from the 99.999th percentile rather than min/max. On Lite0
    with its ImageNet weights and 64 crops of the examples' photos this moves top-1
    agreement with float from 0.81 to 0.94 (1.00 on the crops whose float top-2 classes
    are not within 0.01), at about 2x the float throughput instead of 2.5x.

    Args:
        model_path: an ONNX file from :func:`export_model` (float32, raw 0-255 RGB input).
        output_path: the quantised model, written atomically.
        calibration_images: a folder of images, a list of image files, or a float array
            ``(N, H, W, 3)`` of raw pixels.
        image_size: the crop size (default: the model's input size).
        per_channel: per-channel weight scales (more accurate, as TensorRT and TFLite do).
        limit: at most this many calibration images.
        keep_float: names of the ONNX nodes to leave in float; default: every node up to
            the first block's projection (``block1a_project…``) and the ``predictions``
            layer's; ``()`` quantises everything.
        percentile: calibrate activation ranges on this percentile; ``None``: min/max.
        data_config: the model's :class:`~efficientnet.preprocessing.DataConfig`
            (``efficientnet.preprocessing.data_config(variant, weights)``): the calibration
            crops get its evaluation crop, interpolation and size; default: the papers'
            ``size / (size + 32)`` bicubic crop.
        overwrite: replace an earlier ONNX model at ``output_path`` (as :func:`export_model`).

    Returns:
        The path written. Needs the ``onnxruntime`` package.
    """
    if importlib.util.find_spec("onnxruntime") is None:
        raise ValueError("quantize_onnx needs onnxruntime: `pip install onnxruntime`.")
    import onnxruntime
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    model_path, output_path = Path(model_path), Path(output_path)
    _check_target(output_path, "onnx", overwrite)
    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    (model_input,) = session.get_inputs()
    size = image_size or next((d for d in model_input.shape[1:3] if isinstance(d, int)), None)
    batch = _calibration_batch(calibration_images, size, limit, data_config)
    del session

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self._items = iter(batch)

        def get_next(self):
            item = next(self._items, None)
            return None if item is None else {model_input.name: item[None]}

    output_path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{output_path.name}.", suffix=".tmp", dir=output_path.parent))
    try:
        staged = scratch / output_path.name
        source = _int8_source(model_path, scratch)
        calibration = {}
        if percentile is not None:
            calibration = {
                "calibrate_method": CalibrationMethod.Percentile,
                "extra_options": {"CalibPercentile": float(percentile)},
            }
        settings = dict(
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(_float_nodes(source) if keep_float is None else keep_float),
        )
        try:
            with _histograms_in_chunks(8):
                quantize_static(str(source), str(staged), _Reader(), **settings, **calibration)
        except ValueError as exc:  # numpy's histogram refuses a tensor whose values span ~0 (e.g. random weights)
            if not calibration or "bins" not in str(exc):
                raise
            warnings.warn(f"Percentile calibration failed ({exc}); calibrating on min/max instead.", stacklevel=2)
            quantize_static(str(source), str(staged), _Reader(), **settings)
        _check_target(output_path, "onnx", overwrite)
        os.replace(staged, output_path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return output_path


@contextlib.contextmanager
def _histograms_in_chunks(size: int):
    """Feeds onnxruntime's histogram (percentile) calibrator ``size`` images at a time.

    Its ``collect_data`` keeps every image's intermediate outputs until the reader is
    exhausted (B3 at 300 px with 128 images needs over 20 GB and is killed); its collector
    merges histograms across calls, so calling it once per chunk gives the same ranges
    within one histogram bin.
    """
    from onnxruntime.quantization import CalibrationDataReader
    from onnxruntime.quantization.calibrate import HistogramCalibrater

    class _Chunk(CalibrationDataReader):
        def __init__(self, items):
            self._items = iter(items)

        def get_next(self):
            return next(self._items, None)

    original = HistogramCalibrater.collect_data

    def collect_data(self, data_reader):
        items = iter(data_reader.get_next, None)
        while chunk := list(itertools.islice(items, size)):
            original(self, _Chunk(chunk))

    HistogramCalibrater.collect_data = collect_data
    try:
        yield
    finally:
        HistogramCalibrater.collect_data = original


def _float_nodes(path: Path) -> list[str]:
    """The nodes :func:`quantize_onnx` keeps in float by default: the stem and first block
    (every node up to the last one named ``…block1a_project…``, in the graph's topological
    order) and the classifier (nodes named ``…predictions…``)."""
    import onnx

    names = [node.name for node in onnx.load(str(path), load_external_data=False).graph.node]
    ends = [i for i, name in enumerate(names) if "block1a_project" in name]
    stem = names[: ends[-1] + 1] if ends else []
    return stem + [name for name in names[len(stem) :] if "predictions" in name]


def _int8_source(model_path: Path, scratch: Path) -> Path:
    """The float model to quantise: without :func:`simplify_onnx`'s gate ``Resize`` s.

    The blocked layout they enable is float-only; int8 kernels broadcast the gate directly
    (measured on B0 at batch 16: 128 ms without the resizes, 154 ms with them).
    """
    import onnx

    if model_path.stat().st_size > _SIMPLIFY_MAX_BYTES:
        return model_path
    model = onnx.load(str(model_path))
    if not _collapse_gate_resizes(model):
        return model_path
    source = scratch / "float32.onnx"
    onnx.save(model, str(source))
    return source


def _calibration_batch(images, size: int | None, limit: int, data_config: DataConfig | None = None) -> np.ndarray:
    if isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise ValueError(f"Calibration images must be (N, H, W, 3), got shape {images.shape}.")
        return images[:limit].astype("float32")
    from .preprocessing import IMAGE_EXTENSIONS, center_crop_and_resize, load_image

    if size is None:
        raise ValueError("The model's input size is dynamic: pass image_size= for the calibration crops.")
    if isinstance(images, (str, os.PathLike)):
        folder = Path(images)
        if not folder.is_dir():
            raise ValueError(f"{str(folder)!r} is not a folder of calibration images.")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    else:
        files = [Path(p) for p in images]
    if not files:
        raise ValueError(f"No calibration images ({', '.join(IMAGE_EXTENSIONS)}) found in {images!r}.")
    if data_config is not None:
        crops = [data_config.eval_transform(load_image(str(p)), size) for p in files[:limit]]
    else:
        crops = [center_crop_and_resize(load_image(str(p)), size) for p in files[:limit]]
    return np.stack(crops).astype("float32")


# -- command line ----------------------------------------------------------------------------------


def add_export_parser(subparsers) -> argparse.ArgumentParser:
    """Registers the ``export`` sub-command on ``subparsers`` (``parser.add_subparsers()``).

    ``efficientnet export MODEL_OR_WEIGHTS OUT --format F [--model V] [--classes N] [--image-size N]
    [--no-optimize]``, or ``efficientnet export --run RUN_DIR OUT --format F`` for a train run (its
    model, classes, weights and evaluation size); the sub-command's ``func`` returns the exit code.
    """
    p = subparsers.add_parser(
        "export",
        help="export a model to SavedModel, ONNX, OpenVINO or LiteRT",
        description=(
            "Export a .keras model, a variant built with --model and weights (a file or a registered name "
            "such as imagenet), or a train run (--run RUN_DIR), for inference: BN folded, dropout removed, "
            "one image input, dynamic batch."
        ),
    )
    p.add_argument(
        "model",
        metavar="MODEL_OR_WEIGHTS",
        nargs="?",
        help="a .keras file, or weights (file or name) for --model; omitted with --run",
    )
    p.add_argument(
        "output",
        metavar="OUT",
        help="a directory (saved_model), .onnx file, .xml file (openvino, .bin beside it) or .tflite file (litert)",
    )
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--model", dest="variant", metavar="VARIANT", help="variant to build (b0, lite0, v2-b0, xception65)")
    p.add_argument(
        "--run", metavar="RUN_DIR", help="a train run directory: its model, classes and weights (instead of MODEL)"
    )
    p.add_argument(
        "--classes",
        type=int,
        metavar="N",
        help="classes of the weights' classifier (default: read from a weights file, else 1000)",
    )
    p.add_argument("--image-size", type=int, metavar="N", help="input size (default: the variant's or the run's)")
    p.add_argument("--batch-size", type=int, metavar="N", help="fixed batch size (default: dynamic)")
    p.add_argument("--no-optimize", action="store_true", help="keep BN and dropout layers as they are")
    p.add_argument(
        "--int8",
        metavar="IMAGE_DIR",
        help="onnx only: write a static int8 model (onnxruntime) calibrated on the images in IMAGE_DIR",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier export at OUT (anything else there is still refused)",
    )
    p.set_defaults(func=_export_command)
    return p


def _run_for_export(run_dir: str) -> tuple[str, str, int, int | None]:
    """``(weights file, variant, classes, eval size)`` of a train run directory, for ``export --run``."""
    import json

    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise ValueError(
            f"--run {run_dir}: not a train run directory (no run.json). Pass the --out directory of a train run, "
            "or export a weights file with MODEL_OR_WEIGHTS --model VARIANT."
        )
    try:
        run = json.loads(path.read_text())
        weights, variant, classes = str(Path(run_dir) / run["weights"]), run["model"], int(run["classes"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"--run {run_dir}: {path} is damaged ({exc}); train the run again.") from None
    if variant is None:
        raise ValueError(f"--run {run_dir} trained a custom Keras model: save it as .keras and export that file.")
    if not Path(weights).is_file():
        raise ValueError(f"--run {run_dir} has not finished: {weights} is missing. Finish it with train --resume.")
    return weights, variant, classes, run.get("eval_size")


def _load_for_export(
    source: str, variant: str | None, image_size: int | None, classes: int | None = None
) -> keras.Model:
    import keras

    if source.endswith(".keras"):
        if variant is not None or image_size is not None or classes is not None:
            raise ValueError(
                "--model, --classes and --image-size apply to weights; a .keras file has its own architecture."
            )
        if not Path(source).is_file():
            raise ValueError(f"No such .keras file: {source!r}.")
        return keras.saving.load_model(source, compile=False)
    if variant is None:
        raise ValueError(
            f"{source!r} is not a .keras model: pass --model VARIANT (e.g. --model lite0) to build the "
            "architecture these weights belong to, or --run RUN_DIR for a train run."
        )
    if os.sep in variant or variant.endswith((".h5", ".keras")):
        raise ValueError(
            f"--model takes a variant name (e.g. lite0, b0; `efficientnet list` shows them), not the path {variant!r}: "
            "pass weights as MODEL_OR_WEIGHTS, or a train run with --run RUN_DIR."
        )
    if image_size is not None and image_size < 32:
        raise ValueError(f"--image-size must be at least 32, got {image_size}.")
    if classes is not None and classes < 1:
        raise ValueError(f"--classes must be at least 1, got {classes}.")
    if classes is None and Path(source).is_file():
        from .weights.loader import file_classifier

        found = file_classifier(source)
        classes = None if found is None else int(found[0].shape[-1])
    elif classes is not None and not Path(source).is_file() and classes != 1000:
        raise ValueError(f"--classes {classes} needs a weights file; the {source} weights have 1000 classes.")
    input_shape = None if image_size is None else (image_size, image_size, 3)
    extra = {} if classes is None else {"classes": classes}
    if variant.lower().startswith("xception"):
        from .xception import AlignedXception

        return AlignedXception(variant.lower(), weights=source, input_shape=input_shape, **extra)
    from .builder import EfficientNet

    return EfficientNet(variant, weights=source, input_shape=input_shape, **extra)


def _calibration_config(run, source, variant):
    """The data config int8 calibration crops with: the run's, else the variant's (with its registered weights)."""
    if run is not None:
        import json

        from .training.engine import RUN_FILE, run_data_config

        with open(os.path.join(run, RUN_FILE)) as f:
            return run_data_config(json.load(f))
    if variant is None:
        return None
    from .preprocessing import data_config

    return data_config(variant, source)  # a registered weight set's, else the variant's


def _export_command(args: argparse.Namespace) -> int:
    int8 = getattr(args, "int8", None)
    if int8 is not None and args.format != "onnx":
        raise ValueError(f"--int8 quantises ONNX models: use --format onnx (got --format {args.format}).")
    overwrite = getattr(args, "overwrite", False)
    output = Path(args.output)
    _check_format(args.format, output)
    _check_target(output, args.format, overwrite)  # before any work
    if int8 is not None and not Path(int8).is_dir():
        raise ValueError(f"--int8 {int8!r} is not a folder of calibration images.")
    run = getattr(args, "run", None)
    classes, image_size = getattr(args, "classes", None), args.image_size
    if run is not None:
        if args.model is not None or args.variant is not None or classes is not None:
            raise ValueError(
                "--run RUN_DIR brings the run's model, classes and weights: drop MODEL_OR_WEIGHTS, --model and "
                "--classes, or drop --run."
            )
        source, variant, classes, eval_size = _run_for_export(run)
        image_size = image_size or eval_size
    elif args.model is None:
        raise ValueError("export needs MODEL_OR_WEIGHTS (a .keras file, or weights with --model) or --run RUN_DIR.")
    else:
        source, variant = args.model, args.variant
    model = _load_for_export(source, variant, image_size, classes)
    options = dict(optimize=not args.no_optimize, batch_size=args.batch_size)
    if int8 is None:
        path = export_model(model, output, args.format, overwrite=overwrite, **options)
    else:
        created = _make_parents(output)
        try:
            with tempfile.TemporaryDirectory(prefix=f".{output.name}.", dir=output.parent) as scratch:
                float_model = export_model(model, Path(scratch) / "float32.onnx", "onnx", **options)
                path = quantize_onnx(
                    float_model,
                    output,
                    int8,
                    image_size=image_size,
                    data_config=_calibration_config(run, source, variant),
                    overwrite=overwrite,
                )
        except BaseException:
            _remove_created(created)
            raise
    shape = tuple(model.inputs[0].shape[1:])
    batch = "dynamic" if args.batch_size is None else args.batch_size
    kind = f"{args.format}, int8" if int8 is not None else args.format
    print(f"Wrote {path} ({kind}): {model.name}, input {shape}, batch {batch}.")
    return 0
