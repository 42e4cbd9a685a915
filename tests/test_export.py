"""export_model: SavedModel, ONNX, OpenVINO and LiteRT artifacts that run and match Keras; the CLI."""

import argparse
import importlib.util
import os

import keras
import numpy as np
import pytest
from helpers import images, randomize_statistics

import efficientnet
from efficientnet import export as export_lib
from efficientnet.export import FORMATS, add_export_parser, export_model, simplify_onnx
from efficientnet.preprocessing import center_crop_and_resize, load_image, sample_image_path
from efficientnet.segmentation import DeepLabV3Plus

SIZE = 64
SUFFIX = {"saved_model": "", "onnx": ".onnx", "openvino": ".xml", "litert": ".tflite"}


# -- running an artifact -----------------------------------------------------------------------------


class Artifact:
    """Loads an exported file and runs it at any batch size; ``batch`` is its batch dimension."""

    def __init__(self, format, path):
        self.format, self.path = format, str(path)
        getattr(self, f"_load_{format}")()

    def _load_saved_model(self):
        import tensorflow as tf

        self._fn = tf.saved_model.load(self.path).signatures["serving_default"]
        _, specs = self._fn.structured_input_signature
        assert len(specs) == 1, specs
        ((self._name, spec),) = specs.items()
        self.batch = spec.shape[0]

    def _load_onnx(self):
        import onnxruntime

        self._session = onnxruntime.InferenceSession(self.path, providers=["CPUExecutionProvider"])
        inputs = self._session.get_inputs()
        assert len(inputs) == 1, [i.name for i in inputs]  # Keras' own export has three
        self._name = inputs[0].name
        dim = inputs[0].shape[0]
        self.batch = dim if isinstance(dim, int) else None

    def _load_openvino(self):
        import openvino

        model = openvino.Core().read_model(self.path)
        assert len(model.inputs) == 1
        dim = model.inputs[0].get_partial_shape()[0]
        self.batch = None if dim.is_dynamic else dim.get_length()
        # The CPU plugin computes in bf16 by default on CPUs that have it: ask for f32.
        self._compiled = openvino.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})

    def _load_litert(self):
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_path=self.path)
        (detail,) = self._interpreter.get_input_details()
        self._input = detail
        self.batch = None if detail["shape_signature"][0] == -1 else int(detail["shape_signature"][0])

    def __call__(self, x):
        if self.format == "saved_model":
            import tensorflow as tf

            (out,) = self._fn(**{self._name: tf.constant(x)}).values()
            return out.numpy()
        if self.format == "onnx":
            return self._session.run(None, {self._name: x})[0]
        if self.format == "openvino":
            return self._compiled(x)[0]
        it = self._interpreter
        it.resize_tensor_input(self._input["index"], list(x.shape))
        it.allocate_tensors()
        it.set_tensor(self._input["index"], x)
        it.invoke()
        return it.get_tensor(it.get_output_details()[0]["index"])


def export_and_check(model, fmt, tmp_path, x, atol=1e-4):
    """Exports, reloads, checks one dynamic-batch input and parity at batch 1 and 3; returns the outputs."""
    path = export_model(model, tmp_path / f"model{SUFFIX[fmt]}", fmt)
    assert sorted(os.listdir(tmp_path)) == sorted(
        {"saved_model": ["model"], "openvino": ["model.xml", "model.bin"]}.get(fmt, [path.name])
    )  # no temporary left behind
    artifact = Artifact(fmt, path)
    assert artifact.batch is None
    reference = np.asarray(model(x, training=False))
    outputs = []
    for batch in (1, 3):
        got = artifact(x[:batch])
        assert got.shape == reference[:batch].shape
        np.testing.assert_allclose(got, reference[:batch], rtol=0, atol=atol)
        outputs.append(got)
    return outputs[-1]


# -- models ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def b0():
    model = efficientnet.EfficientNetB0(weights=None, input_shape=(SIZE, SIZE, 3), classifier_activation=None)
    randomize_statistics(model)
    return model


@pytest.fixture(scope="module")
def lite0():
    return efficientnet.EfficientNetLite0(weights="imagenet")


@pytest.fixture(scope="module")
def photo_batch():
    photo = center_crop_and_resize(load_image(sample_image_path()), 224).astype("float32")
    return np.concatenate([photo[None], images(2, 224, seed=3)])


