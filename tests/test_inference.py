"""optimize_for_inference: BN folding, dropout removal, input-normalisation folding, on every family."""

import keras
import numpy as np
import pytest
from helpers import assert_unchanged, images, randomize_statistics, weights_snapshot

import efficientnet
from efficientnet.inference import bake_normalization, optimize_for_inference
from efficientnet.preprocessing import MODES, center_crop_and_resize, load_image, sample_image_path
from efficientnet.segmentation import DeepLabV3Plus

SIZE = 64
REMOVED = (keras.layers.BatchNormalization, keras.layers.Dropout, keras.layers.Normalization)


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _count(model, kind):
    return sum(isinstance(layer, kind) for layer in _all_layers(model))


def _outputs(model, x):
    return [np.asarray(keras.ops.convert_to_numpy(y)) for y in keras.tree.flatten(model(x, training=False))]


def assert_close(got, want, atol: float, relative: bool) -> None:
    tolerance = atol * max(1.0, float(np.median(np.abs(want)))) if relative else atol
    np.testing.assert_allclose(got, want, rtol=0, atol=tolerance)


def check_optimized(model, x, atol=1e-4, relative=False):
    """Optimises ``model`` and checks everything the contract promises; returns the new model.

    ``relative``: an absolute tolerance of ``atol`` times the output's typical (median) magnitude,
    for random-weight models whose activations grow to ~1e5 through many un-normalised layers.
    Not the largest magnitude: Xception41's pooled features reach 4e5, and 1e-4 of that (41) left
    its small outputs unchecked; its float32 noise is ~1 at every magnitude (measured: max 1.05),
    under the median's 2.9.
    """
    snapshot = weights_snapshot(model)
    before = [(layer.name, type(layer)) for layer in _all_layers(model)]
    reference = _outputs(model, x)

    optimized = optimize_for_inference(model)

    # The original is untouched: same layers, same weights, same outputs; nothing is shared.
    assert [(layer.name, type(layer)) for layer in _all_layers(model)] == before
    assert_unchanged(model, snapshot)
    original_layers = {id(layer) for layer in _all_layers(model)}
    assert not any(id(layer) in original_layers for layer in _all_layers(optimized))
    original_vars = {id(v) for v in model.weights}
    assert not any(id(v) in original_vars for v in optimized.weights)

    # Same interface.
    assert [tuple(t.shape) for t in optimized.inputs] == [tuple(t.shape) for t in model.inputs]
    assert [t._keras_history.operation.name for t in optimized.inputs] == [
        t._keras_history.operation.name for t in model.inputs
    ]
    assert [tuple(t.shape) for t in optimized.outputs] == [tuple(t.shape) for t in model.outputs]

    # No BN, dropout or Normalization left, anywhere (nested models included).
    leftover = [layer.name for layer in _all_layers(optimized) if isinstance(layer, REMOVED)]
    assert not leftover, leftover
    assert len(optimized.layers) < len(model.layers)

    result = _outputs(optimized, x)
    assert len(result) == len(reference)
    for got, want in zip(result, reference):
        assert got.shape == want.shape
        assert_close(got, want, atol, relative)
    np.testing.assert_array_equal(_outputs(model, x)[0], reference[0])
    return optimized


