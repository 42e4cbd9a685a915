"""weights='imagenet' through the registry, served by a loopback HTTP server standing in for the real host."""

import dataclasses
import hashlib
import http.server
import os
import threading
from types import MappingProxyType

import keras
import numpy as np
import pytest
from helpers import assert_unchanged, images, predict, randomize_statistics, weights_snapshot

import efficientnet
from efficientnet.weights import WeightsDownloadError, registry

SHAPE = (64, 64, 3)


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict = {}
    mode = "ok"
    requests: list = []

    def do_GET(self):  # noqa: N802
        name = self.path.rsplit("/", 1)[-1]
        type(self).requests.append(name)
        data = self.files.get(name)
        if self.mode in ("404", "500") or data is None:
            self.send_error(int(self.mode) if self.mode != "ok" else 404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.mode == "cut":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.close()
            return
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.files, _Handler.mode, _Handler.requests = {}, "ok", []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd, _Handler
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def keras_b0_files(tmp_path_factory):
    """keras.applications' B0 (random weights) as top and notop legacy h5 files."""
    out = {}
    for include_top, suffix in ((True, ""), (False, "_notop")):
        keras.backend.clear_session()
        model = keras.applications.EfficientNetB0(
            weights=None, include_top=include_top, input_shape=SHAPE, classifier_activation=None
        )
        randomize_statistics(model)
        path = tmp_path_factory.mktemp("ka") / f"efficientnetb0{suffix}.h5"
        efficientnet.save_weights(model, str(path))
        out[include_top] = (path.read_bytes(), model)
    return out


@pytest.fixture
def environment(tmp_path, monkeypatch, server):
    """An empty Keras cache, the registry pointed at the loopback server, and hashes of the served files."""
    httpd, handler = server
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("EFFICIENTNET_WEIGHTS_URL", f"http://127.0.0.1:{httpd.server_address[1]}/mirror")
    monkeypatch.delenv("EFFICIENTNET_WEIGHTS_DIR", raising=False)

    def serve(files, hashes=None):
        handler.files = files
        entries = dict(registry.REGISTRY)
        for key, spec in entries.items():
            if spec.file_name in files:
                digest = (hashes or {}).get(spec.file_name) or hashlib.md5(files[spec.file_name]).hexdigest()
                entries[key] = dataclasses.replace(spec, file_hash=digest)
        monkeypatch.setattr(registry, "REGISTRY", MappingProxyType(entries))

    return serve, handler, tmp_path / "keras_home" / "models"


@pytest.mark.parametrize("include_top", [True, False])
def test_imagenet_download_from_mirror_with_hash_check(environment, keras_b0_files, include_top):
    serve, handler, cache = environment
    data, reference = keras_b0_files[include_top]
    name = "efficientnetb0.h5" if include_top else "efficientnetb0_notop.h5"
    serve({name: data})
    model = efficientnet.EfficientNetB0(
        weights="imagenet", include_top=include_top, input_shape=SHAPE, classifier_activation=None
    )
    x = images(size=64)
    np.testing.assert_allclose(predict(model, x), predict(reference, x), atol=1e-5)
    assert (cache / name).read_bytes() == data
    # Second time: from the cache, no request.
    handler.requests.clear()
    efficientnet.EfficientNetB0(weights="imagenet", include_top=include_top, input_shape=SHAPE)
    assert handler.requests == []
    assert [p for p in os.listdir(cache) if p != name] == []


@pytest.mark.parametrize("mode", ["404", "500", "cut", "hash"])
def test_failed_downloads_leave_nothing_behind(environment, keras_b0_files, mode):
    serve, handler, cache = environment
    data, _ = keras_b0_files[True]
    serve({"efficientnetb0.h5": data}, hashes={"efficientnetb0.h5": "0" * 32} if mode == "hash" else None)
    handler.mode = "ok" if mode == "hash" else mode
    with pytest.raises(WeightsDownloadError) as info:
        efficientnet.EfficientNetB0(weights="imagenet", input_shape=SHAPE)
    message = str(info.value)
    assert "efficientnetb0.h5" in message
    assert not cache.exists() or os.listdir(cache) == []


def test_offline_error_says_how_to_place_the_file(environment, monkeypatch, keras_b0_files):
    serve, _, cache = environment
    serve({"efficientnetb0.h5": keras_b0_files[True][0]})
    monkeypatch.setenv("EFFICIENTNET_WEIGHTS_URL", "http://127.0.0.1:9/closed")
    with pytest.raises(WeightsDownloadError, match="place it at .*efficientnetb0.h5") as info:
        efficientnet.EfficientNetB0(weights="imagenet", input_shape=SHAPE)
    assert "EFFICIENTNET_WEIGHTS_DIR" in str(info.value)
    assert not cache.exists() or os.listdir(cache) == []


def test_weights_dir_and_corrupt_cache(environment, keras_b0_files, tmp_path, monkeypatch):
    serve, handler, cache = environment
    data, reference = keras_b0_files[True]
    serve({"efficientnetb0.h5": data})
    # A corrupt cached copy is replaced by a fresh download.
    cache.mkdir(parents=True)
    (cache / "efficientnetb0.h5").write_bytes(b"garbage")
    efficientnet.EfficientNetB0(weights="imagenet", input_shape=SHAPE)
    assert (cache / "efficientnetb0.h5").read_bytes() == data
    # A directory of files for air-gapped sites is used without any request.
    (cache / "efficientnetb0.h5").unlink()
    local = tmp_path / "mirror_dir"
    local.mkdir()
    (local / "efficientnetb0.h5").write_bytes(data)
    monkeypatch.setenv("EFFICIENTNET_WEIGHTS_DIR", str(local))
    handler.requests.clear()
    efficientnet.EfficientNetB0(weights="imagenet", input_shape=SHAPE)
    assert handler.requests == []


def test_concurrent_fetches_end_with_one_good_file(environment, keras_b0_files):
    serve, _, cache = environment
    data, _ = keras_b0_files[True]
    serve({"efficientnetb0.h5": data})
    spec = registry.find_weight_spec("efficientnetb0", "imagenet", True)
    results, errors = [], []

    def worker():
        try:
            results.append(efficientnet.weights.fetch(spec))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    assert os.listdir(cache) == ["efficientnetb0.h5"]
    assert (cache / "efficientnetb0.h5").read_bytes() == data


def test_model_weights_unchanged_when_a_later_load_fails(environment, keras_b0_files, tmp_path):
    serve, handler, _ = environment
    model = efficientnet.EfficientNetB0(weights=None, input_shape=SHAPE)
    before = weights_snapshot(model)
    bad = tmp_path / "bad.h5"
    bad.write_bytes(keras_b0_files[True][0][:1000])
    with pytest.raises(efficientnet.WeightsError):
        efficientnet.load_weights(model, str(bad))
    assert_unchanged(model, before)


def test_two_processes_fetching_at_once_end_with_one_good_file(environment, keras_b0_files, tmp_path):
    """Separate processes (not threads) racing for the same registered file."""
    import json
    import subprocess
    import sys

    serve, handler, cache = environment
    data, _ = keras_b0_files[True]
    serve({"efficientnetb0.h5": data})
    digest = hashlib.md5(data).hexdigest()
    script = (
        "import dataclasses, sys\n"
        "from efficientnet.weights import fetch, registry\n"
        "spec = registry.find_weight_spec('efficientnetb0', 'imagenet', True)\n"
        "spec = dataclasses.replace(spec, file_hash=sys.argv[1])\n"
        "print(fetch(spec))\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, digest], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), json.dumps([e.decode()[-1000:] for _, e in outputs])
    # The last line is the path (keras.utils.get_file prints its progress bar before it).
    assert {o.decode().strip().splitlines()[-1] for o, _ in outputs} == {str(cache / "efficientnetb0.h5")}
    assert os.listdir(cache) == ["efficientnetb0.h5"]
    assert (cache / "efficientnetb0.h5").read_bytes() == data
