"""Keras conventions: .keras round trip, mixed precision, argument errors, data formats."""

import keras
import numpy as np
import pytest
from helpers import images, predict, randomize_statistics

import efficientnet


def test_keras_file_round_trip_without_custom_objects(tmp_path):
    model = efficientnet.EfficientNetB0(weights=None, input_shape=(64, 64, 3), classifier_activation=None)
    randomize_statistics(model)
    path = str(tmp_path / "b0.keras")
    model.save(path)
    restored = keras.models.load_model(path)  # no custom_objects
    x = images(size=64)
    np.testing.assert_allclose(predict(restored, x), predict(model, x), atol=1e-6)


def test_lite_and_v2_round_trip(tmp_path):
    for ctor in (efficientnet.EfficientNetLite0, efficientnet.EfficientNetV2B0):
        model = ctor(weights=None, include_top=False, input_shape=(64, 64, 3))
        path = str(tmp_path / f"{model.name}.keras")
        model.save(path)
        x = images(size=64)
        np.testing.assert_allclose(predict(keras.models.load_model(path), x), predict(model, x), atol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_builds_and_returns_float32_probabilities(policy):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        model = efficientnet.EfficientNetB0(weights=None, input_shape=(64, 64, 3))
        assert model.get_layer("stem_conv").compute_dtype == policy.split("_")[1]
        out = predict(model, images(size=64))
    finally:
        keras.config.set_dtype_policy(previous)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-3)
    assert np.isfinite(out).all()


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(input_shape=(31, 64, 3)), "at least 32"),
        (dict(input_shape=(64, 64, 1)), "3 \\(RGB\\)"),
        (dict(input_shape=(64, 64)), "height, width, channels"),
        (dict(pooling="mean", include_top=False), "pooling must be"),
        (dict(classes=0), "classes must be"),
        (dict(dropout_rate=1.0), "dropout_rate"),
        (dict(output_stride=4), "output_stride"),
        (dict(padding="reflect"), "padding must be"),
        (dict(weights="imagenet21k"), "No 'imagenet21k' weights are registered"),
        (dict(weights="/nonexistent/file.h5"), "does not exist"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_the_fix(kwargs, message):
    kwargs.setdefault("weights", None)
    with pytest.raises(ValueError, match=message):
        efficientnet.EfficientNetB0(**kwargs)


def test_pretrained_head_needs_1000_classes():
    with pytest.raises(ValueError, match="include_top=False"):
        efficientnet.EfficientNetLite0(weights="imagenet", classes=10)
    with pytest.raises(ValueError, match="classifier_activation"):
        efficientnet.EfficientNetLite0(weights="imagenet", classifier_activation="sigmoid")


def test_unknown_variant_name():
    with pytest.raises(ValueError, match="Unknown EfficientNet variant"):
        efficientnet.EfficientNet("b42", weights=None)


def test_single_channel_without_preprocessing():
    model = efficientnet.EfficientNetB0(weights=None, include_preprocessing=False, input_shape=(64, 64, 1), classes=3)
    assert model.output_shape == (None, 3)


def test_input_tensor_and_pooling():
    inp = keras.Input((64, 64, 3))
    model = efficientnet.EfficientNetB0(weights=None, include_top=False, input_tensor=inp, pooling="avg")
    assert model.output_shape == (None, 1280)
    assert model.inputs[0] is inp
    model = efficientnet.EfficientNetB0(weights=None, include_top=False, pooling="max")
    assert model.output_shape == (None, 1280)


def test_constructor_docstrings_state_the_figures():
    doc = efficientnet.EfficientNetB3.__doc__
    assert "300x300" in doc and "width 1.2" in doc and "efficientnet-b3" in doc
    assert "noisy-student" in doc