def test_b0_folds_bn_into_convs_and_removes_drop_connect():
    model = efficientnet.EfficientNetB0(weights=None, input_shape=(SIZE, SIZE, 3), classifier_activation=None)
    randomize_statistics(model)
    n_bn = _count(model, keras.layers.BatchNormalization)
    n_dropout = _count(model, keras.layers.Dropout)
    drop_connect = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout) and layer.noise_shape]
    assert n_bn == 49 and n_dropout == 10 and len(drop_connect) == 9  # the graph this test is about

    optimized = check_optimized(model, images(3, SIZE))

    # One layer fewer per BN and dropout; Rescaling + Normalization became one Rescaling; each
    # swish Activation (33: stem, 16 depthwise, 15 expand, top) became a sigmoid and a Multiply.
    swishes = [layer.name for layer in model.layers if type(layer) is keras.layers.Activation]
    assert len(swishes) == 33
    assert len(optimized.layers) == len(model.layers) - n_bn - n_dropout - 1 + len(swishes)
    for name in swishes:
        product = optimized.get_layer(name)
        assert isinstance(product, keras.layers.Multiply), name
        sigmoid, x = (t._keras_history.operation for t in product.input)
        assert sigmoid.name == f"{name}_sigmoid" and sigmoid.activation is keras.activations.sigmoid
        assert sigmoid.input is product.input[1]  # sigmoid(x) * x, sigmoid first (grappler's pattern)
    kinds = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
    assert _count(optimized, kinds) == _count(model, kinds)
    folded = {layer.name for layer in model.layers if isinstance(layer, REMOVED)}
    assert not folded & {layer.name for layer in optimized.layers}
    for name in ("stem_conv", "block1a_dwconv", "block1a_project_conv", "block2a_expand_conv", "top_conv"):
        assert optimized.get_layer(name).use_bias, name
        assert not model.get_layer(name).use_bias
    # The stem pads ("same"), so the input scale is folded into stem_conv and only the mean
    # subtraction stays, as one per-channel Rescaling with baked constants.
    rescaling = optimized.get_layer("rescaling")
    assert isinstance(rescaling, keras.layers.Rescaling) and rescaling.scale == 1.0
    np.testing.assert_allclose(rescaling.offset, -np.asarray(MODES["torch"].mean), rtol=1e-5)
    std = np.asarray(MODES["torch"].std)
    stem, stem_bn = model.get_layer("stem_conv"), model.get_layer("stem_bn")
    gamma, _, _, variance = (np.asarray(w, "float64") for w in stem_bn.get_weights())
    expected = np.asarray(stem.kernel) / std[:, None] * (gamma / np.sqrt(variance + stem_bn.epsilon))
    np.testing.assert_allclose(np.asarray(optimized.get_layer("stem_conv").kernel), expected, rtol=1e-5, atol=1e-7)


def test_b0_symmetric_padding_keeps_the_explicit_pad():
    model = efficientnet.EfficientNetB0(
        weights=None, include_top=False, pooling="avg", input_shape=(SIZE, SIZE, 3), padding="symmetric"
    )
    randomize_statistics(model, seed=3)
    optimized = check_optimized(model, images(3, SIZE, seed=4))
    assert isinstance(optimized.get_layer("stem_conv_pad"), keras.layers.ZeroPadding2D)
    assert isinstance(optimized.get_layer("rescaling"), keras.layers.Rescaling)


def test_lite0_with_real_weights_same_predictions():
    model = efficientnet.EfficientNetLite0(weights="imagenet")
    photo = center_crop_and_resize(load_image(sample_image_path()), 224).astype("float32")
    x = np.concatenate([photo[None], images(2, 224, seed=5)])
    optimized = check_optimized(model, x, atol=1e-5)  # probabilities
    logits_model = keras.Model(model.input, model.get_layer("predictions").input)
    check_optimized(logits_model, x)
    reference, result = _outputs(model, x)[0], _outputs(optimized, x)[0]
    np.testing.assert_array_equal(np.argsort(result, -1)[:, -5:], np.argsort(reference, -1)[:, -5:])


def test_v2_b0():
    model = efficientnet.EfficientNetV2B0(weights=None, input_shape=(SIZE, SIZE, 3), classifier_activation=None)
    randomize_statistics(model, seed=1)
    optimized = check_optimized(model, images(3, SIZE, seed=2))
    # V2-B0's per-channel ImageNet normalisation is a Rescaling + Normalization of constants.
    assert isinstance(optimized.get_layer("rescaling"), keras.layers.Rescaling)
    assert optimized.get_layer("block1a_project_conv").use_bias


