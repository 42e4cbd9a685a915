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
import shutil
import tempfile
import warnings
import zipfile
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
    "check_weights_file",
    "describe_non_weights_file",
    "weighted_layers",
    "file_classifier",
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
    """What a load did, on both sides.

    Attributes:
        path: the file.
        by_name: whether layers were matched by name (else by position).
        loaded: model layer names that received weights.
        tensors: how many arrays were assigned.
        skipped: model layers with weights left unchanged, with the reason (only with ``skip_mismatch``).
        unused: file layers whose weights went nowhere (a classifier loaded into a notop model,
            layers of a deeper variant, layers skipped for their shapes).
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
        """Every model layer with weights received them (file layers may still be unused)."""
        return not self.skipped

    def __str__(self) -> str:
        mode = "by name" if self.by_name else "by position"
        text = f"Loaded {self.tensors} tensors into {len(self.loaded)} layers {mode} from {self.path}"
        if self.skipped:
            text += f"; model layers left unchanged ({len(self.skipped)}): {', '.join(self.skipped[:10])}"
        if self.unused:
            text += f"; unused in file ({len(self.unused)}): {', '.join(self.unused[:10])}"
        return text + "."


# --------------------------------------------------------------------------- reading

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_CONVERT_HINT = (
    "Convert it with `efficientnet convert {path} OUT.h5 --variant VARIANT [--layout LAYOUT]` "
    "(or efficientnet.convert.convert_file) and load OUT.h5."
)


def describe_non_weights_file(path: str) -> str | None:
    """Why ``path`` cannot be a Keras weights file, judged from what it is; ``None`` if it may be one.

    Names what the file is instead (a directory, a ``.keras`` model, a PyTorch or
    TensorFlow checkpoint, an image, an empty or non-HDF5 file) and what to do with it.
    """
    if not os.path.exists(path):
        return f"Weights file {path} does not exist. Check the path (relative paths start from {os.getcwd()})."
    if os.path.isdir(path):
        if os.path.exists(os.path.join(path, "saved_model.pb")):
            return (
                f"{path} is a TensorFlow SavedModel directory, not a weights file. Keras 3 runs it only for "
                "inference, with keras.layers.TFSMLayer(path); for weights, pass a .h5 or .weights.h5 file."
            )
        return f"{path} is a directory, not a weights file. Pass the .h5 or .weights.h5 file inside it."
    if os.path.getsize(path) == 0:
        return (
            f"{path} is empty (0 bytes): an interrupted download, copy or save. "
            "Delete it and download, convert or save it again."
        )
    with open(path, "rb") as f:
        head = f.read(8)
    if head == HDF5_SIGNATURE or h5py.is_hdf5(path):
        return None
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (OSError, zipfile.BadZipFile):
            names = []
        if "config.json" in names and "model.weights.h5" in names:
            return (
                f"{path} is a whole Keras model saved with model.save() (a .keras archive), not a weights file. "
                f"Load it with keras.models.load_model({path!r}); to copy its weights into a model of the same "
                f"architecture, call that_model.load_weights({path!r}) (Keras' own loader)."
            )
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return f"{path} is a PyTorch checkpoint (torch.save), not a Keras weights file. " + _CONVERT_HINT.format(
                path=path
            )
        return (
            f"{path} is a ZIP archive, not a Keras weights file (.h5 or .weights.h5). Extract the weights file from it."
        )
    if head[:1] == b"\x80":
        return (
            f"{path} is a Python pickle (a legacy PyTorch checkpoint?), not a Keras weights file. "
            + _CONVERT_HINT.format(path=path)
        )
    if re.search(r"\.(index|data-\d+-of-\d+)$", path):
        prefix = re.sub(r"\.(index|data-\d+-of-\d+)$", "", path)
        return (
            f"{path} is part of a TensorFlow checkpoint, not a Keras weights file. Convert it with "
            f"`efficientnet convert {prefix} OUT.h5 --variant VARIANT --layout tf` and load OUT.h5."
        )
    if head.startswith((b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM")):
        return f"{path} is an image, not a weights file. Pass images to model.predict, and weights as a .h5 file."
    return (
        f"{path} is not an HDF5 file (it starts with {head!r}), so it is not a Keras weights file: it is "
        "something else, or damaged at the start. Pass a .h5 or .weights.h5 file written by Keras, "
        "efficientnet.save_weights or `efficientnet convert`; download or convert it again if it is damaged."
    )


def check_weights_file(path) -> None:
    """Raises :class:`WeightsFileError` naming what ``path`` is when it cannot be a weights file."""
    problem = describe_non_weights_file(os.fspath(path))
    if problem is not None:
        raise WeightsFileError(problem)


def read_weights_file(path: str, model: keras.Model | None = None) -> list[tuple[str, list[np.ndarray]]]:
    """The ``(layer_name, arrays)`` pairs of a weights file, in the file's layer order.

    Keras 3 ``.weights.h5`` files name layers by class, not by ``layer.name``;
    they need ``model`` to recover the order and are matched by position only.
    Reading one checks that it was saved from ``model``'s architecture.
    """
    return _read_weights(os.fspath(path), model)[0]


def file_classifier(path) -> tuple[np.ndarray, np.ndarray] | None:
    """The classifier ``(kernel, bias)`` a weights file holds, or ``None`` (no single classifier, unreadable).

    A legacy ``.h5`` names it ``predictions``; a Keras 3 ``.weights.h5`` of a library model has
    exactly one ``dense`` entry, its classifier. ``kernel.shape[-1]`` is the number of classes the
    file was trained for, which a command line can then build without being told.
    """
    path = os.fspath(path)
    try:
        if describe_non_weights_file(path) is not None:
            return None
        with h5py.File(path, "r") as f:
            if "layer_names" in f.attrs or "model_weights" in f:
                group = f["model_weights"] if "model_weights" in f else f
                for name, arrays in _read_legacy(group):
                    if _base_name(name) == "predictions" and len(arrays) == 2:
                        return arrays[0], arrays[1]
                return None
            dense = sorted(k for k in _keras3_file_entries(f) if _entry_class(k) == "dense")
            if len(dense) != 1:
                return None
            group = f[f"{dense[0]}/vars"]
            if len(group) != 2:
                return None
            return np.asarray(group["0"]), np.asarray(group["1"])
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError):
        return None


def _read_weights(path: str, model) -> tuple[list[tuple[str, list[np.ndarray]]], bool]:
    """The file's layers, and whether it is a Keras 3 file (its layer names are then the model's)."""
    check_weights_file(path)
    try:
        with h5py.File(path, "r") as f:
            if "layer_names" in f.attrs or "model_weights" in f:
                group = f["model_weights"] if "model_weights" in f else f
                return _read_legacy(group), False
            if "layers" in f:
                if model is None:
                    raise WeightsFileError(f"{path} is a Keras 3 .weights.h5 file; reading it needs the model.")
                return _read_keras3(f, model, path), True
            raise WeightsFileError(
                f"{path} is an HDF5 file but not a Keras weights file (no 'layer_names' attribute, no 'layers' "
                "group). Pass a file written by Keras' save_weights, efficientnet.save_weights or "
                "`efficientnet convert`."
            )
    except WeightsError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError) as exc:
        raise WeightsFileError(
            f"Cannot read weights file {path}: the HDF5 file is truncated or corrupt ({exc}). "
            "Delete it and download, convert or save it again."
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


def _keras3_model_entries(model) -> list[tuple[str, keras.layers.Layer]]:
    """``(entry, layer)`` for every weighted layer, ``entry`` as Keras' saving library names it."""
    entries = []

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
            elif layer.weights:
                entries.append((path, layer))

    walk(model, "")
    return entries


