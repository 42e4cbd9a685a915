"""Preprocessing modes, the evaluation crop and label decoding."""

import numpy as np
import pytest

import efficientnet
from efficientnet.preprocessing import center_crop_and_resize, decode_predictions, load_image, sample_image_path


def test_modes():
    x = np.array([[[[0.0, 127.0, 255.0]]]], "float32")
    np.testing.assert_allclose(efficientnet.preprocess_input(x, mode="tf"), [[[[-1, 127 / 127.5 - 1, 1]]]], atol=1e-6)
    np.testing.assert_allclose(efficientnet.preprocess_input(x, mode="lite"), [[[[-127 / 128, 0, 1]]]], atol=1e-6)
    np.testing.assert_allclose(efficientnet.preprocess_input(x, mode="v2"), [[[[-1, -1 / 128, 127 / 128]]]], atol=1e-6)
    torch = efficientnet.preprocess_input(x, mode="torch")
    np.testing.assert_allclose(torch[0, 0, 0, 0], -0.485 / 0.229, rtol=1e-4)
    np.testing.assert_array_equal(efficientnet.preprocess_input(x), x)  # keras.applications: pass-through
    with pytest.raises(ValueError, match="Unknown preprocessing mode"):
        efficientnet.preprocess_input(x, mode="caffe2")


def test_in_model_preprocessing_equals_preprocess_input():
    import keras

    model = efficientnet.EfficientNetLite0(weights=None, input_shape=(64, 64, 3))
    norm = keras.Model(model.input, model.get_layer("normalization").output)
    x = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(norm(x), efficientnet.preprocess_input(x, mode="lite"), atol=1e-5)


def test_center_crop_and_resize():
    image = load_image(sample_image_path())
    assert image.shape == (300, 451, 3)
    out = center_crop_and_resize(image, 224)
    assert out.shape == (224, 224, 3)
    assert 0 <= out.min() and out.max() <= 255.5
    with pytest.raises(ValueError, match="interpolation"):
        center_crop_and_resize(image, 224, interpolation="lanczos")


def test_decode_predictions_offline():
    preds = np.zeros((1, 1000), "float32")
    preds[0, 281] = 0.9
    preds[0, 285] = 0.1
    top = decode_predictions(preds, top=2)[0]
    assert top[0][:2] == ("n02123045", "tabby") and top[0][2] == pytest.approx(0.9)
    assert top[1][1] == "Egyptian cat"
    with pytest.raises(ValueError, match="1000"):
        decode_predictions(np.zeros((1, 10)))
