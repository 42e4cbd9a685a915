"""Converters from official TensorFlow checkpoints and PyTorch state dicts.

Each source layout is a function naming, for every Keras layer with weights,
the module (PyTorch) or variable scope (TensorFlow) that holds its weights.
One generic routine then reads the tensors, transposes them into Keras'
layout, checks every shape and assigns all or nothing.

Layouts:
    ``timm-tf``: timm's ``tf_efficientnet*`` ports (TensorFlow padding, BN eps 1e-3).
    ``timm``: timm's native models (PyTorch padding, BN eps 1e-5).
    ``torchvision``: ``torchvision.models.efficientnet_*`` (PyTorch padding; eps 1e-5 for V1, 1e-3 for V2).
    ``efficientnet_pytorch``: lukemelas' efficientnet_pytorch and its Lite fork (TF padding, eps 1e-3).
    ``tf``: tensorflow/tpu and google/automl checkpoints (``efficientnet-b0/blocks_0/...``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import keras
import numpy as np

from . import config
from .builder import EfficientNet
from .config import BlockArgs, Variant
from .weights.loader import LoadReport, _assign, save_weights

__all__ = [
    "LAYOUTS",
    "ConversionError",
    "convert_state_dict",
    "convert_tf_checkpoint",
    "convert_file",
    "detect_layout",
    "load_torch_state_dict",
    "timm_xception_names",
]


class ConversionError(ValueError):
    """The source does not fit the requested variant or layout."""


@dataclass(frozen=True)
class Layout:
    """How one framework names and stores weights."""

    name: str
    framework: str  # "torch" or "tf"
    padding: str
    bn_epsilon: float | None  # None: the variant's own
    module_names: Callable[[Variant], dict[str, str]]


# --------------------------------------------------------------------------- module names per layout


def _blocks(variant: Variant) -> Iterator[tuple[str, int, int, int, BlockArgs]]:
    """``(keras_prefix, stage, index_in_stage, global_index, block)`` for every block."""
    counts: dict[int, int] = {}
    for n, (prefix, block) in enumerate(config.scaled_blocks(variant)):
        stage = int(re.match(r"block(\d+)", prefix)[1]) - 1
        j = counts.get(stage, 0)
        counts[stage] = j + 1
        yield prefix, stage, j, n, block


def _timm_names(variant: Variant) -> dict[str, str]:
    names = {"stem_conv": "conv_stem", "stem_bn": "bn1", "top_conv": "conv_head", "top_bn": "bn2"}
    names["predictions"] = "classifier"
    for p, i, j, _, b in _blocks(variant):
        m = f"blocks.{i}.{j}"
        if b.fused and b.expand_ratio == 1:
            names.update({f"{p}project_conv": f"{m}.conv", f"{p}project_bn": f"{m}.bn1"})
        elif b.fused:
            names.update(
                {
                    f"{p}expand_conv": f"{m}.conv_exp",
                    f"{p}expand_bn": f"{m}.bn1",
                    f"{p}project_conv": f"{m}.conv_pwl",
                    f"{p}project_bn": f"{m}.bn2",
                }
            )
        elif b.expand_ratio == 1:
            names.update(
                {
                    f"{p}dwconv": f"{m}.conv_dw",
                    f"{p}bn": f"{m}.bn1",
                    f"{p}project_conv": f"{m}.conv_pw",
                    f"{p}project_bn": f"{m}.bn2",
                }
            )
        else:
            names.update(
                {
                    f"{p}expand_conv": f"{m}.conv_pw",
                    f"{p}expand_bn": f"{m}.bn1",
                    f"{p}dwconv": f"{m}.conv_dw",
                    f"{p}bn": f"{m}.bn2",
                    f"{p}project_conv": f"{m}.conv_pwl",
                    f"{p}project_bn": f"{m}.bn3",
                }
            )
        names.update({f"{p}se_reduce": f"{m}.se.conv_reduce", f"{p}se_expand": f"{m}.se.conv_expand"})
    return _v2_dwconv_names(variant, names)


def _torchvision_names(variant: Variant) -> dict[str, str]:
    head = len(variant.blocks) + 1
    names = {
        "stem_conv": "features.0.0",
        "stem_bn": "features.0.1",
        "top_conv": f"features.{head}.0",
        "top_bn": f"features.{head}.1",
        "predictions": "classifier.1",
    }
    for p, i, j, _, b in _blocks(variant):
        m = f"features.{i + 1}.{j}.block"
        if b.fused:
            parts = [("project", 0)] if b.expand_ratio == 1 else [("expand", 0), ("project", 1)]
            for role, k in parts:
                names.update({f"{p}{role}_conv": f"{m}.{k}.0", f"{p}{role}_bn": f"{m}.{k}.1"})
            continue
        k = 0
        if b.expand_ratio != 1:
            names.update({f"{p}expand_conv": f"{m}.0.0", f"{p}expand_bn": f"{m}.0.1"})
            k = 1
        names.update({f"{p}dwconv": f"{m}.{k}.0", f"{p}bn": f"{m}.{k}.1"})
        if b.se_ratio:
            names.update({f"{p}se_reduce": f"{m}.{k + 1}.fc1", f"{p}se_expand": f"{m}.{k + 1}.fc2"})
            k += 1
        names.update({f"{p}project_conv": f"{m}.{k + 1}.0", f"{p}project_bn": f"{m}.{k + 1}.1"})
    return _v2_dwconv_names(variant, names)


def _efficientnet_pytorch_names(variant: Variant) -> dict[str, str]:
    names = {
        "stem_conv": "_conv_stem",
        "stem_bn": "_bn0",
        "top_conv": "_conv_head",
        "top_bn": "_bn1",
        "predictions": "_fc",
    }
    for p, _, _, n, _ in _blocks(variant):
        m = f"_blocks.{n}"
        names.update(
            {
                f"{p}expand_conv": f"{m}._expand_conv",
                f"{p}expand_bn": f"{m}._bn0",
                f"{p}dwconv": f"{m}._depthwise_conv",
                f"{p}bn": f"{m}._bn1",
                f"{p}se_reduce": f"{m}._se_reduce",
                f"{p}se_expand": f"{m}._se_expand",
                f"{p}project_conv": f"{m}._project_conv",
                f"{p}project_bn": f"{m}._bn2",
            }
        )
    return names


def _tf_names(variant: Variant) -> dict[str, str]:
    scope = variant.official_name
    names = {
        "stem_conv": f"{scope}/stem/conv2d",
        "stem_bn": f"{scope}/stem/tpu_batch_normalization",
        "top_conv": f"{scope}/head/conv2d",
        "top_bn": f"{scope}/head/tpu_batch_normalization",
        "predictions": f"{scope}/head/dense",
    }
    for p, _, _, n, b in _blocks(variant):
        if b.fused:
            raise ConversionError("TensorFlow checkpoints of EfficientNetV2 are not supported; convert timm's port.")
        m = f"{scope}/blocks_{n}"
        bns = iter(["tpu_batch_normalization", "tpu_batch_normalization_1", "tpu_batch_normalization_2"])
        convs = iter(["conv2d", "conv2d_1"])
        if b.expand_ratio != 1:
            names.update({f"{p}expand_conv": f"{m}/{next(convs)}", f"{p}expand_bn": f"{m}/{next(bns)}"})
        names.update(
            {
                f"{p}dwconv": f"{m}/depthwise_conv2d",
                f"{p}bn": f"{m}/{next(bns)}",
                f"{p}se_reduce": f"{m}/se/conv2d",
                f"{p}se_expand": f"{m}/se/conv2d_1",
                f"{p}project_conv": f"{m}/{next(convs)}",
                f"{p}project_bn": f"{m}/{next(bns)}",
            }
        )
    return names


def _v2_dwconv_names(variant: Variant, names: dict[str, str]) -> dict[str, str]:
    """keras.applications calls V2's depthwise conv ``dwconv2``."""
    if variant.family != "v2":
        return names
    return {re.sub(r"_dwconv$", "_dwconv2", k): v for k, v in names.items()}


