"""Architecture: parameter counts against keras.applications and timm, drop-connect, Lite, odd inputs."""

import keras
import numpy as np
import pytest

import efficientnet
from efficientnet import config
from efficientnet.builder import drop_connect_rates

# keras.applications 3.15.1 with weights=None, classes=1000: (total with top, trainable, total without top).
KERAS_V1 = {
    "B0": (5_330_571, 5_288_548, 4_049_571),
    "B1": (7_856_239, 7_794_184, 6_575_239),
    "B2": (9_177_569, 9_109_994, 7_768_569),
    "B3": (12_320_535, 12_233_232, 10_783_535),
    "B4": (19_466_823, 19_341_616, 17_673_823),
    "B5": (30_562_527, 30_389_784, 28_513_527),
    "B6": (43_265_143, 43_040_704, 40_960_143),
    "B7": (66_658_687, 66_347_960, 64_097_687),
}
FAST = ("B0", "B1", "B2", "B3")


def trainable(model: keras.Model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _v1_case(name):
    return pytest.param(name, marks=() if name in FAST else pytest.mark.slow)


@pytest.mark.parametrize("name", [_v1_case(n) for n in KERAS_V1])
def test_v1_parameter_counts_equal_keras_applications(name):
    total, train, notop = KERAS_V1[name]
    ctor = getattr(efficientnet, f"EfficientNet{name}")
    model = ctor(weights=None)
    assert model.count_params() == total
    assert trainable(model) == train
    assert ctor(weights=None, include_top=False).count_params() == notop


# timm 1.0.31's TensorFlow ports, 1000 classes: sum of parameters (all trainable).
TIMM = {
    "Lite0": 4_652_008,
    "Lite4": 13_006_568,
    "B8": 87_413_142,
    "L2": 480_309_308,
}


@pytest.mark.parametrize(
    "name", ["Lite0", "Lite4", pytest.param("B8", marks=pytest.mark.slow), pytest.param("L2", marks=pytest.mark.slow)]
)
def test_trainable_counts_equal_timm(name):
    model = getattr(efficientnet, f"EfficientNet{name}")(weights=None, input_shape=(64, 64, 3))
    assert trainable(model) == TIMM[name]


@pytest.mark.parametrize("name", ["efficientnetb0", "efficientnetb7", "efficientnetl2", "efficientnetv2-xl"])
def test_drop_connect_rates_grow_linearly_below_the_bound(name):
    variant = config.VARIANTS[name]
    rates = drop_connect_rates(variant, 0.2)
    assert len(rates) == variant.num_blocks == len(config.scaled_blocks(variant))
    assert rates[0] == 0 and max(rates) < 0.2
    steps = np.diff(rates)
    np.testing.assert_allclose(steps, 0.2 / variant.num_blocks, rtol=1e-9)


def test_model_dropout_layers_follow_the_schedule():
    model = efficientnet.EfficientNetB0(weights=None, drop_connect_rate=0.3)
    drops = [layer for layer in model.layers if layer.name.endswith("_drop")]
    assert drops, "B0 has residual blocks with drop-connect"
    rates = drop_connect_rates(config.VARIANTS["efficientnetb0"], 0.3)
    by_prefix = {
        prefix: rate for (prefix, _), rate in zip(config.scaled_blocks(config.VARIANTS["efficientnetb0"]), rates)
    }
    for layer in drops:
        assert layer.noise_shape == (None, 1, 1, 1)
        assert layer.rate == pytest.approx(by_prefix[layer.name[: -len("drop")]])
        assert layer.rate < 0.3


def test_lite_has_no_se_relu6_and_fixed_stem_head():
    model = efficientnet.EfficientNetLite4(weights=None)
    names = [layer.name for layer in model.layers]
    assert not any("se_" in n for n in names)
    assert model.get_layer("stem_conv").filters == 32
    assert model.get_layer("top_conv").filters == 1280
    assert model.get_layer("stem_activation").activation.__name__ == "relu6"
    assert model.get_layer("block2a_activation").activation.__name__ == "relu6"


def test_se_has_bias_and_reduces_block_input_filters():
    model = efficientnet.EfficientNetB0(weights=None)
    reduce = model.get_layer("block2a_se_reduce")
    assert reduce.use_bias and reduce.filters == max(1, int(16 * 0.25))
    assert model.get_layer("block2a_se_expand").filters == 96
    # DeepLab-style separable pair: separate depthwise and pointwise layers, no SeparableConv2D.
    assert not any(isinstance(layer, keras.layers.SeparableConv2D) for layer in model.layers)
    assert isinstance(model.get_layer("block2a_dwconv"), keras.layers.DepthwiseConv2D)


@pytest.mark.parametrize("size,expected", [(224, 112), (225, 113), (227, 114), (33, 17), (64, 32)])
def test_tensorflow_same_padding_for_any_size(size, expected):
    """Shapes and values of the strided convolutions equal TensorFlow's own padding="SAME".

    Values matter: symmetric padding gives the same shapes, but at even sizes TensorFlow pads
    only at the end, so the stem and every strided depthwise conv then compute other values.
    """
    import tensorflow as tf

    model = efficientnet.EfficientNetB0(weights=None, include_top=False)
    stem = keras.Model(model.input, model.get_layer("stem_activation").output)
    out = stem(np.zeros((1, size, size, 3), "float32"))
    assert tuple(out.shape[1:3]) == (expected, expected)
    top = model(np.zeros((1, size, size, 3), "float32"))
    assert top.shape[1] == -(-size // 32)

    # (input of the convolution before any padding layer, the convolution's output), for each strided conv.
    probes = {
        "stem_conv": "normalization",
        "block2a_dwconv": "block2a_expand_activation",
        "block3a_dwconv": "block3a_expand_activation",
    }
    tensors = []
    for conv, before in probes.items():
        tensors += [model.get_layer(before).output, model.get_layer(conv).output]
    x = np.random.default_rng(size).uniform(0, 255, (1, size, size, 3)).astype("float32")
    values = keras.Model(model.input, tensors)(x, training=False)
    for i, conv in enumerate(probes):
        inputs, got = (np.asarray(keras.ops.convert_to_numpy(v)) for v in values[2 * i : 2 * i + 2])
        kernel = model.get_layer(conv).get_weights()[0]
        if conv == "stem_conv":
            expected_values = tf.nn.conv2d(inputs, kernel, strides=2, padding="SAME")
        else:
            expected_values = tf.nn.depthwise_conv2d(inputs, kernel, strides=[1, 2, 2, 1], padding="SAME")
        np.testing.assert_allclose(got, expected_values.numpy(), atol=1e-4, rtol=1e-4, err_msg=conv)


def test_symmetric_padding_matches_pytorch_arithmetic():
    model = efficientnet.EfficientNetB0(weights=None, include_top=False, padding="symmetric", input_shape=(225, 225, 3))
    assert model.get_layer("stem_conv_pad") is not None
    assert model.get_layer("stem_activation").output.shape[1] == 113
    assert model.get_layer("block2a_dwconv_pad") is not None


def test_custom_blocks_args_from_keras_dicts():
    from keras.src.applications.efficientnet import DEFAULT_BLOCKS_ARGS as KERAS_BLOCKS

    model = efficientnet.EfficientNet(
        "b0", weights=None, blocks_args=KERAS_BLOCKS[:3], include_top=False, input_shape=(64, 64, 3)
    )
    assert model.get_layer("block3b_add") is not None
    with pytest.raises(ValueError, match="block2a"):
        model.get_layer("block4a_expand_conv")
