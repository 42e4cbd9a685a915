"""Fast tests that kill mutants which survived a cosmic-ray run over builder.py and weights/.

Each test pins a behaviour a user would notice when it breaks (wrong preprocessing values,
a wrong or missing error, a default that no longer works); see tests/mutation/README.md.
"""

from __future__ import annotations

import pickle
import zipfile

import h5py
import keras
import numpy as np
import pytest
from helpers import randomize_statistics

import efficientnet
from efficientnet import config
from efficientnet.builder import _preprocessing, drop_connect_rates
from efficientnet.config import BlockArgs
from efficientnet.weights import WeightsFileError, load_weights, save_weights
from efficientnet.weights.loader import describe_non_weights_file


def _small(**kwargs):
    kwargs.setdefault("input_shape", (32, 32, 3))
    blocks = efficientnet.DEFAULT_BLOCKS_ARGS[:2]
    return efficientnet.EfficientNet("b0", weights=None, blocks_args=blocks, classes=3, **kwargs)


# --------------------------------------------------------------------------- builder.py


def test_features_only_default_strides_give_four_maps():
    """``features_only=True`` without ``out_strides`` returns the maps at strides 4, 8, 16 and 32."""
    model = efficientnet.EfficientNet("b0", weights=None, input_shape=(64, 64, 3), features_only=True)
    shapes = [tuple(o.shape[1:3]) for o in model.outputs]
    assert shapes == [(16, 16), (8, 8), (4, 4), (2, 2)]


@pytest.mark.parametrize("argument", ["dropout_rate", "drop_connect_rate"])
@pytest.mark.parametrize("bad", [1.0, 1.5, -0.1])
def test_rates_outside_zero_one_are_refused(argument, bad):
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\)"):
        _small(**{argument: bad})


@pytest.mark.parametrize("argument", ["dropout_rate", "drop_connect_rate"])
def test_rates_at_the_edges_of_zero_one_are_accepted(argument):
    for good in (0.0, 0.99):
        assert _small(**{argument: good}).count_params() > 0


def test_drop_connect_schedule_values():
    variant = config.get_variant("b0")
    rates = drop_connect_rates(variant, 0.2)
    assert len(rates) == variant.num_blocks == 16
    np.testing.assert_allclose(rates, [0.2 * b / 16 for b in range(16)])


def test_dilating_a_fused_block_names_it():
    """output_stride=8 with a third stride-2 Fused-MBConv stage: the error names that block."""
    blocks = [
        BlockArgs(3, 1, 32, 16, 1, 2, fused=True),
        BlockArgs(3, 1, 16, 24, 1, 2, fused=True),
        BlockArgs(3, 1, 24, 40, 1, 2, fused=True),
    ]
    with pytest.raises(ValueError, match=r"Fused-MBConv block block3a\.$"):
        efficientnet.EfficientNet(
            "efficientnetv2-b0", weights=None, blocks_args=blocks, input_shape=(32, 32, 3), output_stride=8
        )


def _preprocess(variant_name, channels=3):
    inputs = keras.Input((4, 4, channels))
    outputs, normalization = _preprocessing(inputs, config.get_variant(variant_name), None)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(0).uniform(0, 255, (1, 4, 4, channels)).astype("float32")
    return model, normalization, x, keras.ops.convert_to_numpy(model(x))


def test_v2_scalar_normalisation_is_a_single_rescaling():
    """V2-S/M/L/XL: (x - 128) / 128 as one Rescaling layer, as in keras.applications' V2 (no Normalization)."""
    model, normalization, x, y = _preprocess("efficientnetv2-s")
    assert normalization is None
    assert [type(layer).__name__ for layer in model.layers[1:]] == ["Rescaling"]
    np.testing.assert_allclose(y, (x - 128.0) / 128.0, atol=1e-5)


def test_v2_per_channel_normalisation_values():
    """V2-B*: ImageNet mean/std per channel, as constants (no weights)."""
    model, normalization, x, y = _preprocess("efficientnetv2-b0")
    assert normalization is None and not model.weights
    mean = np.array([123.675, 116.28, 103.53], "float32")
    std = np.array([58.395, 57.12, 57.375], "float32")
    np.testing.assert_allclose(y, (x - mean) / std, atol=1e-4)


def test_features_only_accepts_any_input_size():
    """Without input_shape, a features_only model takes any image size (no classifier forces 224)."""
    model = efficientnet.EfficientNet("b0", weights=None, features_only=True)
    assert tuple(model.input.shape) == (None, None, None, 3)
    outputs = model(np.zeros((1, 48, 48, 3), "float32"))
    assert [tuple(o.shape[1:3]) for o in outputs] == [(12, 12), (6, 6), (3, 3), (2, 2)]


def test_v2_depthwise_conv_is_named_dwconv2():
    """keras.applications' V2 names its depthwise conv ``dwconv2`` (V1: ``dwconv``); weights load by these names."""
    blocks = [BlockArgs(3, 1, 32, 16, 4, 1, se_ratio=0.25)]
    kwargs = dict(weights=None, blocks_args=blocks, input_shape=(32, 32, 3), include_top=False)
    v2 = efficientnet.EfficientNet("efficientnetv2-b0", **kwargs)
    v1 = efficientnet.EfficientNet("b0", **kwargs)
    assert "block1a_dwconv2" in [layer.name for layer in v2.layers]
    assert "block1a_dwconv" in [layer.name for layer in v1.layers]


# --------------------------------------------------------------------------- weights/loader.py


def _values(model):
    return [np.array(w) for w in model.get_weights()]


