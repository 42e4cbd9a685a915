"""EfficientNetV2 and aligned Xception: counts, keras.applications and timm parity, drop-connect."""

import keras
import numpy as np
import pytest
from helpers import images, import_timm, predict, randomize_statistics, randomize_torch_statistics

import efficientnet
from efficientnet import config
from efficientnet.builder import drop_connect_rates

# keras.applications 3.15.1, weights=None: (total with top, total without top).
KERAS_V2 = {
    "B0": (7_200_312, 5_919_312),
    "B1": (8_212_124, 6_931_124),
    "B2": (10_178_374, 8_769_374),
    "B3": (14_467_622, 12_930_622),
    "S": (21_612_360, 20_331_360),
    "M": (54_431_388, 53_150_388),
    "L": (119_027_848, 117_746_848),
}
SLOW = ("M", "L")


def _case(name):
    return pytest.param(name, marks=pytest.mark.slow if name in SLOW else ())


def trainable(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@pytest.mark.parametrize("name", [_case(n) for n in KERAS_V2])
def test_v2_parameter_counts_equal_keras_applications(name):
    ctor = getattr(efficientnet, f"EfficientNetV2{name}")
    total, notop = KERAS_V2[name]
    assert ctor(weights=None).count_params() == total
    assert ctor(weights=None, include_top=False).count_params() == notop


@pytest.mark.slow
def test_v2_xl_builds_and_matches_timm_count():
    model = efficientnet.EfficientNetV2XL(weights=None, input_shape=(64, 64, 3))
    assert trainable(model) == 208_119_808
    assert model(np.zeros((1, 64, 64, 3), "float32")).shape == (1, 1000)


def test_v2_s_follows_the_release_not_the_paper():
    model = efficientnet.EfficientNetV2S(weights=None, include_top=False)
    assert model.get_layer("block6o_project_conv").filters == 256
    assert model.get_layer("top_conv").filters == 1280
    assert "256 channels and a 1280 head" in efficientnet.EfficientNetV2S.__doc__


@pytest.mark.parametrize("name", [n.name for n in config.VARIANTS.values() if n.family == "v2"])
def test_v2_drop_connect_grows_linearly_below_the_rate(name):
    variant = config.VARIANTS[name]
    rates = drop_connect_rates(variant, 0.2)
    assert max(rates) < 0.2 and rates == sorted(rates)
    np.testing.assert_allclose(np.diff(rates), 0.2 / variant.num_blocks)
    # keras.applications divides by the unscaled count and exceeds the rate on V2-B3.
    if name == "efficientnetv2-b3":
        assert variant.num_blocks > sum(b.repeats for b in variant.blocks)


@pytest.mark.parametrize("name", ["B0", "S", pytest.param("M", marks=pytest.mark.slow), _case("L")])
def test_keras_applications_v2_h5_loads_by_name_and_position(name, tmp_path):
    shape = (96, 96, 3)
    reference = getattr(keras.applications, f"EfficientNetV2{name}")(
        weights=None, input_shape=shape, classifier_activation=None
    )
    randomize_statistics(reference)
    path = str(tmp_path / "v2.h5")
    efficientnet.save_weights(reference, path)
    x = images(size=96)
    expected = predict(reference, x)
    for by_name in (True, False):
        ours = getattr(efficientnet, f"EfficientNetV2{name}")(
            weights=None, input_shape=shape, classifier_activation=None
        )
        report = efficientnet.load_weights(ours, path, by_name=by_name)
        assert report.complete
        np.testing.assert_allclose(predict(ours, x), expected, atol=1e-5, rtol=1e-5)


def test_xception_parameter_counts_equal_timm():
    for ctor, expected in (
        (efficientnet.Xception41, 26_969_560),
        (efficientnet.Xception65, 39_916_312),
        (efficientnet.Xception71, 42_338_736),
    ):
        assert trainable(ctor(input_shape=(64, 64, 3))) == expected


def test_xception_uses_strided_separable_convs_not_pooling():
    model = efficientnet.Xception65(include_top=False, input_shape=(64, 64, 3))
    assert not any(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers)
    assert model.get_layer("entry_flow_block1_unit1_sepconv3_depthwise").strides == (2, 2)
    assert model.get_layer("exit_flow_block2_unit1_sepconv1_depthwise_relu") is not None
    assert model.output_shape == (None, 2, 2, 2048)


def _torch_vs_keras(torch_model, keras_model, size):
    import torch

    x = np.random.default_rng(0).normal(size=(2, 3, size, size)).astype("float32")
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    got = keras.ops.convert_to_numpy(keras_model(x.transpose(0, 2, 3, 1), training=False))
    # Randomly initialised networks produce logits of size ~30; float32 summation order differs
    # between the frameworks, so the absolute tolerance scales with the outputs (a conversion error
    # is of the order of the outputs themselves).
    np.testing.assert_allclose(got, expected, atol=2e-5 * float(np.abs(expected).max()), rtol=1e-4)


@pytest.mark.slow
def test_timm_v2_b0_converts():
    from efficientnet.convert import convert_state_dict

    timm = import_timm()
    reference = randomize_torch_statistics(timm.create_model("tf_efficientnetv2_b0"))
    model = convert_state_dict(
        reference.state_dict(),
        "efficientnetv2-b0",
        layout="timm-tf",
        include_preprocessing=False,
        classifier_activation=None,
        input_shape=(None, None, 3),
    )
    _torch_vs_keras(reference, model, 193)


@pytest.mark.slow
@pytest.mark.parametrize("output_stride", [32, 8])
def test_timm_xception65_converts(output_stride):
    from efficientnet.convert import convert_state_dict

    timm = import_timm()
    reference = randomize_torch_statistics(timm.create_model("xception65", output_stride=output_stride))
    model = convert_state_dict(
        reference.state_dict(),
        "xception65",
        include_preprocessing=False,
        classifier_activation=None,
        input_shape=(None, None, 3),
        output_stride=output_stride,
    )
    _torch_vs_keras(reference, model, 97)
