"""Folder prediction throughput: ``efficientnet predict FOLDER --out`` vs a hand-written Keras loop.

    python bench/bench_predict.py [--images 500] [--batch-size 32]

Makes a folder of JPEG photos once (random 256–400 px crops of scikit-image's photos, in a temp
dir), then times each figure in a fresh child process, from the model built to the last prediction
(pipeline set-up and the first trace included; random weights everywhere):

- (a) reference: ``keras.utils.image_dataset_from_directory`` + ``keras.applications.EfficientNetB0``
  (``weights=None``) + ``model.predict``;
- (b) ours: :func:`efficientnet.batch_predict.run_folder_predict` (what ``predict FOLDER --out`` runs)
  on our B0, Keras runtime;
- (c) the same with ``runtime="onnxruntime"`` (the one-off ONNX export included);
- (d) our tf.data pipeline alone (decode + eval crop, no model).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_folder(root: str, count: int, seed: int = 0) -> None:
    import numpy as np
    import skimage.data
    from PIL import Image

    photos = [skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket(), skimage.data.astronaut()]
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "photos"), exist_ok=True)
    for i in range(count):
        image = photos[i % len(photos)]
        h, w = image.shape[:2]
        s = int(rng.integers(256, min(400, h, w) + 1))
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        Image.fromarray(image[y : y + s, x : x + s, :3]).save(os.path.join(root, "photos", f"{i:04d}.jpg"), quality=90)


def child(kind: str, folder: str, batch_size: int) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    if kind == "reference":
        model = keras.applications.EfficientNetB0(weights=None)
        start = time.perf_counter()
        ds = keras.utils.image_dataset_from_directory(
            folder, labels=None, image_size=(224, 224), batch_size=batch_size, shuffle=False, verbose=False
        )
        n = int(model.predict(ds, verbose=0).shape[0])
        return {"images": n, "seconds": time.perf_counter() - start}
    from efficientnet import builder, config
    from efficientnet.batch_predict import list_images, predict_dataset, run_folder_predict
    from efficientnet.preprocessing import data_config

    variant = config.get_variant("b0")
    cfg = data_config(variant.name)
    if kind == "pipeline":
        start = time.perf_counter()
        n = sum(int(paths.shape[0]) for paths, _ in predict_dataset(list_images([folder]), cfg, batch_size))
        return {"images": n, "seconds": time.perf_counter() - start}
    model = builder.EfficientNet(variant, weights=None, input_shape=None)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        n, skipped = run_folder_predict(
            model, [folder], cfg, out=os.path.join(tmp, "p.csv"), batch_size=batch_size, runtime=kind
        )
        return {"images": n, "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "FOLDER"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.batch_size)))
        return
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), TF_CPP_MIN_LOG_LEVEL="3")
    print(f"load average before: {os.getloadavg()}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        make_folder(tmp, args.images)
        for kind in ("reference", "keras", "onnxruntime", "pipeline"):
            cmd = [sys.executable, __file__, "--batch-size", str(args.batch_size), "--child", kind, tmp]
            out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            results[kind] = r["images"] / r["seconds"]
            print(f"{kind:12s} {r['images']} images in {r['seconds']:.1f} s: {results[kind]:.1f} images/s", flush=True)
    print(f"load average after: {os.getloadavg()}")
    ref = results["reference"]
    print(f"(b) ours keras / reference:       {results['keras'] / ref:.2f}  (target >= 1.5)")
    print(f"(c) ours onnxruntime / reference: {results['onnxruntime'] / ref:.2f}  (target >= 2.5)")
    print(f"(d) pipeline alone / ours keras:  {results['pipeline'] / results['keras']:.2f}  (target >= 3)")


if __name__ == "__main__":
    main()
