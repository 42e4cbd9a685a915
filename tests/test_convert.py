"""Converters: PyTorch models (random init) and a synthetic TensorFlow checkpoint, matched numerically."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from helpers import import_timm, randomize_torch_statistics

import efficientnet
from efficientnet.convert import ConversionError, convert_state_dict, convert_tf_checkpoint, detect_layout

pytestmark = pytest.mark.slow
FREE = (None, None, 3)


def _compare(torch_model, keras_model, size=224, atol=1e-4):
    import torch

    x = np.random.default_rng(0).normal(size=(2, 3, size, size)).astype("float32")
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    got = keras.ops.convert_to_numpy(keras_model(x.transpose(0, 2, 3, 1), training=False))
    np.testing.assert_allclose(got, expected, atol=atol, rtol=1e-4)


@pytest.mark.parametrize(
    "timm_name,variant,layout",
    [
        ("tf_efficientnet_b0", "b0", "timm-tf"),
        ("efficientnet_b0", "b0", "timm"),
        ("tf_efficientnet_lite0", "lite0", "timm-tf"),
    ],
)
def test_timm_models_convert_exactly(timm_name, variant, layout):
    timm = import_timm()
    reference = randomize_torch_statistics(timm.create_model(timm_name))
    model = convert_state_dict(
        reference.state_dict(),
        variant,
        layout=layout,
        include_preprocessing=False,
        classifier_activation=None,
        input_shape=FREE,
    )
    _compare(reference, model, size=225)  # odd size: padding arithmetic must match too


def test_efficientnet_pytorch_layout_lite0():
    pytest.importorskip("torch")
    lite = pytest.importorskip("efficientnet_lite_pytorch")
    reference = randomize_torch_statistics(lite.EfficientNet.from_name("efficientnet-lite0"))
    assert detect_layout(reference.state_dict()) == "efficientnet_pytorch"
    model = convert_state_dict(
        reference.state_dict(), "lite0", include_preprocessing=False, classifier_activation=None, input_shape=FREE
    )
    _compare(reference, model)


def test_torchvision_layout():
    import_timm()  # applies the torchvision import workaround
    import torchvision.models as tvm

    reference = randomize_torch_statistics(tvm.efficientnet_b0())
    model = convert_state_dict(
        reference.state_dict(), "b0", include_preprocessing=False, classifier_activation=None, input_shape=FREE
    )
    _compare(reference, model)


def test_timm_layout_must_be_named_and_wrong_variant_is_refused():
    timm = import_timm()
    state = timm.create_model("tf_efficientnet_b0").state_dict()
    with pytest.raises(ConversionError, match="timm-tf"):
        convert_state_dict(state, "b0")
    with pytest.raises(ConversionError, match="variant"):
        convert_state_dict(state, "b1", layout="timm-tf")


def _save_tf_checkpoint(variables: dict, prefix: str):
    import tensorflow as tf

    names = list(variables)
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(variables[n]) for n in names],
    )


def test_synthetic_official_tf_checkpoint(tmp_path):
    """Variables named as tensorflow/tpu writes them, EMA copies preferred."""
    from efficientnet.convert import LAYOUTS, _weight_keys
    from efficientnet.weights.loader import weighted_layers

    source = efficientnet.EfficientNetB0(weights=None, include_preprocessing=False, classifier_activation=None)
    rng = np.random.default_rng(0)
    names = LAYOUTS["tf"].module_names(efficientnet.get_variant("b0"))
    variables, expected = {}, {}
    for layer in weighted_layers(source):
        keys = _weight_keys(layer, names[layer.name], "tf")
        values = [rng.normal(0, 0.1, w.shape).astype("float32") for w in layer.weights]
        if isinstance(layer, keras.layers.BatchNormalization):
            values[3] = np.abs(values[3]) + 0.5
        for key, value in zip(keys, values):
            variables[key] = value * 0  # the raw variable: must be ignored in favour of the EMA
            variables[f"{key}/ExponentialMovingAverage"] = value
        expected[layer.name] = values
    variables["global_step"] = np.array(1000, dtype="int64")
    prefix = str(tmp_path / "model.ckpt-1000")
    _save_tf_checkpoint(variables, prefix)
    model = convert_tf_checkpoint(prefix, "b0", include_preprocessing=False)
    for name, values in expected.items():
        for got, want in zip(model.get_layer(name).get_weights(), values):
            np.testing.assert_array_equal(got, want)
    # And through the command line, to an h5 that loads strictly.
    out = tmp_path / "b0.h5"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, "-m", "efficientnet.cli", "convert", prefix, str(out), "--variant", "b0", "--quiet"]
    subprocess.run(cmd, check=True, env=env, timeout=600)
    loaded = efficientnet.EfficientNetB0(weights=None)
    assert efficientnet.load_weights(loaded, str(out)).complete
