"""Side-by-side benchmark: this library against keras.applications, same variant, one run.

Prints, for each variant, both figures and their ratio (ours / keras.applications;
below 1 is better for times and memory, above 1 for throughput):

- construction time of the model (weights=None),
- graph-mode (``tf.function``) batch-16 inference throughput,
- eager single-image latency,
- one training step (SGD, batch 8) in graph mode,
- peak resident memory of a child process doing that training step.

    python bench/bench.py [--variants B0 B3] [--repeats 5] [--json out.json]

Every measurement runs in a fresh child process, alternating ours and the
reference, so neither inherits the other's caches. Absolute numbers on a
shared 2-core machine are noisy: read the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, os, resource, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import keras
import tensorflow as tf

impl, variant, task, repeats = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
size = {"B0": 224, "B1": 240, "B2": 260, "B3": 300, "B4": 380}.get(variant, 224)


def build():
    if impl == "ours":
        import efficientnet
        return getattr(efficientnet, f"EfficientNet{variant}")(weights=None)
    return getattr(keras.applications, f"EfficientNet{variant}")(weights=None)


result = {}
t0 = time.perf_counter()
model = build()
result["build_s"] = time.perf_counter() - t0
rng = np.random.default_rng(0)

if task == "infer":
    x16 = tf.constant(rng.uniform(0, 255, (16, size, size, 3)).astype("float32"))
    graph = tf.function(lambda x: model(x, training=False))
    graph(x16)
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); graph(x16).numpy(); times.append(time.perf_counter() - t)
    result["throughput_img_s"] = 16 / min(times)
    x1 = tf.constant(rng.uniform(0, 255, (1, size, size, 3)).astype("float32"))
    model(x1, training=False)
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); model(x1, training=False).numpy(); times.append(time.perf_counter() - t)
    result["eager_latency_ms"] = 1000 * min(times)
else:
    x = tf.constant(rng.uniform(0, 255, (8, size, size, 3)).astype("float32"))
    y = tf.constant(rng.integers(0, 1000, (8,)))
    opt = keras.optimizers.SGD(0.01)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    step(x, y)
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); step(x, y).numpy(); times.append(time.perf_counter() - t)
    result["train_step_s"] = min(times)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT " + json.dumps(result))
"""

METRICS = [
    ("build_s", "construction (s)", "lower"),
    ("throughput_img_s", "graph batch-16 throughput (img/s)", "higher"),
    ("eager_latency_ms", "eager batch-1 latency (ms)", "lower"),
    ("train_step_s", "train step batch 8 (s)", "lower"),
    ("peak_rss_mib", "peak RSS, training (MiB)", "lower"),
]


def _child(script: str, impl: str, variant: str, task: str, repeats: int) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    out = subprocess.run(
        [sys.executable, script, impl, variant, task, str(repeats)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{impl} {variant} {task} failed:\n{out.stderr[-3000:]}")


def run(variants: list[str], repeats: int, rounds: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(CHILD)
        script = f.name
    results: dict = {}
    try:
        for variant in variants:
            samples = {impl: {} for impl in ("ours", "keras")}
            for _ in range(rounds):
                for task in ("infer", "train"):
                    for impl in ("ours", "keras"):  # alternate to spread machine noise evenly
                        for key, value in _child(script, impl, variant, task, repeats).items():
                            samples[impl].setdefault(key, []).append(value)
            results[variant] = {
                impl: {k: statistics.median(v) for k, v in data.items()} for impl, data in samples.items()
            }
    finally:
        os.unlink(script)
    return results


def report(results: dict) -> str:
    lines = []
    for variant, data in results.items():
        lines.append(f"\nEfficientNet{variant}: ours vs keras.applications (TensorFlow backend, CPU)")
        lines.append(f"  {'metric':<36s} {'ours':>10s} {'keras':>10s} {'ratio':>7s}  better")
        for key, label, better in METRICS:
            ours, ref = data["ours"].get(key), data["keras"].get(key)
            if ours is None or ref is None:
                continue
            lines.append(f"  {label:<36s} {ours:10.2f} {ref:10.2f} {ours / ref:7.3f}  {better}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=["B0", "B3"])
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions inside each child (min taken)")
    parser.add_argument("--rounds", type=int, default=1, help="child processes per measurement (median taken)")
    parser.add_argument("--json", help="also write the raw figures here")
    args = parser.parse_args()
    results = run(args.variants, args.repeats, args.rounds)
    print(report(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
