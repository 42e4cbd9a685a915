"""``kill -9`` anywhere in ``train``, then ``--resume``: the final weights of a run never killed (issue 19, item 10).

One deterministic run (3 epochs, batch 4, 12 images at 32 px, an EMA so that ``ema.npz`` is part of
every checkpoint) is done once, uninterrupted, in a separate process for the reference weights and
its duration. Then each trial starts the same run in a separate process, ``SIGKILL`` s it, and
resumes it in this process (``resume=True`` when the killed run left its manifest ``run.json``, else
a fresh start in the directory it left), comparing the final weights with the reference.

The kill points: half of the trials after seeded random delays spread over the run's duration,
half at seeded random steps of the checkpoint writes. ``EFFICIENTNET_TEST_CHECKPOINT_DELAY``
(:data:`efficientnet.training.engine.CHECKPOINT_DELAY_ENV`, a test-only hook) makes the checkpoint
writer sleep between its steps (temporary directory made, train state written, EMA written,
``state.json`` written, old checkpoint moved aside, new one moved in), and the killed process
reports each step, so a kill lands inside the step asked for.

The killed processes are forked from one helper process that has imported TensorFlow but run
nothing (so each trial does not pay TensorFlow's import). The network is a small convolutional
classifier by default: the run-directory logic does not depend on it, and EfficientNet-Lite0's
first-epoch tracing (~15 s idle, ~45 s on 2 busy cores) times 40 would not fit the test's budget;
``EFFICIENTNET_KILL_MODEL=lite0`` runs the same trials on Lite0 at 32 px (``EFFICIENTNET_KILL_TRIALS``
sets their number, default 20).

The full-disk test makes the second checkpoint's weight write fail with ``ENOSPC``.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import make_image_folder

from efficientnet.training import engine

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
MODEL = os.environ.get("EFFICIENTNET_KILL_MODEL", "tiny")
TRIALS = int(os.environ.get("EFFICIENTNET_KILL_TRIALS", "20"))
STEP_DELAY = 0.15  # seconds between checkpoint steps in the killed processes
SETTINGS = dict(epochs=3, batch_size=4, image_size=32, seed=0, deterministic=True, ema_decay=0.9, verbose=0)


def tiny_classifier() -> keras.Model:
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, name="conv")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2, name="top_dropout")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="tiny")


def run_training(data: str, out: str, *, resume: bool, init: str, callbacks=()) -> engine.TrainResult:
    """The run every trial makes (in the killed process and in the resume)."""
    if MODEL == "tiny":
        model = tiny_classifier()
        model.load_weights(init)
        extra = {}
    else:
        model, extra = MODEL, {"weights": None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return engine.train(model, data, out_dir=out, resume=resume, callbacks=callbacks, **SETTINGS, **extra)


# The helper process: imports everything, then forks one child per request line "<data> <out> <init> <log>";
# the child trains (writing "ready", "step N" at each checkpoint pause, and "done SECONDS" to <log>) and
# exits; the parent answers with the child's PID. Children are reaped automatically (SIGCHLD ignored).
_ZYGOTE = r"""
import os, signal, sys, time
sys.path.insert(0, sys.argv[1])
import test_kill_resume as K
from efficientnet.training import engine

signal.signal(signal.SIGCHLD, signal.SIG_IGN)
print("ready", flush=True)
for line in sys.stdin:
    data, out, init, log = line.split()
    pid = os.fork()
    if pid:
        print(pid, flush=True)
        continue
    try:
        report = open(log, "w", buffering=1)
        pause, steps = engine._checkpoint_pause, [0]

        def traced_pause():
            steps[0] += 1
            report.write(f"step {steps[0]}\n")
            pause()

        engine._checkpoint_pause = traced_pause
        start = time.monotonic()
        report.write("ready\n")
        result = K.run_training(data, out, resume=False, init=init)
        import numpy as np
        np.savez(os.path.join(out, "final.npz"), *result.model.get_weights())
        report.write(f"done {time.monotonic() - start:.3f}\n")
    except BaseException as exc:
        report.write(f"error {exc!r}\n")
    finally:
        os._exit(0)
