"""Strict, all-or-nothing weight loading from ``.h5`` files.

Reads keras-applications and efficientnet 1.1.1 legacy ``.h5`` files and
Keras 3 ``.weights.h5`` files with h5py, matches them to a model's weighted
layers by name or by position, checks every shape, and only then assigns.
A load either sets every weight it should and returns a :class:`LoadReport`
saying so, or raises a :class:`WeightsError` and leaves the model unchanged.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import h5py
import keras
import numpy as np

__all__ = [
    "WeightsError",
    "WeightsFileError",
    "WeightsMismatchError",
    "LoadReport",
    "load_weights",
    "save_weights",
    "read_weights_file",
    "weighted_layers",
]

logger = logging.getLogger("efficientnet")

# Layers a file may hold under another name (efficientnet 1.1.1 calls the classifier "probs").
NAME_ALIASES = {"probs": "predictions"}
# Layers that carry input statistics rather than learned weights: a file may lack them.
OPTIONAL_LAYERS = ("normalization",)
# Classifier layers: a file with them loads into a model without them.
HEAD_LAYERS = ("predictions",)
_AUTO_SUFFIX = re.compile(r"(normalization)_\d+")
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype="float32")


class WeightsError(ValueError):
    """A weights file could not be loaded; the model was left unchanged."""


class WeightsFileError(WeightsError):
    """The file is missing, truncated, corrupt or not a Keras weights file."""


class WeightsMismatchError(WeightsError):
    """The file's layers or shapes do not fit the model."""


@dataclass
class LoadReport:
    """What a load did.

    Attributes:
        path: the file.
        by_name: whether layers were matched by name (else by position).
        loaded: model layer names that received weights.
        tensors: how many arrays were assigned.
        skipped: model layers left unchanged, with the reason (only with ``skip_mismatch``).
        unused: file layers that matched nothing in the model (a classifier loaded into a notop model).
        notes: anything else worth knowing.
    """

    path: str
    by_name: bool
    loaded: list[str] = field(default_factory=list)
    tensors: int = 0
    skipped: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.skipped

    def __str__(self) -> str:
        mode = "by name" if self.by_name else "by position"
        text = f"Loaded {self.tensors} tensors into {len(self.loaded)} layers {mode} from {self.path}"
        if self.skipped:
            text += f"; skipped {len(self.skipped)}: {', '.join(self.skipped[:10])}"
        if self.unused:
            text += f"; unused in file: {', '.join(self.unused[:10])}"
        return text + "."


# --------------------------------------------------------------------------- reading


def read_weights_file(path: str, model: keras.Model | None = None) -> list[tuple[str, list[np.ndarray]]]:
    """The ``(layer_name, arrays)`` pairs of a weights file, in the file's layer order.

    Keras 3 ``.weights.h5`` files name layers by class, not by ``layer.name``;
    they need ``model`` to recover the order and are matched by position only.
    """
    try:
        with h5py.File(path, "r") as f:
            if "layer_names" in f.attrs or "model_weights" in f:
                group = f["model_weights"] if "model_weights" in f else f
                return _read_legacy(group)
            if "layers" in f:
                if model is None:
                    raise WeightsFileError(f"{path} is a Keras 3 .weights.h5 file; reading it needs the model.")
                return _read_keras3(f, model)
            raise WeightsFileError(
                f"{path} is an HDF5 file but not a Keras weights file (no 'layer_names' attribute, no 'layers' group)."
            )
    except WeightsError:
        raise
    except FileNotFoundError:
        raise WeightsFileError(f"Weights file {path} does not exist.") from None
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise WeightsFileError(
            f"Cannot read weights file {path}: it is truncated, corrupt or not HDF5 ({exc}). "
            "Delete it and download or convert it again."
        ) from None


def _decode(values: Iterable) -> list[str]:
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _read_legacy(group) -> list[tuple[str, list[np.ndarray]]]:
    result = []
    for layer_name in _decode(group.attrs["layer_names"]):
        layer_group = group[layer_name]
        names = _decode(layer_group.attrs.get("weight_names", []))
        if not names:
            continue
        arrays = [np.asarray(layer_group[n]) for n in names]
        # A nested model is saved as one group; split it into its layers.
        prefixes = [n.split("/")[0] for n in names]
        if len(set(prefixes)) > 1 and len(names[0].split("/")) > 1:
            for prefix in dict.fromkeys(prefixes):
                result.append((prefix, [a for p, a in zip(prefixes, arrays) if p == prefix]))
        else:
            result.append((layer_name, arrays))
    return result


def _snake(name: str) -> str:
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _read_keras3(f, model) -> list[tuple[str, list[np.ndarray]]]:
    """Walks the model as Keras' saving library does, reading each layer's ``vars``."""
    result = []

    def walk(container, group_path: str):
        used: dict[str, int] = {}
        for layer in container.layers:
            base = _snake(layer.__class__.__name__)
            count = used.get(base, 0)
            used[base] = count + 1
            key = base if count == 0 else f"{base}_{count}"
            path = f"{group_path}/layers/{key}"
            if isinstance(layer, keras.Model):
                walk(layer, path)
                continue
            if not layer.weights:
                continue
            if f"{path}/vars" not in f:
                raise WeightsMismatchError(f"The .weights.h5 file has no entry {path} for layer {layer.name}.")
            vars_group = f[f"{path}/vars"]
            result.append((layer.name, [np.asarray(vars_group[str(i)]) for i in range(len(vars_group))]))

    walk(model, "")
    # Paths start with "/layers"; h5py accepts them relative to the root.
    return result


