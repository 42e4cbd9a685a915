"""The ``efficientnetv2`` recipe against google/automl's code, and explicit BN freezing for any model.

The expected values below are typed by hand from google/automl ``efficientnetv2/`` (read at
commit 6a54c87), not imported from the package.
"""

import warnings

import numpy as np
import pytest
from helpers import make_image_folder

pytest.importorskip("tensorflow")

import keras  # noqa: E402

import efficientnet  # noqa: E402
from efficientnet.training import engine, recipes  # noqa: E402
from efficientnet.training.progressive import progressive_schedule, schedule_from_recipe  # noqa: E402
from efficientnet.training.recipes import recipe  # noqa: E402

# automl effnetv2_configs.py lines 190-211 ``efficientnetv2_params``:
# (train_size, eval_size, dropout, randaug, mixup, aug); line 229: cutmix_alpha = mixup.
AUTOML_V2 = {
    "efficientnetv2-s": (300, 384, 0.2, 10, 0, "randaug"),
    "efficientnetv2-m": (384, 480, 0.3, 15, 0.2, "randaug"),
    "efficientnetv2-l": (384, 480, 0.4, 20, 0.5, "randaug"),
    "efficientnetv2-xl": (384, 512, 0.4, 20, 0.5, "randaug"),
    "efficientnetv2-b0": (192, 224, 0.2, 0, 0, "effnetv1_autoaug"),
    "efficientnetv2-b1": (192, 240, 0.2, 0, 0, "effnetv1_autoaug"),
    "efficientnetv2-b2": (208, 260, 0.3, 0, 0, "effnetv1_autoaug"),
    "efficientnetv2-b3": (240, 300, 0.3, 0, 0, "effnetv1_autoaug"),
}

# automl hparams.py base_config (line numbers) and utils.py build_optimizer defaults.
AUTOML_HPARAMS = {
    "bn_momentum": 0.9,  # hparams.py:228 model.bn_momentum
    "drop_connect_rate": 0.2,  # hparams.py:234 model.survival_prob=0.8
    "epochs": 350,  # hparams.py:247
    "base_learning_rate": 0.016,  # hparams.py:251 lr_base
    "decay_epochs": 2.4,  # hparams.py:252
    "decay_rate": 0.97,  # hparams.py:253
    "warmup_epochs": 5.0,  # hparams.py:254
    "ema_decay": 0.9999,  # hparams.py:256
    "l2_weight_decay": 1e-5,  # hparams.py:257
    "l2_exclude": ".*(bias|gamma|beta).*",  # hparams.py:259 weight_decay_exclude
    "label_smoothing": 0.1,  # hparams.py:260
    "batch_size": 4096,  # hparams.py:262
    "randaugment_layers": 2,  # hparams.py:280 ra_num_layers
    "rho": 0.9,  # utils.py:148 decay=0.9
    "epsilon": 1e-3,  # utils.py:149
    "momentum": 0.9,  # utils.py:150
    "progressive_stages": 4,  # effnetv2_configs.py:227 train.stages=4
}

# automl main.py lines 456-481 with data.ibase=128 (hparams.py:284), worked out by hand for 4 stages:
# size int(128 + (isize - 128) * (i + 1) / 4); ram np.linspace(5, ram, 4); mixup/cutmix
# np.linspace(0, alpha, 4); dropout not scheduled (the variant's).
AUTOML_STAGES = {
    "efficientnetv2-s": ([171, 214, 257, 300], [5, 6.6666667, 8.3333333, 10], [0, 0, 0, 0], 0.2),
    "efficientnetv2-m": ([192, 256, 320, 384], [5, 8.3333333, 11.6666667, 15], [0, 0.0666667, 0.1333333, 0.2], 0.3),
    "efficientnetv2-l": ([192, 256, 320, 384], [5, 10, 15, 20], [0, 0.1666667, 0.3333333, 0.5], 0.4),
    "efficientnetv2-b3": ([156, 184, 212, 240], [5, 3.3333333, 1.6666667, 0], [0, 0, 0, 0], 0.3),
}


