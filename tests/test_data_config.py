"""One data config per weight set: registry, ``predict``, ``evaluate``, runs and export read the same record."""

import json
import os
import shutil

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import tensorflow as tf  # noqa: E402

from efficientnet import cli, preprocessing, registry  # noqa: E402
from efficientnet.preprocessing import DataConfig, center_crop_and_resize, data_config  # noqa: E402
from efficientnet.training import data as data_lib  # noqa: E402
from efficientnet.training import engine  # noqa: E402
from efficientnet.weights.registry import REGISTRY  # noqa: E402


def _photo(path, shape=(90, 130)):
    """A non-square JPEG crop of the sample photo: the centre crop's padding matters."""
    from PIL import Image

    image = preprocessing.load_image(preprocessing.sample_image_path())[40 : 40 + shape[0], 60 : 60 + shape[1]]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def _decode(path):
    return data_lib.decode_image(tf.io.read_file(path)).numpy()


def _run_cli(capsys, *args):
    capsys.readouterr()
    assert cli.main(list(args)) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A one-epoch Lite0 run at 48 px whose classifier is then made decisive (random, not zero-started)."""
    from efficientnet.weights import save_weights

    root = tmp_path_factory.mktemp("dataconfig")
    for cls in ("cat", "coffee"):
        for i in range(2):
            _photo(str(root / "train" / cls / f"{i}.jpg"), shape=(80 + 10 * i, 100))
    out = root / "run"
    result = engine.train(
        "efficientnet-lite0", str(root / "train"), epochs=1, image_size=48, batch_size=2, out_dir=out, verbose=0
    )
    head = result.model.get_layer("predictions")
    head.kernel.assign(np.random.default_rng(0).normal(0, 0.3, tuple(head.kernel.shape)).astype("float32"))
    save_weights(result.model, str(out / engine.WEIGHTS_FILE))
    # The sample photo itself: PIL and TensorFlow decode this JPEG differently (up to 6 levels), so
    # predict must read images as the evaluation pipeline does.
    image = str(root / "one" / "cat" / "photo.jpg")
    os.makedirs(os.path.dirname(image))
    shutil.copy(preprocessing.sample_image_path(), image)
    return out, os.path.dirname(os.path.dirname(image)), image


def test_run_records_its_data_config(tiny_run):
    out, _, _ = tiny_run
    run = json.loads((out / "run.json").read_text())
    config = DataConfig.from_dict(run["data_config"])
    expected = data_config("lite0").replace(weights="run", train_size=48, eval_size=48)
    assert config == expected
    assert (config.crop_padding, config.crop_fraction, config.interpolation) == (32, None, "bicubic")
    assert config.mean == (127.0, 127.0, 127.0) and config.std == (128.0, 128.0, 128.0)
    # A run written before data_config was recorded reads the same from its older keys.
    del run["data_config"]
    assert engine.run_data_config(run) == config


def test_predict_run_evaluate_and_the_eval_transform_agree(tiny_run, capsys):
    out, folder, image = tiny_run
    predicted = _run_cli(capsys, "predict", image, "--run", str(out), "--json")
    assert predicted["data_config"]["eval_size"] == 48
    probs = np.asarray(predicted["images"][0]["probabilities"])

    evaluated = engine.evaluate(str(out), folder)
    assert evaluated.num_images == 1

    model, _, run = engine.load_run(out)
    config = engine.run_data_config(run)
    x = config.eval_transform(_decode(image))
    assert x.shape == (48, 48, 3)
    direct = np.asarray(model.predict(x[None], verbose=0))[0]

    assert abs(probs[0] - 0.5) > 1e-3  # a decisive head: a wrong crop would show
    np.testing.assert_allclose(probs, direct, rtol=0, atol=1e-5)
    np.testing.assert_allclose(evaluated.probabilities[0], direct, rtol=0, atol=1e-5)
    # The command line's evaluate gives the same probability of the true class (its loss).
    figures = _run_cli(capsys, "evaluate", folder, "--run", str(out), "--json")
    assert np.exp(-figures["loss"]) == pytest.approx(direct[0], abs=1e-5)


def test_evaluate_weights_of_a_run_uses_the_runs_size(tiny_run, capsys, tmp_path):
    out, folder, _ = tiny_run
    weights = str(out / engine.WEIGHTS_FILE)
    by_run = _run_cli(capsys, "evaluate", folder, "--run", str(out), "--json")
    by_weights = _run_cli(capsys, "evaluate", folder, "--model", "lite0", "--weights", weights, "--json")
    assert by_weights["loss"] == pytest.approx(by_run["loss"], abs=1e-6)
    at_224 = engine.evaluate("lite0", folder, weights=weights, image_size=224)
    assert abs(at_224.loss - by_run["loss"]) > 1e-4  # the size matters for this image
    # Outside its run directory nothing says the size: refused, unless given.
    alone = tmp_path / "alone.weights.h5"
    shutil.copy(weights, alone)
    shutil.copy(out / engine.CLASSES_FILE, tmp_path / engine.CLASSES_FILE)
    with pytest.raises(ValueError, match="Cannot tell the evaluation size.*--image-size"):
        engine.evaluate("lite0", folder, weights=str(alone))
    assert engine.evaluate("lite0", folder, weights=str(alone), image_size=48).loss == pytest.approx(
        by_run["loss"], abs=1e-6
    )


class _Spy:
    """Stands in for the model: records what predict feeds it."""

    def __init__(self):
        self.inputs = []

    def predict(self, x, verbose=0):
        self.inputs.append(np.asarray(x))
        return np.full((len(x), 1000), 1e-3, "float32")


@pytest.mark.parametrize(
    "model, size, fraction",
    [("efficientnetv2-b0", 224, 1.0), ("efficientnetv2-s", 384, 1.0), ("b0", 224, 224 / 256), ("lite0", 224, 0.875)],
)
def test_predict_uses_the_models_eval_crop(monkeypatch, capsys, tmp_path, model, size, fraction):
    from efficientnet import builder

    spy = _Spy()
    monkeypatch.setattr(builder, "EfficientNet", lambda *a, **k: spy)
    image = _photo(str(tmp_path / "photo.jpg"))
    predicted = _run_cli(capsys, "predict", image, "--model", model, "--json")
    assert predicted["data_config"]["eval_size"] == size
    (fed,) = spy.inputs
    expected = center_crop_and_resize(_decode(image), size, crop_fraction=fraction)
    np.testing.assert_array_equal(fed[0], expected)
    padded = center_crop_and_resize(_decode(image), size, crop_padding=32)
    assert (fraction == pytest.approx(size / (size + 32))) == np.array_equal(fed[0], padded)


def test_registry_reads_the_data_config():
    for info in registry.list_models():
        config = info.data_config
        assert (info.default_size, info.train_size, info.interpolation) == (
            config.eval_size,
            config.train_size,
            config.interpolation,
        )
        assert info.crop == round(config.crop, 4)
        expected = {"v1": 0.875 if info.default_size == 224 else None, "v2": 1.0, "xception": 0.903}.get(info.family)
        if expected is not None:
            assert config.crop == pytest.approx(expected)
        if info.family in ("v1", "lite"):
            assert config.crop == pytest.approx(info.default_size / (info.default_size + 32))
    for (variant, weight_set, top), spec in REGISTRY.items():
        config = data_config(variant, weight_set, include_top=top)
        assert (config.weights, config.normalisation, config.padding) == (weight_set, spec.preprocessing, spec.padding)
        norm = preprocessing.MODES[spec.preprocessing]
        assert (config.mean, config.std) == (norm.mean, norm.std)
    assert data_config("efficientnetv2-s", "imagenet").normalisation == "v2"
    assert data_config("efficientnetv2-b0", "imagenet").normalisation == "torch"
    assert data_config("lite0", "imagenet").normalisation == "lite"
    assert data_config("xception65").normalisation == "tf"


def test_public_crop_is_the_tf_pipelines():
    image = preprocessing.load_image(preprocessing.sample_image_path())
    for kwargs in ({}, {"crop_fraction": 1.0}, {"crop_padding": 0, "interpolation": "bilinear"}):
        out = center_crop_and_resize(image, 72, **kwargs)
        assert isinstance(out, np.ndarray) and out.dtype == np.float32
        fraction = kwargs.get("crop_fraction")
        tf_out = data_lib.center_crop_and_resize(
            tf.constant(image),
            72,
            crop_padding=kwargs.get("crop_padding", 32),
            crop_fraction=fraction,
            interpolation=kwargs.get("interpolation", "bicubic"),
        )
        np.testing.assert_array_equal(out, tf_out.numpy())
    grey = center_crop_and_resize(image[..., 0], 40)
    np.testing.assert_array_equal(grey, center_crop_and_resize(image[..., :1], 40)[..., 0])


def test_one_image_extension_list_and_crop_padding():
    assert data_lib.IMAGE_EXTENSIONS is preprocessing.IMAGE_EXTENSIONS
    assert data_lib.CROP_PADDING is preprocessing.CROP_PADDING
    assert not hasattr(registry, "CROP_PADDING")


def test_int8_calibration_crops_with_the_data_config(tmp_path):
    from efficientnet import export

    for name in ("a.jpg", "b.gif", "c.txt"):
        if name.endswith("txt"):
            (tmp_path / name).write_text("not an image")
        else:
            _photo(str(tmp_path / name))
    config = data_config("efficientnetv2-b0")
    batch = export._calibration_batch(str(tmp_path), 64, 8, config)
    assert batch.shape == (2, 64, 64, 3)  # .gif read as the pipelines read it, .txt left out
    photo = preprocessing.load_image(str(tmp_path / "a.jpg"))
    np.testing.assert_array_equal(batch[0], config.eval_transform(photo, 64))
    np.testing.assert_array_equal(export._calibration_batch(str(tmp_path), 64, 8)[0], center_crop_and_resize(photo, 64))


def test_data_config_round_trip_and_checks():
    config = data_config("xception65")
    assert DataConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="exactly one"):
        config.replace(crop_padding=32)
    with pytest.raises(ValueError, match="Unknown data config keys"):
        DataConfig.from_dict({**config.to_dict(), "extra": 1})
