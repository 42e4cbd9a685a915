"""Fast tests for behaviour that earlier tests did not pin down (each one fails when that behaviour is broken):

- the keras-applications V1 normalization fix (its files store the ImageNet std as the "variance");
- dilation in models built with ``output_stride=16|8``, checked numerically against timm;
- the rollback when an assignment fails half-way through a load.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import assert_unchanged, import_timm, randomize_statistics, randomize_torch_statistics, weights_snapshot

import efficientnet
from efficientnet.weights import WeightsError, load_weights, save_weights
from efficientnet.weights.loader import IMAGENET_STD

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], "float32")


def _small(**kwargs):
    blocks = efficientnet.DEFAULT_BLOCKS_ARGS[:2]
    return efficientnet.EfficientNet(
        "b0", weights=None, blocks_args=blocks, input_shape=(32, 32, 3), classes=3, **kwargs
    )


@pytest.mark.parametrize("by_name", [True, False])
def test_keras_applications_std_stored_as_variance_is_squared(tmp_path, by_name):
    """keras-applications' V1 files hold (mean, std, count) in their Normalization layer (tensorflow#49930)."""
    source = _small()
    randomize_statistics(source)
    norm = source.get_layer("normalization")
    norm.set_weights([IMAGENET_MEAN, IMAGENET_STD, np.array(0, norm.count.dtype)])
    path = str(tmp_path / "keras_applications_style.h5")
    save_weights(source, path)

    model = _small()
    report = load_weights(model, path, by_name=by_name)
    mean, variance, _ = model.get_layer("normalization").get_weights()
    np.testing.assert_allclose(mean, IMAGENET_MEAN, rtol=1e-6)
    np.testing.assert_allclose(variance, IMAGENET_STD**2, rtol=1e-5)
    assert any("squared" in note for note in report.notes)
    # The layer then computes (x / 255 - mean) / std, the ImageNet normalisation the weights expect.
    x = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    normalized = keras.Model(model.input, model.get_layer("normalization").output)
    expected = (x / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(keras.ops.convert_to_numpy(normalized(x)), expected, atol=1e-4)
    # Statistics that are not the ImageNet std load as they are.
    norm.set_weights([IMAGENET_MEAN, np.array([0.05, 0.06, 0.07], "float32"), np.array(0, norm.count.dtype)])
    save_weights(source, path)
    load_weights(model, path, by_name=by_name)
    np.testing.assert_allclose(model.get_layer("normalization").get_weights()[1], [0.05, 0.06, 0.07], rtol=1e-6)


@pytest.mark.parametrize("output_stride", [16, 8])
def test_dilated_model_matches_timm_with_the_same_output_stride(output_stride):
    """Ours with output_stride=16|8 computes what timm's dilated tf_efficientnet_b0 computes.

    A model whose later blocks lost their dilation (or dilated the wrong blocks) has the same
    shapes but other values, which the feature-level comparison catches.
    """
    import torch

    from efficientnet.convert import convert_state_dict

    timm = import_timm()
    reference = timm.create_model("tf_efficientnet_b0", pretrained=False, output_stride=output_stride, num_classes=0)
    randomize_torch_statistics(reference)
    model = convert_state_dict(
        reference.state_dict(),
        "b0",
        layout="timm-tf",
        include_preprocessing=False,
        input_shape=(64, 64, 3),
        output_stride=output_stride,
    )
    x = np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype("float32")
    with torch.no_grad():
        expected = reference.forward_features(torch.from_numpy(x)).numpy().transpose(0, 2, 3, 1)
    got = keras.ops.convert_to_numpy(model(x.transpose(0, 2, 3, 1), training=False))
    assert got.shape == expected.shape == (1, 64 // output_stride, 64 // output_stride, 1280)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
    dilated = [layer.name for layer in model.layers if getattr(layer, "dilation_rate", (1, 1)) != (1, 1)]
    assert dilated, "output_stride < 32 must dilate the later depthwise convolutions"


def test_assignment_failing_half_way_restores_every_layer(tmp_path, monkeypatch):
    source = _small()
    randomize_statistics(source)
    path = str(tmp_path / "source.h5")
    save_weights(source, path)
    model = _small()
    before = weights_snapshot(model)
    # The file really differs from the model in the layers assigned before the failure.
    assert not np.array_equal(source.get_layer("stem_bn").get_weights()[3], model.get_layer("stem_bn").get_weights()[3])

    original = keras.layers.BatchNormalization.set_weights
    calls = []

    def fail_once_at_top_bn(self, weights):
        if self.name == "top_bn" and not calls:
            calls.append(self.name)
            raise RuntimeError("injected failure")
        return original(self, weights)

    monkeypatch.setattr(keras.layers.BatchNormalization, "set_weights", fail_once_at_top_bn)
    for by_name in (True, False):
        calls.clear()
        with pytest.raises(WeightsError, match="restored") as info:
            load_weights(model, path, by_name=by_name)
        assert isinstance(info.value.__cause__, RuntimeError) and calls == ["top_bn"]
        assert_unchanged(model, before)
    # Without the injected failure the same load goes through: the failure, not the file, was the cause.
    monkeypatch.undo()
    assert load_weights(model, path).complete
