"""The architecture registry and the contract every registered model keeps."""

import ast
import inspect
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

import efficientnet
from efficientnet import config, models, registry, xception

PACKAGE = pathlib.Path(efficientnet.__file__).parent
# Building these at 64 px takes from 10 s to over a minute each on 2 cores.
LARGE = {"efficientnetb6", "efficientnetb7", "efficientnetb8", "efficientnetl2"} | {
    "efficientnetv2-m",
    "efficientnetv2-l",
    "efficientnetv2-xl",
}


def _case(info):
    return pytest.param(info, id=info.name, marks=pytest.mark.slow if info.name in LARGE else ())


@pytest.mark.parametrize("info", [_case(i) for i in registry.list_models()])
def test_contract(info, tmp_path):
    """Builds at a small input with its registered parameter count; the feature information recorded
    while building matches the real feature shapes; small models round-trip through ``.keras``."""
    side = 64
    model = info.constructor(weights=None, input_shape=(side, side, 3))
    assert model.name == info.name
    assert model.count_params() == info.params
    recorded = model.feature_info
    assert [i.stride for i in recorded] == [2, 4, 8, 16, 32]
    features = efficientnet.feature_extractor(model, out_strides=[i.stride for i in recorded])
    for item, output in zip(recorded, features.outputs):
        assert tuple(output.shape[1:]) == (side // item.stride, side // item.stride, item.channels), item
        named = features.get_layer(f"stride_{item.stride}")  # each output named by its stride
        assert named.output is output and named.input is model.get_layer(item.layer).output
    if info.params > 30_000_000:
        return
    x = np.random.default_rng(0).uniform(0, 255, (1, side, side, 3)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)), rtol=1e-5, atol=1e-6
    )


def test_registry_covers_every_table_entry_and_constructor():
    names = [i.name for i in registry.list_models()]
    assert names == [*config.VARIANTS, *config.XCEPTION_BLOCKS]
    assert len(names) == 26
    exported = {n for n in efficientnet.__all__ if n.startswith(("EfficientNet", "Xception"))} - {"EfficientNet"}
    assert {i.constructor_name for i in registry.list_models()} == exported
    assert [i.name for i in registry.list_models("lite")] == [f"efficientnetlite{n}" for n in range(5)]
    assert {i.name for i in registry.list_models(pretrained=True)} >= {"efficientnetb0", "efficientnetlite0"}
    assert not any(i.family == "xception" for i in registry.list_models(pretrained=True))


def test_entries_carry_the_papers_figures():
    b3 = registry.get_model_info("EfficientNet-B3")
    assert (b3.default_size, b3.train_size, b3.crop, b3.interpolation) == (300, 300, 0.9036, "bicubic")
    assert b3.constructor is efficientnet.EfficientNetB3 and b3.params == 12_320_535
    assert set(b3.weights) == {"imagenet", "noisy-student", "autoaugment"}
    s = registry.get_model_info("efficientnetv2_s")
    assert (s.default_size, s.train_size, s.eval_size, s.crop) == (384, 300, 384, 1.0)
    x = registry.get_model_info("Xception65")
    assert (x.family, x.default_size, x.constructor) == ("xception", 299, efficientnet.Xception65)


def test_create_model_is_the_constructor():
    a = efficientnet.create_model("lite0", weights=None, input_shape=(64, 64, 3), classes=3)
    b = efficientnet.EfficientNetLite0(weights=None, input_shape=(64, 64, 3), classes=3)
    assert [layer.name for layer in a.layers[1:]] == [layer.name for layer in b.layers[1:]]
    assert a.count_params() == b.count_params()
    with pytest.raises(ValueError, match="Unknown EfficientNet variant or model 'b42'.*xception65"):
        efficientnet.create_model("b42")
    with pytest.raises(TypeError, match="A model name is a string"):
        efficientnet.create_model(3)
    with pytest.raises(ValueError, match="family must be one of"):
        efficientnet.list_models("v3")


