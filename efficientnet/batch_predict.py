"""Folder prediction for ``efficientnet predict FOLDER --out preds.csv``: a tf.data pipeline, batched.

TensorFlow-only (imported lazily by the command line). Files are decoded with the decoder training
uses (:func:`efficientnet.training.data.decode_image`) and cropped with the evaluation crop
(:func:`efficientnet.training.data.center_crop_and_resize`) in a parallel ``map``, batched and
prefetched, so decoding overlaps the model. A file that does not decode is dropped by
``ignore_errors`` and named afterwards: every element carries its path, so the skipped files are the
listed ones that never came out (and only those are decoded again, for the reason).
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from .preprocessing import IMAGE_EXTENSIONS, DataConfig

__all__ = [
    "RUNTIMES",
    "list_images",
    "predict_dataset",
    "predict_files",
    "read_predictions",
    "run_folder_predict",
    "write_predictions",
]

RUNTIMES = ("keras", "onnxruntime")


def list_images(paths: Sequence[str]) -> list[str]:
    """The image files among ``paths``: files as given, folders searched recursively (sorted, hidden
    folders skipped) for :data:`~efficientnet.preprocessing.IMAGE_EXTENSIONS`."""
    found: list[str] = []
    for path in paths:
        if not os.path.isdir(path):
            found.append(path)
            continue
        for parent, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [os.path.join(parent, n) for n in sorted(names) if n.lower().endswith(IMAGE_EXTENSIONS)]
    return found


def predict_dataset(files: Sequence[str], config: DataConfig, batch_size: int):
    """``(paths, images)`` batches: decoded, eval-cropped to ``config.eval_size``, undecodable files dropped."""
    import tensorflow as tf

    from .training.data import center_crop_and_resize, decode_image

    size = int(config.eval_size)
    fraction = config.crop_fraction_at(size)

    def load(path):
        image = decode_image(tf.io.read_file(path))
        image = center_crop_and_resize(image, size, crop_fraction=fraction, interpolation=config.interpolation)
        return path, image

    ds = tf.data.Dataset.from_tensor_slices(tf.constant(list(files), dtype=tf.string))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors()
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _onnx_runner(model) -> Callable[[np.ndarray], np.ndarray]:
    """``model`` exported once to a temporary ONNX file and run by ``onnxruntime``."""
    try:
        import onnxruntime as ort
    except ImportError:
        message = "--runtime onnxruntime needs onnxruntime: pip install onnxruntime (or --runtime keras)."
        raise ValueError(message) from None
    from .export import export_model

    with tempfile.TemporaryDirectory(prefix="efficientnet-predict-") as tmp:
        path = export_model(model, os.path.join(tmp, "model.onnx"), "onnx")
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def _keras_runner(model, size: int) -> Callable[[np.ndarray], np.ndarray]:
    """:func:`~efficientnet.inference.optimize_for_inference`'s model (BN folded, dropout removed); on
    TensorFlow one ``tf.function`` traced for ``(None, size, size, 3)`` batches, so the graph has static
    spatial shapes and a last, smaller batch does not retrace."""
    import keras

    from .inference import optimize_for_inference

    fast = optimize_for_inference(model)
    if keras.backend.backend() != "tensorflow":
        return lambda x: np.asarray(keras.ops.convert_to_numpy(fast(x, training=False)))
    import tensorflow as tf

    spec = tf.TensorSpec([None, size, size, 3], tf.float32)
    call = tf.function(lambda x: fast(x, training=False), input_signature=[spec])
    return lambda x: call(x).numpy()


def _runner(model, runtime: str, size: int) -> Callable[[np.ndarray], np.ndarray]:
    if runtime not in RUNTIMES:
        raise ValueError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}.")
    if runtime == "onnxruntime":
        return _onnx_runner(model)
    return _keras_runner(model, size)


def _progress(total: int):
    """A tqdm bar on a terminal (or a plain counter without tqdm); nothing when stderr is not a terminal."""
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm

        return tqdm(total=total, unit="img", file=sys.stderr)
    except ImportError:

        class Counter:
            done = 0

            def update(self, n):
                self.done += n
                sys.stderr.write(f"\r{self.done}/{total} images")
                sys.stderr.flush()

            def close(self):
                sys.stderr.write("\n")

        return Counter()


def _reason(path: str) -> str:
    from .training.data import _check_image

    if not os.path.isfile(path):
        return "no such file"
    return _check_image(path) or "it could not be decoded and cropped"


def predict_files(
    model,
    files: Sequence[str],
    config: DataConfig,
    *,
    class_names: Sequence[str] | None = None,
    top: int = 5,
    batch_size: int = 32,
    runtime: str = "keras",
    progress: bool = True,
) -> Iterator[dict]:
    """One record per file, in the order of ``files``: ``{"file", "top": [(label, probability)...],
    "error"}`` (``error`` is ``None``, or the reason the file was skipped, with an empty ``top``)."""
    from .preprocessing import decode_predictions

    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}.")
    run = _runner(model, runtime, int(config.eval_size))
    bar = _progress(len(files)) if progress and files else None
    done: set[str] = set()
    try:
        for paths, images in predict_dataset(files, config, batch_size):
            probs = run(images.numpy())
            for path, p in zip(paths.numpy(), probs):
                path = path.decode()
                if class_names is not None:
                    best = [(class_names[i], float(p[i])) for i in np.argsort(-p)[:top]]
                else:
                    best = [(label, prob) for _, label, prob in decode_predictions(p[None], top=top)[0]]
                done.add(path)
                yield {"file": path, "top": best, "error": None}
            if bar is not None:
                bar.update(len(probs))
    finally:
        if bar is not None:
            bar.close()
    for path in files:
        if path not in done:
            yield {"file": path, "top": [], "error": _reason(path)}


def _csv_header(top: int) -> list[str]:
    header = ["file"]
    for k in range(1, top + 1):
        header += [f"label_{k}", f"probability_{k}"]
    return header + ["error"]


def read_predictions(path: str) -> list[dict]:
    """The records of an earlier ``--out`` file (CSV or JSONL), as :func:`predict_files` yields them."""
    records = []
    if path.lower().endswith(".jsonl"):
        with open(path) as f:
            for line in f:
                if line.strip():
                    record = json.loads(line)
                    record["top"] = [(t["label"], float(t["probability"])) for t in record.get("top", [])]
                    records.append(record)
        return records
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            best, k = [], 1
            while row.get(f"label_{k}"):
                best.append((row[f"label_{k}"], float(row[f"probability_{k}"])))
                k += 1
            records.append({"file": row["file"], "top": best, "error": row.get("error") or None})
    return records


def write_predictions(path: str, records: Iterable[dict], top: int) -> None:
    """Writes ``records`` to ``path`` (``.csv`` or ``.jsonl``) atomically: a temporary file beside it,
    then ``os.replace``; on any error the old file stays as it was and no partial file is left."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            if path.lower().endswith(".jsonl"):
                for r in records:
                    top_ = [{"label": label, "probability": p} for label, p in r["top"]]
                    f.write(json.dumps({"file": r["file"], "top": top_, "error": r["error"]}) + "\n")
            else:
                writer = csv.writer(f)
                writer.writerow(_csv_header(top))
                for r in records:
                    cells = [r["file"]]
                    for k in range(top):
                        cells += list(r["top"][k]) if k < len(r["top"]) else ["", ""]
                    writer.writerow(cells + [r["error"] or ""])
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def run_folder_predict(
    model,
    paths: Sequence[str],
    config: DataConfig,
    *,
    out: str,
    class_names: Sequence[str] | None = None,
    top: int = 5,
    batch_size: int = 32,
    runtime: str = "keras",
    resume: bool = False,
) -> tuple[int, int]:
    """``predict FOLDER --out``: predicts the files not already in ``out`` (with ``resume``) and writes
    old and new records atomically. Returns (images predicted, files skipped)."""
    files = [os.path.normpath(f) for f in list_images(paths)]
    previous: list[dict] = []
    if resume and os.path.exists(out):
        # Files that failed before are tried again; the others are kept as they are.
        previous = [r for r in read_predictions(out) if not r["error"]]
        seen = {os.path.normpath(r["file"]) for r in previous}
        files = [f for f in files if f not in seen]
    new = list(
        predict_files(model, files, config, class_names=class_names, top=top, batch_size=batch_size, runtime=runtime)
    )
    skipped = [r for r in new if r["error"]]
    for r in skipped:
        print(f"skipped {r['file']}: {r['error']}", file=sys.stderr)
    write_predictions(out, previous + new, top)
    return len(new) - len(skipped), len(skipped)