def _keras3_file_entries(f) -> set[str]:
    """Every ``.../layers/<key>`` entry of a ``.weights.h5`` file that holds variables."""
    entries = set()

    def walk(group, group_path: str):
        if "layers" not in group:
            return
        for key, child in group["layers"].items():
            path = f"{group_path}/layers/{key}"
            if "vars" in child and len(child["vars"]):
                entries.add(path)
            walk(child, path)

    walk(f, "")
    return entries


def _entry_class(entry: str) -> str:
    return re.sub(r"_\d+$", "", entry.rsplit("/", 1)[-1])


def _read_keras3(f, model, path: str) -> list[tuple[str, list[np.ndarray]]]:
    """Reads each weighted layer's ``vars`` as Keras' saving library would, after checking that
    the file was saved from the same architecture.

    Its entries name layers by class and rank only (``batch_normalization_5``), so the file's
    entries must be exactly the model's: a file of another variant has entries in other
    places, and pairing them would put weights into the wrong layers. Allowed differences,
    which leave every other entry's identity intact: a classifier (``dense``) the model lacks,
    and the input-statistics ``normalization`` layer on either side.
    """
    model_entries = _keras3_model_entries(model)
    model_keys = {entry for entry, _ in model_entries}
    file_keys = _keras3_file_entries(f)
    model_has_dense = any(isinstance(layer, keras.layers.Dense) for _, layer in model_entries)
    file_only = sorted(
        k
        for k in file_keys - model_keys
        if not (_entry_class(k) == "normalization" or (_entry_class(k) == "dense" and not model_has_dense))
    )
    model_only = sorted(k for k in model_keys - file_keys if _entry_class(k) != "normalization")
    if file_only or model_only:
        raise WeightsMismatchError(
            f"{path} is a Keras 3 .weights.h5 file saved from another architecture than {model.name}: "
            f"{len(file_only)} of its entries have no counterpart in the model"
            f"{' (' + ', '.join(file_only[:5]) + ')' if file_only else ''} and {len(model_only)} of the model's "
            f"have none in the file{' (' + ', '.join(model_only[:5]) + ')' if model_only else ''}. These files "
            "name layers only by class and rank, so they load only into the architecture they were saved from, "
            "and skip_mismatch cannot pair their layers safely. Build the variant (include_top, classes) the file "
            "was saved from; or save the source model with efficientnet.save_weights(model, 'file.h5') and load "
            "that with by_name=True."
        )
    result = []
    for entry, layer in model_entries:
        if entry not in file_keys:
            continue  # the normalization layer: handled as a missing optional layer
        vars_group = f[f"{entry}/vars"]
        result.append((layer.name, [np.asarray(vars_group[str(i)]) for i in range(len(vars_group))]))
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
        by_name.setdefault(_base_name(name), (name, arrays))
    pairs, missing = [], []
    model_names = set()
    for layer in model_layers:
        model_names.add(_base_name(layer.name))
        entry = by_name.get(_base_name(layer.name))
        if entry is None:
            if not _is_optional(layer.name):
                missing.append(layer.name)
            continue
        pairs.append((layer, *entry))
    unused = [n for n, _ in file_layers if _base_name(n) not in model_names]
    return pairs, missing, unused