def timm_xception_names(variant: str) -> dict[str, str]:
    """timm's ``xception41/65/71`` (a port of DeepLab's aligned Xception) → our layer names."""
    from .config import XCEPTION_BLOCKS

    names = {"predictions": "head.fc"}
    for k, keras_name in enumerate(("entry_flow_conv1_1", "entry_flow_conv1_2")):
        names.update({keras_name: f"stem.{k}.conv", f"{keras_name}_bn": f"stem.{k}.bn"})
    n = 0
    for block in XCEPTION_BLOCKS[variant]:
        for unit in range(block.units):
            prefix, m = f"{block.flow}_block{block.index}_unit{unit + 1}", f"blocks.{n}"
            names.update({f"{prefix}_shortcut": f"{m}.shortcut.conv", f"{prefix}_shortcut_bn": f"{m}.shortcut.bn"})
            for i in range(1, 4):
                sep, conv = f"{prefix}_sepconv{i}", f"{m}.stack.conv{i}"
                names.update(
                    {
                        f"{sep}_depthwise": f"{conv}.conv_dw",
                        f"{sep}_depthwise_bn": f"{conv}.bn_dw",
                        f"{sep}_pointwise": f"{conv}.conv_pw",
                        f"{sep}_pointwise_bn": f"{conv}.bn_pw",
                    }
                )
            n += 1
    return names


