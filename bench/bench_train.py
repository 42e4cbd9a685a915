"""Fine-tuning throughput: ``efficientnet.training.train`` against plain Keras ``model.fit``, one run.

Three figures, each measured in a fresh child process (ours and the reference alternating):

1. ours: ``efficientnet.training.train("b0", folder, recipe="finetune", weights=None)``, what
   ``efficientnet train`` does (the image-folder tf.data pipeline with the recipe's random-resized
   crop and flip, then ``model.fit`` one epoch at a time);
2. keras: ``keras.applications.EfficientNetB0(include_top=False, weights=None, pooling="avg")``
   + Dropout + Dense head, Adam 1e-4, ``model.fit`` on the same folder read by
   ``keras.utils.image_dataset_from_directory`` at the same image size and batch;
3. pipeline: our training input pipeline alone (``efficientnet.training.data.train_dataset``
   with the finetune recipe's augmentation), iterated without a model.

Training throughput is steady state: images of epochs 2..N over the wall time from the end of
epoch 1 to the end of epoch N (so ours pays its per-epoch pipeline rebuild and ``fit`` call;
the first epoch, with tracing and compilation, is excluded). Also printed: the median of the
per-epoch (``on_epoch_begin`` → ``on_epoch_end``) rates. The same network on both sides: B0 with
random weights, BatchNormalization training (the finetune recipe freezes BN only when it starts
from pretrained weights), head dropout 0.2, stochastic depth 0.2.

    python bench/bench_train.py [--image-size 128] [--batch-size 16] [--images 192] [--epochs 3]
                                [--rounds 2] [--quick] [--json out.json]

The data is an image folder written by the bench: random square crops (JPEG and PNG) of
scikit-image's photos, 4 classes. Absolute figures on a shared 2-core CPU are noisy: read the
ratios, and the spread over ``--rounds``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

PHOTOS = {"cat": "chelsea", "coffee": "coffee", "rocket": "rocket", "astronaut": "astronaut"}


def make_image_folder(root: str, images: int, seed: int = 0) -> str:
    """``images`` photos split over 4 class folders: random square crops of scikit-image's photos."""
    import numpy as np
    import skimage.data
    from PIL import Image

    rng = np.random.default_rng(seed)
    classes = list(PHOTOS)
    for c, cls in enumerate(classes):
        image = getattr(skimage.data, PHOTOS[cls])()
        if image.ndim == 2:
            image = np.stack([image] * 3, -1)
        image = image[..., :3]
        os.makedirs(os.path.join(root, cls), exist_ok=True)
        h, w = image.shape[:2]
        for i in range(images // len(classes) + (c < images % len(classes))):
            s = int(rng.integers(min(h, w) // 3, min(h, w) // 2))
            y, x = int(rng.integers(0, h - s)), int(rng.integers(0, w - s))
            ext = "png" if i % 2 else "jpg"
            Image.fromarray(image[y : y + s, x : x + s]).save(os.path.join(root, cls, f"{i}.{ext}"))
    return root


# --- children ---------------------------------------------------------------------------------


def _epoch_timer():
    import keras

    class EpochTimer(keras.callbacks.Callback):
        """Wall-clock times of every epoch's begin and end (across several ``fit`` calls)."""

        def __init__(self):
            super().__init__()
            self.begins: list[float] = []
            self.ends: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.begins.append(time.perf_counter())

        def on_epoch_end(self, epoch, logs=None):
            self.ends.append(time.perf_counter())

    return EpochTimer()


def _rates(timer, images_per_epoch: int) -> dict:
    ends, begins = timer.ends, timer.begins
    epochs = len(ends)
    per_epoch = [images_per_epoch / (e - b) for b, e in zip(begins[1:], ends[1:])]
    return {
        "steady_img_s": images_per_epoch * (epochs - 1) / (ends[-1] - ends[0]),
        "epoch_img_s": statistics.median(per_epoch),
        "first_epoch_s": ends[0] - begins[0],
    }


def child_ours(folder: str, size: int, batch: int, epochs: int) -> dict:
    from efficientnet.training import data, train

    n = len(data.scan_image_folder(folder))
    timer = _epoch_timer()
    train("b0", folder, recipe="finetune", weights=None, epochs=epochs, batch_size=batch, image_size=size,
          callbacks=[timer], verbose=0)  # fmt: skip
    return _rates(timer, (n // batch) * batch)  # the pipeline drops the last partial batch


def child_keras(folder: str, size: int, batch: int, epochs: int) -> dict:
    import keras
    import tensorflow as tf

    ds = keras.utils.image_dataset_from_directory(
        folder, label_mode="categorical", image_size=(size, size), batch_size=batch, shuffle=True, seed=0, verbose=False
    )
    classes = len(ds.class_names)
    n = int(sum(int(tf.shape(y)[0]) for _, y in ds))
    ds = ds.prefetch(tf.data.AUTOTUNE)
    backbone = keras.applications.EfficientNetB0(
        include_top=False, weights=None, pooling="avg", input_shape=(size, size, 3)
    )
    x = keras.layers.Dropout(0.2)(backbone.output)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    model = keras.Model(backbone.input, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    timer = _epoch_timer()
    model.fit(ds, epochs=epochs, callbacks=[timer], verbose=0)
    return _rates(timer, n)


def child_pipeline(folder: str, size: int, batch: int, epochs: int) -> dict:
    """Our training pipeline alone, each epoch rebuilt as ``train`` does; epochs 2..N timed."""
    from efficientnet.training import data
    from efficientnet.training.recipes import recipe

    rec = recipe("finetune")
    source = data.scan_image_folder(folder)
    times = []
    count = 0
    for epoch in range(epochs):
        t = time.perf_counter()
        es = data.epoch_seed(0, epoch)
        ds = data.train_dataset(
            source,
            image_size=size,
            batch_size=batch,
            seed=0,
            epoch=epoch,
            augment=rec.augmentation_layers(es),
            batch_augment=rec.batch_augmentation(es),
            random_crop=rec.random_crop,
            interpolation=rec.interpolation,
        )
        count = 0
        for images, _ in ds:
            count += int(images.shape[0])
        times.append(time.perf_counter() - t)
    steady = times[1:] or times
    return {
        "steady_img_s": count * len(steady) / sum(steady),
        "epoch_img_s": statistics.median(count / t for t in steady),
        "first_epoch_s": times[0],
    }


CHILDREN = {"ours": child_ours, "keras": child_keras, "pipeline": child_pipeline}


# --- parent -------------------------------------------------------------------------------------


def _child(task: str, folder: str, args) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    cmd = [sys.executable, os.path.abspath(__file__), "--child", task, "--data", folder]
    cmd += ["--image-size", str(args.image_size), "--batch-size", str(args.batch_size), "--epochs", str(args.epochs)]
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
    root = tempfile.mkdtemp(prefix="bench-train-")
    samples: dict[str, list[dict]] = {task: [] for task in CHILDREN}
    loads = [_load()]
    try:
        folder = make_image_folder(os.path.join(root, "images"), args.images)
        for _ in range(args.rounds):
            for task in ("ours", "keras", "pipeline"):
                samples[task].append(_child(task, folder, args))
                loads.append(_load())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"settings": {k: getattr(args, k) for k in ("image_size", "batch_size", "images", "epochs", "rounds")},
            "loadavg": loads, "samples": samples}  # fmt: skip


def _median(results: dict, task: str, key: str = "steady_img_s") -> float:
    return statistics.median(s[key] for s in results["samples"][task])


def report(results: dict) -> str:
    s = results["settings"]
    lines = [
        f"EfficientNetB0 fine-tuning, TensorFlow backend, CPU: image size {s['image_size']}, batch {s['batch_size']}, "
        f"{s['images']} images, {s['epochs']} epochs (epochs 2..{s['epochs']} timed), {s['rounds']} round(s)",
        f"  load average (1/5/15 min) before and after each child: {' | '.join(results['loadavg'])}",
        f"  {'images/s':<44s} {'median':>8s} {'epoch':>8s}  all rounds (steady)",
    ]
    labels = {
        "ours": "(1) ours: efficientnet.training.train",
        "keras": "(2) keras: applications.EfficientNetB0 + fit",
        "pipeline": "(3) ours: input pipeline alone",
    }
    for task, label in labels.items():
        runs = results["samples"][task]
        spread = ", ".join(f"{r['steady_img_s']:.1f}" for r in runs)
        lines.append(
            f"  {label:<44s} {_median(results, task):8.1f} {_median(results, task, 'epoch_img_s'):8.1f}  {spread}"
        )
    ours, ref, pipe = (_median(results, t) for t in ("ours", "keras", "pipeline"))
    lines.append(f"  ratio ours / keras (training, target >= 1.0): {ours / ref:.3f}")
    lines.append(f"  ratio pipeline / ours training step rate (target >= 3.0): {pipe / ours:.2f}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--epochs", type=int, default=3, help="at least 2: the first is not timed")
    parser.add_argument("--rounds", type=int, default=2, help="child processes per figure (median taken)")
    parser.add_argument(
        "--quick", action="store_true", help="tiny settings for CI: 64 px, batch 8, 32 images, 2 epochs"
    )
    parser.add_argument("--json", help="also write the raw figures here")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        result = CHILDREN[args.child](args.data, args.image_size, args.batch_size, args.epochs)
        print("RESULT " + json.dumps(result))
        return
    if args.quick:
        args.image_size, args.batch_size, args.images, args.epochs, args.rounds = 64, 8, 32, 2, 1
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch is not timed)")
    if args.images < args.batch_size:
        parser.error("--images must be at least --batch-size")
    results = run(args)
    print(report(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