def _match_by_position(model_layers, file_layers):
    model_layers = list(model_layers)
    file_layers = list(file_layers)
    notes = []
    unused = []
    model_has = bool(model_layers) and _is_optional(model_layers[0].name)
    file_has = bool(file_layers) and _is_optional(file_layers[0][0])
    if model_has and not file_has:
        model_layers = model_layers[1:]
        notes.append("the file has no normalization layer; the model keeps its input statistics")
    elif file_has and not model_has:
        unused.append(file_layers[0][0])
        file_layers = file_layers[1:]
        notes.append("the model has no normalization layer; the file's input statistics were not used")
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
            f"the file is for another architecture or variant.{hint} Loading by position cannot skip "
            "layers safely; if the file names its layers, load it with by_name=True."
        )
    return [(layer, name, arrays) for layer, (name, arrays) in zip(model_layers, file_layers)], unused, notes


def _check_shapes(pairs, skip_mismatch: bool, by_name: bool, path: str):
    """Splits pairs into those whose shapes fit and the rest.

    A pair whose shapes differ may be skipped only when its identity is certain:
    matched by name, or by position with the same name on both sides. Otherwise the
    pairing itself is in doubt, and skipping would load the rest into wrong layers.
    """
    good, bad, bad_file = [], [], []
    uncertain = []
    for layer, file_name, arrays in pairs:
        strange = [a.dtype for a in arrays if a.dtype.kind not in "biuf"]
        if strange:
            raise WeightsFileError(
                f"{path}: the weights of layer {file_name} have dtype {strange[0]}, not numbers. The file is "
                "damaged or not a weights file; download, convert or save it again."
            )
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(a.shape) for a in arrays]
        if expected == got:
            good.append((layer, file_name, arrays))
            continue
        bad.append(f"{layer.name} (model {expected}, file {got})")
        bad_file.append(file_name)
        if not by_name and _base_name(file_name) != _base_name(layer.name):
            uncertain.append(f"{layer.name} ↔ {file_name}")
    if uncertain:
        raise WeightsMismatchError(
            f"By position, {len(uncertain)} model layers pair with file layers of another name and other shapes, "
            f"e.g. {'; '.join(uncertain[:5])}: the file is for another architecture or variant, and skip_mismatch "
            "cannot tell which layers belong together. Load it by name (by_name=True) with the variant it was "
            "saved from."
        )
    if bad and not skip_mismatch:
        raise WeightsMismatchError(
            f"{len(bad)} layers have weights of other shapes in the file, e.g. {'; '.join(bad[:5])}. "
            "The file is for another variant, input channel count or number of classes; "
            "pass skip_mismatch=True to load the rest."
        )
    return good, bad, bad_file