def test_xception41():
    model = efficientnet.Xception41(include_top=False, pooling="avg", input_shape=(SIZE, SIZE, 3))
    randomize_statistics(model, seed=2)
    # Random weights: the pooled features reach ~1e5 (BN statistics do not match the activations).
    x = images(3, SIZE, seed=3)
    optimized = check_optimized(model, x, relative=True)
    # The small outputs are checked too: an error of 10 in the smallest (0.25% of the median) fails.
    want = _outputs(model, x)[0]
    wrong = want.copy()
    wrong.flat[np.argmin(np.abs(want))] += 10.0
    with pytest.raises(AssertionError):
        assert_close(wrong, want, 1e-4, relative=True)
    # Every Xception BN follows a conv (the pre-activation ReLU comes before the depthwise conv).
    n_bn = _count(model, keras.layers.BatchNormalization)
    assert len(optimized.layers) == len(model.layers) - n_bn
    assert optimized.get_layer("entry_flow_block1_unit1_sepconv1_depthwise").use_bias
    assert optimized.get_layer("exit_flow_block2_unit1_sepconv3_pointwise").use_bias


def test_features_only_multi_output():
    model = efficientnet.EfficientNetB0(weights=None, features_only=True, input_shape=(SIZE, SIZE, 3))
    randomize_statistics(model, seed=4)
    optimized = check_optimized(model, images(3, SIZE, seed=6))
    assert len(optimized.outputs) == 4
    # The endpoint layers keep their names, so feature_extractor works on the optimized model too.
    assert [t._keras_history.operation.name for t in optimized.outputs] == [
        t._keras_history.operation.name for t in model.outputs
    ]


def test_deeplabv3plus():
    model = DeepLabV3Plus("efficientnetb0", classes=5, input_shape=(SIZE, SIZE, 3), activation=None)
    randomize_statistics(model, seed=5)
    optimized = check_optimized(model, images(3, SIZE, seed=7))
    assert optimized.get_layer("aspp1_pointwise").use_bias
    assert optimized.get_layer("concat_projection").use_bias


def test_nested_backbone_shared_layers_and_dict_outputs():
    backbone = efficientnet.EfficientNetB0(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3))
    image = keras.Input((SIZE, SIZE, 3), name="image")
    features = keras.layers.GlobalAveragePooling2D(name="pool")(backbone(image))
    features = keras.layers.Dropout(0.5, name="dropout")(features)
    shared = keras.layers.Dense(8, name="shared")
    a = keras.layers.BatchNormalization(name="a_bn")(shared(features))
    b = shared(keras.layers.Dense(backbone.output_shape[-1], name="proj")(features))
    b = keras.layers.BatchNormalization(name="b_bn")(keras.layers.ReLU(name="relu")(b))  # after an activation
    model = keras.Model(image, {"a": a, "b": b, "sum": keras.layers.add([a, b], name="sum")})
    randomize_statistics(model, seed=6)
    randomize_statistics(backbone, seed=7)

    optimized = check_optimized(model, images(3, SIZE, seed=8), relative=True)  # Dense kernels x30: outputs ~300

    assert isinstance(optimized.get_layer("efficientnetb0"), keras.Model)  # kept nested
    assert set(optimized.output.keys()) == {"a", "b", "sum"}
    # A BN after an activation, or after a shared (twice-called) layer, cannot be folded:
    # it becomes a per-channel multiply-add with the same name.
    assert isinstance(optimized.get_layer("b_bn"), keras.layers.Rescaling)
    assert isinstance(optimized.get_layer("a_bn"), keras.layers.Rescaling)
    assert len(optimized.get_layer("shared")._inbound_nodes) == 2  # still shared


def test_valid_padding_folds_the_whole_normalisation_and_sequential():
    inputs = keras.Input((16, 16, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 255.0, name="rescaling")(inputs)
    x = keras.layers.Normalization(mean=[0.4, 0.5, 0.6], variance=[0.04, 0.09, 0.01], name="normalization")(x)
    x = keras.layers.Conv2D(4, 3, padding="valid", name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    dw = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(x)
    dw = keras.layers.BatchNormalization(name="dw_bn")(dw)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(dw))
    randomize_statistics(model, seed=9)
    x = images(3, 16, seed=10)
    optimized = check_optimized(model, x)
    # Nothing pads the conv's input: mean and scale both go into the conv, no preprocessing layer is left.
    assert [type(layer).__name__ for layer in optimized.layers] == [
        "InputLayer",
        "Conv2D",
        "DepthwiseConv2D",
        "GlobalAveragePooling2D",
    ]

    sequential = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, use_bias=True, name="c"),
            keras.layers.BatchNormalization(name="c_bn"),
            keras.layers.SpatialDropout2D(0.3),
            keras.layers.Flatten(),
            keras.layers.Dense(3, name="d"),
            keras.layers.BatchNormalization(name="d_bn"),
        ]
    )
    randomize_statistics(sequential, seed=11)
    optimized = check_optimized(sequential, images(3, 8) / 255.0, relative=True)  # Dense kernels x30
    assert [type(layer).__name__ for layer in optimized.layers] == ["InputLayer", "Conv2D", "Flatten", "Dense"]