@pytest.mark.parametrize("variant", sorted(AUTOML_V2))
def test_v2_recipe_equals_automl_configs(variant):
    train_size, eval_size, dropout, ram, mix, aug = AUTOML_V2[variant]
    r = recipe("efficientnetv2", variant=variant)
    assert (r.train_size, r.eval_size, r.dropout_rate) == (train_size, eval_size, dropout)
    assert (r.randaugment_magnitude, r.mixup_alpha, r.cutmix_alpha) == (ram, mix, mix)
    assert r.augmentation == {"randaug": "randaugment", "effnetv1_autoaug": "autoaugment"}[aug]
    # preprocessing.py:41 tf.image.resize (bilinear); preprocess_legacy.py:85 bicubic for effnetv1_*.
    assert r.interpolation == ("bilinear" if aug == "randaug" else "bicubic")
    assert {k: getattr(r, k) for k in AUTOML_HPARAMS} == AUTOML_HPARAMS
    assert r.learning_rate(4096) == pytest.approx(0.016 * 4096 / 256)  # main.py:157


@pytest.mark.parametrize("variant", sorted(AUTOML_STAGES))
def test_progressive_stages_equal_automl_and_end_at_the_recipe(variant):
    sizes, magnitudes, mixups, dropout = AUTOML_STAGES[variant]
    stages = progressive_schedule(variant).stages(epochs=350)
    assert [s.image_size for s in stages] == sizes
    assert [s.randaugment_magnitude for s in stages] == pytest.approx(magnitudes, abs=1e-6)
    assert [s.mixup_alpha for s in stages] == pytest.approx(mixups, abs=1e-6)
    assert [s.cutmix_alpha for s in stages] == pytest.approx(mixups, abs=1e-6)
    assert [s.dropout_rate for s in stages] == pytest.approx([dropout] * 4)
    # The same end point with progressive learning on or off, whichever way the schedule is built.
    r = recipe("efficientnetv2", variant=variant)
    last = stages[-1]
    end = (last.image_size, last.randaugment_magnitude, last.mixup_alpha, last.cutmix_alpha, last.dropout_rate)
    assert end == pytest.approx((r.train_size, r.randaugment_magnitude, r.mixup_alpha, r.cutmix_alpha, r.dropout_rate))
    derived = schedule_from_recipe(r, r.train_size, r.eval_size)
    assert derived == progressive_schedule(variant)
    assert derived.eval_size == AUTOML_V2[variant][1]


def test_v1_and_finetune_keep_their_rules():
    v1 = recipe("efficientnet")
    assert (v1.bn_momentum, v1.l2_exclude, v1.progressive_stages) == (0.99, None, 0)
    ft = recipe("finetune")
    assert (ft.freeze_bn, ft.progressive_stages) == (None, 0)


def test_weight_decay_exclusion_v2_kernels_only_v1_every_non_bn_weight():
    model = efficientnet.EfficientNetV2B0(weights=None, classes=3, input_shape=(32, 32, 3))
    v2 = recipe("efficientnetv2", variant="efficientnetv2-b0").apply_weight_decay(model)
    regularized = {v.path for v in model.weights if v.regularizer is not None}
    assert set(v2) == regularized and len(v2) > 50
    assert all(p.endswith("kernel") for p in v2)  # no bias, gamma or beta
    assert {"predictions/kernel", "stem_conv/kernel"} <= regularized
    assert "predictions/bias" not in regularized and "block4a_se_reduce/bias" not in regularized
    v1 = recipe("efficientnet").apply_weight_decay(model)
    regularized = {v.path for v in model.weights if v.regularizer is not None}
    assert set(v1) == regularized
    assert {"predictions/bias", "block4a_se_reduce/bias"} <= regularized  # tensorflow/tpu: non-BN, biases too
    assert not any(p.endswith(("gamma", "beta")) for p in v1)