LAYOUTS: Mapping[str, Layout] = {
    "timm-tf": Layout("timm-tf", "torch", "same", None, _timm_names),
    "timm": Layout("timm", "torch", "symmetric", 1e-5, _timm_names),
    "torchvision": Layout("torchvision", "torch", "symmetric", 1e-5, _torchvision_names),
    "efficientnet_pytorch": Layout("efficientnet_pytorch", "torch", "same", None, _efficientnet_pytorch_names),
    "tf": Layout("tf", "tf", "same", None, _tf_names),
}


def detect_layout(keys) -> str:
    """Guesses a PyTorch state dict's layout from its keys."""
    keys = set(keys)
    if "_conv_stem.weight" in keys:
        return "efficientnet_pytorch"
    if "features.0.0.weight" in keys:
        return "torchvision"
    if "conv_stem.weight" in keys:
        raise ConversionError(
            "This is a timm state dict: pass layout='timm-tf' for tf_efficientnet* models "
            "(TensorFlow padding, BN eps 1e-3) or layout='timm' for native ones (PyTorch padding, eps 1e-5)."
        )
    raise ConversionError(f"Unknown state dict layout (first keys: {sorted(keys)[:5]}).")


# --------------------------------------------------------------------------- tensors


def _weight_keys(layer: keras.layers.Layer, module: str, framework: str) -> list[str]:
    sep = "." if framework == "torch" else "/"
    if isinstance(layer, keras.layers.BatchNormalization):
        suffixes = (
            ["weight", "bias", "running_mean", "running_var"]
            if framework == "torch"
            else ["gamma", "beta", "moving_mean", "moving_variance"]
        )
    elif isinstance(layer, keras.layers.DepthwiseConv2D):
        suffixes = ["weight"] if framework == "torch" else ["depthwise_kernel"]
    else:  # Conv2D, Dense
        suffixes = ["weight" if framework == "torch" else "kernel"]
        if layer.use_bias:
            suffixes.append("bias")
    return [f"{module}{sep}{s}" for s in suffixes]


def _to_keras(layer: keras.layers.Layer, index: int, array: np.ndarray, framework: str) -> np.ndarray:
    if framework != "torch" or index != 0:
        return array
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return array.transpose(2, 3, 0, 1)
    if isinstance(layer, keras.layers.Conv2D):
        return array.transpose(2, 3, 1, 0)
    if isinstance(layer, keras.layers.Dense):
        return array.T
    return array


def assign_from_tensors(
    model: keras.Model,
    tensors: Mapping[str, np.ndarray],
    module_names: Mapping[str, str],
    framework: str,
    source: str,
    progress: bool = False,
) -> LoadReport:
    """Assigns every weighted layer of ``model`` from ``tensors``, all or nothing.

    Raises:
        ConversionError: a layer without a source module, a missing tensor, a
            shape that does not fit, or source tensors left unused.
    """
    from .weights.loader import weighted_layers

    pairs, problems, used = [], [], set()
    layers = weighted_layers(model)
    iterator = _progress(layers, progress, "converting")
    for layer in iterator:
        if isinstance(layer, keras.layers.Normalization):
            continue  # input statistics come from the weight set, not the source
        module = module_names.get(layer.name)
        if module is None:
            problems.append(f"{layer.name}: no source module")
            continue
        keys = _weight_keys(layer, module, framework)
        missing = [k for k in keys if k not in tensors]
        if missing:
            problems.append(f"{layer.name}: missing {', '.join(missing)}")
            continue
        arrays = [_to_keras(layer, i, np.asarray(tensors[k]), framework) for i, k in enumerate(keys)]
        expected = [tuple(w.shape) for w in layer.weights]
        if [a.shape for a in arrays] != expected:
            problems.append(f"{layer.name}: source {[a.shape for a in arrays]} vs model {expected}")
            continue
        bad = [k for k, a in zip(keys, arrays) if a.dtype.kind == "f" and not np.isfinite(a).all()]
        if bad:
            problems.append(f"{layer.name}: NaN or Inf in {', '.join(bad)} (a corrupt or diverged checkpoint)")
            continue
        used.update(keys)
        pairs.append((layer, arrays))
    unused = sorted(k for k in tensors if k not in used and not _ignorable(k))
    if unused and not problems:
        problems.append(f"{len(unused)} source tensors fit no layer, e.g. {', '.join(unused[:5])}")
    if problems:
        raise ConversionError(
            f"Cannot convert {source} into {model.name}: {len(problems)} problems, e.g. "
            + "; ".join(problems[:6])
            + ". Check the variant (and include_top/classes) and the layout."
        )
    report = LoadReport(path=source, by_name=True)
    _assign(pairs, report)
    return report


