"""Reliability: issue 12's bugs (one regression test each) and bad input across constructors, loader,
downloads, features, heads, preprocessing and converters.

Every bad input must raise one of the project's errors (``WeightsFileError``, ``WeightsMismatchError``,
``WeightsDownloadError``, ``ConversionError``) or a ValueError/TypeError whose message names the problem
and the fix, and leave the model, the Keras cache and every file as they were.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from helpers import assert_unchanged, images, predict, randomize_statistics, weights_snapshot

import efficientnet
from efficientnet import features, preprocessing
from efficientnet.convert import ConversionError, convert_file, convert_state_dict, load_torch_state_dict
from efficientnet.segmentation import DeepLabV3Plus, Unet
from efficientnet.weights import (
    WeightsDownloadError,
    WeightsFileError,
    WeightsMismatchError,
    fetch,
    find_weight_spec,
    load_weights,
    save_weights,
)

SMALL_SHAPE = (32, 32, 3)
UNREACHABLE = "http://127.0.0.1:9/unreachable"


def small_model(stages: int = 2, classes: int = 3, **kwargs) -> keras.Model:
    """A two-stage EfficientNet at 32x32: real layer names, built in a fraction of a second."""
    blocks = efficientnet.DEFAULT_BLOCKS_ARGS[:stages]
    kwargs.setdefault("input_shape", SMALL_SHAPE)
    return efficientnet.EfficientNet("b0", weights=None, blocks_args=blocks, classes=classes, **kwargs)


@pytest.fixture(scope="module")
def source():
    """A small model with non-trivial weights, and its legacy .h5 file's bytes."""
    model = small_model()
    randomize_statistics(model)
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"reliability-source-{os.getpid()}.h5"
    save_weights(model, str(path))
    data = path.read_bytes()
    path.unlink()
    return model, data


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """An empty Keras cache inside tmp_path and no network: nothing can be fetched by accident."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("EFFICIENTNET_WEIGHTS_URL", UNREACHABLE)
    monkeypatch.delenv("EFFICIENTNET_WEIGHTS_DIR", raising=False)
    return tmp_path


def files_in(root: Path) -> dict[str, str]:
    """Every file under root with a digest of its bytes (empty directories are not state)."""
    result = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                result[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return result


# --------------------------------------------------------------------------- files used by the cases


def write_good(tmp: Path, source, name: str = "good.h5") -> str:
    path = tmp / name
    path.write_bytes(source[1])
    return str(path)


def write_non_finite(tmp: Path, source, value: float, layer: str) -> str:
    path = write_good(tmp, source, f"{layer}-{value}.h5")
    with h5py.File(path, "r+") as f:
        name = f"{layer}/kernel" if layer.endswith("conv") else f"{layer}/gamma"
        data = np.asarray(f[layer][name])
        data.flat[0] = value
        f[layer][name][...] = data
    return path


def write_keras_model(tmp: Path) -> str:
    path = tmp / "whole.keras"
    small_model().save(str(path))
    return str(path)


def write_torch_file(tmp: Path, obj, name: str = "model.pth") -> str:
    torch = pytest.importorskip("torch")
    path = tmp / name
    torch.save(obj, str(path))
    return str(path)


class _NotATensor:
    """A pickled Python object: torch.load(weights_only=True) refuses it."""


# --------------------------------------------------------------------------- bad-input cases


@dataclass
class Env:
    tmp: Path
    source: tuple
    model: keras.Model
    monkeypatch: pytest.MonkeyPatch


def _b0(**kwargs):
    kwargs.setdefault("weights", None)
    return lambda env: lambda: efficientnet.EfficientNetB0(**kwargs)


def _weights_path(make, ctor=efficientnet.EfficientNetB0, **kwargs):
    def setup(env):
        path = make(env)
        return lambda: ctor(weights=path, input_shape=(64, 64, 3), **kwargs)

    return setup


def _dir(env):
    (env.tmp / "weights_dir").mkdir()
    return str(env.tmp / "weights_dir")


def _bytes(name: str, data: bytes):
    def make(env):
        path = env.tmp / name
        path.write_bytes(data)
        return str(path)

    return make


def _load(make, **kwargs):
    return lambda env: (lambda path: lambda: load_weights(env.model, path, **kwargs))(make(env))


def _keras3_other_architecture(env):
    path = str(env.tmp / "deeper.weights.h5")
    small_model(stages=3).save_weights(path)
    return path


def _string_dataset(env):
    path = write_good(env.tmp, env.source)
    with h5py.File(path, "r+") as f:
        group = f["stem_conv"]
        shape = group["stem_conv/kernel"].shape
        del group["stem_conv/kernel"]
        group.create_dataset("stem_conv/kernel", data=np.full(shape, b"x", dtype="S1"))
    return path


def _fetch_b0(env):
    return lambda: fetch(find_weight_spec("efficientnetb0", "imagenet", True))


def _keras_home_under_a_file(env):
    (env.tmp / "a_file").write_text("not a directory")
    env.monkeypatch.setenv("KERAS_HOME", str(env.tmp / "a_file" / "keras"))
    return _fetch_b0(env)


def _cache_entry_is_a_directory(env):
    (env.tmp / "keras_home" / "models" / "efficientnetb0.h5").mkdir(parents=True)
    return _fetch_b0(env)


def _weights_dir_with_a_wrong_file(env):
    local = env.tmp / "local"
    local.mkdir()
    (local / "efficientnetb0.h5").write_bytes(b"not the real file")
    env.monkeypatch.setenv("EFFICIENTNET_WEIGHTS_DIR", str(local))
    return _fetch_b0(env)


def _malformed_mirror(env):
    env.monkeypatch.setenv("EFFICIENTNET_WEIGHTS_URL", "not-a-url")
    return _fetch_b0(env)


def _weights_dir_is_not_a_directory(env):
    env.monkeypatch.setenv("EFFICIENTNET_WEIGHTS_DIR", str(env.tmp / "no_such_dir"))
    return _fetch_b0(env)


def _top_backbone(env):
    backbone = efficientnet.EfficientNetB0(weights=None, input_shape=(64, 64, 3))
    return lambda: DeepLabV3Plus(backbone, classes=3, input_shape=(64, 64, 3))


def _torch_case(obj, call=load_torch_state_dict):
    def setup(env):
        path = write_torch_file(env.tmp, obj(), "bad.pth")
        return lambda: call(path)

    return setup


def _torch_tensor():
    import torch

    return torch.zeros(3)


def _torch_pickle():
    return {"model": _NotATensor()}


def _convert_into_missing_dir(env):
    return lambda: convert_file(str(env.tmp / "missing.pth"), str(env.tmp / "no_dir" / "out.h5"), "b0")


CASES = [
    # ---------------------------------------------------------------- constructors
    pytest.param(_b0(classes=True), ValueError, r"classes must be a positive integer.*\(a bool\)", id="classes-bool"),
    pytest.param(_b0(classes=2.5), ValueError, "classes must be a positive integer", id="classes-float"),
    pytest.param(_b0(input_shape="224"), ValueError, r"tuple \(height, width, channels\)", id="input-shape-str"),
    pytest.param(_b0(input_shape=(64.5, 64, 3)), ValueError, "integers or None", id="input-shape-float"),
    pytest.param(
        _b0(input_shape=(64, 64, 0), include_preprocessing=False), ValueError, "at least 1", id="zero-channels"
    ),
    pytest.param(_b0(input_tensor=[1, 2, 3]), ValueError, r"keras.Input\(\(224, 224, 3\)\)", id="input-tensor-list"),
    pytest.param(
        lambda env: (
            lambda: efficientnet.EfficientNetB0(
                weights=None, input_tensor=keras.Input((64, 64, 3)), input_shape=(96, 96, 3)
            )
        ),
        ValueError,
        "conflicts with the shape of input_tensor.*Pass only one",
        id="input-tensor-vs-shape",
    ),
    pytest.param(
        lambda env: lambda: efficientnet.EfficientNetB0(weights=None, input_tensor=keras.Input((64, 64))),
        ValueError,
        r"shape of input_tensor.*\(height, width, channels\)",
        id="input-tensor-rank",
    ),
    pytest.param(_weights_path(_dir), WeightsFileError, "is a directory.*inside it", id="weights-directory"),
    pytest.param(
        _weights_path(lambda env: write_keras_model(env.tmp)),
        WeightsFileError,
        r"model.save\(\).*keras.models.load_model",
        id="weights-keras-model",
    ),
    pytest.param(
        _weights_path(lambda env: write_torch_file(env.tmp, {"conv_stem.weight": _torch_tensor()})),
        WeightsFileError,
        "PyTorch checkpoint.*efficientnet convert",
        id="weights-pth",
    ),
    pytest.param(_weights_path(_bytes("empty.h5", b"")), WeightsFileError, "is empty", id="weights-empty-file"),
    pytest.param(
        _weights_path(_bytes("cat.jpg", b"\xff\xd8\xff\xe0" + bytes(100))), WeightsFileError, "is an image", id="jpg"
    ),
    pytest.param(
        lambda env: lambda: efficientnet.EfficientNetLite0(weights="noisy-student"),
        ValueError,
        "Weight sets for efficientnetlite0: 'imagenet'",
        id="weight-set-of-another-variant",
    ),
    pytest.param(_b0(weights=3), ValueError, "weights must be None, a weight-set name or a file", id="weights-int"),
    pytest.param(
        lambda env: lambda: efficientnet.EfficientNetB8(weights="imagenet"),
        ValueError,
        "no registered weights.*efficientnet convert",
        id="b8-imagenet",
    ),
    pytest.param(
        lambda env: lambda: efficientnet.Xception41(dropout_rate=2),
        ValueError,
        r"dropout_rate must be a number in \[0, 1\)",
        id="xception-dropout",
    ),
    pytest.param(
        lambda env: lambda: efficientnet.Xception41(weights=str(env.tmp / "missing.h5")),
        WeightsFileError,
        "does not exist",
        id="xception-missing-file",
    ),
    # ---------------------------------------------------------------- loader
    pytest.param(
        lambda env: (lambda path: lambda: load_weights(path, env.model))(write_good(env.tmp, env.source)),
        TypeError,
        "swap the arguments",
        id="load-swapped",
    ),
    pytest.param(lambda env: lambda: load_weights(env.model, None), TypeError, "path must be", id="load-path-none"),
    pytest.param(
        _load(lambda env: write_good(env.tmp, env.source), by_name="yes"), ValueError, "by_name must be", id="by-name"
    ),
    pytest.param(
        _load(lambda env: write_good(env.tmp, env.source), skip_mismatch="no"),
        TypeError,
        "skip_mismatch must be True or False",
        id="skip-mismatch-str",
    ),
    pytest.param(
        _load(lambda env: write_non_finite(env.tmp, env.source, np.nan, "stem_conv")),
        WeightsFileError,
        r"NaN or Inf values in 1 layers: stem_conv \(stem_conv/kernel: 1 of 864 values\).*allow_non_finite=True",
        id="nan",
    ),
    pytest.param(
        _load(lambda env: write_non_finite(env.tmp, env.source, np.inf, "block2a_bn"), by_name=True),
        WeightsFileError,
        "NaN or Inf.*block2a_bn",
        id="inf",
    ),
    pytest.param(
        _load(_keras3_other_architecture, skip_mismatch=True),
        WeightsMismatchError,
        "another architecture.*skip_mismatch cannot",
        id="keras3-other-architecture-skip",
    ),
    pytest.param(
        _load(_bytes("notes.h5", b"these are my notes\n" * 10)),
        WeightsFileError,
        "not an HDF5 file.*Pass a .h5",
        id="text-file",
    ),
    pytest.param(_load(_string_dataset), WeightsFileError, "not numbers", id="string-dataset"),
    pytest.param(
        _load(lambda env: write_keras_model(env.tmp)), WeightsFileError, "keras.models.load_model", id="load-keras"
    ),
    pytest.param(_load(_dir), WeightsFileError, "is a directory", id="load-directory"),
    # ---------------------------------------------------------------- saving
    pytest.param(
        lambda env: lambda: save_weights(env.model, str(env.tmp / "no_dir" / "w.h5")),
        WeightsFileError,
        "does not exist.*Create it first",
        id="save-missing-dir",
    ),
    pytest.param(
        lambda env: lambda: save_weights(env.model, str(env.tmp / "w.keras")),
        WeightsFileError,
        r"model.save\(",
        id="save-keras-suffix",
    ),
    pytest.param(
        lambda env: lambda: save_weights(env.model, str(env.tmp)), WeightsFileError, "is a directory", id="save-dir"
    ),
    pytest.param(
        lambda env: lambda: save_weights("w.h5", env.model), TypeError, "swap the arguments", id="save-swapped"
    ),
    # ---------------------------------------------------------------- downloads
    pytest.param(
        _keras_home_under_a_file,
        WeightsDownloadError,
        "Cannot write the weights cache directory .*a_file.*KERAS_HOME.*EFFICIENTNET_WEIGHTS_DIR",
        id="keras-home-not-writable",
    ),
    pytest.param(
        _cache_entry_is_a_directory, WeightsDownloadError, "directory is in the way", id="cache-entry-is-a-directory"
    ),
    pytest.param(
        _weights_dir_with_a_wrong_file,
        WeightsDownloadError,
        "expected hash.*replace it with the original file",
        id="weights-dir-wrong-file",
    ),
    pytest.param(
        _malformed_mirror, WeightsDownloadError, r"check \$EFFICIENTNET_WEIGHTS_URL=not-a-url", id="malformed-mirror"
    ),
    pytest.param(
        _weights_dir_is_not_a_directory,
        WeightsDownloadError,
        r"\$EFFICIENTNET_WEIGHTS_DIR=.*no_such_dir is not a directory",
        id="weights-dir-missing",
    ),
    # ---------------------------------------------------------------- features
    pytest.param(
        lambda env: lambda: features.feature_extractor("efficientnetb0"),
        TypeError,
        "needs a keras.Model.*features_only=True",
        id="features-of-a-name",
    ),
    pytest.param(
        lambda env: lambda: features.feature_extractor(env.model, strides=4),
        TypeError,
        r"sequence of strides such as \(4, 8, 16, 32\)",
        id="features-int-stride",
    ),
    pytest.param(
        lambda env: lambda: features.feature_extractor(env.model, strides=()),
        ValueError,
        "strides is empty",
        id="features-no-stride",
    ),
    pytest.param(
        lambda env: lambda: features.feature_extractor(env.model, strides=(4,), layer_names={4: "nope"}),
        ValueError,
        "no layers named 'nope'.*endpoint_names",
        id="features-unknown-layer",
    ),
    # ---------------------------------------------------------------- heads
    pytest.param(
        lambda env: lambda: DeepLabV3Plus("efficientnetb0", classes=0, input_shape=(64, 64, 3)),
        ValueError,
        "classes must be a positive integer",
        id="deeplab-classes-0",
    ),
    pytest.param(
        lambda env: lambda: Unet("efficientnetb0", classes=True, input_shape=(64, 64, 3)),
        ValueError,
        "classes must be a positive integer",
        id="unet-classes-bool",
    ),
    pytest.param(
        lambda env: lambda: DeepLabV3Plus("efficientnetb0", classes=2, dropout_rate=1.5, input_shape=(64, 64, 3)),
        ValueError,
        r"dropout_rate must be a number in \[0, 1\)",
        id="deeplab-dropout",
    ),
    pytest.param(
        lambda env: lambda: DeepLabV3Plus("efficientnetb0", classes=2, aspp_filters=0, input_shape=(64, 64, 3)),
        ValueError,
        "aspp_filters must be a positive integer",
        id="deeplab-aspp-filters",
    ),
    pytest.param(
        lambda env: lambda: Unet("efficientnetb0", decoder_filters=(256, 128, 64, 32, 0), input_shape=(64, 64, 3)),
        ValueError,
        "decoder_filters value must be a positive integer",
        id="unet-decoder-filters",
    ),
    pytest.param(_top_backbone, ValueError, "include_top=False", id="deeplab-backbone-with-classifier"),
    # ---------------------------------------------------------------- preprocessing
    pytest.param(
        lambda env: lambda: preprocessing.center_crop_and_resize(np.zeros((0, 0, 3)), 224),
        ValueError,
        "image is empty",
        id="crop-empty",
    ),
    pytest.param(
        lambda env: lambda: preprocessing.center_crop_and_resize(np.zeros((1, 1, 3)), 224),
        ValueError,
        "too small.*crop_padding=0",
        id="crop-too-small",
    ),
    pytest.param(
        lambda env: lambda: preprocessing.center_crop_and_resize(np.zeros((64, 64, 3)), 32, crop_padding=-8),
        ValueError,
        "crop_padding must be a number >= 0",
        id="crop-negative-padding",
    ),
    pytest.param(
        lambda env: lambda: preprocessing.center_crop_and_resize(np.zeros((64, 64, 3)), 32.5),
        ValueError,
        "image_size must be a positive integer",
        id="crop-float-size",
    ),
    pytest.param(
        lambda env: lambda: preprocessing.decode_predictions(np.zeros((1, 1000)), top=-1),
        ValueError,
        "top must be at least 1",
        id="decode-top-negative",
    ),
    pytest.param(
        lambda env: lambda: preprocessing.decode_predictions(np.zeros((1, 1000)), top=2.5),
        ValueError,
        "top must be a positive integer",
        id="decode-top-float",
    ),
    pytest.param(
        lambda env: lambda: preprocessing.preprocess_input(np.zeros((1, 4, 4, 3)), mode="torch", data_format="NHWC"),
        ValueError,
        "data_format must be 'channels_last' or 'channels_first'",
        id="preprocess-data-format",
    ),
    # ---------------------------------------------------------------- converters
    pytest.param(
        lambda env: (lambda p: lambda: load_torch_state_dict(p))(_bytes("corrupt.pth", b"\x80\x02garbage")(env)),
        ConversionError,
        "truncated, corrupt or not a PyTorch file",
        id="pth-corrupt",
    ),
    pytest.param(_torch_case(_torch_pickle), ConversionError, "Python objects besides tensors", id="pth-pickle"),
    pytest.param(_torch_case(_torch_tensor), ConversionError, "not a state dict", id="pth-tensor"),
    pytest.param(
        lambda env: lambda: load_torch_state_dict(str(env.tmp / "missing.pth")),
        ConversionError,
        "does not exist",
        id="pth-missing",
    ),
    pytest.param(_convert_into_missing_dir, ConversionError, "directory .*no_dir does not exist", id="convert-no-dir"),
    pytest.param(
        lambda env: lambda: convert_state_dict({"w": np.zeros(1)}, "b0", layout="pytorch"),
        ConversionError,
        r"Unknown layout 'pytorch'; choose one of \[",
        id="convert-unknown-layout",
    ),
]


@pytest.fixture
def env(isolated, source, monkeypatch):
    model = small_model()
    return Env(isolated, source, model, monkeypatch)


@pytest.mark.parametrize("setup,error,message", CASES)
def test_bad_input_raises_a_clear_error_and_changes_nothing(env, setup, error, message):
    action = setup(env)
    files = files_in(env.tmp)
    weights = weights_snapshot(env.model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no partial load with a warning instead of an error
        with pytest.raises(error, match=message) as info:
            action()
    text = str(info.value)
    assert "partial" not in text and "weights_only=False" not in text, text
    assert files_in(env.tmp) == files, "files or the cache changed"
    assert_unchanged(env.model, weights)


# --------------------------------------------------------------------------- issue 12's bugs, one test each


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_bug1_registered_name_is_never_taken_over_by_a_local_path(isolated, monkeypatch, kind):
    monkeypatch.chdir(isolated)
    if kind == "folder":
        (isolated / "imagenet").mkdir()  # a user's data set
    else:
        (isolated / "imagenet").write_text("labels")
    model = efficientnet.EfficientNetLite0(weights="imagenet", input_shape=(64, 64, 3))  # bundled, offline
    spec = find_weight_spec("efficientnetlite0", "imagenet", True)
    with h5py.File(fetch(spec), "r") as f:
        np.testing.assert_array_equal(model.get_layer("stem_conv").get_weights()[0], f["stem_conv/stem_conv/kernel"])
    # A downloadable registered name goes to the registry (here: offline) and never to ./imagenet.
    with pytest.raises(WeightsDownloadError, match="efficientnetb0.h5"):
        efficientnet.EfficientNetB0(weights="imagenet", input_shape=(64, 64, 3))
    # The local path is still reachable, explicitly.
    with pytest.raises(WeightsFileError, match="is a directory" if kind == "folder" else "not an HDF5 file"):
        efficientnet.EfficientNetLite0(weights="./imagenet", input_shape=(64, 64, 3))
    # A registered name the variant lacks says how to load the local file instead.
    (isolated / "noisy-student").mkdir()
    with pytest.raises(ValueError, match=r"pass weights='\./noisy-student'"):
        efficientnet.EfficientNetLite0(weights="noisy-student")


def test_bug2_skip_mismatch_never_pairs_layers_of_another_architecture(tmp_path):
    other = small_model(stages=3)  # B1-like: more layers, whose Keras 3 entries shift everything after them
    randomize_statistics(other)
    path = str(tmp_path / "other.weights.h5")
    other.save_weights(path)
    model = small_model()
    before = weights_snapshot(model)
    for skip in (False, True):
        with pytest.raises(WeightsMismatchError, match="another architecture") as info:
            load_weights(model, path, skip_mismatch=skip)
        assert "pass skip_mismatch=True" not in str(info.value)
        assert_unchanged(model, before)
    # The real B1 into B0, as in the issue: refused, not block2b_bn into block3a_expand_bn.
    b1 = efficientnet.EfficientNetB1(weights=None, input_shape=(64, 64, 3))
    b1_path = str(tmp_path / "b1.weights.h5")
    b1.save_weights(b1_path)
    b0 = efficientnet.EfficientNetB0(weights=None, input_shape=(64, 64, 3))
    b0_before = weights_snapshot(b0)
    with pytest.raises(WeightsMismatchError, match="another architecture"):
        load_weights(b0, b1_path, skip_mismatch=True)
    assert_unchanged(b0, b0_before)
    # Same architecture, other classifier: skipping it is safe, and everything else loads exactly.
    same = small_model(classes=7)
    randomize_statistics(same)
    same_path = str(tmp_path / "same.weights.h5")
    same.save_weights(same_path)
    with pytest.warns(UserWarning, match="predictions"):
        report = load_weights(model, same_path, skip_mismatch=True)
    assert [s.split(" ")[0] for s in report.skipped] == ["predictions"]
    for layer in model.layers:
        if layer.weights and layer.name != "predictions":
            for a, b in zip(layer.get_weights(), same.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(a, b)


def test_bug3_unwritable_cache_is_a_download_error_before_any_download(isolated, monkeypatch):
    blocker = isolated / "regular_file"
    blocker.write_text("x")
    monkeypatch.setenv("KERAS_HOME", str(blocker / "keras"))  # mkdir under a file fails, even for root
    requested = []
    monkeypatch.setattr(keras.utils, "get_file", lambda *a, **k: requested.append(a) or 1 / 0)
    with pytest.raises(WeightsDownloadError) as info:
        efficientnet.EfficientNetB0(weights="imagenet", input_shape=(64, 64, 3))
    message = str(info.value)
    assert str(blocker / "keras" / "models") in message
    assert "KERAS_HOME" in message and "EFFICIENTNET_WEIGHTS_DIR" in message and "weights='/path/to/" in message
    assert requested == []


def test_bug4_file_errors_say_what_the_file_is(tmp_path, source):
    model = small_model()
    keras_file = write_keras_model(tmp_path)
    with pytest.raises(WeightsFileError, match="keras.models.load_model") as info:
        load_weights(model, keras_file)
    assert "Delete it" not in str(info.value)
    with pytest.raises(WeightsFileError, match="is a directory") as info:
        load_weights(model, str(tmp_path))
    assert "Delete it" not in str(info.value)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"GARBAGE!" * 64)
    with pytest.raises(WeightsFileError, match="not an HDF5 file") as info:
        load_weights(model, str(junk))
    assert "Delete it" not in str(info.value)
    # A damaged HDF5 file is the one case where "delete it and download again" is the advice.
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(source[1][: len(source[1]) // 2])
    with pytest.raises(WeightsFileError, match="truncated or corrupt.*Delete it"):
        load_weights(model, str(truncated))


def test_bug4_save_weights_honours_the_keras3_suffix(tmp_path, source):
    reference = source[0]
    path = tmp_path / "x.weights.h5"
    path.write_bytes(b"previous")  # replaced atomically
    save_weights(reference, str(path))
    assert sorted(os.listdir(tmp_path)) == ["x.weights.h5"]  # no temporary left behind
    with h5py.File(path, "r") as f:
        assert "layers" in f and "layer_names" not in f.attrs  # Keras 3's format, not the legacy layout
    x = images(size=32)
    expected = predict(reference, x)
    keras_loaded = small_model()
    keras_loaded.load_weights(str(path))  # Keras' own loader
    np.testing.assert_allclose(predict(keras_loaded, x), expected, atol=1e-6)
    ours = small_model()
    assert load_weights(ours, str(path)).complete
    np.testing.assert_allclose(predict(ours, x), expected, atol=1e-6)


def test_bug5_non_finite_weights_are_refused_naming_the_layer(tmp_path, source):
    path = write_non_finite(tmp_path, source, np.nan, "block2a_project_conv")
    model = small_model()
    before = weights_snapshot(model)
    for by_name in (True, False):
        with pytest.raises(WeightsFileError, match="block2a_project_conv"):
            load_weights(model, path, by_name=by_name)
        assert_unchanged(model, before)
    report = load_weights(model, path, allow_non_finite=True)
    assert report.complete and np.isnan(model.get_layer("block2a_project_conv").get_weights()[0]).any()


def test_bug6_xception_checks_weights_before_building(tmp_path, monkeypatch):
    from efficientnet import xception

    def no_building(*args, **kwargs):
        raise AssertionError("the model was built before weights= was checked")

    monkeypatch.setattr(xception, "_unit", no_building)
    with pytest.raises(ValueError, match="No 'imagenet' weights are registered for xception65") as info:
        efficientnet.Xception65(weights="imagenet")
    message = str(info.value)
    assert "no registered weights" in message and "efficientnet convert xception65.pth" in message
    assert "timm.create_model('xception65', pretrained=True)" in message
    with pytest.raises(WeightsFileError, match="does not exist"):
        efficientnet.Xception65(weights=str(tmp_path / "xception65.h5"))


def test_bug7_raw_errors_are_ours(tmp_path, source):
    model = small_model()
    for head in (DeepLabV3Plus, Unet):
        with pytest.raises(ValueError, match="classes must be a positive integer"):
            head("efficientnetb0", classes=0, input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match="dropout_rate"):
        efficientnet.Xception65(dropout_rate=2)
    with pytest.raises(ValueError, match="empty"):
        preprocessing.center_crop_and_resize(np.zeros((0, 10, 3), "uint8"), 224)
    with pytest.raises(WeightsFileError, match="does not exist") as info:
        save_weights(model, str(tmp_path / "missing" / "w.h5"))
    assert "tmp" not in str(info.value).replace(str(tmp_path), "") and "partial" not in str(info.value)
    with pytest.raises(ConversionError, match="does not exist") as info:
        convert_file(write_good(tmp_path, source), str(tmp_path / "missing" / "w.h5"), "b0")
    assert "partial" not in str(info.value)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    pytest.importorskip("torch")
    with pytest.raises(ConversionError, match="corrupt") as info:
        load_torch_state_dict(str(corrupt))
    assert "weights_only" not in str(info.value)
    # classes: numpy integers are integers, bools are not.
    with pytest.raises(ValueError, match="bool"):
        small_model(classes=True)
    assert small_model(classes=np.int64(10)).output_shape == (None, 10)
    assert efficientnet.Xception41(classes=np.int32(4), input_shape=(64, 64, 3)).output_shape == (None, 4)
    with pytest.raises(ValueError, match="top must be at least 1"):
        preprocessing.decode_predictions(np.zeros((1, 1000)), top=-1)
    with pytest.raises(ValueError, match="conflicts"):
        efficientnet.EfficientNetB0(weights=None, input_tensor=keras.Input((64, 64, 3)), input_shape=(32, 32, 3))
    # Agreeing shapes (None matching anything) stay accepted.
    agreed = efficientnet.EfficientNetB0(
        weights=None, include_top=False, input_tensor=keras.Input((64, 64, 3)), input_shape=(None, None, 3)
    )
    assert agreed.output_shape == (None, 2, 2, 1280)


def test_bug8_report_tells_both_sides_exactly(tmp_path):
    from efficientnet.weights import weighted_layers

    deeper = small_model(depth_coefficient=1.1)  # every layer of the model, same shapes, plus block1b, block2c
    path = str(tmp_path / "deeper.h5")
    save_weights(deeper, path)
    model = small_model()
    with pytest.warns(UserWarning, match="layers of the file were not used"):
        report = load_weights(model, path, by_name=True, skip_mismatch=True)
    assert report.complete and report.skipped == []
    assert report.loaded == [layer.name for layer in weighted_layers(model)]
    names = {layer.name for layer in weighted_layers(model)}
    extra = [layer.name for layer in weighted_layers(deeper) if layer.name not in names]
    assert extra and set(report.unused) == set(extra)
    assert "unused in file" in str(report) and "left unchanged" not in str(report)
    # And the other way round: model layers the file lacks are the skipped ones, nothing is unused.
    shallow_path = str(tmp_path / "shallow.h5")
    save_weights(model, shallow_path)
    with pytest.warns(UserWarning, match="left unchanged"):
        report = load_weights(deeper, shallow_path, by_name=True, skip_mismatch=True)
    assert not report.complete and report.unused == []
    assert [s.split(" ")[0] for s in report.skipped] == extra