def test_mixup_and_cutmix_each_take_half_of_the_batch():
    # automl datasets.py ``mixing``: with both alphas, MixUp on batch[:bs//2], CutMix on batch[bs//2:].
    n = 8
    images = np.broadcast_to(np.arange(n, dtype="float32")[:, None, None, None] * 30, (n, 24, 24, 3)).copy()
    labels = np.eye(n, dtype="float32")
    mix = recipe("efficientnetv2", mixup_alpha=1.0, cutmix_alpha=1.0).batch_augmentation(seed=3)
    out = mix({"images": keras.ops.convert_to_tensor(images), "labels": keras.ops.convert_to_tensor(labels)})
    out_images, out_labels = (keras.ops.convert_to_numpy(out[k]) for k in ("images", "labels"))
    assert out_images.shape == images.shape and out_labels.shape == labels.shape
    np.testing.assert_allclose(out_labels.sum(1), 1.0, atol=1e-5)
    assert np.abs(out_labels[:4, 4:]).max() == 0 and np.abs(out_labels[4:, :4]).max() == 0  # mixed within halves
    assert all(np.ptp(out_images[i]) < 1e-3 for i in range(4))  # MixUp: a blend of two flat images is flat
    assert any(np.ptp(out_images[i]) > 1 for i in range(4, 8))  # CutMix: a pasted box
    # one alpha alone: that layer alone, as before
    assert isinstance(recipe("efficientnetv2", mixup_alpha=0.2).batch_augmentation(0), keras.layers.MixUp)
    assert isinstance(recipe("efficientnetv2", cutmix_alpha=0.2).batch_augmentation(0), keras.layers.CutMix)


def _tiny_model():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2)(x)
    x = keras.layers.BatchNormalization(momentum=0.99)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def test_v2_recipe_runs_progressive_by_default_and_not_when_asked(tmp_path, monkeypatch):
    folder = make_image_folder(tmp_path / "train", per_class=2)
    seen = []

    def spy(self, seed, mixup_alpha=None, cutmix_alpha=None):
        seen.append((mixup_alpha, cutmix_alpha))
        return None

    monkeypatch.setattr(recipes.Recipe, "batch_augmentation", spy)
    kw = dict(recipe="efficientnetv2", batch_size=6, image_size=32, verbose=0, augmentation="none")
    kw.update(mixup_alpha=0.3, cutmix_alpha=0.6, warmup_epochs=0.0, drop_connect_rate=0.0)
    engine.train(_tiny_model(), folder, epochs=4, **kw)
    assert np.array(seen, dtype=float) == pytest.approx(np.array([[0, 0], [0.1, 0.2], [0.2, 0.4], [0.3, 0.6]]))
    seen.clear()
    engine.train(_tiny_model(), folder, epochs=1, progressive=False, **kw)
    assert seen == [(None, None)]  # the recipe's own alphas
    seen.clear()
    with pytest.warns(UserWarning, match="needs at least 4 epochs"):
        engine.train(_tiny_model(), folder, epochs=1, **kw)
    assert seen == [(None, None)]


# --- BN freezing and the recipe's settings on a keras.Model ------------------------------------


def _bn_stats(model):
    return [
        np.array(w) for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
        for w in (layer.moving_mean, layer.moving_variance)
    ]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("bn") / "train", per_class=2)


@pytest.mark.parametrize("freeze_bn, frozen", [(None, True), (False, False)])
def test_user_model_bn_follows_the_recipe(tiny_folder, freeze_bn, frozen):
    model = efficientnet.EfficientNetLite0(weights=None, classes=3, input_shape=(None, None, 3))
    before = _bn_stats(model)
    kw = {} if freeze_bn is None else {"freeze_bn": freeze_bn}
    engine.train(model, tiny_folder, recipe="finetune", epochs=1, batch_size=6, image_size=32, verbose=0, **kw)
    after = _bn_stats(model)
    unchanged = all(np.array_equal(a, b) for a, b in zip(before, after))
    assert unchanged == frozen
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert all(layer.trainable == (not frozen) for layer in bns)


