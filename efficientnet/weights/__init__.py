"""Weights: the registry, strict loading, downloading, and what constructors call.

Public: :func:`load_weights`, :func:`save_weights`, :class:`LoadReport`, the
error classes, :data:`REGISTRY` and :func:`available_weights`.
"""

from __future__ import annotations

import os

import keras
import numpy as np

from . import registry
from .download import ENV_DIR, ENV_URL, WeightsDownloadError, cache_dir, fetch
from .loader import (
    LoadReport,
    WeightsError,
    WeightsFileError,
    WeightsMismatchError,
    check_weights_file,
    load_weights,
    read_weights_file,
    save_weights,
    weighted_layers,
)
from .registry import REGISTRY, WeightSpec, available_weights, find_weight_spec, registered_weight_sets

__all__ = [
    "ENV_DIR",
    "ENV_URL",
    "REGISTRY",
    "LoadReport",
    "WeightSpec",
    "WeightsDownloadError",
    "WeightsError",
    "WeightsFileError",
    "WeightsMismatchError",
    "available_weights",
    "cache_dir",
    "check_weights_file",
    "fetch",
    "find_weight_spec",
    "load_requested_weights",
    "load_weights",
    "read_weights_file",
    "registered_weight_sets",
    "resolve_weight_spec",
    "save_weights",
    "set_normalization",
    "weighted_layers",
]


def is_weights_path(weights) -> bool:
    """Whether ``weights=`` names a file rather than a registered weight set.

    A registered name (``"imagenet"``, ``"noisy-student"``…) always means the registered
    weights, even when a file or folder of that name is in the working directory
    (keras.applications' order): pass ``"./imagenet"`` or a ``pathlib.Path`` for the file.
    Other strings are paths when they contain a directory separator or a dot, or exist.
    """
    if isinstance(weights, os.PathLike):
        return True
    if not isinstance(weights, str) or weights in registered_weight_sets():
        return False
    separators = [s for s in (os.sep, os.altsep) if s]
    return any(s in weights for s in separators) or "." in weights or os.path.exists(weights)


def resolve_weight_spec(variant, weights, include_top: bool) -> WeightSpec | None:
    """The registry entry that ``weights=`` names, ``None`` for no weights or a path.

    Checked before any model is built, so a wrong ``weights=`` fails at once.

    Raises:
        ValueError: ``weights`` is neither None, a registered weight set nor a path;
            or a weight set not registered for this variant (the message lists those that are).
        WeightsFileError: a path that does not exist or cannot be a weights file
            (a directory, a ``.keras`` model, a PyTorch checkpoint…).
    """
    if weights is None:
        return None
    if is_weights_path(weights):
        check_weights_file(weights)
        return None
    if not isinstance(weights, str):
        raise ValueError(
            f"weights must be None, a weight-set name or a file path, got {weights!r}; "
            f"weight sets for {variant.name}: {', '.join(repr(w) for w in available_weights(variant.name)) or 'none'}."
        )
    return registry.find_weight_spec(variant.name, weights, include_top)


def load_requested_weights(model: keras.Model, weights, spec: WeightSpec | None) -> LoadReport:
    """What ``weights=`` does in a constructor: fetch if registered, then load strictly.

    Registered files load by name (they may lack the in-model normalisation or
    carry a classifier the model does not have); user files by name when every
    layer is found by name, else by position.
    """
    if spec is not None:
        path = fetch(spec)
        return load_weights(model, path, by_name=True)
    return load_weights(model, str(weights), by_name="auto")


def set_normalization(layer: keras.layers.Normalization, norm) -> None:
    """Sets a weight-carrying Normalization layer to ``norm``'s statistics (identity for ``None``)."""
    channels = layer.adapt_mean.shape[0]
    if norm is None or channels != 3:
        mean = np.zeros((channels,), "float32")
        variance = np.ones((channels,), "float32")
    else:
        mean, variance = norm.unit()
    layer.set_weights([mean, variance, np.asarray(0, dtype=layer.count.dtype)])
    layer.finalize_state()