def _assert_same(model, source):
    for got, expected in zip(_values(model), _values(source)):
        np.testing.assert_array_equal(got, expected)


def _assert_layers_same(model, source):
    """Every weighted layer of ``model`` holds the weights of ``source``'s layer of the same name."""
    layers = [layer for layer in model.layers if layer.weights]
    assert layers
    for layer in layers:
        for got, expected in zip(layer.get_weights(), source.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(got, expected)


@pytest.fixture(scope="module")
def source():
    model = _small()
    randomize_statistics(model)
    return model


def test_auto_by_name_is_compared_by_value(tmp_path, source):
    """``by_name="auto"`` from a CLI or config (a string built at run time) picks position for a Keras 3 file."""
    path = str(tmp_path / "source.weights.h5")
    save_weights(source, path)
    model = _small()
    report = load_weights(model, path, by_name="".join(["au", "to"]))
    assert report.complete and report.by_name is False
    _assert_same(model, source)


@pytest.mark.parametrize("missing", ["include_preprocessing", "include_top"])
def test_keras3_file_loads_into_a_model_without_its_optional_entries(tmp_path, source, missing):
    """A Keras 3 file's ``normalization`` and classifier (``dense``) entries are the ones a model
    built without preprocessing or without its classifier may lack."""
    path = str(tmp_path / "source.weights.h5")
    save_weights(source, path)
    model = _small(**{missing: False})
    report = load_weights(model, path)
    assert report.complete
    _assert_layers_same(model, source)


def test_top_file_by_position_into_notop_model(tmp_path, source):
    path = str(tmp_path / "source.h5")
    save_weights(source, path)
    model = _small(include_top=False)
    report = load_weights(model, path, by_name=False)
    assert report.complete and report.unused == ["predictions"]
    _assert_layers_same(model, source)


def test_legacy_file_of_a_nested_model_is_split_into_its_layers(tmp_path, source):
    """A backbone saved inside a bigger model (one HDF5 group for it) loads into the bare backbone by name."""
    inputs = keras.Input((32, 32, 3))
    outer = keras.Model(inputs, keras.layers.Dense(2, name="extra")(source(inputs)))
    path = str(tmp_path / "outer.h5")
    save_weights(outer, path)
    model = _small()
    with pytest.warns(UserWarning, match="1 layers of the file were not used: extra"):
        report = load_weights(model, path, by_name=True, skip_mismatch=True)
    assert report.complete and report.unused == ["extra"]
    _assert_same(model, source)


def test_non_finite_message_counts_the_bad_values(tmp_path, source):
    path = str(tmp_path / "nan.h5")
    model = _small()
    kernel, *rest = source.get_layer("stem_conv").get_weights()
    bad = kernel.copy()
    bad.flat[:2] = np.nan
    model.set_weights(source.get_weights())
    model.get_layer("stem_conv").set_weights([bad, *rest])
    save_weights(model, path)
    with pytest.raises(WeightsFileError, match=f"stem_conv \\(stem_conv/kernel: 2 of {kernel.size} values\\)"):
        load_weights(_small(), path)


def test_hdf5_with_a_user_block_is_a_weights_file(tmp_path, source):
    path = str(tmp_path / "userblock.h5")
    with h5py.File(path, "w", userblock_size=512) as f:
        f.attrs["x"] = 1
    assert describe_non_weights_file(path) is None


def test_non_weights_files_are_named(tmp_path):
    torch_zip = str(tmp_path / "model.pth")
    with zipfile.ZipFile(torch_zip, "w") as archive:
        archive.writestr("archive/data.pkl", b"x")
    plain_zip = str(tmp_path / "weights.zip")
    with zipfile.ZipFile(plain_zip, "w") as archive:
        archive.writestr("model.h5", b"x")
    pickled = tmp_path / "legacy.pth"
    pickled.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    message = describe_non_weights_file(torch_zip)
    assert message.startswith(f"{torch_zip} is a PyTorch checkpoint") and f"efficientnet convert {torch_zip}" in message
    assert describe_non_weights_file(plain_zip).startswith(f"{plain_zip} is a ZIP archive")
    message = describe_non_weights_file(str(pickled))
    assert message.startswith(f"{pickled} is a Python pickle") and f"efficientnet convert {pickled}" in message


def test_unwritable_directory_raises_weights_file_error(tmp_path, monkeypatch, source):
    """A directory save_weights cannot create a file in (read-only, full disk) gives our error, not a raw OSError."""
    import errno
    import tempfile

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", no_space)
    path = tmp_path / "source.h5"
    with pytest.raises(WeightsFileError, match="Cannot write .*No space left on device"):
        save_weights(source, str(path))
    assert not path.exists()


@pytest.mark.parametrize("channels,identity", [(1, True), (2, True), (3, False)])
def test_set_normalization_sets_rgb_statistics_only_on_three_channels(channels, identity):
    from efficientnet.preprocessing import MODES
    from efficientnet.weights import set_normalization

    layer = keras.layers.Normalization(axis=-1)
    layer.build((None, 8, 8, channels))
    set_normalization(layer, MODES["torch"])
    mean, variance = (np.asarray(w) for w in layer.get_weights()[:2])
    if identity:  # RGB statistics do not apply to grey or two-channel inputs: the layer is the identity
        np.testing.assert_array_equal(mean, np.zeros(channels))
        np.testing.assert_array_equal(variance, np.ones(channels))
    else:
        np.testing.assert_allclose(mean, np.asarray((123.675, 116.28, 103.53)) / 255, rtol=1e-6)
        np.testing.assert_allclose(variance, (np.asarray((58.395, 57.12, 57.375)) / 255) ** 2, rtol=1e-6)
