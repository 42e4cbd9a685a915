"""Distributed training on tf.distribute and keras.distribution equals single-device training, on this CPU."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import make_image_folder

pytest.importorskip("tensorflow")

from efficientnet.training.distribute import Distribution, parse_tf_config, resolve_strategy  # noqa: E402

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", MPLBACKEND="Agg", CUDA_VISIBLE_DEVICES="")
for key in ("TF_CONFIG", "XLA_FLAGS"):
    ENV.pop(key, None)

# Splits the CPU into 2 logical devices before TensorFlow starts, then runs the code given.
PRELUDE = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    import tensorflow as tf
    if os.environ.get("LOGICAL_CPUS"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        n = int(os.environ["LOGICAL_CPUS"])
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    import keras
    from efficientnet.training import train

    def run(strategy, folder, **kwargs):
        # no random masks: dropout and stochastic depth draw per replica
        base = dict(epochs=1, batch_size=8, image_size=48, verbose=0, seed=0, augmentation="none",
                    random_crop=False, deterministic=True, dropout_rate=0.0, drop_connect_rate=0.0)
        base.update(kwargs)
        return train("lite0", folder, strategy=strategy, **base)

    def save(result, path):
        np.savez(path, *[np.asarray(w) for w in result.model.weights])
    """
)


def python(code, *args, env=None, timeout=900):
    result = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        env=env or ENV,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def weights(path):
    with np.load(path) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


def assert_same(a, b, atol=1e-5):
    assert len(a) == len(b) and len(a) > 100
    for i, (x, y) in enumerate(zip(a, b)):
        np.testing.assert_allclose(x, y, rtol=0, atol=atol, err_msg=f"weight {i}")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("dist"), per_class=6)  # 18 images: 2 steps of 8


def test_mirrored_step_equals_the_single_device_step(folder, tmp_path):
    code = """
    folder, out = sys.argv[1], sys.argv[2]
    assert len(tf.config.list_logical_devices("CPU")) == 2
    # frozen BN (pretrained, finetune recipe), no synchronisation needed. TF1 RMSProp (its accumulator
    # starts at 1, so early steps are gradient steps): Adam's m/sqrt(v) would magnify the all-reduce's
    # float rounding of near-zero gradients into differences of the size of the learning rate.
    frozen = dict(weights="imagenet", optimizer_name="rmsprop_tf", base_learning_rate=0.01)
    save(run("none", folder, **frozen), f"{out}/single_frozen.npz")
    save(run("mirrored", folder, **frozen), f"{out}/mirrored_frozen.npz")
    # trainable BN: the efficientnet recipe (RMSpropTF, L2, EMA), with and without synchronized BN
    kw = dict(recipe="efficientnet", weights=None, warmup_epochs=0.0)
    save(run("none", folder, **kw), f"{out}/single_bn.npz")
    save(run("mirrored", folder, synchronized_bn=True, **kw), f"{out}/mirrored_sync.npz")
    save(run("mirrored", folder, **kw), f"{out}/mirrored_local.npz")
    try:
        run("mirrored", folder, batch_size=7)
    except ValueError as exc:
        print("DIVISIBLE", exc)
    """
    out = python(code, folder, str(tmp_path), env=dict(ENV, LOGICAL_CPUS="2"))
    assert "DIVISIBLE The global batch size 7 does not divide over 2 replicas" in out.stdout
    assert_same(weights(tmp_path / "single_frozen.npz"), weights(tmp_path / "mirrored_frozen.npz"))
    single, synced = weights(tmp_path / "single_bn.npz"), weights(tmp_path / "mirrored_sync.npz")
    assert_same(single, synced)  # includes every BN moving mean and variance
    local = weights(tmp_path / "mirrored_local.npz")
    assert max(np.abs(a - b).max() for a, b in zip(single, local)) > 1e-4  # per-replica BN statistics differ


