"""Recipes as data, image folders and the tf.data pipelines."""

import os
import warnings

import numpy as np
import pytest
from helpers import make_image_folder

tf = pytest.importorskip("tensorflow")

from efficientnet.training import data  # noqa: E402
from efficientnet.training.recipes import V2_PROGRESSIVE, V2_TRAINING, recipe  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("photos"))


# --- recipes ------------------------------------------------------------------------------------


def test_efficientnet_recipe_holds_the_reference_numbers():
    r = recipe("efficientnet")
    assert (r.optimizer_name, r.rho, r.momentum, r.epsilon) == ("rmsprop_tf", 0.9, 0.9, 1e-3)
    assert (r.base_learning_rate, r.lr_batch_size, r.warmup_epochs) == (0.016, 256, 5.0)
    assert (r.schedule, r.decay_epochs, r.decay_rate) == ("exponential", 2.4, 0.97)
    assert (r.l2_weight_decay, r.decoupled_weight_decay, r.ema_decay) == (1e-5, 0.0, 0.9999)
    assert (r.label_smoothing, r.bn_momentum, r.drop_connect_rate) == (0.1, 0.99, 0.2)
    assert (r.augmentation, r.random_crop, r.crop_padding, r.interpolation) == ("autoaugment", True, 32, "bicubic")
    assert r.learning_rate(4096) == pytest.approx(0.256)
    assert r.learning_rate(32) == pytest.approx(0.002)


def test_v2_recipe_takes_the_variant_table():
    r = recipe("efficientnetv2", variant="efficientnetv2-m")
    assert (r.train_size, r.eval_size, r.dropout_rate) == (384, 480, 0.3)
    assert (r.augmentation, r.randaugment_magnitude, r.mixup_alpha) == ("randaugment", 15.0, 0.2)
    b0 = recipe("efficientnetv2", variant="efficientnetv2-b0")
    assert (b0.train_size, b0.eval_size, b0.augmentation) == (192, 224, "autoaugment")
    assert V2_TRAINING["efficientnetv2-s"] == (300, 384, 0.2, 10, 0.0, 0.0, "randaugment")
    assert V2_PROGRESSIVE["efficientnetv2-l"]["size"] == (128, 384)  # automl: ibase 128 to train size
    assert b0.ema_decay == 0.9999 and b0.optimizer_name == "rmsprop_tf"


def test_finetune_recipe_and_overrides():
    r = recipe("finetune")
    assert (r.base_learning_rate, r.batch_size, r.epochs, r.weights) == (1e-4, 32, 5, "imagenet")
    assert r.learning_rate(256) == 1e-4  # not scaled by batch
    assert "AdamW" in r.notes
    r2 = recipe("finetune", epochs=3, freeze_epochs=1)
    assert (r2.epochs, r2.freeze_epochs) == (3, 1)
    assert recipe("finetune").epochs == 5  # immutable
    with pytest.raises(AttributeError):
        r.epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"nonsense": 1}, "Unknown recipe field"),
        ({"augmentation": "autoaug"}, "augmentation"),
        ({"label_smoothing": 1.5}, "label_smoothing"),
        ({"base_learning_rate": -1.0}, "base_learning_rate"),
        ({"ema_decay": 1.0}, "ema_decay"),
        ({"schedule": "linear"}, "schedule"),
    ],
)
def test_bad_recipe_overrides(kwargs, message):
    with pytest.raises(ValueError, match=message):
        recipe("efficientnet", **kwargs)


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(ValueError, match="finetune"):
        recipe("imagenet")


def test_loss_has_label_smoothing():
    import keras

    loss = recipe("efficientnet").loss()
    y = np.eye(4, dtype="float32")[[0, 1]]
    p = np.full((2, 4), 0.25, "float32")
    p[:, 0] = 0.7
    p[:, 1:] = 0.1
    # smoothed target: 0.1/4 everywhere plus 0.9 on the true class.
    target = y * 0.9 + 0.025
    expected = float(np.mean(-(target * np.log(p)).sum(-1)))
    assert float(loss(y, p)) == pytest.approx(expected, rel=1e-5)
    assert isinstance(recipe("efficientnet", focal_gamma=2.0).loss(), keras.losses.CategoricalFocalCrossentropy)


# --- image folders ------------------------------------------------------------------------------