def _ignorable(key: str) -> bool:
    return key.endswith("num_batches_tracked") or "ExponentialMovingAverage" in key or key.startswith("global_step")


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=desc, unit="layer")


# --------------------------------------------------------------------------- public converters


def _build_target(variant: Variant, layout: Layout, classes: int | None, **kwargs) -> keras.Model:
    epsilon = layout.bn_epsilon
    if layout.name == "torchvision" and variant.family == "v2":
        epsilon = 1e-3
    return EfficientNet(
        variant,
        weights=None,
        include_top=classes is not None,
        classes=classes or 1000,
        padding=layout.padding,
        bn_epsilon=epsilon,
        **kwargs,
    )


def _classes_in(tensors: Mapping[str, np.ndarray], module: str | None, framework: str) -> int | None:
    if module is None:
        return None
    key = f"{module}.bias" if framework == "torch" else f"{module}/bias"
    return int(np.asarray(tensors[key]).shape[0]) if key in tensors else None


def convert_state_dict(
    state_dict: Mapping[str, object],
    variant: str | Variant,
    layout: str | None = None,
    progress: bool = False,
    **model_kwargs,
) -> keras.Model:
    """Builds ``variant`` and fills it from a PyTorch ``state_dict``.

    Args:
        state_dict: tensor name → ``torch.Tensor`` or array.
        variant: e.g. ``"b0"``, ``"efficientnet-lite0"``, ``"efficientnetv2-b0"``.
        layout: a key of :data:`LAYOUTS`; detected where the keys allow.
        model_kwargs: passed to the builder (``input_shape``, ``classifier_activation``…).

    Returns:
        The Keras model, with the padding and BN epsilon the source framework needs;
        with the classifier when the state dict has one.
    """
    tensors = {k: _to_numpy(v) for k, v in state_dict.items()}
    if isinstance(variant, str) and config.model_family(variant) == "xception":
        return _convert_xception(tensors, config.normalise_name(variant), progress, **model_kwargs)
    variant = config.get_variant(variant) if isinstance(variant, str) else variant
    if layout is not None and layout not in LAYOUTS:
        raise ConversionError(f"Unknown layout {layout!r}; choose one of {sorted(LAYOUTS)} (or None to detect it).")
    layout_obj = LAYOUTS[layout or detect_layout(tensors)]
    probe = layout_obj.module_names(variant)
    classes = _classes_in(tensors, probe.get("predictions"), layout_obj.framework)
    model = _build_target(variant, layout_obj, classes, **model_kwargs)
    names = probe
    assign_from_tensors(model, tensors, names, layout_obj.framework, f"{layout_obj.name} state dict", progress)
    return model


