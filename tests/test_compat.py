"""efficientnet 1.1.1 scripts keep working: module paths, arguments, preprocessing, weight files."""

import importlib

import keras
import numpy as np
import pytest
from helpers import images, predict, randomize_statistics

import efficientnet


@pytest.mark.parametrize("module", ["efficientnet.keras", "efficientnet.tfkeras", "efficientnet.model"])
def test_1_1_1_entry_points(module):
    efn = importlib.import_module(module)
    model = efn.EfficientNetB0(weights=None, input_shape=(64, 64, 3), classes=7)
    assert model.name == "efficientnet-b0"
    assert model.output_shape == (None, 7)
    # 1.1.1 models take preprocessed input: no Rescaling/Normalization inside.
    assert not any(isinstance(layer, keras.layers.Normalization) for layer in model.layers)
    assert hasattr(efn, "preprocess_input")


def test_keras_module_arguments_are_accepted_and_ignored():
    from efficientnet import model as eff

    m = eff.EfficientNetB3(
        include_top=False,
        weights=None,
        input_shape=(64, 64, 3),
        backend=keras.backend,
        layers=keras.layers,
        models=keras.models,
        utils=keras.utils,
    )
    for name in ("block6a_expand_activation", "block4a_expand_activation", "block3a_expand_activation"):
        assert m.get_layer(name) is not None


def test_1_1_1_preprocess_input_is_imagenet_mean_std():
    import efficientnet.tfkeras as efn

    x = np.full((1, 2, 2, 3), 255.0, "float32")
    out = efn.preprocess_input(x, backend=keras.backend)
    np.testing.assert_allclose(out[0, 0, 0], (1 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225], rtol=1e-5)


def test_1_1_1_file_with_probs_layer_loads(tmp_path):
    """A 1.1.1 file names the classifier 'probs' and has no normalization layer."""
    from efficientnet import model as eff

    src = eff.EfficientNetB0(weights=None, input_shape=(64, 64, 3))
    randomize_statistics(src)
    # Rename the classifier as 1.1.1 does, then save.
    src.get_layer("predictions").name = "probs"
    path = str(tmp_path / "efficientnet-b0_111.h5")
    efficientnet.save_weights(src, path)
    x = efficientnet.preprocess_input(images(size=64), mode="torch")
    for by_name in (True, False):
        dst = eff.EfficientNetB0(weights=None, input_shape=(64, 64, 3))
        report = efficientnet.load_weights(dst, path, by_name=by_name)
        assert report.complete
        np.testing.assert_allclose(predict(dst, x), predict(src, x), atol=1e-6)
    # Into a model with in-model preprocessing: the normalization keeps the ImageNet statistics.
    ours = efficientnet.EfficientNetB0(weights=path, input_shape=(64, 64, 3))
    np.testing.assert_allclose(predict(ours, images(size=64)), predict(src, x), atol=1e-5)


def test_weight_set_names_map_to_1_1_1_files():
    from efficientnet.weights import find_weight_spec

    spec = find_weight_spec("efficientnetb3", "autoaugment", True)
    assert spec.file_name == "efficientnet-b3_weights_tf_dim_ordering_tf_kernels_autoaugment.h5"
    ns = find_weight_spec("efficientnetb3", "noisy-student", False)
    assert ns.file_name == "efficientnet-b3_noisy-student_notop.h5"