def test_scan_image_folder(folder):
    f = data.scan_image_folder(folder)
    assert f.class_names == ("cat", "coffee", "rocket")
    assert len(f) == 24 and f.counts() == {"cat": 8, "coffee": 8, "rocket": 8}
    assert f.labels[:8] == (0,) * 8 and f.labels[-1] == 2


def _copy(folder, tmp_path):
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(folder, dst)
    return dst


def test_missing_and_non_folder(tmp_path):
    with pytest.raises(data.DatasetError, match="does not exist"):
        data.scan_image_folder(tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(data.DatasetError, match="is a file"):
        data.scan_image_folder(tmp_path / "file.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DatasetError, match="no class sub-folders"):
        data.scan_image_folder(tmp_path / "empty")


def test_loose_images_are_named(folder, tmp_path):
    import shutil

    (tmp_path / "loose").mkdir()
    shutil.copy(os.path.join(folder, "cat", "0.jpg"), tmp_path / "loose" / "a.jpg")
    with pytest.raises(data.DatasetError, match="1 loose images"):
        data.scan_image_folder(tmp_path / "loose")


def test_one_class_and_empty_class(folder, tmp_path):
    root = _copy(folder, tmp_path)
    import shutil

    shutil.rmtree(root / "coffee")
    shutil.rmtree(root / "rocket")
    with pytest.raises(data.DatasetError, match="only one class"):
        data.scan_image_folder(root)
    (root / "dog").mkdir()
    (root / "dog" / "notes.txt").write_text("no images here")
    with pytest.raises(data.DatasetError, match="has no images"):
        data.scan_image_folder(root)


def test_corrupt_file_is_skipped_with_a_warning_or_stops(folder, tmp_path):
    root = _copy(folder, tmp_path)
    bad = root / "cat" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.warns(UserWarning, match="broken.jpg"):
        f = data.scan_image_folder(root)
    assert len(f) == 24 and str(bad) in f.skipped
    with pytest.raises(data.DatasetError, match="broken.jpg.*on_bad_file='skip'"):
        data.scan_image_folder(root, on_bad_file="error")


def test_non_image_file_is_skipped(folder, tmp_path):
    root = _copy(folder, tmp_path)
    (root / "cat" / "readme.txt").write_text("hello")
    with pytest.warns(UserWarning, match="without an image extension"):
        f = data.scan_image_folder(root)
    assert len(f) == 24
    with pytest.raises(data.DatasetError, match="without an image extension"):
        data.scan_image_folder(root, on_bad_file="error")


def test_classes_must_match_the_expected_ones(folder):
    with pytest.raises(data.DatasetError, match="not trained on"):
        data.scan_image_folder(folder, class_names=["cat", "coffee"])
    f = data.scan_image_folder(folder, class_names=["rocket", "cat", "coffee", "dog"])
    cat = [label for path, label in zip(f.files, f.labels) if os.sep + "cat" + os.sep in path]
    assert cat == [1] * 8 and 3 not in f.labels  # cat is label 1 in the given order; "dog" has no folder


def test_grey_and_gif_images_decode_to_rgb(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, mode, ext in (("a", "L", "png"), ("b", "RGB", "gif"), ("c", "RGB", "bmp")):
        (tmp_path / cls).mkdir()
        array = rng.integers(0, 255, (40, 50) if mode == "L" else (40, 50, 3), dtype=np.uint8)
        Image.fromarray(array, mode).save(tmp_path / cls / f"x.{ext}")
    f = data.scan_image_folder(tmp_path)
    images = [x for x, _ in data.eval_dataset(f, image_size=32, batch_size=3)][0]
    assert images.shape == (3, 32, 32, 3)
    grey = np.asarray(images[0])
    np.testing.assert_array_equal(grey[..., 0], grey[..., 1])


def test_split_keeps_every_class(folder):
    f = data.scan_image_folder(folder)
    train, held = data.split_image_folder(f, 0.25, seed=0)
    assert len(train) == 18 and len(held) == 6
    assert set(train.files).isdisjoint(held.files)
    assert sorted(set(held.labels)) == [0, 1, 2]
    with pytest.raises(ValueError, match="split"):
        data.split_image_folder(f, 1.5)


# --- pipelines ----------------------------------------------------------------------------------


def test_eval_crop_is_the_reference_centre_crop():
    image = np.arange(100 * 60 * 3, dtype=np.float32).reshape(100, 60, 3) % 255
    out = data.center_crop_and_resize(tf.constant(image), 28, crop_padding=32, interpolation="nearest")
    # size/(size+32) of the shorter side: int(28/60*60) = 28, offsets ((100-28)+1)//2 = 36, ((60-28)+1)//2 = 16.
    np.testing.assert_array_equal(np.asarray(out), image[36:64, 16:44])


def test_random_crop_covers_the_area_range():
    image = tf.zeros((200, 300, 3), tf.uint8)
    sizes = []
    for i in range(40):
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(image),
            bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
            seed=[0, i],
            min_object_covered=0.1,
            aspect_ratio_range=(3 / 4, 4 / 3),
            area_range=(0.08, 1.0),
            max_attempts=10,
        )
        sizes.append(int(size[0]) * int(size[1]) / (200 * 300))
        out = data.random_crop_and_resize(image, 64, tf.constant([0, i], tf.int64))
        assert out.shape == (64, 64, 3)
    assert min(sizes) >= 0.08 - 1e-3 and max(sizes) <= 1.0


def test_train_batches_are_reproducible_per_epoch(folder):
    f = data.scan_image_folder(folder)

    def batches(epoch, seed=0):
        return [(np.asarray(x), np.asarray(y)) for x, y in data.train_dataset(
            f, image_size=48, batch_size=8, seed=seed, epoch=epoch)]  # fmt: skip

    a, b, c, d = batches(0), batches(0), batches(1), batches(0, seed=1)
    assert len(a) == 3 and a[0][0].shape == (8, 48, 48, 3) and a[0][1].shape == (8, 3)
    assert a[0][0].dtype == np.float32 and a[0][0].min() >= 0 and a[0][0].max() <= 255
    for (x1, y1), (x2, y2) in zip(a, b):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(a[0][0], c[0][0]) and not np.array_equal(a[0][0], d[0][0])
    # every image once per epoch: the one-hot labels sum to the class counts
    np.testing.assert_array_equal(sum(y.sum(0) for _, y in a).astype(int), [8, 8, 8])


def test_cache_gives_the_same_epoch_twice(folder, tmp_path):
    f = data.scan_image_folder(folder)
    prefix = str(tmp_path / "cache")
    first = [
        np.asarray(x) for x, _ in data.train_dataset(f, image_size=40, batch_size=8, seed=0, epoch=2, cache=prefix)
    ]
    again = [
        np.asarray(x) for x, _ in data.train_dataset(f, image_size=40, batch_size=8, seed=0, epoch=2, cache=prefix)
    ]
    assert any(name.startswith("cache") for name in os.listdir(tmp_path))
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x, y)


def test_tf_data_source(folder):
    images = np.random.default_rng(0).integers(0, 255, (10, 50, 40, 1), dtype=np.uint8)
    labels = np.arange(10) % 2
    source = data.tensor_source(tf.data.Dataset.from_tensor_slices((images, labels)), ["even", "odd"])
    assert len(source) == 10 and source.num_classes == 2
    batch = next(iter(data.train_dataset(source, image_size=32, batch_size=4, seed=0, epoch=0)))
    assert batch[0].shape == (4, 32, 32, 3) and batch[1].shape == (4, 2)
    with pytest.raises(data.DatasetError, match="unbatch"):
        data.tensor_source(tf.data.Dataset.from_tensor_slices((images, labels)).batch(2), 2)
    with pytest.raises(data.DatasetError, match="integer class"):
        data.tensor_source(tf.data.Dataset.from_tensor_slices((images, labels.astype("float32"))), 2)


def test_fewer_images_than_a_batch(folder):
    f = data.scan_image_folder(folder)
    with pytest.raises(data.DatasetError, match="fewer than one batch"):
        data.train_dataset(f, image_size=32, batch_size=64, seed=0, epoch=0)


def test_epoch_seeds_differ_and_are_stable():
    seeds = {data.epoch_seed(0, e) for e in range(100)}
    assert len(seeds) == 100
    assert data.epoch_seed(3, 7) == data.epoch_seed(3, 7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert 0 <= data.epoch_seed(2**40, 1) < 2**31