def test_jax_data_parallel_step_equals_the_single_device_step(folder, tmp_path):
    pytest.importorskip("jax")
    code = """
    folder, out = sys.argv[1], sys.argv[2]
    import jax
    assert len(jax.devices()) == 2, jax.devices()
    save(run("none", folder, weights="imagenet", deterministic=False), f"{out}/single.npz")
    result = run("data-parallel", folder, weights="imagenet", deterministic=False)
    save(result, f"{out}/parallel.npz")
    """
    env = dict(ENV, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    python(code, folder, str(tmp_path), env=env)
    assert_same(weights(tmp_path / "single.npz"), weights(tmp_path / "parallel.npz"))


KILL_AFTER_FIRST = """
class Kill(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            os.kill(os.getpid(), 9)
"""


def test_mirrored_checkpoint_resumes_and_loads_on_one_device(folder, tmp_path):
    code = KILL_AFTER_FIRST + textwrap.dedent(
        """
    folder, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    kw = dict(epochs=2, weights="imagenet", out_dir=f"{out}/{'whole' if mode == 'whole' else 'killed'}")
    if mode == "kill":
        kw["callbacks"] = [Kill()]
    run("mirrored", folder, resume=(mode == "resume"), **kw)
    """
    )
    env = dict(ENV, LOGICAL_CPUS="2")
    python(code, folder, str(tmp_path), "whole", env=env)
    killed = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code), folder, str(tmp_path), "kill"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert json.loads((tmp_path / "killed" / "checkpoint" / "state.json").read_text())["epoch"] == 1
    python(code, folder, str(tmp_path), "resume", env=env)
    import efficientnet

    a = efficientnet.EfficientNetLite0(weights=str(tmp_path / "whole" / "model.weights.h5"), classes=3)
    b = efficientnet.EfficientNetLite0(weights=str(tmp_path / "killed" / "model.weights.h5"), classes=3)
    assert_same([np.asarray(w) for w in a.weights], [np.asarray(w) for w in b.weights], atol=1e-6)


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not valid JSON"),
        ('{"task": {"type": "worker", "index": 0}}', "lacks a 'cluster'"),
        ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', "not 'host:port'"),
        ('{"cluster": {"worker": ["a:1", "b:2"]}}', "lacks task"),
        ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}', "outside the 2 workers"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}}', "names no member"),
        ("", "needs TF_CONFIG"),
    ],
)
def test_malformed_tf_config(text, message):
    with pytest.raises(ValueError, match=message):
        parse_tf_config(text)
    config = parse_tf_config('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}')
    assert config["task"]["index"] == 1


def test_bad_strategies_on_this_backend():
    with pytest.raises(ValueError, match="data-parallel.*needs the jax backend"):
        resolve_strategy("data-parallel")
    with pytest.raises(ValueError, match="Unknown strategy 'horovod'"):
        resolve_strategy("horovod")
    with pytest.raises(ValueError, match="does not divide over 4 replicas.*multiple of 4"):
        Distribution("mirrored", num_replicas=4).per_replica_batch(30)
    assert resolve_strategy("auto").name == "none" and resolve_strategy(None).num_replicas == 1


def test_mirrored_on_the_torch_backend_is_refused(tmp_path):
    pytest.importorskip("torch")
    code = """
from efficientnet.training.distribute import resolve_strategy
try:
    resolve_strategy("mirrored")
except ValueError as exc:
    print("REFUSED", exc)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(ENV, KERAS_BACKEND="torch"), timeout=300
    )
    assert "REFUSED strategy='mirrored' needs the tensorflow backend, but Keras runs on 'torch'" in result.stdout
    assert "torchrun" in result.stdout


def test_malformed_tf_config_through_the_command(folder, tmp_path):
    env = dict(ENV, TF_CONFIG="{broken")
    args = [sys.executable, "-m", "efficientnet.cli", "train", folder, "--strategy", "multiworker", "--out",
            str(tmp_path / "r"), "--epochs", "1", "--batch-size", "8"]  # fmt: skip
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2 and "TF_CONFIG is not valid JSON" in result.stderr
    assert not (tmp_path / "r" / "checkpoint").exists()