@pytest.fixture(scope="module")
def v2b0():
    model = efficientnet.EfficientNetV2B0(weights=None, input_shape=(SIZE, SIZE, 3), classifier_activation=None)
    randomize_statistics(model, seed=1)
    return model


@pytest.fixture(scope="module")
def deeplab():
    model = DeepLabV3Plus("efficientnetb0", classes=4, input_shape=(SIZE, SIZE, 3), activation=None)
    randomize_statistics(model, seed=2)
    return model


@pytest.mark.parametrize("fmt", FORMATS)
def test_b0(b0, fmt, tmp_path):
    export_and_check(b0, fmt, tmp_path, images(3, SIZE))


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_lite0_real_weights_same_top5(lite0, photo_batch, fmt, tmp_path):
    probs = export_and_check(lite0, fmt, tmp_path, photo_batch, atol=1e-5)
    reference = np.asarray(lite0(photo_batch, training=False))
    np.testing.assert_array_equal(np.argsort(probs, -1)[:, -5:], np.argsort(reference, -1)[:, -5:])
    assert int(np.argmax(probs[0])) in {281, 282, 283, 284, 285}  # the bundled photo is a cat


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_v2_b0(v2b0, fmt, tmp_path):
    export_and_check(v2b0, fmt, tmp_path, images(3, SIZE, seed=4))


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_deeplabv3plus(deeplab, fmt, tmp_path):
    export_and_check(deeplab, fmt, tmp_path, images(3, SIZE, seed=5))


# -- ONNX graph clean-up ------------------------------------------------------------------------------


def test_b0_onnx_graph_is_cleaned_and_matches_keras(b0, tmp_path):
    """The optimised B0 export: named batch, no no-op Reshape or x*1, full-size mean; values of Keras."""
    import onnx
    from onnx import numpy_helper

    x = images(3, SIZE, seed=7)
    plain = export_model(b0, tmp_path / "plain.onnx", optimize=False)
    path = export_model(b0, tmp_path / "b0.onnx")
    model = onnx.load(str(path))
    graph = model.graph
    ops = [node.op_type for node in graph.node]
    assert "Reshape" not in ops and "Identity" not in ops, ops
    assert ops.count("Conv") == 81 and ops.count("Add") == 9 + 1 + 1  # residuals, the mean, the classifier bias
    (image,) = graph.input
    assert [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim] == ["batch", SIZE, SIZE, 3]
    assert graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    # The input is consumed by one Add of the negated ImageNet mean, stored at the image's size.
    (first,) = [node for node in graph.node if image.name in node.input]
    assert first.op_type == "Add"
    (mean,) = [constants[name] for name in first.input if name in constants]
    assert mean.shape == (1, SIZE, SIZE, 3)
    np.testing.assert_allclose(mean[0, 5, 7], -np.asarray([0.485, 0.456, 0.406]) * 255, rtol=1e-5)
    assert not any(
        node.op_type == "Mul" and any(np.all(constants.get(i, 0) == 1) for i in node.input) for node in graph.node
    )
    # Each of the 16 SE gates is resized to its activation's shape, declared with the same batch.
    resizes = [node for node in graph.node if node.op_type == "Resize"]
    assert len(resizes) == 16
    declared = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.value_info}
    consumers = {name: node for node in graph.node for name in node.input}
    for resize in resizes:
        assert consumers[resize.output[0]].op_type == "Mul"
        shape = declared[resize.output[0]]
        assert shape[0] == "batch" and shape[2:] == list(constants[resize.input[2]][2:]), shape
    # Values: the cleaned graph against Keras, and against the export without any rewriting.
    reference = np.asarray(b0(x, training=False))
    got = Artifact("onnx", path)(x)
    np.testing.assert_allclose(got, reference, rtol=0, atol=1e-4)
    np.testing.assert_allclose(got, Artifact("onnx", plain)(x), rtol=0, atol=1e-4)
    assert np.abs(reference).max() > 1  # logits: a real comparison