"""


class Zygote:
    def __init__(self, tmp_path: Path):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        env[engine.CHECKPOINT_DELAY_ENV] = str(STEP_DELAY)
        env["EFFICIENTNET_KILL_MODEL"] = MODEL
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE, str(ROOT / "tests")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        assert self.proc.stdout.readline().strip() == "ready"

    def start(self, data, out, init, log) -> int:
        self.proc.stdin.write(f"{data} {out} {init} {log}\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _wait_for(log: Path, predicate, timeout: float = 600.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = _lines(log)
        if predicate(lines):
            return lines
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting; log: {_lines(log)}")


def _gone(pid: int) -> None:
    for _ in range(2000):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.005)
    raise AssertionError(f"process {pid} survived SIGKILL")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    data = make_image_folder(root / "data", per_class=4)  # 12 images: 3 batches of 4 per epoch
    init = str(root / "init.weights.h5")
    keras.utils.set_random_seed(0)
    tiny_classifier().save_weights(init)
    zygote = Zygote(root)
    reference = root / "reference"
    log = root / "reference.log"
    zygote.start(data, reference, init, log)
    lines = _wait_for(log, lambda lines: any(line.startswith(("done", "error")) for line in lines))
    assert lines[-1].startswith("done"), lines
    duration = float(lines[-1].split()[1])
    with np.load(reference / "final.npz") as arrays:
        weights = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
    steps = sum(line.startswith("step") for line in lines)
    yield dict(root=root, data=data, init=init, zygote=zygote, weights=weights, duration=duration, steps=steps)
    zygote.close()


def _durable_epochs(lines: list[str]) -> int:
    """Epochs whose checkpoint was in place when the process was killed, from its last reported step.

    Checkpoint 1 pauses at steps 1-4 and is renamed into place after step 4; checkpoints 2 and 3
    pause at 5-10 and 11-16 (9 and 15: the old one moved aside; 10 and 16: the new one in place).
    """
    steps = [int(line.split()[1]) for line in lines if line.startswith("step")]
    last = max(steps, default=0)
    return 3 if last >= 16 else 2 if last >= 10 else 1 if last >= 5 else 0


class _Epochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.count = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.count += 1


def _assert_same(weights, reference):
    assert len(weights) == len(reference)
    for got, want in zip(weights, reference):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_kill_9_anywhere_then_resume_gives_the_uninterrupted_weights(setup):
    rng = np.random.default_rng(19)
    # 3 epochs: the first checkpoint has 4 pauses, the later ones 6 (the old checkpoint moved aside, removed).
    assert setup["steps"] == 16, setup["steps"]
    plans = []
    for i in range(TRIALS):
        if i % 2:
            plans.append(("step", int(rng.integers(1, setup["steps"] + 1)), float(rng.uniform(0, 1.5 * STEP_DELAY))))
        else:
            plans.append(("time", None, float(rng.uniform(0.02, 0.95) * setup["duration"])))
    outcomes = []
    for i, (kind, step, delay) in enumerate(plans):
        out = setup["root"] / f"trial{i}"
        log = setup["root"] / f"trial{i}.log"
        pid = setup["zygote"].start(setup["data"], out, setup["init"], log)
        if kind == "step":
            _wait_for(log, lambda lines, step=step: f"step {step}" in lines)
        else:
            _wait_for(log, lambda lines: "ready" in lines)
        time.sleep(delay)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:  # it finished first (runs vary in length on a busy machine)
            assert "done" in _lines(log)[-1], _lines(log)
        _gone(pid)
        lines = _lines(log)
        assert not any(line.startswith("error") for line in lines), lines
        state = engine._read_state(str(out)) if out.is_dir() else None  # before the resume recovers anything
        leftovers = sorted(n for n in os.listdir(out) if n.startswith(".")) if out.is_dir() else []
        resume = (out / "run.json").exists()
        keras.backend.clear_session()
        killed, epochs = time.monotonic(), _Epochs()
        result = run_training(setup["data"], str(out), resume=resume, init=setup["init"], callbacks=[epochs])
        resumed = time.monotonic() - killed
        _assert_same(result.model.get_weights(), setup["weights"])
        assert 3 - epochs.count >= _durable_epochs(lines), (lines, epochs.count)  # no finished epoch redone
        assert (out / "model.weights.h5").is_file() and engine._read_state(str(out))["epoch"] == 3
        assert not [n for n in os.listdir(out) if n.startswith((".checkpoint-", ".old-checkpoint-", ".tmp-"))]
        rows = (out / "history.csv").read_text().splitlines()
        assert [row.split(",")[0] for row in rows[1:]] == ["0", "1", "2"], rows
        outcomes.append((kind, step, state["epoch"] if state else None, leftovers, resume, round(resumed, 1)))
    if TRIALS >= 20:  # the trials covered kills before the first checkpoint, after it, and inside a write
        assert any(o[2] is None for o in outcomes) and any(o[2] == 2 for o in outcomes), outcomes
        assert any(n.startswith((".checkpoint-", ".old-checkpoint-")) for o in outcomes for n in o[3]), outcomes
    print(f"reference run {setup['duration']:.1f} s;", "\n".join(map(str, outcomes)))


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(setup, tmp_path, monkeypatch):
    calls = []
    real = keras.Model.save_weights

    def save_weights(self, filepath, *args, **kwargs):
        calls.append(filepath)
        if len(calls) == 2 and "checkpoint" in str(filepath):
            raise OSError(errno.ENOSPC, "No space left on device", str(filepath))
        return real(self, filepath, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save_weights", save_weights)
    out = tmp_path / "run"
    keras.backend.clear_session()
    with pytest.raises(
        OSError, match=r"checkpoint of epoch 2.*disk is full.*previous checkpoint \(epoch 1\).*kept"
    ) as info:
        run_training(setup["data"], str(out), resume=False, init=setup["init"])
    assert info.value.errno == errno.ENOSPC
    assert engine._read_state(str(out))["epoch"] == 1
    assert not [n for n in os.listdir(out) if n.startswith(".checkpoint-")]
    monkeypatch.setattr(keras.Model, "save_weights", real)
    keras.backend.clear_session()
    result = run_training(setup["data"], str(out), resume=True, init=setup["init"])
    _assert_same(result.model.get_weights(), setup["weights"])
    assert json.loads((out / "checkpoint" / "state.json").read_text())["epoch"] == 3
