"""DeepLabV3+ and U-Net on every family, the shapes example, and segmentation_models 1.0.1."""

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import predict

import efficientnet
from efficientnet.segmentation import DeepLabV3Plus, Unet

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (64, 64, 3)
BACKBONES = [
    "efficientnetb0",
    pytest.param("lite0", marks=pytest.mark.slow),
    pytest.param("efficientnetv2-b0", marks=pytest.mark.slow),
    pytest.param("xception41", marks=pytest.mark.slow),
]


def _example():
    spec = importlib.util.spec_from_file_location("train_deeplab", ROOT / "examples" / "train_deeplab.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shapes():
    return _example().make_shapes(32, 64, seed=3)


@pytest.mark.parametrize("head", [DeepLabV3Plus, Unet])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_heads_output_train_and_round_trip(head, backbone, shapes, tmp_path):
    x, y = shapes
    model = head(backbone, classes=4, input_shape=SHAPE, activation="softmax")
    assert model.output_shape == (None, 64, 64, 4)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    losses = [float(model.train_on_batch(x[:8], y[:8])) for _ in range(5)]
    assert losses[-1] < losses[0], losses
    path = str(tmp_path / "head.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(predict(restored, x[:2]), predict(model, x[:2]), atol=1e-5)


def test_deeplab_structure_and_rates():
    model = DeepLabV3Plus("efficientnetb0", classes=3, output_stride=8, input_shape=SHAPE)
    assert [model.get_layer(f"aspp{i}_depthwise").dilation_rate for i in (1, 2, 3)] == [(12, 12), (24, 24), (36, 36)]
    assert model.get_layer("feature_projection0").filters == 48
    assert model.get_layer("aspp_dropout").rate == 0.1
    assert not any(isinstance(layer, keras.layers.SeparableConv2D) for layer in model.layers)
    model16 = DeepLabV3Plus("efficientnetb0", classes=3, input_shape=SHAPE)
    assert model16.get_layer("aspp1_depthwise").dilation_rate == (6, 6)
    backbone = efficientnet.EfficientNetB0(weights=None, include_top=False, input_shape=SHAPE)
    with pytest.raises(ValueError, match="output_stride=16"):
        DeepLabV3Plus(backbone, classes=3)
    with pytest.raises(ValueError, match="divisible"):
        DeepLabV3Plus("efficientnetb0", input_shape=(70, 70, 3))


def test_heads_under_mixed_precision():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        for head in (DeepLabV3Plus, Unet):
            out = predict(head("lite0", classes=2, input_shape=SHAPE), np.zeros((1, *SHAPE), "float32"))
            assert out.dtype == np.float32 and np.isfinite(out).all()
    finally:
        keras.config.set_dtype_policy(previous)


SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np, keras, efficientnet
    from efficientnet.segmentation import DeepLabV3Plus, Unet
    head = {"deeplab": DeepLabV3Plus, "unet": Unet}[sys.argv[1]]
    model = head("lite0", classes=3, input_shape=(64, 64, 3), activation=None)
    efficientnet.load_weights(model, sys.argv[2])
    x = np.load(sys.argv[3])
    np.save(sys.argv[4], keras.ops.convert_to_numpy(model(x, training=False)))
    """
)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_heads_on_other_backends(backend, tmp_path):
    pytest.importorskip(backend)
    x = np.random.default_rng(0).uniform(0, 255, (1, *SHAPE)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    for kind, head in (("deeplab", DeepLabV3Plus), ("unet", Unet)):
        model = head("lite0", classes=3, input_shape=SHAPE, activation=None)
        weights = str(tmp_path / f"{kind}.h5")
        efficientnet.save_weights(model, weights)
        env = dict(os.environ, KERAS_BACKEND=backend, CUDA_VISIBLE_DEVICES="", JAX_PLATFORMS="cpu")
        out = tmp_path / f"{kind}_{backend}.npy"
        subprocess.run(
            [sys.executable, "-c", SCRIPT, kind, weights, str(tmp_path / "x.npy"), str(out)],
            check=True,
            env=env,
            timeout=600,
        )
        expected = predict(model, x)
        np.testing.assert_allclose(np.load(out), expected, atol=1e-4 * np.abs(expected).max(), rtol=1e-4)


@pytest.mark.slow
def test_example_reaches_a_mean_iou_well_above_chance(tmp_path):
    example = _example()
    model, history, (x_val, y_val) = example.train(epochs=6, train_count=480, verbose=False)
    chance = example.mean_iou(y_val, np.random.default_rng(0).integers(0, 4, y_val.shape))
    print(f"held-out mean IoU per epoch: {[round(h, 3) for h in history]}; random labels: {chance:.3f}")
    assert history[-1] > 0.5 > 3 * chance
    assert history[-1] > history[0]
    out = tmp_path / "figure.png"
    example.save_figure(model, x_val, y_val, str(out))
    assert out.stat().st_size > 5000


def test_segmentation_notebook_executes():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(ROOT / "examples" / "train_deeplab.ipynb", as_version=4)
    nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    text = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "mean IoU" in text


def test_segmentation_models_1_0_1_runs_on_this_package(monkeypatch):
    # Skip only when segmentation_models itself is not installed: an ImportError raised while it imports
    # this package (efficientnet.keras, efficientnet.tfkeras) is this package's bug and must fail here.
    monkeypatch.setenv("SM_FRAMEWORK", "tf.keras")
    try:
        import segmentation_models  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name != "segmentation_models":
            raise
        pytest.skip("segmentation_models is not installed")
    script = textwrap.dedent(
        """
        import numpy as np
        import segmentation_models as sm
        x = np.random.rand(2, 96, 96, 3).astype("float32")
        y = np.eye(2, dtype="float32")[np.random.randint(0, 2, (2, 96, 96))]
        for arch, backbone in ((sm.Unet, "efficientnetb3"), (sm.FPN, "efficientnetb0"),
                               (sm.Linknet, "efficientnetb0"), (sm.PSPNet, "efficientnetb0")):
            model = arch(backbone, encoder_weights=None, classes=2, activation="softmax", input_shape=(96, 96, 3))
            model.compile("adam", "categorical_crossentropy")
            loss = model.train_on_batch(x, y)
            assert np.isfinite(loss) and model.predict(x, verbose=0).shape == (2, 96, 96, 2)
            print(arch.__name__, "ok")
        """
    )
    env = dict(os.environ, SM_FRAMEWORK="tf.keras", TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count(" ok") == 4


def test_heads_share_keyword_only_arguments_with_one_meaning():
    import inspect

    shared = ["input_shape", "backbone_weights", "activation", "decoder_filters", "bn_momentum", "bn_epsilon", "name"]
    for head in (DeepLabV3Plus, Unet):
        params = inspect.signature(head).parameters
        assert list(params)[:2] == ["backbone", "classes"]
        assert all(params[n].kind is inspect.Parameter.KEYWORD_ONLY for n in list(params)[2:])
        assert set(shared) <= set(params)
    with pytest.raises(TypeError):
        DeepLabV3Plus("efficientnetb0", 3, 16)  # output_stride is keyword-only
    unet = Unet("efficientnetb0", classes=2, input_shape=SHAPE, bn_momentum=0.9, bn_epsilon=1e-4, activation=None)
    bn = unet.get_layer("decoder_stage0a_bn")
    assert (bn.momentum, bn.epsilon) == (0.9, 1e-4)
    deeplab = DeepLabV3Plus("efficientnetb0", classes=2, input_shape=SHAPE, bn_epsilon=1e-3, bn_momentum=0.95)
    head_bns = [layer for layer in deeplab.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert {(b.momentum, b.epsilon) for b in head_bns if not b.name.startswith(("block", "stem", "top"))} == {
        (0.95, 1e-3)
    }