def test_options_and_bake_normalization():
    model = efficientnet.EfficientNetB0(weights=None, input_shape=(SIZE, SIZE, 3), classifier_activation=None)
    randomize_statistics(model, seed=12)
    x = images(2, SIZE, seed=13)
    baked = bake_normalization(model)
    assert _count(baked, keras.layers.Normalization) == 0
    assert _count(baked, keras.layers.BatchNormalization) == _count(model, keras.layers.BatchNormalization)
    assert _count(baked, keras.layers.Dropout) == _count(model, keras.layers.Dropout)
    assert isinstance(baked.get_layer("normalization"), keras.layers.Rescaling)
    np.testing.assert_allclose(_outputs(baked, x)[0], _outputs(model, x)[0], atol=1e-4)
    no_fold = optimize_for_inference(model, fold_preprocessing=False)
    assert _count(no_fold, keras.layers.BatchNormalization) == 0
    assert isinstance(no_fold.get_layer("normalization"), keras.layers.Rescaling)  # baked, not folded
    np.testing.assert_array_equal(no_fold.get_layer("rescaling").scale, 1 / 255.0)
    np.testing.assert_allclose(_outputs(no_fold, x)[0], _outputs(model, x)[0], atol=1e-4)


def test_split_swish_is_the_same_function_and_optional():
    model = efficientnet.EfficientNetB0(weights=None, input_shape=(SIZE, SIZE, 3), classifier_activation=None)
    randomize_statistics(model, seed=16)
    x = images(3, SIZE, seed=17)
    split = optimize_for_inference(model, split_swish=True)
    plain = optimize_for_inference(model, split_swish=False)
    assert _count(plain, keras.layers.Multiply) == 16  # only the SE gates
    assert _count(split, keras.layers.Multiply) == 16 + 33
    assert isinstance(plain.get_layer("top_activation"), keras.layers.Activation)
    # The same function: swish(x) = x * sigmoid(x) exactly, so only the kernels' rounding may differ.
    np.testing.assert_allclose(_outputs(split, x)[0], _outputs(plain, x)[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(_outputs(split, x)[0], _outputs(model, x)[0], rtol=0, atol=1e-4)
    assert np.abs(_outputs(model, x)[0]).max() > 1  # logits: a real comparison
    # Feature endpoints that are swish activations keep their names (the product carries it).
    features = efficientnet.EfficientNetB0(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3))
    optimized = optimize_for_inference(features, split_swish=True)
    assert optimized.output._keras_history.operation.name == "top_activation"
    np.testing.assert_allclose(_outputs(optimized, x)[0], _outputs(features, x)[0], rtol=0, atol=1e-4)


def test_saves_and_reloads(tmp_path):
    model = efficientnet.EfficientNetV2B0(weights=None, include_top=False, input_shape=(SIZE, SIZE, 3))
    randomize_statistics(model, seed=14)
    optimized = optimize_for_inference(model)
    path = tmp_path / "optimized.keras"
    optimized.save(path)
    restored = keras.saving.load_model(path)
    x = images(2, SIZE, seed=15)
    np.testing.assert_allclose(_outputs(restored, x)[0], _outputs(optimized, x)[0], atol=1e-6)


def test_subclassed_model_is_refused():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.zeros((1, 3), "float32"))
    with pytest.raises(ValueError, match="functional or Sequential"):
        optimize_for_inference(net)
