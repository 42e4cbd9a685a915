"""The recipe fields behind the fine-tuning ablation and the scratch baseline reach the code they name."""

import keras
import numpy as np
import pytest
from helpers import make_image_folder

from efficientnet.training import data
from efficientnet.training.engine import build_classifier
from efficientnet.training.recipes import recipe


def test_scratch_recipe_is_fit_for_training_from_random_initialisation():
    rec = recipe("scratch")
    assert rec.weights is None and rec.freeze_bn is False and rec.zero_head is False
    assert rec.bn_momentum == 0.9 and rec.warmup_epochs == 1.0 and rec.base_learning_rate == 1e-3
    # The warm-up is real: the learning rate starts at 0 and peaks after one epoch.
    schedule = rec.schedule_for(steps_per_epoch=10, global_batch_size=32, epochs=5)
    assert float(schedule(0)) == 0.0
    assert float(schedule(10)) == pytest.approx(1e-3, rel=1e-5)
    assert float(schedule(49)) < 1e-4


@pytest.mark.parametrize("zero_head", [True, False])
def test_zero_head_sets_the_new_classifier(zero_head):
    net = build_classifier("efficientnet-lite0", 3, recipe=recipe("finetune", zero_head=zero_head))
    kernel = keras.ops.convert_to_numpy(net.get_layer("predictions").kernel)
    if zero_head:
        assert not kernel.any()
    else:
        # The reference initialiser: VarianceScaling(1/3, fan_out, uniform) bounds |w| by sqrt(1/classes).
        assert kernel.std() > 0.1 and np.abs(kernel).max() <= np.sqrt(1 / 3) + 1e-6


def test_crop_area_min_bounds_the_random_crop(tmp_path, monkeypatch):
    folder = data.scan_image_folder(make_image_folder(tmp_path, per_class=4))
    seen = []
    original = data.random_crop_and_resize

    def spy(image, size, seed, *, area_range=(0.08, 1.0), **kwargs):
        seen.append(area_range)
        return original(image, size, seed, area_range=area_range, **kwargs)

    monkeypatch.setattr(data, "random_crop_and_resize", spy)
    rec = recipe("finetune", crop_area_min=0.5)
    ds = data.train_dataset(folder, image_size=32, batch_size=4, seed=0, epoch=0, crop_area_min=rec.crop_area_min)
    next(iter(ds))
    assert seen and set(seen) == {(0.5, 1.0)}
    with pytest.raises(ValueError, match="crop_area_min"):
        recipe("finetune", crop_area_min=0.0)


def test_crop_area_min_one_falls_back_to_the_centre_crop(tmp_path):
    import tensorflow as tf

    image = tf.constant(np.random.default_rng(0).integers(0, 255, (40, 60, 3)), tf.float32)
    crops = [
        data.random_crop_and_resize(image, 32, tf.constant([s, 1], tf.int64), area_range=(1.0, 1.0)).numpy()
        for s in range(3)
    ]
    # No box below the whole image fits: the reference falls back to its centre crop, every time.
    centre = data.center_crop_and_resize(image, 32).numpy()
    for crop in crops:
        np.testing.assert_allclose(crop, centre, atol=1e-4)


def test_train_passes_crop_area_min_to_the_pipeline(tmp_path, monkeypatch):
    from efficientnet.training import train

    class Stop(Exception):
        pass

    def spy(source, **kwargs):
        raise Stop(kwargs)

    monkeypatch.setattr(data, "train_dataset", spy)
    with pytest.raises(Stop) as stop:
        train(
            "efficientnet-lite0",
            make_image_folder(tmp_path, per_class=4),
            weights=None,
            crop_area_min=0.3,
            epochs=1,
            batch_size=4,
            image_size=32,
            verbose=0,
        )
    assert stop.value.args[0]["crop_area_min"] == 0.3


@pytest.mark.parametrize(
    ("recipe_name", "model", "fraction"),
    [
        ("finetune", "efficientnetv2-b0", 1.0),  # V2 evaluates the whole image (the registry's crop)
        ("efficientnetv2", "efficientnetv2-s", 1.0),
        ("finetune", "efficientnet-lite0", 224 / 256),
        ("scratch", "efficientnet-b0", 224 / 256),
        ("efficientnet", "efficientnetv2-b0", 224 / 256),  # the V1 recipe sets tpu's padding 32 itself
    ],
)
def test_runs_evaluate_with_the_models_own_crop_unless_the_recipe_sets_one(recipe_name, model, fraction):
    from efficientnet.training.engine import eval_data_config

    rec = recipe(recipe_name, variant=model)
    config = eval_data_config(rec, model, 224, 224)
    assert config.crop_fraction_at(224) == pytest.approx(fraction)
    assert config.interpolation == rec.interpolation
    assert recipe(recipe_name).replace(crop_padding=0).crop_padding == 0
    assert eval_data_config(recipe(recipe_name, crop_padding=0), model, 224, 224).crop_fraction_at(224) == 1.0