def test_constructors_are_written_out_and_agree_with_the_table(monkeypatch):
    """No constructor is generated through globals(); each calls the builder with its own table entry."""
    for module in (models, xception):
        tree = ast.parse(inspect.getsource(module))
        assert "globals" not in {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    calls = []
    monkeypatch.setattr(models, "EfficientNet", lambda variant, *args, **kwargs: calls.append(variant) or variant)
    monkeypatch.setattr(xception, "AlignedXception", lambda variant, *args, **kwargs: calls.append(variant) or variant)
    for info in registry.list_models():
        module = xception if info.family == "xception" else models
        defined = {n.name for n in ast.parse(inspect.getsource(module)).body if isinstance(n, ast.FunctionDef)}
        assert info.constructor_name in defined
        assert info.constructor(weights=None) == info.name == info.constructor.variant
        signature = inspect.signature(info.constructor)
        assert list(signature.parameters)[:8] == [
            "include_top",
            "weights",
            "input_tensor",
            "input_shape",
            "pooling",
            "classes",
            "classifier_activation",
            "name",
        ]
        expected = "imagenet" if info.family != "xception" else None
        assert signature.parameters["weights"].default == expected
        assert f"{info.default_size}x{info.default_size}" in info.constructor.__doc__
    assert calls == [i.name for i in registry.list_models()]


def _imports(path: pathlib.Path) -> set[str]:
    """The package modules a module imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
    return found


def test_no_import_cycle_among_the_model_modules():
    graph = {p.stem: _imports(p) for p in PACKAGE.glob("*.py")}
    graph = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}
    state = {}

    def visit(module, path):
        if state.get(module) == "done":
            return
        assert state.get(module) != "active", "import cycle: " + " -> ".join([*path, module])
        state[module] = "active"
        for dep in sorted(graph[module]):
            visit(dep, [*path, module])
        state[module] = "done"

    for module in ("builder", "features", "xception", "config", "applications", "layers", "models", "registry"):
        visit(module, [])
    assert "xception" not in graph["features"] and "builder" not in graph["xception"]


def test_feature_extractor_takes_out_strides_and_the_old_name():
    model = efficientnet.EfficientNetB0(weights=None, include_top=False, input_shape=(64, 64, 3))
    new = efficientnet.feature_extractor(model, out_strides=(8, 32))
    old = efficientnet.feature_extractor(model, strides=(8, 32))
    assert [o.shape for o in new.outputs] == [o.shape for o in old.outputs] == [(None, 8, 8, 240), (None, 2, 2, 1280)]
    with pytest.raises(ValueError, match="not both"):
        efficientnet.feature_extractor(model, out_strides=(8,), strides=(16,))


def test_recorded_feature_info_drives_extraction_of_custom_tables():
    """A custom block table has no name table to match; the recorded information still finds its features."""
    blocks = config.DEFAULT_BLOCKS_ARGS[:4]  # stops at stride 16: top_activation is the last map
    model = efficientnet.EfficientNet(
        "b0", weights=None, include_top=False, blocks_args=blocks, input_shape=(64, 64, 3)
    )
    assert [(i.stride, i.channels) for i in model.feature_info] == [(2, 96), (4, 144), (8, 240), (16, 1280)]
    features = efficientnet.feature_extractor(model, out_strides=(4, 16))
    assert [tuple(o.shape[1:]) for o in features.outputs] == [(16, 16, 144), (4, 4, 1280)]


def test_cli_list_prints_every_model_with_its_figures():
    done = subprocess.run(
        [sys.executable, "-m", "efficientnet.cli", "list", "--family", "v2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split() for line in done.stdout.splitlines()[1:]]
    assert [r[0] for r in rows] == [i.name for i in registry.list_models("v2")]
    s = next(r for r in rows if r[0] == "efficientnetv2-s")
    assert s[1:6] == ["EfficientNetV2S", "384", "300", "1.000", "21,612,360"] and s[6] == "imagenet"
