"""Strict loading: every failure raises its documented error and leaves the model unchanged."""

import h5py
import keras
import numpy as np
import pytest
from helpers import assert_unchanged, images, predict, randomize_statistics, weights_snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import efficientnet
from efficientnet.weights import WeightsError, WeightsFileError, WeightsMismatchError

SHAPE = (64, 64, 3)


@pytest.fixture(scope="module")
def b0_file(tmp_path_factory):
    model = efficientnet.EfficientNetB0(weights=None, input_shape=SHAPE, classifier_activation=None)
    randomize_statistics(model)
    path = str(tmp_path_factory.mktemp("w") / "b0.h5")
    efficientnet.save_weights(model, path)
    return path, model


def _fresh_b0(**kwargs):
    kwargs.setdefault("input_shape", SHAPE)
    return efficientnet.EfficientNetB0(weights=None, classifier_activation=None, **kwargs)


def test_report_says_what_was_loaded(b0_file):
    path, source = b0_file
    model = _fresh_b0()
    report = efficientnet.load_weights(model, path)
    assert report.complete and report.tensors == len(model.weights) and len(report.loaded) == 132
    assert "314 tensors" in str(report)
    np.testing.assert_allclose(predict(model, images(size=64)), predict(source, images(size=64)), atol=1e-6)


def test_top_file_loads_into_notop_model_and_reports_the_unused_head(b0_file):
    path, source = b0_file
    for by_name in (True, False):
        model = _fresh_b0(include_top=False)
        report = efficientnet.load_weights(model, path, by_name=by_name)
        assert report.complete and report.unused == ["predictions"]


def test_notop_file_into_top_model_is_refused(b0_file, tmp_path):
    path, _ = b0_file
    notop = _fresh_b0(include_top=False)
    efficientnet.load_weights(notop, path)
    notop_path = str(tmp_path / "notop.h5")
    efficientnet.save_weights(notop, notop_path)
    model = _fresh_b0()
    before = weights_snapshot(model)
    with pytest.raises(WeightsMismatchError, match="include_top=False"):
        efficientnet.load_weights(model, notop_path)
    with pytest.raises(WeightsMismatchError, match="predictions"):
        efficientnet.load_weights(model, notop_path, by_name=True)
    assert_unchanged(model, before)


def _write_variant(name, tmp_path):
    model = getattr(efficientnet, f"EfficientNet{name}")(weights=None, input_shape=SHAPE)
    path = str(tmp_path / f"{name}.h5")
    efficientnet.save_weights(model, path)
    return path


@pytest.mark.parametrize("other", ["B1", "B2", "Lite0"])
@pytest.mark.parametrize("by_name", [True, False])
def test_file_of_another_variant_is_refused(other, by_name, tmp_path):
    path = _write_variant(other, tmp_path)
    model = _fresh_b0()
    before = weights_snapshot(model)
    with pytest.raises(WeightsMismatchError):
        efficientnet.load_weights(model, path, by_name=by_name)
    assert_unchanged(model, before)


def test_skip_mismatch_loads_the_rest_and_warns_with_the_list(tmp_path):
    path = _write_variant("B2", tmp_path)
    model = _fresh_b0()
    with pytest.warns(UserWarning, match="left unchanged"):
        report = efficientnet.load_weights(model, path, by_name=True, skip_mismatch=True)
    assert report.skipped and not report.complete
    assert any(name.startswith("top_conv") for name in report.skipped)


def test_by_name_with_no_matching_names(tmp_path):
    inp = keras.Input((4,))
    other = keras.Model(inp, keras.layers.Dense(3, name="unrelated")(inp))
    path = str(tmp_path / "other.h5")
    efficientnet.save_weights(other, path)
    model = _fresh_b0()
    before = weights_snapshot(model)
    with pytest.raises(WeightsMismatchError, match="No layer"):
        efficientnet.load_weights(model, path, by_name=True)
    assert_unchanged(model, before)


def test_backbone_nested_in_an_outer_model(b0_file):
    path, source = b0_file
    backbone = _fresh_b0(include_top=False)
    inp = keras.Input(SHAPE)
    features = backbone(inp)
    outer = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(features))
    report = efficientnet.load_weights(outer, path, by_name=True)  # Keras' own loader sets 1 of 314 here
    assert report.complete and report.tensors == len(backbone.weights)
    x = images(size=64)
    reference = keras.Model(source.input, source.get_layer("top_activation").output)
    np.testing.assert_allclose(predict(backbone, x), predict(reference, x), atol=1e-6)

    # With a new head, by-name loading names the head, and skip_mismatch loads the backbone.
    head = keras.Model(inp, keras.layers.Dense(5, name="new_head")(outer.output))
    before = weights_snapshot(head)
    with pytest.raises(WeightsMismatchError, match="new_head"):
        efficientnet.load_weights(head, path, by_name=True)
    assert_unchanged(head, before)
    with pytest.warns(UserWarning, match="new_head"):
        efficientnet.load_weights(head, path, by_name=True, skip_mismatch=True)


