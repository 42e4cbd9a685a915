"""EfficientNetV2 progressive learning: the linear rule on the paper's Table 6, and a run that changes size and dropout.

automl's schedules (the default) are tested in test_v2_recipe_bn.py.
"""

import json

import pytest
from helpers import make_image_folder

pytest.importorskip("tensorflow")

from efficientnet.training import data as data_lib  # noqa: E402
from efficientnet.training import engine  # noqa: E402
from efficientnet.training.progressive import ProgressiveSchedule, progressive_schedule  # noqa: E402

# V2 paper, Table 6 (first and last stage), typed by hand: (size, RandAugment, Mixup, dropout).
PAPER_TABLE6 = {
    "efficientnetv2-s": ((128, 300), (5, 15), (0, 0), (0.1, 0.3)),
    "efficientnetv2-m": ((128, 380), (5, 20), (0, 0.2), (0.1, 0.4)),
    "efficientnetv2-l": ((128, 380), (5, 25), (0, 0.4), (0.1, 0.5)),
}


@pytest.mark.parametrize(
    "variant, sizes, magnitudes, mixups, dropouts",
    [
        # 4 stages, linear in between (sizes truncated).
        ("efficientnetv2-s", [128, 185, 242, 300], [5, 5 + 10 / 3, 5 + 20 / 3, 15], [0, 0, 0, 0],
         [0.1, 0.1 + 0.2 / 3, 0.1 + 0.4 / 3, 0.3]),
        ("efficientnetv2-m", [128, 212, 296, 380], [5, 10, 15, 20], [0, 0.2 / 3, 0.4 / 3, 0.2],
         [0.1, 0.2, 0.3, 0.4]),
        ("efficientnetv2-l", [128, 212, 296, 380], [5, 11.666666, 18.333333, 25], [0, 0.4 / 3, 0.8 / 3, 0.4],
         [0.1, 0.1 + 0.4 / 3, 0.1 + 0.8 / 3, 0.5]),
    ],
)  # fmt: skip
def test_linear_rule_on_the_paper_table(variant, sizes, magnitudes, mixups, dropouts):
    size, ram, mixup, dropout = PAPER_TABLE6[variant]
    schedule = ProgressiveSchedule(size=size, randaugment=ram, mixup=mixup, dropout=dropout, eval_size=384)
    stages = schedule.stages(epochs=350)
    assert [s.image_size for s in stages] == sizes
    assert [s.randaugment_magnitude for s in stages] == pytest.approx(magnitudes, abs=1e-5)
    assert [s.mixup_alpha for s in stages] == pytest.approx(mixups)
    assert [s.dropout_rate for s in stages] == pytest.approx(dropouts)
    assert [s.cutmix_alpha for s in stages] == [0, 0, 0, 0]
    assert [(s.first_epoch, s.end_epoch) for s in stages] == [(0, 88), (88, 175), (175, 262), (262, 350)]


def test_schedule_errors():
    with pytest.raises(ValueError, match="efficientnetv2-s.*not efficientnetb0"):
        progressive_schedule("b0")
    with pytest.raises(ValueError, match="at least 4"):
        progressive_schedule("efficientnetv2-s").stages(3)
    with pytest.raises(ValueError, match="at least 32"):
        ProgressiveSchedule(size=(16, 64), randaugment=(1, 2), mixup=(0, 0), dropout=(0.1, 0.2), eval_size=64)


def test_two_stage_run_changes_size_and_dropout_and_evaluates_at_the_eval_size(tmp_path, monkeypatch):
    folder = make_image_folder(tmp_path / "train", per_class=4)
    val = make_image_folder(tmp_path / "val", per_class=2, seed=3)
    schedule = ProgressiveSchedule(
        size=(48, 64), randaugment=(2, 10), mixup=(0.0, 0.2), dropout=(0.1, 0.3), eval_size=72, num_stages=2
    )
    seen = {"train": [], "eval": [], "dropout": [], "magnitude": []}
    train_dataset, eval_dataset = data_lib.train_dataset, data_lib.eval_dataset

    def spy_train(*args, **kwargs):
        seen["train"].append(kwargs["image_size"])
        return train_dataset(*args, **kwargs)

    def spy_eval(*args, **kwargs):
        seen["eval"].append(kwargs["image_size"])
        return eval_dataset(*args, **kwargs)

    monkeypatch.setattr(data_lib, "train_dataset", spy_train)
    monkeypatch.setattr(data_lib, "eval_dataset", spy_eval)

    class Probe:
        def __init__(self):
            import keras

            class Cb(keras.callbacks.Callback):
                def on_train_batch_begin(cb, batch, logs=None):
                    if batch == 0:
                        seen["dropout"].append(cb.model.get_layer("top_dropout").rate)

            self.callback = Cb()

    rec_seen = []
    from efficientnet.training import recipes

    original = recipes.Recipe.augmentation_layers

    def spy_aug(self, seed, magnitude=None):
        rec_seen.append(magnitude)
        return original(self, seed, magnitude)

    monkeypatch.setattr(recipes.Recipe, "augmentation_layers", spy_aug)
    result = engine.train(
        "lite0",
        folder,
        recipe="finetune",
        augmentation="randaugment",
        epochs=2,
        batch_size=4,
        val_data=val,
        progressive=schedule,
        callbacks=[Probe().callback],
        out_dir=tmp_path / "run",
        verbose=0,
    )
    assert seen["train"] == [48, 64]
    assert seen["dropout"] == pytest.approx([0.1, 0.3])
    assert rec_seen == pytest.approx([2.0, 10.0])
    assert seen["eval"] == [72]
    assert json.loads((tmp_path / "run" / "run.json").read_text())["eval_size"] == 72
    assert len(result.history["val_accuracy"]) == 2


def test_progressive_needs_enough_epochs_before_building(tmp_path):
    folder = make_image_folder(tmp_path / "train", per_class=2)
    with pytest.raises(ValueError, match="cannot hold 4 stages"):
        engine.train("efficientnetv2-s", folder, epochs=2, batch_size=2, progressive=True)
