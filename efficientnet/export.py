"""Export to SavedModel, ONNX, OpenVINO IR and LiteRT (TFLite), on Keras' own ``model.export``.

:func:`export_model` exports the inference-optimised model
(:func:`efficientnet.inference.optimize_for_inference`: BN folded, dropout removed,
input normalisation folded or baked as constants) with one input per model input
(one image input for every model of this library) and, unless ``batch_size`` is
given, a dynamic batch dimension. Keras' plain ``model.export(format="onnx")`` of an
EfficientNet has three inputs, because its ``Normalization`` statistics are captured
tensors that tf2onnx turns into graph inputs; here they are constants, also with
``optimize=False`` (which keeps every other layer as it is).

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
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

__all__ = ["FORMATS", "export_model", "add_export_parser", "quantize_onnx"]

FORMATS = ("saved_model", "onnx", "openvino", "litert")
_KERAS_FORMATS = {"saved_model": "tf_saved_model", "onnx": "onnx", "openvino": "openvino", "litert": "litert"}
_SUFFIXES = {"openvino": ".xml", "litert": ".tflite"}
_DUMMY_SIZE = 64  # spatial size of the dummy batch for models with unknown input size


def _required_packages(format: str) -> list[tuple[str, str]]:
    """``(module, pip requirement)`` pairs the export needs on the current backend."""
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

    def spec(x):
        shape = (batch_size, *tuple(x.shape)[1:])
        name = getattr(x._keras_history.operation, "name", None)
        return keras.InputSpec(shape=shape, dtype=keras.backend.standardize_dtype(x.dtype), name=name)

    return [keras.tree.map_structure(spec, model._inputs_struct)]


def _ensure_called(model: keras.Model) -> None:
    """Runs the model once on a zero batch: Keras refuses to export a never-called model."""
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


def _move_into_place(staged: Path, target: Path, format: str, scratch: Path) -> None:
    if format == "openvino":  # the .bin first: the .xml names the model and refers to it
        os.replace(staged.with_suffix(".bin"), target.with_suffix(".bin"))
        os.replace(staged, target)
    elif staged.is_dir():
        if target.exists() and not target.is_dir():
            raise ValueError(f"{str(target)!r} exists and is not a directory; a SavedModel is a directory.")
        if target.exists():
            old = scratch / "previous"
            os.replace(target, old)
            os.replace(staged, target)
        else:
            os.replace(staged, target)
    else:
        if target.is_dir():
            raise ValueError(f"{str(target)!r} is a directory; give a file path for a {format} export.")
        os.replace(staged, target)


def export_model(
    model: keras.Model,
    path: str | os.PathLike,
    format: str = "onnx",
    *,
    optimize: bool = True,
    batch_size: int | None = None,
    verbose: bool = False,
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
            model (BN folded, dropout removed, input normalisation folded). With
            ``False`` the layers stay as they are, except that ``Normalization``
            layers become ``Rescaling`` with baked constants (no extra inputs).
        batch_size: a fixed batch size; ``None`` (default) exports a dynamic one.
        verbose: let Keras and the converters print their messages.

    Returns:
        The path written.

    Raises:
        ValueError: an unknown format, a missing export package (named, with the
            ``pip install`` line) or a path of the wrong kind.
    """
    from .inference import bake_normalization, optimize_for_inference

    target = Path(path)
    _check_format(format, target)
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be None (dynamic) or a positive integer, got {batch_size!r}.")
    exported = optimize_for_inference(model) if optimize else bake_normalization(model)
    _ensure_called(exported)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
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
        _move_into_place(staged, target, format, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def quantize_onnx(
    model_path: str | os.PathLike,
    output_path: str | os.PathLike,
    calibration_images: str | os.PathLike | Sequence[str | os.PathLike] | np.ndarray,
    *,
    image_size: int | None = None,
    per_channel: bool = True,
    limit: int = 128,
) -> Path:
    """Static int8 quantisation of an exported ONNX model with onnxruntime, calibrated on images.

    Args:
        model_path: an ONNX file from :func:`export_model` (float32, raw 0-255 RGB input).
        output_path: the quantised model, written atomically.
        calibration_images: a folder of images, a list of image files, or a float array
            ``(N, H, W, 3)`` of raw pixels.
        image_size: the crop size (default: the model's input size).
        per_channel: per-channel weight scales (more accurate, as TensorRT and TFLite do).
        limit: at most this many calibration images.

    Returns:
        The path written. Needs the ``onnxruntime`` package.
    """
    if importlib.util.find_spec("onnxruntime") is None:
        raise ValueError("quantize_onnx needs onnxruntime: `pip install onnxruntime`.")
    import onnxruntime
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    model_path, output_path = Path(model_path), Path(output_path)
    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    (model_input,) = session.get_inputs()
    size = image_size or next((d for d in model_input.shape[1:3] if isinstance(d, int)), None)
    batch = _calibration_batch(calibration_images, size, limit)
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
        quantize_static(
            str(model_path),
            str(staged),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        os.replace(staged, output_path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return output_path


def _calibration_batch(images, size: int | None, limit: int) -> np.ndarray:
    if isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise ValueError(f"Calibration images must be (N, H, W, 3), got shape {images.shape}.")
        return images[:limit].astype("float32")
    from .preprocessing import center_crop_and_resize, load_image

    if size is None:
        raise ValueError("The model's input size is dynamic: pass image_size= for the calibration crops.")
    if isinstance(images, (str, os.PathLike)):
        folder = Path(images)
        if not folder.is_dir():
            raise ValueError(f"{str(folder)!r} is not a folder of calibration images.")
        suffixes = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes)
    else:
        files = [Path(p) for p in images]
    if not files:
        raise ValueError(f"No calibration images (.jpg, .png...) found in {images!r}.")
    crops = [center_crop_and_resize(load_image(str(p)), size) for p in files[:limit]]
    return np.stack(crops).astype("float32")


# -- command line ----------------------------------------------------------------------------------


def add_export_parser(subparsers) -> argparse.ArgumentParser:
    """Registers the ``export`` sub-command on ``subparsers`` (``parser.add_subparsers()``).

    ``efficientnet export MODEL_OR_WEIGHTS OUT --format F [--model V] [--image-size N] [--no-optimize]``;
    the sub-command's ``func`` returns the exit code.
    """
    p = subparsers.add_parser(
        "export",
        help="export a model to SavedModel, ONNX, OpenVINO or LiteRT",
        description=(
            "Export a .keras model, or a variant built with --model and weights (a file or a registered name "
            "such as imagenet), for inference: BN folded, dropout removed, one image input, dynamic batch."
        ),
    )
    p.add_argument("model", metavar="MODEL_OR_WEIGHTS", help="a .keras file, or weights (file or name) for --model")
    p.add_argument(
        "output",
        metavar="OUT",
        help="a directory (saved_model), .onnx file, .xml file (openvino, .bin beside it) or .tflite file (litert)",
    )
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--model", dest="variant", metavar="VARIANT", help="variant to build (b0, lite0, v2-b0, xception65)")
    p.add_argument("--image-size", type=int, metavar="N", help="input size (default: the variant's)")
    p.add_argument("--batch-size", type=int, metavar="N", help="fixed batch size (default: dynamic)")
    p.add_argument("--no-optimize", action="store_true", help="keep BN and dropout layers as they are")
    p.add_argument(
        "--int8",
        metavar="IMAGE_DIR",
        help="onnx only: write a static int8 model (onnxruntime) calibrated on the images in IMAGE_DIR",
    )
    p.set_defaults(func=_export_command)
    return p


def _load_for_export(source: str, variant: str | None, image_size: int | None) -> keras.Model:
    if source.endswith(".keras"):
        if variant is not None or image_size is not None:
            raise ValueError("--model and --image-size apply to weights; a .keras file has its own architecture.")
        if not Path(source).is_file():
            raise ValueError(f"No such .keras file: {source!r}.")
        return keras.saving.load_model(source, compile=False)
    if variant is None:
        raise ValueError(
            f"{source!r} is not a .keras model: pass --model VARIANT (e.g. --model lite0) to build the "
            "architecture these weights belong to."
        )
    if image_size is not None and image_size < 32:
        raise ValueError(f"--image-size must be at least 32, got {image_size}.")
    input_shape = None if image_size is None else (image_size, image_size, 3)
    if variant.lower().startswith("xception"):
        from .xception import AlignedXception

        return AlignedXception(variant.lower(), weights=source, input_shape=input_shape)
    from .builder import EfficientNet

    return EfficientNet(variant, weights=source, input_shape=input_shape)


def _export_command(args: argparse.Namespace) -> int:
    int8 = getattr(args, "int8", None)
    if int8 is not None and args.format != "onnx":
        raise ValueError(f"--int8 quantises ONNX models: use --format onnx (got --format {args.format}).")
    model = _load_for_export(args.model, args.variant, args.image_size)
    options = dict(optimize=not args.no_optimize, batch_size=args.batch_size)
    if int8 is None:
        path = export_model(model, args.output, args.format, **options)
    else:
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{output.name}.", dir=output.parent) as scratch:
            float_model = export_model(model, Path(scratch) / "float32.onnx", "onnx", **options)
            path = quantize_onnx(float_model, output, int8, image_size=args.image_size)
    shape = tuple(model.inputs[0].shape[1:])
    batch = "dynamic" if args.batch_size is None else args.batch_size
    kind = f"{args.format}, int8" if int8 is not None else args.format
    print(f"Wrote {path} ({kind}): {model.name}, input {shape}, batch {batch}.")
    return 0