def test_keras3_weights_h5(tmp_path, b0_file):
    _, source = b0_file
    path = str(tmp_path / "b0.weights.h5")
    source.save_weights(path)
    model = _fresh_b0()
    report = efficientnet.load_weights(model, path)
    assert report.complete
    np.testing.assert_allclose(predict(model, images(size=64)), predict(source, images(size=64)), atol=1e-6)
    with pytest.raises(WeightsMismatchError, match="by_name=False"):
        efficientnet.load_weights(model, path, by_name=True)
    lite = efficientnet.EfficientNetLite0(weights=None, input_shape=SHAPE)
    with pytest.raises(WeightsMismatchError):
        efficientnet.load_weights(lite, path)


@pytest.mark.parametrize("case", ["missing", "truncated", "random", "empty-hdf5"])
def test_unreadable_files(case, tmp_path, b0_file):
    good, _ = b0_file
    path = tmp_path / "bad.h5"
    if case == "truncated":
        data = open(good, "rb").read()
        path.write_bytes(data[: len(data) // 3])
    elif case == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif case == "empty-hdf5":
        h5py.File(path, "w").close()
    model = _fresh_b0()
    before = weights_snapshot(model)
    with pytest.raises(WeightsFileError):
        efficientnet.load_weights(model, str(path))
    assert_unchanged(model, before)


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    """A two-stage EfficientNet: a small file for fuzzing."""
    blocks = efficientnet.DEFAULT_BLOCKS_ARGS[:2]
    model = efficientnet.EfficientNet("b0", weights=None, blocks_args=blocks, input_shape=(32, 32, 3), classes=3)
    path = tmp_path_factory.mktemp("fuzz") / "small.h5"
    efficientnet.save_weights(model, str(path))
    return path.read_bytes(), blocks


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_files_raise_only_documented_errors(small_file, tmp_path, data):
    raw, blocks = small_file
    mutated = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(mutated) - 1))
        mutated[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        mutated = mutated[: data.draw(st.integers(0, len(mutated)))]
    path = tmp_path / "fuzzed.h5"
    path.write_bytes(bytes(mutated))
    model = efficientnet.EfficientNet("b0", weights=None, blocks_args=blocks, input_shape=(32, 32, 3), classes=3)
    before = weights_snapshot(model)
    by_name = data.draw(st.booleans())
    try:
        report = efficientnet.load_weights(model, str(path), by_name=by_name)
    except WeightsError:
        assert_unchanged(model, before)
    else:
        # A load that raised nothing must have put exactly the (fuzzed) file's values into every layer.
        assert report.complete
        expected = _file_arrays(path, model, by_name)
        layers = efficientnet.weights.weighted_layers(model)
        assert report.loaded == [layer.name for layer in layers]
        for layer in layers:
            for got, want in zip(layer.get_weights(), expected[layer.name]):
                np.testing.assert_array_equal(got, want)


def _file_arrays(path, model, by_name):
    """An independent read of a legacy file: model layer name → the file's arrays for it (h5py only)."""
    with h5py.File(path, "r") as f:
        entries = []
        for name in f.attrs["layer_names"]:
            name = name.decode() if isinstance(name, bytes) else str(name)
            weight_names = [w.decode() if isinstance(w, bytes) else str(w) for w in f[name].attrs["weight_names"]]
            if weight_names:
                entries.append((name, [np.asarray(f[name][w]) for w in weight_names]))
    layers = efficientnet.weights.weighted_layers(model)
    if by_name:
        by_file_name = dict(entries)
        return {layer.name: by_file_name[layer.name] for layer in layers}
    return {layer.name: arrays for layer, (_, arrays) in zip(layers, entries)}


@pytest.mark.parametrize("mutation", ["drop-dataset", "reshape-dataset", "drop-layer-names"])
def test_structural_mutations(mutation, tmp_path, b0_file):
    good, _ = b0_file
    path = tmp_path / "mut.h5"
    path.write_bytes(open(good, "rb").read())
    with h5py.File(path, "r+") as f:
        if mutation == "drop-dataset":
            del f["block3a_expand_conv"]["block3a_expand_conv/kernel"]
        elif mutation == "reshape-dataset":
            data = np.asarray(f["top_conv"]["top_conv/kernel"])
            del f["top_conv"]["top_conv/kernel"]
            f["top_conv"].create_dataset("top_conv/kernel", data=data[..., :-1])
        else:
            del f.attrs["layer_names"]
    model = _fresh_b0()
    before = weights_snapshot(model)
    with pytest.raises(WeightsError):
        efficientnet.load_weights(model, str(path), by_name=True)
    assert_unchanged(model, before)
