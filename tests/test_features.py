"""Endpoint tables, feature extraction and output_stride by dilation."""

import keras
import numpy as np
import pytest
from helpers import images, import_timm, randomize_statistics, randomize_torch_statistics

import efficientnet
from efficientnet.features import endpoint_names, endpoints, feature_extractor

SIZES = {2: 128, 4: 64, 8: 32, 16: 16, 32: 8}  # at 256x256

TABLES = {
    "B0": (
        {
            2: "block2a_expand_activation",
            4: "block3a_expand_activation",
            8: "block4a_expand_activation",
            16: "block6a_expand_activation",
            32: "top_activation",
        },
        (96, 144, 240, 672, 1280),
    ),
    "B3": (None, (144, 192, 288, 816, 1536)),
    "Lite0": (None, (96, 144, 240, 672, 1280)),
    "V2B0": (
        {
            2: "block1a_project_activation",
            4: "block2b_add",
            8: "block4a_expand_activation",
            16: "block6a_expand_activation",
            32: "top_activation",
        },
        (16, 32, 192, 672, 1280),
    ),
    "V2S": ({2: "block1b_add", 4: "block2d_add"}, (24, 48, 256, 960, 1280)),
    "Xception65": (
        {
            2: "entry_flow_block1_unit1_sepconv3_preact",
            4: "entry_flow_block2_unit1_sepconv3_preact",
            8: "entry_flow_block3_unit1_sepconv3_preact",
            16: "exit_flow_block1_unit1_sepconv3_preact",
            32: "exit_flow_block2_unit1_sepconv3_pointwise_relu",
        },
        (128, 256, 728, 1024, 2048),
    ),
}


def _build(name, **kwargs):
    ctor = getattr(efficientnet, name if name.startswith("Xception") else f"EfficientNet{name}")
    if not name.startswith("Xception"):
        kwargs.setdefault("weights", None)
    return ctor(include_top=False, input_shape=(256, 256, 3), **kwargs)


@pytest.mark.parametrize("name", list(TABLES))
def test_endpoint_tables(name):
    names, channels = TABLES[name]
    model = _build(name)
    table = endpoints(model)
    assert [table[s][1] for s in sorted(table)] == list(channels)
    for stride, expected in (names or {}).items():
        assert table[stride][0] == expected
    features = feature_extractor(model, strides=(2, 4, 8, 16, 32))
    for stride, out in zip((2, 4, 8, 16, 32), features.outputs):
        assert tuple(out.shape[1:3]) == (SIZES[stride], SIZES[stride])


def test_v1_endpoints_are_what_segmentation_models_taps():
    for variant in ("b0", "b3", "b7"):
        table = endpoint_names(variant)
        assert [table[s] for s in (16, 8, 4, 2)] == [
            "block6a_expand_activation",
            "block4a_expand_activation",
            "block3a_expand_activation",
            "block2a_expand_activation",
        ]


def test_every_endpoint_enters_a_strided_conv():
    """The documented rule, checked on the graph: each stride<32 endpoint feeds the conv that halves it."""
    for name in ("B0", "V2S", "Xception65"):
        model = _build(name)
        for stride, (layer_name, _) in endpoints(model, (2, 4, 8, 16)).items():
            consumers = [layer for layer in model.layers if _consumes(layer, model.get_layer(layer_name))]
            strided = [c for c in _through_padding(model, consumers) if getattr(c, "strides", (1, 1)) == (2, 2)]
            assert strided, (name, stride, layer_name, [c.name for c in consumers])


def _consumes(layer, producer):
    inbound = [t for node in layer._inbound_nodes for t in node.input_tensors]
    return any(t._keras_history.operation is producer for t in inbound)


def _through_padding(model, consumers):
    result = []
    for c in consumers:
        if isinstance(c, keras.layers.ZeroPadding2D):
            result += [layer for layer in model.layers if _consumes(layer, c)]
        else:
            result.append(c)
    return result


def test_features_only_constructor_option():
    model = efficientnet.EfficientNetB0(
        weights=None, features_only=True, out_strides=(8, 32), input_shape=(256, 256, 3)
    )
    assert [tuple(o.shape[1:]) for o in model.outputs] == [(32, 32, 240), (8, 8, 1280)]
    assert model.output_names == ["stride_8", "stride_32"]


def test_outputs_are_named_by_stride_and_carry_the_endpoint_values():
    base = efficientnet.EfficientNetB0(weights=None, include_top=False, input_shape=(64, 64, 3))
    randomize_statistics(base)
    features = feature_extractor(base, (16, 4, 8))  # any order: shallowest first
    assert features.output_names == ["stride_4", "stride_8", "stride_16"]
    x = images(size=64)
    named = dict(zip(features.output_names, features(x, training=False)))
    taps = keras.Model(base.inputs, [base.get_layer(TABLES["B0"][0][s]).output for s in (4, 8, 16)])
    for stride, expected in zip((4, 8, 16), taps(x, training=False)):
        got = keras.ops.convert_to_numpy(named[f"stride_{stride}"])
        assert got.shape[1] == 64 // stride
        np.testing.assert_array_equal(got, keras.ops.convert_to_numpy(expected))


@pytest.mark.parametrize("output_stride,size", [(16, 16), (8, 32)])
def test_output_stride_dilates_and_keeps_weights_compatible(output_stride, size, tmp_path):
    reference = _build("B0")
    randomize_statistics(reference)
    path = str(tmp_path / "b0.h5")
    efficientnet.save_weights(reference, path)
    dilated = _build("B0", output_stride=output_stride)
    assert tuple(dilated.output.shape[1:3]) == (size, size)
    x = images(size=256)
    for by_name in (True, False):
        assert efficientnet.load_weights(dilated, path, by_name=by_name).complete
        below = [s for s in (2, 4, 8, 16) if s < output_stride] + [output_stride]
        ref_feats = feature_extractor(reference, below)
        dil_feats = feature_extractor(dilated, below)
        for a, b in zip(ref_feats(x, training=False), dil_feats(x, training=False)):
            np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), atol=1e-5)
    with pytest.raises(ValueError, match="no features at strides"):
        feature_extractor(dilated, (32,))


@pytest.mark.slow
def test_xception65_endpoints_equal_timm_feature_taps():
    import torch

    timm = import_timm()
    from efficientnet.convert import convert_state_dict

    reference = randomize_torch_statistics(timm.create_model("xception65"))
    ours = convert_state_dict(
        reference.state_dict(), "xception65", include_preprocessing=False, input_shape=(128, 128, 3)
    )
    x = np.random.default_rng(0).normal(size=(1, 3, 128, 128)).astype("float32")
    with torch.no_grad():
        taps = reference.forward_intermediates(torch.from_numpy(x), intermediates_only=True)
    expected = [t.numpy().transpose(0, 2, 3, 1) for t in taps]
    features = feature_extractor(ours, (2, 4, 8, 16, 32))
    got = [keras.ops.convert_to_numpy(t) for t in features(x.transpose(0, 2, 3, 1), training=False)]
    assert [g.shape for g in got] == [e.shape for e in expected]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, atol=1e-4)
