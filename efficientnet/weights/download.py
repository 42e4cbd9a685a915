"""Finding a registered weights file on disk, or downloading it safely.

Order: the file shipped with the package, ``$EFFICIENTNET_WEIGHTS_DIR``, the
Keras cache (``~/.keras/models``), then a download from the registry URL, or
from ``$EFFICIENTNET_WEIGHTS_URL`` (a mirror base URL) when set. Downloads go
to a private temporary directory, are hash-checked and then moved into the
cache with one atomic rename: a failed or corrupt download leaves nothing
behind, and two processes fetching at once end with one good file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from .loader import WeightsError
from .registry import WeightSpec

__all__ = ["WeightsDownloadError", "fetch", "cache_dir", "file_digest", "ENV_DIR", "ENV_URL"]

ENV_DIR = "EFFICIENTNET_WEIGHTS_DIR"
ENV_URL = "EFFICIENTNET_WEIGHTS_URL"


class WeightsDownloadError(WeightsError):
    """A registered weights file could not be found locally nor downloaded intact."""


def cache_dir() -> str:
    """Keras' model cache: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    base = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(base, "models")


def file_digest(path: str, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _hash_ok(path: str, expected: str) -> bool:
    algorithm = "sha256" if len(expected) == 64 else "md5"
    return file_digest(path, algorithm) == expected


def _bundled_path(spec: WeightSpec) -> str | None:
    """The shipped copy: package data when installed, ``weights/`` beside the package in a checkout."""
    if not spec.bundled:
        return None
    try:
        resource = resources.files("efficientnet.bundled_weights").joinpath(spec.file_name)
        if resource.is_file():
            return str(resource)
    except ModuleNotFoundError:
        pass
    checkout = Path(__file__).resolve().parents[2] / "weights" / spec.file_name
    return str(checkout) if checkout.is_file() else None


def _origin(spec: WeightSpec) -> str:
    mirror = os.environ.get(ENV_URL)
    if mirror:
        return mirror.rstrip("/") + "/" + spec.file_name
    return spec.url


def fetch(spec: WeightSpec) -> str:
    """Returns a local path holding ``spec``'s file with the right hash.

    Raises:
        WeightsDownloadError: not found locally and the cache directory is not
            writable, or the download failed or produced a file with the wrong
            hash. Nothing is left in the cache.
    """
    candidates = [_bundled_path(spec)]
    if os.environ.get(ENV_DIR):
        candidates.append(os.path.join(os.environ[ENV_DIR], spec.file_name))
    cached = os.path.join(cache_dir(), spec.file_name)
    candidates.append(cached)
    for path in candidates:
        if path and os.path.isfile(path):
            if _hash_ok(path, spec.file_hash):
                return path
            if path == cached:
                # A stale or corrupt cache entry: replace it by a fresh download.
                continue
            raise WeightsDownloadError(
                f"{path} does not have the expected hash {spec.file_hash} for {spec.variant} "
                f"{spec.weight_set} weights; replace it with the original file."
            )
    origin = _origin(spec)
    if not origin:
        raise WeightsDownloadError(
            f"The {spec.weight_set} weights of {spec.variant} should ship with this package as "
            f"{spec.file_name}, but the file is missing; reinstall the package."
        )
    if os.path.isdir(cached):
        raise WeightsDownloadError(
            f"A directory is in the way of the weights file {cached}: remove or rename it, then retry "
            f"(or point KERAS_HOME at another directory)."
        )
    return _download(spec, origin, cached)


def _alternatives(spec: WeightSpec, origin: str, target: str) -> str:
    """Where else the file can come from, for error messages."""
    if os.path.isfile(target):
        place = (
            f"the file already at {target} is damaged (its hash is not {spec.file_hash}: an interrupted or "
            f"altered download), so delete it and retry with a connection, or download {origin} elsewhere and "
            "put it there in its place"
        )
    else:
        place = f"download {origin} elsewhere and place it at {target}"
    text = f"{place}, or in a directory named by ${ENV_DIR}, or pass weights='/path/to/{spec.file_name}'"
    if os.environ.get(ENV_URL):
        text += f"; check ${ENV_URL}={os.environ[ENV_URL]} (the file should be at {origin})"
    else:
        text += f"; or set ${ENV_URL} to a mirror"
    local = os.environ.get(ENV_DIR)
    if local and not os.path.isdir(local):
        text += f". Note: ${ENV_DIR}={local} is not a directory"
    return text + "."


def _download(spec: WeightSpec, origin: str, target: str) -> str:
    import keras

    directory = os.path.dirname(target)
    try:
        os.makedirs(directory, exist_ok=True)
        tmp_dir = tempfile.mkdtemp(prefix=".efficientnet-download-", dir=directory)
    except OSError as exc:
        raise WeightsDownloadError(
            f"Cannot write the weights cache directory {directory} ({exc.strerror or exc}), so {spec.file_name} "
            f"cannot be downloaded into it. Set KERAS_HOME to a writable directory (the cache is $KERAS_HOME/models), "
            f"or: {_alternatives(spec, origin, target)}"
        ) from None
    try:
        try:
            path = keras.utils.get_file(spec.file_name, origin, cache_dir=tmp_dir, cache_subdir=".")
        except BaseException as exc:
            if not isinstance(exc, Exception):
                raise
            raise WeightsDownloadError(
                f"Could not download {spec.variant} {spec.weight_set} weights ({spec.file_name}) from {origin}: "
                f"{exc}. Offline? Then {_alternatives(spec, origin, target)}"
            ) from None
        if not _hash_ok(path, spec.file_hash):
            raise WeightsDownloadError(
                f"The file downloaded from {origin} does not have the expected hash {spec.file_hash}; "
                "it was deleted. The server or a proxy sent a different or truncated file."
            )
        try:
            os.replace(path, target)
        except OSError as exc:
            raise WeightsDownloadError(
                f"Downloaded {spec.file_name} but could not move it to {target} ({exc.strerror or exc}). "
                f"Make that path writable, or: {_alternatives(spec, origin, target)}"
            ) from None
        return target
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