@pytest.mark.slow
def test_named_variant_bn_follows_freeze_bn(tiny_folder):
    # finetune's freeze_bn=None trains BN from scratch; freeze_bn=True keeps it frozen there too.
    kw = dict(recipe="finetune", weights=None, epochs=1, batch_size=6, image_size=32, verbose=0)
    trained = engine.train("lite0", tiny_folder, **kw).model
    assert all(layer.trainable for layer in trained.layers if isinstance(layer, keras.layers.BatchNormalization))
    frozen = engine.train("lite0", tiny_folder, freeze_bn=True, **kw).model
    bns = [layer for layer in frozen.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns and not any(layer.trainable for layer in bns)
    assert all(np.allclose(np.array(layer.moving_variance), 1.0) for layer in bns)  # never updated


def test_user_model_gets_the_recipes_momentum_dropout_and_stochastic_depth(tiny_folder):
    model = efficientnet.EfficientNetLite0(weights=None, classes=3, input_shape=(None, None, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every setting has its layer: no warning
        engine.train(
            model, tiny_folder, recipe="finetune", epochs=1, batch_size=6, image_size=32, verbose=0,
            bn_momentum=0.5, dropout_rate=0.35, drop_connect_rate=0.4,
        )  # fmt: skip
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns and all(layer.momentum == 0.5 for layer in bns)
    assert model.get_layer("top_dropout").rate == pytest.approx(0.35)
    drops = [layer.rate for layer in model.layers if layer.name.endswith("_drop")]
    reference = efficientnet.EfficientNetLite0(weights=None, classes=3, drop_connect_rate=0.4)
    assert drops == pytest.approx([layer.rate for layer in reference.layers if layer.name.endswith("_drop")])
    assert len(drops) > 5


def test_user_model_without_the_layers_warns_naming_the_settings(tiny_folder):
    model = _tiny_model()
    with pytest.warns(UserWarning) as record:
        engine.train(
            model, tiny_folder, recipe="finetune", epochs=1, batch_size=6, image_size=32, verbose=0,
            dropout_rate=0.3, bn_momentum=0.9,
        )  # fmt: skip
    text = " ".join(str(w.message) for w in record)
    assert "dropout_rate=0.3" in text and "drop_connect_rate=0.2" in text and "bn_momentum" not in text
    assert model.layers[3].momentum == 0.9


def test_weights_argument_is_refused_for_a_keras_model(tiny_folder):
    model = efficientnet.EfficientNetLite0(weights=None, classes=3, input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="weights= applies to a variant name"):
        engine.train(model, tiny_folder, weights="imagenet", epochs=1, batch_size=6)


@pytest.mark.parametrize(
    "flags, expected",
    [([], {}), (["--freeze-bn"], {"freeze_bn": True}), (["--no-freeze-bn"], {"freeze_bn": False})],
)
def test_cli_freeze_bn_and_progressive_flags_reach_train(monkeypatch, tmp_path, flags, expected):
    from efficientnet.cli import main
    from efficientnet.training import engine as engine_module

    calls = []

    class Result:
        history = {"loss": [1.0]}
        weights_path = "x"
        class_names = ("a",)

    def fake_train(*args, **kwargs):
        calls.append(kwargs)
        return Result()

    monkeypatch.setattr(engine_module, "train", fake_train)
    assert main(["train", str(tmp_path), "--out", str(tmp_path / "r"), *flags, "--no-progressive"]) == 0
    assert {k: v for k, v in calls[0].items() if k == "freeze_bn"} == expected
    assert calls[0]["progressive"] is False
    assert main(["train", str(tmp_path), "--out", str(tmp_path / "r")]) == 0
    assert calls[1]["progressive"] is None  # the recipe's
    rec = recipe("finetune", **expected)
    assert rec.freeze_bn == expected.get("freeze_bn")