# --------------------------------------------------------------------------- model side


def weighted_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Layers that own weights, in order, with nested models flattened."""
    result = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            result.extend(weighted_layers(layer))
        elif layer.weights:
            result.append(layer)
    return result


def _base_name(name: str) -> str:
    """The canonical name: aliases resolved, and Keras' auto-suffix dropped from the
    normalization layer (a second keras.applications model in one process names it
    ``normalization_1``)."""
    name = NAME_ALIASES.get(name, name)
    match = _AUTO_SUFFIX.fullmatch(name)
    return match[1] if match else name


def _is_optional(name: str) -> bool:
    return _base_name(name) in OPTIONAL_LAYERS


def _is_head(name: str) -> bool:
    return _base_name(name) in HEAD_LAYERS


# --------------------------------------------------------------------------- matching


def _match_by_name(model_layers, file_layers):
    by_name = {}
    for name, arrays in file_layers:
        by_name.setdefault(_base_name(name), arrays)
    pairs, missing = [], []
    model_names = set()
    for layer in model_layers:
        model_names.add(layer.name)
        arrays = by_name.get(_base_name(layer.name))
        if arrays is None:
            if not _is_optional(layer.name):
                missing.append(layer.name)
            continue
        pairs.append((layer, arrays))
    unused = [n for n, _ in file_layers if _base_name(n) not in {_base_name(m) for m in model_names}]
    return pairs, missing, unused


def _match_by_position(model_layers, file_layers):
    model_layers = list(model_layers)
    file_layers = list(file_layers)
    notes = []
    model_has = bool(model_layers) and _is_optional(model_layers[0].name)
    file_has = bool(file_layers) and _is_optional(file_layers[0][0])
    if model_has and not file_has:
        model_layers = model_layers[1:]
        notes.append("the file has no normalization layer; the model keeps its input statistics")
    elif file_has and not model_has:
        file_layers = file_layers[1:]
        notes.append("the model has no normalization layer; the file's input statistics were not used")
    unused = []
    model_head = bool(model_layers) and _is_head(model_layers[-1].name)
    file_head = bool(file_layers) and _is_head(file_layers[-1][0])
    if file_head and not model_head:
        unused.append(file_layers[-1][0])
        file_layers = file_layers[:-1]
    if len(model_layers) != len(file_layers):
        hint = ""
        if model_head and not file_head:
            hint = " The file has no classifier: build the model with include_top=False."
        raise WeightsMismatchError(
            f"The model has {len(model_layers)} layers with weights but the file has {len(file_layers)}: "
            f"the file is for another architecture or variant.{hint}"
        )
    return list(zip(model_layers, (a for _, a in file_layers))), unused, notes


def _check_shapes(pairs, skip_mismatch: bool):
    good, bad = [], []
    for layer, arrays in pairs:
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(a.shape) for a in arrays]
        if expected == got:
            good.append((layer, arrays))
        else:
            bad.append(f"{layer.name} (model {expected}, file {got})")
    if bad and not skip_mismatch:
        raise WeightsMismatchError(
            f"{len(bad)} layers have weights of other shapes in the file, e.g. {'; '.join(bad[:5])}. "
            "The file is for another variant, input channel count or number of classes; "
            "pass skip_mismatch=True to load the rest."
        )
    return good, bad


# --------------------------------------------------------------------------- public API


def load_weights(
    model: keras.Model,
    path: str,
    by_name: bool | str = False,
    skip_mismatch: bool = False,
) -> LoadReport:
    """Loads ``path`` into ``model``, all or nothing.

    Args:
        model: any Keras model; nested models (a backbone inside a bigger model)
            are flattened, so a backbone file loads into the backbone.
        path: a legacy Keras ``.h5`` (keras-applications, efficientnet 1.1.1, or
            :func:`save_weights`) or a Keras 3 ``.weights.h5`` file.
        by_name: match layers by name (``True``), by order of weighted layers
            (``False``), or ``"auto"``: by name when every model layer is found
            by name, else by position.
        skip_mismatch: load what fits and warn with the list of layers left
            unchanged, instead of raising.

    Returns:
        A :class:`LoadReport`.

    Raises:
        WeightsFileError: missing, unreadable or non-Keras file.
        WeightsMismatchError: layers or shapes that do not fit. The model is unchanged.
    """
    path = str(path)
    file_layers = read_weights_file(path, model)
    model_layers = weighted_layers(model)
    if not model_layers:
        raise WeightsMismatchError(f"The model {model.name} has no layers with weights to load {path} into.")
    keras3 = path.endswith(".weights.h5")
    if keras3 and by_name is True:
        raise WeightsMismatchError(
            f"{path} is a Keras 3 .weights.h5 file, which records no layer names; load it with by_name=False."
        )

    notes: list[str] = []
    named = _match_by_name(model_layers, file_layers) if by_name else None
    if by_name == "auto":
        by_name = not named[1] and not keras3
    if by_name:
        pairs, missing, unused = named
        if not pairs:
            raise WeightsMismatchError(
                f"No layer of {model.name} has a name in {path} (file layers: "
                f"{', '.join(n for n, _ in file_layers[:5])}…). Load it by position (by_name=False) "
                "or rename the layers."
            )
        if missing and not skip_mismatch:
            raise WeightsMismatchError(
                f"{len(missing)} layers with weights in {model.name} have no weights in {path}: "
                f"{', '.join(missing[:10])}{'…' if len(missing) > 10 else ''}. The file is for another variant; "
                "pass skip_mismatch=True to load the rest and leave these at their current values."
            )
        extra = [n for n in unused if not _is_head(n) and not _is_optional(n)]
        if extra and not skip_mismatch:
            raise WeightsMismatchError(
                f"{path} has {len(extra)} layers that {model.name} lacks: {', '.join(extra[:10])}"
                f"{'…' if len(extra) > 10 else ''}. The file is for another (deeper) variant; "
                "pass skip_mismatch=True to load the matching layers anyway."
            )
        missing += [f"{n} (file only)" for n in extra]
    else:
        pairs, unused, notes = _match_by_position(model_layers, file_layers)
        missing = []

    pairs, bad = _check_shapes(pairs, skip_mismatch)
    skipped = missing + bad
    report = LoadReport(path=path, by_name=bool(by_name), unused=unused, notes=notes)
    _assign(pairs, report)
    report.skipped = skipped
    if skipped:
        warnings.warn(
            f"{len(skipped)} layers of {model.name} were left unchanged when loading {path}: "
            f"{', '.join(skipped[:20])}{'…' if len(skipped) > 20 else ''}.",
            stacklevel=2,
        )
    logger.info("%s", report)
    return report


def _assign(pairs, report: LoadReport) -> None:
    """Assigns every pair, restoring the old values if anything fails half-way."""
    backup = [(layer, layer.get_weights()) for layer, _ in pairs]
    try:
        for layer, arrays in pairs:
            arrays = [np.asarray(a).astype(w.dtype, copy=False) for w, a in zip(layer.weights, arrays)]
            if isinstance(layer, keras.layers.Normalization):
                arrays = _fix_keras_applications_variance(arrays, report)
            layer.set_weights(arrays)
            if hasattr(layer, "finalize_state"):
                layer.finalize_state()
            report.loaded.append(layer.name)
            report.tensors += len(arrays)
    except Exception:
        for layer, old in backup:
            layer.set_weights(old)
            if hasattr(layer, "finalize_state"):
                layer.finalize_state()
        raise


def _fix_keras_applications_variance(arrays, report: LoadReport):
    """keras-applications' V1 files store the ImageNet *std* as the variance (tensorflow#49930).

    Store its square so that the layer computes ``(x - mean) / std``.
    """
    if len(arrays) >= 2 and arrays[1].shape == (3,) and np.allclose(arrays[1], IMAGENET_STD, atol=1e-4):
        report.notes.append("squared the keras-applications normalization variance (it stores the std)")
        return [arrays[0], np.square(arrays[1]).astype(arrays[1].dtype), *arrays[2:]]
    return arrays


def save_weights(model: keras.Model, path: str) -> None:
    """Writes ``model``'s weights as a keras-applications-layout legacy ``.h5``, atomically.

    The layout Keras' ``load_weights(path.h5)`` reads: root attributes ``layer_names``,
    ``backend`` and ``keras_version``, and one group per layer whose ``weight_names``
    attribute lists its datasets (``stem_conv/kernel``…). Keras 3's own
    ``save_weights`` no longer writes it.
    """
    path = str(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(suffix=".h5.partial", dir=directory)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with h5py.File(tmp, "w") as f:
            _write_legacy(f, model)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _write_legacy(f: h5py.File, model: keras.Model) -> None:
    # Only layers with weights: the file then does not depend on auto-generated names
    # (``input_layer_3``), so converting the same weights always gives the same bytes.
    layers = [layer for layer in model.layers if layer.weights]
    f.attrs["layer_names"] = np.array([layer.name.encode("utf8") for layer in layers])
    f.attrs["backend"] = keras.backend.backend().encode("utf8")
    f.attrs["keras_version"] = str(keras.__version__).encode("utf8")
    for layer in sorted(layers, key=lambda layer: layer.name):
        group = f.create_group(layer.name)
        names = [str(w.path).encode("utf8") for w in layer.weights]
        group.attrs["weight_names"] = np.array(names)
        for name, weight in zip(names, layer.weights):
            value = keras.ops.convert_to_numpy(weight)
            dataset = group.create_dataset(name.decode("utf8"), value.shape, dtype=value.dtype)
            dataset[()] = value
    f.create_group("top_level_model_weights").attrs["weight_names"] = np.array([], dtype="float64")