def _convert_xception(tensors, variant: str, progress: bool, **model_kwargs) -> keras.Model:
    from .config import XCEPTION_BLOCKS
    from .xception import AlignedXception

    if variant not in XCEPTION_BLOCKS:
        raise ConversionError(f"Unknown Xception variant {variant!r}; choose one of {sorted(XCEPTION_BLOCKS)}.")
    classes = _classes_in(tensors, "head.fc", "torch")
    model = AlignedXception(variant, include_top=classes is not None, classes=classes or 1000, **model_kwargs)
    assign_from_tensors(model, tensors, timm_xception_names(variant), "torch", "timm xception state dict", progress)
    return model


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def load_torch_state_dict(path: str) -> dict[str, np.ndarray]:
    """Reads a ``.pth``/``.pt`` file (legacy or zip format) as arrays; needs ``torch``.

    Only tensors are read (``weights_only=True``): a file holding other Python
    objects is refused, as running its pickled code would be unsafe.
    """
    try:
        import torch
    except ImportError as exc:
        raise ConversionError("Reading PyTorch files needs torch: pip install torch==2.13.0") from exc
    path = os.fspath(path)
    if not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "does not exist"
        raise ConversionError(f"Cannot convert {path}: it {what}. Pass the path of a .pth/.pt state dict file.")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if "Unsupported global" in str(exc):
            reason = (
                "it holds Python objects besides tensors (a whole pickled model or training state), which are "
                "not read because unpickling them can run arbitrary code. If you trust its source, load it in "
                "PyTorch yourself, torch.save(model.state_dict(), 'state.pth'), and convert that file"
            )
        else:
            reason = f"it is truncated, corrupt or not a PyTorch file ({type(exc).__name__}). Download or save it again"
        raise ConversionError(f"Cannot read {path} as a PyTorch state dict: {reason}.") from None
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj:
        raise ConversionError(
            f"{path} holds {type(obj).__name__ if not isinstance(obj, dict) else 'an empty dict'}, not a state dict "
            "(a mapping of parameter names to tensors). Save model.state_dict() with torch.save and convert that."
        )
    return {str(k).removeprefix("module."): _to_numpy(v) for k, v in obj.items()}


def convert_tf_checkpoint(
    checkpoint: str, variant: str | Variant, use_ema: bool = True, progress: bool = False, **model_kwargs
) -> keras.Model:
    """Builds ``variant`` from an official TensorFlow EfficientNet checkpoint.

    Reads variables such as ``efficientnet-b0/blocks_0/depthwise_conv2d/depthwise_kernel``;
    ``.../ExponentialMovingAverage`` copies are preferred when ``use_ema``.
    ``batch_normalization`` scopes (automl) are accepted for ``tpu_batch_normalization``.
    """
    import tensorflow as tf

    variant = config.get_variant(variant) if isinstance(variant, str) else variant
    try:
        reader = tf.train.load_checkpoint(checkpoint)
    except Exception as exc:
        raise ConversionError(f"Cannot read TensorFlow checkpoint {checkpoint}: {exc}") from None
    names = reader.get_variable_to_shape_map()
    tensors = {}
    for name in names:
        if name.endswith("/ExponentialMovingAverage"):
            continue
        ema = f"{name}/ExponentialMovingAverage"
        source = ema if use_ema and ema in names else name
        tensors[name.replace("/batch_normalization", "/tpu_batch_normalization")] = reader.get_tensor(source)
    layout = LAYOUTS["tf"]
    probe = layout.module_names(variant)
    classes = _classes_in(tensors, probe["predictions"], "tf")
    model = _build_target(variant, layout, classes, **model_kwargs)
    assign_from_tensors(model, tensors, probe, "tf", checkpoint, progress)
    return model


def convert_file(
    source: str,
    output: str,
    variant: str,
    layout: str | None = None,
    progress: bool = False,
) -> keras.Model:
    """Converts a ``.pth``/``.pt`` state dict or a TensorFlow checkpoint into a legacy ``.h5`` (atomically).

    The output path is checked first, so a bad one fails before any conversion work.
    """
    _check_output(output)
    if layout == "tf" or (layout is None and (source.endswith(".index") or os.path.isfile(source + ".index"))):
        model = convert_tf_checkpoint(source.removesuffix(".index"), variant, progress=progress)
    else:
        model = convert_state_dict(load_torch_state_dict(source), variant, layout=layout, progress=progress)
    save_weights(model, output)
    return model


def _check_output(output: str) -> None:
    if not isinstance(output, str) or not output.endswith(".h5") or output.endswith(".weights.h5"):
        raise ConversionError(
            f"The output must be a legacy .h5 path (e.g. b0.h5; not .weights.h5 or .keras), got {output!r}."
        )
    if os.path.isdir(output):
        raise ConversionError(f"The output {output} is a directory; add a file name such as {output}/model.h5.")
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise ConversionError(
            f"Cannot write {output}: the directory {directory} does not exist. Create it first (mkdir -p)."
        )