def _run(model, feeds):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def test_simplify_onnx_removes_only_what_changes_no_value():
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def const(name, value, dtype="float32"):
        return numpy_helper.from_array(np.asarray(value, dtype), name)

    nodes = [
        helper.make_node("Add", ["x", "mean"], ["a"]),  # per-channel constant on the input: expanded
        helper.make_node("Mul", ["a", "one"], ["b"]),  # x * 1: removed
        helper.make_node("Reshape", ["b", "same_shape"], ["c"]),  # [-1, 4, 5, 3] on (N, 4, 5, 3): removed
        helper.make_node("Sub", ["c", "zeros3"], ["d"]),  # x - 0 (per channel): removed
        helper.make_node("Sub", ["zero", "d"], ["e"]),  # 0 - x: kept
        helper.make_node("Div", ["one", "e"], ["f"]),  # 1 / x: kept
        helper.make_node("Mul", ["f", "two"], ["g"]),  # x * 2: kept
        helper.make_node("Add", ["g", "zeros_big"], ["h"]),  # + zeros of shape (2, 1, 1, 1, 1): broadcasts, kept
        helper.make_node("Identity", ["h"], ["i"]),  # removed
        helper.make_node("Reshape", ["i", "flat"], ["j"]),  # a real reshape: kept
        helper.make_node("Mul", ["j", "one"], ["y"]),  # produces the graph output: kept
    ]
    inits = [
        const("mean", [-1.0, -2.0, -3.0]),
        const("one", 1.0),
        const("two", 2.0),
        const("zero", 0.0),
        const("zeros3", [0.0, 0.0, 0.0]),
        const("zeros_big", np.zeros((2, 1, 1, 1, 1))),
        const("same_shape", [-1, 4, 5, 3], "int64"),
        const("flat", [0, -1], "int64"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 5, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, "m"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    onnx.checker.check_model(model)
    x = np.random.default_rng(0).uniform(0.5, 2.0, (2, 4, 5, 3)).astype("float32")
    before = _run(model, {"x": x})[0]

    simplify_onnx(model)
    onnx.checker.check_model(model)
    after = _run(model, {"x": x})[0]
    np.testing.assert_array_equal(after, before)  # bitwise: every rewrite is exact
    assert [node.op_type for node in model.graph.node] == ["Add", "Sub", "Div", "Mul", "Add", "Reshape", "Mul"]
    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    expanded = constants[model.graph.node[0].input[1]]
    assert expanded.shape == (1, 4, 5, 3)
    np.testing.assert_array_equal(expanded[0, 2, 3], [-1.0, -2.0, -3.0])
    assert "mean" not in constants and "same_shape" not in constants  # unused initializers dropped
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert model.graph.output[0].name == "y"


def _se_block_model(reduced: int, extra_output: bool = False):
    """x (N, 8, 4, 4) -> SE: GAP, 1x1 conv to ``reduced`` channels, swish, 1x1 conv back, sigmoid, gate."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (reduced, 8, 1, 1)).astype("float32"), "w_reduce"),
        numpy_helper.from_array(rng.normal(0, 0.5, reduced).astype("float32"), "b_reduce"),
        numpy_helper.from_array(rng.normal(0, 0.5, (8, reduced, 1, 1)).astype("float32"), "w_expand"),
        numpy_helper.from_array(rng.normal(0, 0.5, 8).astype("float32"), "b_expand"),
    ]
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["pooled"]),
        helper.make_node("Conv", ["pooled", "w_reduce", "b_reduce"], ["reduced"], kernel_shape=[1, 1]),
        helper.make_node("Sigmoid", ["reduced"], ["reduced_sigmoid"]),
        helper.make_node("Mul", ["reduced", "reduced_sigmoid"], ["reduced_swish"]),
        helper.make_node("Conv", ["reduced_swish", "w_expand", "b_expand"], ["expanded"], kernel_shape=[1, 1]),
        helper.make_node("Sigmoid", ["expanded"], ["gate"]),
        helper.make_node("Mul", ["x", "gate"], ["y"]),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8, 4, 4])]
    if extra_output:
        outputs.append(helper.make_tensor_value_info("reduced_swish", TensorProto.FLOAT, ["n", reduced, 1, 1]))
    graph = helper.make_graph(
        nodes, "se", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8, 4, 4])], outputs, inits
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])


def test_simplify_onnx_keeps_squeeze_excitation_in_onnxruntime_layout():
    import onnx
    from onnx import numpy_helper

    x = np.random.default_rng(1).normal(0, 1, (3, 8, 4, 4)).astype("float32")
    model = _se_block_model(reduced=5)
    before = _run(model, {"x": x})
    simplify_onnx(model)
    onnx.checker.check_model(model)
    after = _run(model, {"x": x})
    np.testing.assert_allclose(after[0], before[0], rtol=0, atol=1e-6)  # zero channels: summation order only
    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    reduce_w, reduce_b, expand_w = (
        constants[convs[0].input[1]],
        constants[convs[0].input[2]],
        constants[convs[1].input[1]],
    )
    assert reduce_w.shape == (16, 8, 1, 1) and expand_w.shape == (8, 16, 1, 1)  # 5 -> 16 channels
    assert not reduce_w[5:].any() and not reduce_b[5:].any() and not expand_w[:, 5:].any()
    (resize,) = [node for node in model.graph.node if node.op_type == "Resize"]
    assert resize.input[0] == "gate" and resize.output[0] in model.graph.node[-1].input
    np.testing.assert_array_equal(constants[resize.input[2]], [1, 1, 4, 4])
    (declared,) = model.graph.value_info
    assert [d.dim_param or d.dim_value for d in declared.type.tensor_type.shape.dim] == ["batch", 8, 4, 4]
    once = model.SerializeToString()
    simplify_onnx(model)  # idempotent: the resized gate keeps its declaration, nothing is padded twice
    assert model.SerializeToString() == once

    # Without the option nothing changes; a reduced tensor that is also a graph output is never padded.
    plain = _se_block_model(reduced=5)
    simplify_onnx(plain, onnxruntime_layout=False)
    assert [node.op_type for node in plain.graph.node].count("Resize") == 0
    exposed = _se_block_model(reduced=5, extra_output=True)
    expected = _run(exposed, {"x": x})
    simplify_onnx(exposed)
    assert numpy_helper.to_array(exposed.graph.initializer[0]).shape == (5, 8, 1, 1)
    for got, want in zip(_run(exposed, {"x": x}), expected):
        np.testing.assert_array_equal(got, want)


def test_quantize_onnx_collapses_the_gate_resizes(tiny, tmp_path):
    import onnx

    x = images(4, 32, seed=9)
    path = export_model(tiny, tmp_path / "tiny.onnx")
    assert sum(node.op_type == "Resize" for node in onnx.load(str(path)).graph.node) == 1  # the block's SE gate
    quantized = export_lib.quantize_onnx(path, tmp_path / "tiny_int8.onnx", x, keep_float=())
    ops = [node.op_type for node in onnx.load(str(quantized)).graph.node]
    assert "Resize" not in ops and ops.count("QuantizeLinear") > 5
    assert {"stem_conv", "top_conv", "predictions"} <= _int8_layers(quantized)
    reference = np.asarray(tiny(x, training=False))
    got = Artifact("onnx", quantized)(x)
    assert got.shape == reference.shape
    # int8: close to float, not equal. A random tiny model at 32 px quantises coarsely (its seeded draw
    # gives logits of ~0.1 and int8 errors up to 20% of that); a wrong scale or zero point is off by far
    # more. The real-weights accuracy of int8 is checked on Lite0 (top-1 agreement) elsewhere.
    np.testing.assert_allclose(got, reference, rtol=0, atol=0.25 * np.abs(reference).max())
    assert sorted(os.listdir(tmp_path)) == ["tiny.onnx", "tiny_int8.onnx"]  # no scratch files left


def _int8_layers(path) -> set:
    """The Keras layers whose ONNX Conv/MatMul reads a dequantised (int8) weight."""
    import onnx

    graph = onnx.load(str(path)).graph
    dequantized = {out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    layers = set()
    for node in graph.node:  # named "<model>_1/<layer>_1/<op>" by tf2onnx
        if node.op_type in ("Conv", "MatMul") and node.input[1] in dequantized:
            parts = node.name.split("/")
            layers.add(parts[1].removesuffix("_1") if len(parts) > 2 else node.name)
    return layers


def test_quantize_onnx_keeps_the_stem_first_block_and_classifier_in_float(tiny, tmp_path):
    x = images(4, 32, seed=9)
    path = export_model(tiny, tmp_path / "tiny.onnx")
    quantized = export_lib.quantize_onnx(path, tmp_path / "tiny_int8.onnx", x)
    assert _int8_layers(quantized) == {"top_conv"}  # stem, block1a (dw, SE, project) and predictions stay float
    reference = np.asarray(tiny(x, training=False))
    # Only top_conv is int8 here: within 15% of the seeded tiny model's logits (measured 11%).
    np.testing.assert_allclose(Artifact("onnx", quantized)(x), reference, atol=0.15 * np.abs(reference).max())
    everything = export_lib.quantize_onnx(path, tmp_path / "all.onnx", x, keep_float=(), percentile=None)
    assert {"stem_conv", "top_conv", "predictions"} <= _int8_layers(everything)


def test_percentile_calibration_sees_the_images_a_chunk_at_a_time(monkeypatch):
    from onnxruntime.quantization.calibrate import HistogramCalibrater

    seen = []

    def collect_data(self, reader):  # stands in for onnxruntime's, which keeps every image's activations
        seen.append([item["x"] for item in iter(reader.get_next, None)])

    monkeypatch.setattr(HistogramCalibrater, "collect_data", collect_data)

    class Reader:
        def __init__(self):
            self.items = iter({"x": i} for i in range(20))

        def get_next(self):
            return next(self.items, None)

    with export_lib._histograms_in_chunks(8):
        HistogramCalibrater.collect_data(None, Reader())
    assert seen == [list(range(8)), list(range(8, 16)), list(range(16, 20))]
    assert HistogramCalibrater.collect_data is collect_data  # restored on exit


def test_simplify_onnx_leaves_dynamic_shapes_alone():
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    # Unknown spatial size: the Reshape cannot be proven a no-op and the mean is not expanded.
    nodes = [
        helper.make_node("Add", ["x", "mean"], ["a"]),
        helper.make_node("Reshape", ["a", "shape"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(np.asarray([1.0, 2.0, 3.0], "float32"), "mean"),
        numpy_helper.from_array(np.asarray([-1, 4, 5, 3], "int64"), "shape"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "h", "w", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, 5, 3])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    simplify_onnx(model)
    onnx.checker.check_model(model)
    assert [node.op_type for node in model.graph.node] == ["Add", "Reshape"]
    assert [init.name for init in model.graph.initializer] == ["mean", "shape"]
    x = np.ones((2, 4, 5, 3), "float32")
    np.testing.assert_array_equal(_run(model, {"x": x})[0], x + [1.0, 2.0, 3.0])


# -- options, errors, atomicity ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    """A small model with the same preprocessing as V1 (Normalization statistics as variables)."""
    keras.utils.set_random_seed(0)  # one draw whatever ran before in this worker (the int8 bound depends on it)
    return efficientnet.EfficientNet(
        "b0",
        weights=None,
        input_shape=(32, 32, 3),
        classes=3,
        classifier_activation=None,
        blocks_args=[
            {
                "kernel_size": 3,
                "repeats": 1,
                "filters_in": 32,
                "filters_out": 16,
                "expand_ratio": 1,
                "id_skip": True,
                "strides": 1,
                "se_ratio": 0.25,
            }
        ],
    )


def test_no_optimize_and_fixed_batch_still_one_input(tiny, tmp_path):
    import onnx

    x = images(2, 32)
    plain = export_model(tiny, tmp_path / "plain.onnx", optimize=False, batch_size=2)
    graph = onnx.load(str(plain)).graph
    # One input, named after the model's; Keras' own export adds the two Normalization constants.
    assert [i.name for i in graph.input] == [tiny.inputs[0]._keras_history.operation.name]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2
    artifact = Artifact("onnx", plain)
    assert artifact.batch == 2
    np.testing.assert_allclose(artifact(x), np.asarray(tiny(x, training=False)), atol=1e-4)
    optimized = onnx.load(str(export_model(tiny, tmp_path / "optimized.onnx"))).graph
    assert len(optimized.node) < len(graph.node)  # BN folded only with optimize=True


def test_unknown_format_and_bad_paths(tiny, tmp_path):
    with pytest.raises(ValueError, match="Unknown export format 'torchscript'.*saved_model, onnx, openvino, litert"):
        export_model(tiny, tmp_path / "m.pt", "torchscript")
    with pytest.raises(ValueError, match=r"'\.tflite' file.*m\.tflite"):
        export_model(tiny, tmp_path / "m.onnx", "litert")
    with pytest.raises(ValueError, match=r"'\.xml' file"):
        export_model(tiny, tmp_path / "m", "openvino")
    with pytest.raises(ValueError, match="batch_size"):
        export_model(tiny, tmp_path / "m.onnx", batch_size=0)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("fmt, module, package", [("onnx", "tf2onnx", "tf2onnx"), ("openvino", "openvino", "openvino")])
def test_missing_package_names_the_pip_install(tiny, tmp_path, monkeypatch, fmt, module, package):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else find_spec(name, *a))
    with pytest.raises(ValueError, match=f"pip install {package}"):
        export_model(tiny, tmp_path / f"m{SUFFIX[fmt]}", fmt)


def test_failed_export_leaves_the_previous_file(tiny, tmp_path, monkeypatch):
    target = tmp_path / "model.onnx"
    export_model(tiny, target)
    previous = target.read_bytes()

    def broken(self, filepath, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"half")
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(keras.Model, "export", broken)
    with pytest.raises(RuntimeError, match="converter crashed"):
        export_model(tiny, target, overwrite=True)
    assert target.read_bytes() == previous
    assert os.listdir(tmp_path) == ["model.onnx"]


def test_replaces_an_existing_saved_model_and_never_called_model(tiny, tmp_path):
    target = tmp_path / "sm"
    export_model(tiny, target, "saved_model")
    (target / "variables" / "stale.data").write_text("old")  # inside the earlier export: replaced with it
    fresh = keras.models.clone_model(tiny)  # built, never called
    assert not fresh._called
    export_model(fresh, target, "saved_model", overwrite=True)  # (a folder that is not an export is refused)
    assert not (target / "variables" / "stale.data").exists() and (target / "saved_model.pb").exists()
    assert sorted(os.listdir(tmp_path)) == ["sm"]
    x = images(2, 32)
    np.testing.assert_allclose(Artifact("saved_model", target)(x), np.asarray(fresh(x, training=False)), atol=1e-4)


# -- command line ------------------------------------------------------------------------------------


def _cli(argv):
    parser = argparse.ArgumentParser(prog="efficientnet")
    add_export_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_builds_from_weights_and_exports(tmp_path, capsys):
    out = tmp_path / "lite0.onnx"
    assert _cli(["export", "imagenet", str(out), "--format", "onnx", "--model", "lite0", "--image-size", "96"]) == 0
    assert "Wrote" in capsys.readouterr().out
    artifact = Artifact("onnx", out)
    photo = center_crop_and_resize(load_image(sample_image_path()), 96).astype("float32")[None]
    reference = efficientnet.EfficientNetLite0(weights="imagenet", input_shape=(96, 96, 3))
    np.testing.assert_allclose(artifact(photo), np.asarray(reference(photo)), atol=1e-5)


@pytest.mark.slow
def test_cli_int8_quantisation_calibrated_on_a_folder(tmp_path, capsys):
    from PIL import Image

    image = load_image(sample_image_path())
    folder = tmp_path / "calibration"
    folder.mkdir()
    rng = np.random.default_rng(0)
    h, w, _ = image.shape
    for i in range(8):  # random crops and flips of the bundled photo
        side = int(min(h, w) * rng.uniform(0.5, 1.0))
        top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = image[top : top + side, left : left + side][:, :: 1 if i % 2 else -1]
        Image.fromarray(np.ascontiguousarray(crop)).save(folder / f"{i}.png")
    out = tmp_path / "lite0_int8.onnx"
    argv = ["export", "imagenet", str(out), "--format", "onnx", "--model", "lite0", "--int8", str(folder)]
    assert _cli(argv) == 0
    assert "int8" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["calibration", "lite0_int8.onnx"]

    import onnx

    graph = onnx.load(str(out)).graph
    assert sum(node.op_type == "QuantizeLinear" for node in graph.node) > 50
    quantized = _int8_layers(out)
    assert "stem_conv" not in quantized and "predictions" not in quantized and "top_conv" in quantized
    assert out.stat().st_size < 10_500_000  # float32 is ~18 MB; the float classifier is 5 MB of the 9.6
    photo = center_crop_and_resize(image, 224).astype("float32")[None]
    reference = np.asarray(efficientnet.EfficientNetLite0(weights="imagenet")(photo))
    probs = Artifact("onnx", out)(photo)
    assert int(np.argmax(probs)) == int(np.argmax(reference))  # measured: same top-1, |diff| 0.027
    np.testing.assert_allclose(probs, reference, atol=0.06)

    with pytest.raises(ValueError, match="--int8 quantises ONNX models"):
        _cli(
            ["export", "imagenet", str(tmp_path / "x.tflite"), "--format", "litert", "--model", "lite0", "--int8", "d"]
        )
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="No calibration images"):
        export_lib.quantize_onnx(out, tmp_path / "again.onnx", empty)


def test_cli_loads_keras_files_and_passes_options(tiny, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(export_lib, "export_model", lambda model, path, fmt, **kw: calls.append((model, fmt, kw)))
    path = tmp_path / "tiny.keras"
    tiny.save(path)
    out = str(tmp_path / "o.tflite")
    assert _cli(["export", str(path), out, "--format", "litert", "--no-optimize", "--batch-size", "1"]) == 0
    model, fmt, kw = calls[0]
    assert fmt == "litert" and kw == {"optimize": False, "batch_size": 1, "overwrite": False}
    assert [layer.name for layer in model.layers] == [layer.name for layer in tiny.layers]

    with pytest.raises(ValueError, match="pass --model VARIANT"):
        _cli(["export", "weights.h5", out, "--format", "onnx"])
    with pytest.raises(ValueError, match="a .keras file has its own architecture"):
        _cli(["export", str(path), out, "--format", "onnx", "--model", "b0"])
    with pytest.raises(SystemExit):
        _cli(["export", str(path), out, "--format", "pickle"])


def test_chunked_percentile_calibration_merges_to_the_ranges_of_one_pass(tiny, tmp_path, monkeypatch):
    """Two real chunks of 8 through onnxruntime's histogram calibrator give the ranges of all 16 at once."""
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import HistogramCalibrater, create_calibrator

    path = export_model(tiny, tmp_path / "tiny.onnx")
    input_name = onnxruntime.InferenceSession(str(path)).get_inputs()[0].name
    x = images(16, 32, seed=3)
    x[8:] = x[8:] * 0.25 + 160.0  # the second chunk spans other ranges: the first chunk's histograms must grow

    class Reader:
        def __init__(self):
            self.items = iter({input_name: item[None]} for item in x)

        def get_next(self):
            return next(self.items, None)

    real = HistogramCalibrater.collect_data
    chunks = []

    def counted(self, reader):  # onnxruntime's own, counting the images of each call
        items = list(iter(reader.get_next, None))
        chunks.append(len(items))
        it = iter(items)
        return real(self, type("R", (), {"get_next": lambda _: next(it, None)})())

    monkeypatch.setattr(HistogramCalibrater, "collect_data", counted)

    def ranges(name: str, chunk: int | None) -> dict:
        calibrator = create_calibrator(
            str(path),
            augmented_model_path=str(tmp_path / f"{name}.onnx"),
            calibrate_method=CalibrationMethod.Percentile,
            extra_options={"CalibPercentile": 99.999},
        )
        if chunk is None:
            calibrator.collect_data(Reader())
        else:
            with export_lib._histograms_in_chunks(chunk):
                calibrator.collect_data(Reader())
        data = calibrator.compute_data()
        return {k: tuple(float(np.asarray(v)) for v in data[k].range_value) for k in data.data}

    one = ranges("one", None)
    assert chunks == [16]
    two = ranges("two", 8)
    assert chunks == [16, 8, 8]  # two real chunks went through onnxruntime's calibrator
    assert one.keys() == two.keys() and len(one) > 20
    assert np.mean([hi > lo for lo, hi in one.values()]) > 0.9
    for key in one:
        (lo1, hi1), (lo2, hi2) = one[key], two[key]
        # A few bins: the calibrator's histogram of |x| has 2048 bins over [0, max |x|], and the merged one
        # keeps the first chunk's bin width (seen: up to 2.6 bins apart; a merge that drops a chunk: >1000).
        tolerance = 4 * max(abs(lo1), abs(hi1)) / 2048 + 1e-6
        assert abs(lo1 - lo2) <= tolerance and abs(hi1 - hi2) <= tolerance, (key, one[key], two[key])