def _check_finite(pairs, path: str) -> None:
    """Refuses NaN and Inf: they load silently and make every prediction NaN."""
    problems = []
    for layer, file_name, arrays in pairs:
        for weight, array in zip(layer.weights, arrays):
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                count = int(array.size - np.isfinite(array).sum())
                problems.append(f"{file_name} ({weight.path}: {count} of {array.size} values)")
    if problems:
        raise WeightsFileError(
            f"{path} holds NaN or Inf values in {len(problems)} layers: {', '.join(problems[:5])}"
            f"{'…' if len(problems) > 5 else ''}. The model would predict NaN. The file is corrupt or was saved "
            "from a diverged training run: use another copy or an earlier checkpoint, or pass "
            "allow_non_finite=True to load it anyway."
        )


# --------------------------------------------------------------------------- public API


def _check_model_argument(model, function: str) -> None:
    if not isinstance(model, keras.Model):
        swapped = " (did you swap the arguments?)" if isinstance(model, (str, os.PathLike)) else ""
        raise TypeError(
            f"{function}(model, path) needs a keras.Model as its first argument, got {type(model).__name__}{swapped}."
        )


def _check_path_argument(path, function: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{function}: path must be a file path (str or os.PathLike), got {path!r}.")
    return os.fspath(path)


def load_weights(
    model: keras.Model,
    path: str,
    by_name: bool | str = False,
    skip_mismatch: bool = False,
    allow_non_finite: bool = False,
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
            unchanged, instead of raising. Only layers whose identity is certain
            are skipped: a file of another architecture is refused all the same
            when the pairing itself is in doubt (by position, Keras 3 files).
        allow_non_finite: load NaN/Inf values instead of refusing the file.

    Returns:
        A :class:`LoadReport`: the model layers loaded and left unchanged, and the
        file layers left unused.

    Raises:
        WeightsFileError: missing, unreadable or non-Keras file, or NaN/Inf values.
        WeightsMismatchError: layers or shapes that do not fit. The model is unchanged.
    """
    _check_model_argument(model, "load_weights")
    path = _check_path_argument(path, "load_weights")
    if by_name not in (True, False, "auto"):
        raise ValueError(f"by_name must be True, False or 'auto', got {by_name!r}.")
    if not isinstance(skip_mismatch, (bool, np.bool_)):
        raise TypeError(f"skip_mismatch must be True or False, got {skip_mismatch!r}.")
    model_layers = weighted_layers(model)
    if not model_layers:
        raise WeightsMismatchError(f"The model {model.name} has no layers with weights to load {path} into.")
    file_layers, keras3 = _read_weights(path, model)
    if keras3 and by_name is True:
        raise WeightsMismatchError(
            f"{path} is a Keras 3 .weights.h5 file, which records no layer names; load it with by_name=False."
        )

    notes: list[str] = []
    named = _match_by_name(model_layers, file_layers) if by_name and not keras3 else None
    if by_name == "auto":
        by_name = not keras3 and not named[1]
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
    else:
        pairs, unused, notes = _match_by_position(model_layers, file_layers)
        missing, extra = [], []

    pairs, bad, bad_file = _check_shapes(pairs, skip_mismatch, bool(by_name), path)
    if not allow_non_finite:
        _check_finite(pairs, path)
    report = LoadReport(path=path, by_name=bool(by_name), unused=[*unused, *bad_file], notes=notes)
    try:
        _assign([(layer, arrays) for layer, _, arrays in pairs], report)
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsFileError(
            f"Assigning the weights of {path} failed ({type(exc).__name__}: {exc}); {model.name} was restored "
            "to its previous weights."
        ) from exc
    report.skipped = missing + bad
    if report.skipped or extra:
        parts = []
        if report.skipped:
            parts.append(
                f"{len(report.skipped)} layers of {model.name} were left unchanged: "
                f"{', '.join(report.skipped[:20])}{'…' if len(report.skipped) > 20 else ''}"
            )
        if extra or bad_file:
            unused_now = [*extra, *bad_file]
            parts.append(
                f"{len(unused_now)} layers of the file were not used: "
                f"{', '.join(unused_now[:20])}{'…' if len(unused_now) > 20 else ''}"
            )
        warnings.warn(f"Loading {path}: {'; '.join(parts)}.", stacklevel=2)
    logger.info("%s", report)
    return report


def _assign(pairs, report: LoadReport) -> None:
    """Assigns every pair, restoring the old values if anything fails half-way (even an interrupt)."""
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
    except BaseException:
        for layer, old in backup:
            layer.set_weights(old)
            if hasattr(layer, "finalize_state"):
                layer.finalize_state()
        report.loaded.clear()
        report.tensors = 0
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
    """Writes ``model``'s weights atomically, in the format the suffix names.

    ``*.weights.h5``: Keras 3's format (``model.save_weights``), which Keras'
    ``model.load_weights`` and :func:`load_weights` (by position) read. Any other
    name (``*.h5``): the keras-applications legacy layout, which Keras'
    ``load_weights(path.h5)`` and :func:`load_weights` read by name or position:
    root attributes ``layer_names``, ``backend`` and ``keras_version``, and one
    group per layer whose ``weight_names`` attribute lists its datasets
    (``stem_conv/kernel``…). Keras 3's own ``save_weights`` no longer writes it.

    Raises:
        WeightsFileError: a ``.keras`` path, a directory, a missing or unwritable
            directory. Nothing is written then, and an existing file is kept.
    """
    _check_model_argument(model, "save_weights")
    path = _check_path_argument(path, "save_weights")
    if path.endswith(".keras"):
        raise WeightsFileError(
            f"save_weights writes weights only, but {path} names a whole-model .keras file: use "
            f"model.save({path!r}) for that, or a .h5 (legacy layout) or .weights.h5 (Keras 3) path."
        )
    if os.path.isdir(path):
        raise WeightsFileError(f"Cannot write weights to {path}: it is a directory. Add a file name (e.g. model.h5).")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise WeightsFileError(
            f"Cannot write {path}: the directory {directory} does not exist (or is a file). "
            "Create it first (os.makedirs) or choose another path."
        )
    if path.endswith(".weights.h5"):
        _save_keras3(model, path, directory)
        return
    try:
        fd, tmp = tempfile.mkstemp(suffix=".h5.partial", dir=directory)
    except OSError as exc:
        raise WeightsFileError(f"Cannot write {path}: {exc.strerror or exc}. Choose a writable directory.") from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with h5py.File(tmp, "w") as f:
            _write_legacy(f, model)
        os.replace(tmp, path)
    except OSError as exc:
        raise WeightsFileError(
            f"Cannot write {path}: {str(exc).replace(tmp, path)}. Check that {directory} is writable and has "
            "free space; any previous file there is unchanged."
        ) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _save_keras3(model: keras.Model, path: str, directory: str) -> None:
    """Keras' own ``model.save_weights`` into a private temporary directory, then one atomic rename."""
    try:
        tmp_dir = tempfile.mkdtemp(prefix=".efficientnet-save-", dir=directory)
    except OSError as exc:
        raise WeightsFileError(f"Cannot write {path}: {exc.strerror or exc}. Choose a writable directory.") from None
    try:
        tmp = os.path.join(tmp_dir, "partial.weights.h5")
        try:
            model.save_weights(tmp)
            os.replace(tmp, path)
        except OSError as exc:
            raise WeightsFileError(
                f"Cannot write {path}: {str(exc).replace(tmp, path)}. Check that {directory} is writable and has "
                "free space; any previous file there is unchanged."
            ) from None
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


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
