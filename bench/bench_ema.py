"""Training step time with the weight EMA against without it: ``optim.ExponentialMovingAverage``'s cost.

Two figures, each measured in a fresh child process (alternating, ``--rounds`` of each):

1. plain: ``EfficientNetB0(weights=None)``, ``RMSpropTF``, ``model.fit`` on random images;
2. ema: the same with ``callbacks=[optim.ExponentialMovingAverage(0.9999)]`` (the averages of the
   trainable weights and the batch-norm statistics, updated on the device once per step).

The step time is the median interval between consecutive ``on_train_batch_begin`` calls after
``--warmup`` steps (so it includes the EMA update of the previous step, which runs at the next
batch's start, and excludes tracing and compilation). The ratio ema / plain is the EMA's cost;
the target of issue 16 is at most 1.05.

    python bench/bench_ema.py [--image-size 128] [--batch-size 16] [--steps 24] [--warmup 4]
                              [--rounds 1] [--backend tensorflow] [--quick] [--json out.json]

Absolute figures on a shared 2-core CPU are noisy: read the ratio from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def child(task: str, size: int, batch: int, steps: int, warmup: int) -> dict:
    import keras
    import numpy as np

    import efficientnet
    from efficientnet.training import optim

    keras.utils.set_random_seed(0)
    model = efficientnet.EfficientNetB0(weights=None, input_shape=(size, size, 3), classes=10)
    model.compile(optimizer=optim.RMSpropTF(1e-3), loss=keras.losses.CategoricalCrossentropy())
    rng = np.random.default_rng(0)
    n = batch * (steps + warmup)  # the last interval ends at on_train_end (the last EMA update)
    x = rng.uniform(0, 255, (n, size, size, 3)).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, n)]

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.begins: list[float] = []

        def on_train_batch_begin(self, batch, logs=None):
            self.begins.append(time.perf_counter())

        def on_train_end(self, logs=None):
            self.begins.append(time.perf_counter())

    timer = Timer()
    callbacks = [timer]
    ema = None
    if task == "ema":
        ema = optim.ExponentialMovingAverage(0.9999)
        callbacks.append(ema)
    model.fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0, callbacks=callbacks)
    intervals = [b - a for a, b in zip(timer.begins, timer.begins[1:])][warmup:]
    out = {"step_s": statistics.median(intervals), "mean_s": statistics.fmean(intervals), "steps": len(intervals)}
    if ema is not None:
        state = ema.state()  # the averages' one trip to the host, after training
        out["averaged_variables"] = len(state)
        out["averaged_mib"] = sum(v.nbytes for v in state.values()) / 2**20
    return out


def _child(task: str, args) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND=args.backend, JAX_PLATFORMS="cpu")
    cmd = [sys.executable, os.path.abspath(__file__), "--child", task, "--backend", args.backend]
    cmd += ["--image-size", str(args.image_size), "--batch-size", str(args.batch_size)]
    cmd += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{task} failed:\n{out.stderr[-3000:]}")


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def run(args) -> dict:
    samples: dict[str, list[dict]] = {"plain": [], "ema": []}
    loads = [_load()]
    for r in range(args.rounds):
        for task in ("plain", "ema") if r % 2 == 0 else ("ema", "plain"):
            samples[task].append(_child(task, args))
            loads.append(_load())
    keys = ("backend", "image_size", "batch_size", "steps", "warmup", "rounds")
    return {"settings": {k: getattr(args, k) for k in keys}, "loadavg": loads, "samples": samples}


def report(results: dict) -> str:
    s = results["settings"]
    plain = statistics.median(r["step_s"] for r in results["samples"]["plain"])
    ema = statistics.median(r["step_s"] for r in results["samples"]["ema"])
    info = results["samples"]["ema"][0]
    rounds = {task: ", ".join(f"{r['step_s']:.4f}" for r in results["samples"][task]) for task in ("plain", "ema")}
    return "\n".join(
        [
            f"EfficientNetB0 training step, {s['backend']} backend, CPU: image size {s['image_size']}, "
            f"batch {s['batch_size']}, {s['steps']} steps timed after {s['warmup']}, {s['rounds']} round(s)",
            f"  load average (1/5/15 min) before and after each child: {' | '.join(results['loadavg'])}",
            f"  EMA over {info['averaged_variables']} variables ({info['averaged_mib']:.1f} MiB)",
            f"  step time without EMA (s): {plain:.4f}  (rounds: {rounds['plain']})",
            f"  step time with EMA (s):    {ema:.4f}  (rounds: {rounds['ema']})",
            f"  ratio EMA / plain (target <= 1.05): {ema / plain:.3f}",
        ]
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=24, help="timed steps")
    parser.add_argument("--warmup", type=int, default=4, help="steps not timed (tracing, compilation)")
    parser.add_argument("--rounds", type=int, default=1, help="child processes per figure (median taken)")
    parser.add_argument("--backend", default="tensorflow", choices=["tensorflow", "jax", "torch"])
    parser.add_argument("--quick", action="store_true", help="tiny settings for CI: 32 px, batch 4, 3+1 steps")
    parser.add_argument("--json", help="also write the raw figures here")
    parser.add_argument("--child", choices=["plain", "ema"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = child(args.child, args.image_size, args.batch_size, args.steps, args.warmup)
        print("RESULT " + json.dumps(result))
        return
    if args.quick:
        args.image_size, args.batch_size, args.steps, args.warmup, args.rounds = 32, 4, 3, 1, 1
    results = run(args)
    print(report(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
