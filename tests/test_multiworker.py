"""MultiWorkerMirroredStrategy: Keras' own ``fit`` on 2 local worker processes equals the single-process run.

Keras 3.15.1 cannot ``fit`` under MultiWorkerMirroredStrategy as shipped; both faults are in
``keras/src/backend/tensorflow/trainer.py``:

1. ``_maybe_symbolic_build`` (line 731) pulls one batch and calls
   ``strategy.reduce("MEAN", (images, labels), axis=None)`` on the whole tuple, only to read its
   shapes. ``CollectiveAllReduceExtended._reduce_to`` does not map over nests (the one of
   ``MirroredStrategy`` does): "Attempt to convert a value (PerReplica:{...}) ... to a Tensor".
2. ``reduce_per_replica`` (line 841) reduces every step output under multi-worker MWMS with
   ``strategy.reduce("MEAN", v, axis=0)``; the outputs are scalar metric results, and
   ``reduce_sum(scalar, axis=0)`` fails: "Invalid reduction dimension 0 for input with 0 dimensions".

:func:`efficientnet.training.distribute.enable_keras_fit_on_multiworker` works around both on one
model (see its docstring); :func:`efficientnet.training.train` applies it, so the workers train by name.

Batch norm: each worker sees 4 of the 8 images of a global batch, so plain BN would normalise with
other statistics than the single process; the workers use ``synchronized_bn=True`` (all-reduced
sums), which computes the single process's statistics, gradients and moving averages. The
reference is the ordinary single-device run (plain BN).
"""

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import pytest

pytest.importorskip("tensorflow")

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", MPLBACKEND="Agg", CUDA_VISIBLE_DEVICES="", KERAS_BACKEND="tensorflow")
for key in ("TF_CONFIG", "XLA_FLAGS"):
    ENV.pop(key, None)
TIMEOUT = 300  # seconds for each phase; a hung collective must not eat the CI budget
VARIANT = "lite0"  # "b0" passes too (max difference 2.4e-7), at about 1.4x the time


# One process: the multi-worker run (TF_CONFIG set) or the single-device reference.
RUN = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    from efficientnet.training import train
    from efficientnet.training.distribute import resolve_strategy
    from efficientnet.training.recipes import recipe

    role, out, VARIANT = sys.argv[1], sys.argv[2], sys.argv[3]
    # first: MultiWorkerMirroredStrategy must exist before TensorFlow's context starts
    dist = resolve_strategy("multiworker" if role == "worker" else "none")
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 48, 48, 3), dtype=np.uint8)  # 2 global batches of 8
    labels = rng.integers(0, 3, 16)
    data = tf.data.Dataset.from_tensor_slices((images, labels))
    # no random masks (dropout, stochastic depth); RMSpropTF (early steps are gradient steps), L2, EMA
    rec = recipe("efficientnet", dropout_rate=0.0, drop_connect_rate=0.0, warmup_epochs=0.0,
                 augmentation="none", random_crop=False)
    keras.utils.set_random_seed(0)
    result = train(VARIANT, data, class_names=3, recipe=rec, weights=None, epochs=1, batch_size=8, image_size=48,
                   strategy=dist, synchronized_bn=role == "worker", deterministic=True, seed=0, verbose=0,
                   out_dir=os.path.join(out, "run") if role == "worker" else None)
    assert getattr(result.model, "_multiworker_fit_enabled", False) == (role == "worker")
    name = "single" if role == "single" else "worker%d" % dist.engine.cluster_resolver.task_id
    np.savez(os.path.join(out, name + ".npz"), *[np.asarray(w) for w in result.model.weights])
    print(name, dist.num_replicas, dist.is_chief, result.history)
    """
)


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def run_together(commands, logdir, timeout=TIMEOUT):
    """Runs (argv, env) pairs at once; the first failure or the timeout kills them all. Returns their outputs."""
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context(tempfile.TemporaryFile("w+", dir=logdir)) for _ in commands]
        procs = [
            subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
            for (argv, env), log in zip(commands, logs)
        ]
        deadline = time.monotonic() + timeout
        try:
            while any(p.poll() is None for p in procs) and all(p.poll() in (None, 0) for p in procs):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                p.wait()
        outputs = []
        for log in logs:
            log.seek(0)
            outputs.append(log.read())
    codes = [p.returncode for p in procs]
    assert codes == [0] * len(procs), f"exit codes {codes} (timeout {timeout}s):\n" + "\n---\n".join(
        o[-3000:] for o in outputs
    )
    return outputs


def weights(path):
    with np.load(path) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


@pytest.mark.slow
def test_two_workers_fit_equals_the_single_device_run(tmp_path):
    code = RUN
    run_together([([sys.executable, "-c", code, "single", str(tmp_path), VARIANT], ENV)], tmp_path)
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    workers = run_together(
        [
            (
                [sys.executable, "-c", code, "worker", str(tmp_path), VARIANT],
                dict(ENV, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})),
            )
            for i in range(2)
        ],
        tmp_path,
    )
    assert "worker0 2 True" in workers[0] and "worker1 2 False" in workers[1], workers
    ref = weights(tmp_path / "single.npz")
    w0, w1 = weights(tmp_path / "worker0.npz"), weights(tmp_path / "worker1.npz")
    assert len(ref) == len(w0) == len(w1) > 200
    for i, (a, b) in enumerate(zip(w0, w1)):
        np.testing.assert_array_equal(a, b, err_msg=f"weight {i}: the workers disagree")
    for i, (a, b) in enumerate(zip(ref, w0)):  # includes every BN moving mean and variance
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5, err_msg=f"weight {i}")
    # the chief wrote the run directory (its chief-only writes must not stall the collectives)
    run = tmp_path / "run"
    assert (run / "model.weights.h5").is_file() and (run / "checkpoint" / "state.json").is_file()
    assert json.loads((run / "checkpoint" / "state.json").read_text())["epoch"] == 1
