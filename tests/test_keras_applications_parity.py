"""Numeric parity with keras.applications through legacy .h5 files, in both directions."""

import keras
import numpy as np
import pytest
from helpers import images, predict, randomize_statistics

import efficientnet

FAST = ("B0", "B1", "B2", "B3")
ALL = FAST + ("B4", "B5", "B6", "B7")


def _case(name):
    return pytest.param(name, marks=() if name in FAST else pytest.mark.slow)


SIZE = 96
SHAPE = (SIZE, SIZE, 3)


def _keras_model(name, include_top):
    model = getattr(keras.applications, f"EfficientNet{name}")(
        weights=None, include_top=include_top, classifier_activation=None, input_shape=SHAPE
    )
    randomize_statistics(model)
    # Keras names it normalization_1, _2... after the first model of a process.
    norm = next(layer for layer in model.layers if isinstance(layer, keras.layers.Normalization))
    norm.set_weights([np.array([0.4, 0.5, 0.6]), np.array([0.05, 0.06, 0.07]), np.array(0)])
    norm.finalize_state()
    return model


@pytest.mark.parametrize("include_top", [True, False])
@pytest.mark.parametrize("name", [_case(n) for n in ALL])
def test_keras_applications_h5_loads_by_name_and_position(name, include_top, tmp_path):
    reference = _keras_model(name, include_top)
    path = str(tmp_path / "ka.h5")
    efficientnet.save_weights(reference, path)
    x = images(size=SIZE)
    expected = predict(reference, x)
    ctor = getattr(efficientnet, f"EfficientNet{name}")
    for by_name in (True, False):
        ours = ctor(weights=None, include_top=include_top, classifier_activation=None, input_shape=SHAPE)
        report = efficientnet.load_weights(ours, path, by_name=by_name)
        assert report.complete and report.tensors == len(reference.weights)
        np.testing.assert_allclose(predict(ours, x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", FAST)
def test_ours_load_into_keras_applications(name, tmp_path):
    ours = getattr(efficientnet, f"EfficientNet{name}")(weights=None, classifier_activation=None, input_shape=SHAPE)
    randomize_statistics(ours, seed=3)
    path = str(tmp_path / "ours.h5")
    efficientnet.save_weights(ours, path)
    x = images(size=SIZE)
    for by_name in (True, False):
        # Keras' by-name loader needs its layer called "normalization", not "normalization_1".
        keras.backend.clear_session()
        reference = getattr(keras.applications, f"EfficientNet{name}")(
            weights=None, classifier_activation=None, input_shape=SHAPE
        )
        reference.load_weights(path, by_name=by_name)
        # Keras' legacy loader does not refresh the Normalization layer's constants.
        for layer in reference.layers:
            if isinstance(layer, keras.layers.Normalization):
                layer.finalize_state()
        np.testing.assert_allclose(predict(reference, x), predict(ours, x), atol=1e-5, rtol=1e-5)


def test_weights_path_argument_and_keras_own_loader(tmp_path):
    reference = _keras_model("B0", True)
    path = str(tmp_path / "b0.h5")
    efficientnet.save_weights(reference, path)
    x = images(size=SIZE)
    ours = efficientnet.EfficientNetB0(weights=path, classifier_activation=None, input_shape=SHAPE)
    np.testing.assert_allclose(predict(ours, x), predict(reference, x), atol=1e-5)
    # Keras' own legacy loader reads the same layout into our model.
    other = efficientnet.EfficientNetB0(weights=None, classifier_activation=None, input_shape=SHAPE)
    other.load_weights(path)
    np.testing.assert_allclose(predict(other, x), predict(reference, x), atol=1e-5)
