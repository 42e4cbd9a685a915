"""Inference and training benchmark: this library against its references, side by side, one run.

For each variant (B0 and B3 by default) every figure is measured in a fresh child process,
ours and the reference alternating (the order flips every round), and printed with its ratio
(ours / reference) and the issue's target:

(a) TensorFlow graph mode (``tf.function``): ours after ``efficientnet.optimize_for_inference``
    against ``keras.applications``' same model: batch-16 throughput (target >= 1.1x) and
    batch-1 latency (target <= 0.9x).
(b) onnxruntime, one ``SessionOptions`` for every model (all graph optimisations, one thread
    per core): our ONNX export (``efficientnet.export.export_model``) against keras.applications'
    TF graph (targets >= 2.0x throughput, <= 0.5x latency) and against timm's same model
    (``tf_efficientnet_b0``/``_b3``, random weights) exported with ``torch.onnx.export``
    (targets >= 1.3x, <= 0.8x); our int8 model (``quantize_onnx``, static, calibrated on crops
    of the examples' photos) against our float ONNX (target >= 1.5x throughput), and the top-1
    agreement of int8 and float Lite0 with its shipped ImageNet weights on other crops of those
    photos (target >= 0.98; also on the crops whose float top-1 is not a near-tie); our OpenVINO
    export run in OpenVINO (f32).
(d) our LiteRT export's batch-1 latency in the ``ai-edge-litert`` interpreter.
(c) one SGD training step at batch 8 (graph mode) and the peak resident memory of the child:
    ours, ours with ``remat=True`` (rematerialised blocks) and keras.applications.

    python bench/bench.py [--variants B0 B3] [--repeats 3] [--quick] [--json out.json] [--markdown]
                          [--sections tf onnx litert train] [--profile]

``--repeats N`` measures every figure in N child processes (the median is reported); each
child reports the best of its timed iterations. ``--quick`` (CI) runs B0 only at 128 px with a
few iterations, so that the script cannot rot; its figures mean nothing. ``--profile`` adds
onnxruntime's per-op profile (batch 16) of our ONNX and timm's. Every model has random weights.
Absolute numbers on a shared 2-core machine are noisy: read the ratios, and the load average
printed before and after.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

SIZES = {"B0": 224, "B1": 240, "B2": 260, "B3": 300, "B4": 380, "B5": 456, "B6": 528, "B7": 600}
PACKAGES = (
    "efficientnet",
    "tensorflow",
    "keras",
    "numpy",
    "onnx",
    "onnxruntime",
    "tf2onnx",
    "openvino",
    "ai-edge-litert",
    "torch",
    "timm",
    "scikit-image",
)
# The examples' real photos (examples/finetune.py: scikit-image's, which load offline) calibrate the
# int8 model and measure its top-1 agreement with float.
# scikit-image's photos (they ship with the package, offline): calibration and agreement images.
SKIMAGE_PHOTOS = (
    "astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle", "immunohistochemistry", "hubble_deep_field",
    "camera", "coins", "moon", "grass", "gravel", "brick", "clock",
)  # fmt: skip
SECTIONS = ("tf", "onnx", "litert", "train")


# -- the figures: (arm, metric) pairs and how rows compare them ----------------------------------------

# (row label, ours (arm, metric), reference (arm, metric), better, target); a ratio is ours / reference.
ROWS = [
    ("(a) TF graph batch-16 throughput (img/s)", ("tf-ours", "b16"), ("tf-keras", "b16"), "higher", 1.1),
    ("(a) TF graph batch-1 latency (ms)", ("tf-ours", "b1"), ("tf-keras", "b1"), "lower", 0.9),
    ("(b) ONNX/ORT vs keras TF graph, batch-16 throughput", ("onnx-ours", "b16"), ("tf-keras", "b16"), "higher", 2.0),
    ("(b) ONNX/ORT vs keras TF graph, batch-1 latency", ("onnx-ours", "b1"), ("tf-keras", "b1"), "lower", 0.5),
    ("(b) ONNX/ORT vs timm ONNX/ORT, batch-16 throughput", ("onnx-ours", "b16"), ("onnx-timm", "b16"), "higher", 1.3),
    ("(b) ONNX/ORT vs timm ONNX/ORT, batch-1 latency", ("onnx-ours", "b1"), ("onnx-timm", "b1"), "lower", 0.8),
    ("(b) int8 ONNX vs float ONNX, batch-16 throughput", ("onnx-int8", "b16"), ("onnx-ours", "b16"), "higher", 1.5),
    ("(b) int8 ONNX vs float ONNX, batch-1 latency", ("onnx-int8", "b1"), ("onnx-ours", "b1"), "lower", None),
    ("(b) int8 top-1 agreement with float, Lite0 ImageNet weights", ("export", "int8_agreement"), None, "higher", 0.98),
    (
        "(b) int8 agreement, crops whose float top-2 differ by >= 0.01",
        ("export", "int8_agreement_clear"),
        None,
        "higher",
        None,
    ),
    ("(b) OpenVINO vs keras TF graph, batch-16 throughput", ("openvino", "b16"), ("tf-keras", "b16"), "higher", None),
    ("(b) OpenVINO vs keras TF graph, batch-1 latency", ("openvino", "b1"), ("tf-keras", "b1"), "lower", None),
    ("(d) LiteRT vs keras TF graph, batch-1 latency", ("litert", "b1"), ("tf-keras", "b1"), "lower", None),
    ("(c) training step, batch 8 (s): ours", ("train-ours", "step_s"), ("train-keras", "step_s"), "lower", None),
    ("(c) training step, batch 8 (s): ours-remat", ("train-remat", "step_s"), ("train-keras", "step_s"), "lower", 1.4),
    ("(c) peak RSS, training (MiB): ours", ("train-ours", "rss_mib"), ("train-keras", "rss_mib"), "lower", None),
    ("(c) peak RSS, training (MiB): ours-remat", ("train-remat", "rss_mib"), ("train-keras", "rss_mib"), "lower", 0.6),
]
ROW_SECTION = {"(a)": "tf", "(b)": "onnx", "(d)": "litert", "(c)": "train"}
# Timed arms per section, in (ours, reference) pairs: the pair's order flips every round.
PAIRS = {
    "tf": [("tf-ours", "tf-keras")],
    "onnx": [("onnx-ours", "onnx-timm"), ("onnx-int8", "openvino")],
    "litert": [("litert",)],
    "train": [("train-ours", "train-keras"), ("train-remat",)],
}


def ort_session_options(threads: int = 0):
    """The one onnxruntime configuration every ONNX model runs with (``threads=0``: one per core)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


# -- children ---------------------------------------------------------------------------------------------


def _time(fn, iters: int, budget_s: float) -> dict:
    """Best and median wall time of ``fn()`` over at least ``iters`` calls (more while within budget)."""
    fn()  # warm-up: tracing, allocation, kernel selection
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < iters or (time.perf_counter() - start < budget_s and len(times) < 10 * iters):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"best_s": min(times), "median_s": statistics.median(times), "iters": len(times)}


def _inference_figures(run, make_input, args) -> dict:
    """``b16``: batch-16 throughput (img/s); ``b1``: batch-1 latency (ms), both from the best time."""
    x16, x1 = make_input(16), make_input(1)
    t16 = _time(lambda: run(x16), args.iters16, args.budget)
    t1 = _time(lambda: run(x1), args.iters1, args.budget / 2)
    return {"b16": 16 / t16["best_s"], "b1": 1000 * t1["best_s"], "b16_timing": t16, "b1_timing": t1}


def _random_images(batch: int, size: int, layout: str = "nhwc", seed: int = 0):
    import numpy as np

    x = np.random.default_rng(seed).uniform(0, 255, (batch, size, size, 3)).astype("float32")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if layout == "nchw" else x


def _build(impl: str, variant: str, size: int, **kwargs):
    import keras

    if impl == "keras":
        return getattr(keras.applications, f"EfficientNet{variant}")(weights=None, input_shape=(size, size, 3))
    import efficientnet

    return getattr(efficientnet, f"EfficientNet{variant}")(weights=None, input_shape=(size, size, 3), **kwargs)


def _tf_threads(args) -> None:
    """``--threads N``: N intra-op threads and one inter-op thread; else TensorFlow's defaults."""
    if args.threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def child_tf(impl: str, args) -> dict:
    import tensorflow as tf

    _tf_threads(args)
    model = _build(impl, args.variant, args.size)
    if impl == "ours":
        import efficientnet

        model = efficientnet.optimize_for_inference(model)
    graph = tf.function(lambda x: model(x, training=False))
    return _inference_figures(lambda x: graph(x).numpy(), lambda b: tf.constant(_random_images(b, args.size)), args)


def child_onnx(path: str, layout: str, args, profile: str | None = None) -> dict:
    import onnxruntime

    options = ort_session_options(args.threads)
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = profile
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    if profile:
        x = _random_images(16, args.size, layout)
        for _ in range(2 + args.iters16):
            session.run(None, {name: x})
        return {"profile": _summarise_profile(session.end_profiling(), runs=2 + args.iters16, skip=2)}
    return _inference_figures(
        lambda x: session.run(None, {name: x}), lambda b: _random_images(b, args.size, layout), args
    )


def _summarise_profile(path: str, runs: int, skip: int) -> dict:
    """Per op type: milliseconds per run (after ``skip`` warm-up runs) and node count."""
    with open(path) as f:
        events = json.load(f)
    os.unlink(path)
    starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    first = starts[skip] if len(starts) > skip else 0
    per_op: dict[str, list] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= first:
            entry = per_op.setdefault(e["args"]["op_name"], [0.0, set()])
            entry[0] += e["dur"] / 1000 / (runs - skip)
            entry[1].add(e["name"])
    return {op: {"ms": round(ms, 2), "nodes": len(names)} for op, (ms, names) in per_op.items()}


def child_openvino(path: str, args) -> dict:
    import openvino

    core = openvino.Core()
    # f32, as the other runtimes (the CPU plugin would pick bf16 on CPUs that have it).
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    if args.threads:
        config["INFERENCE_NUM_THREADS"] = args.threads
    compiled = core.compile_model(core.read_model(path), "CPU", config)
    request = compiled.create_infer_request()
    return _inference_figures(lambda x: request.infer({0: x}), lambda b: _random_images(b, args.size), args)


def child_litert(path: str, args) -> dict:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=args.threads or os.cpu_count() or 1)
    (detail,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(detail["index"], [1, args.size, args.size, 3])
    interpreter.allocate_tensors()
    x = _random_images(1, args.size)

    def run():
        interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()

    t1 = _time(run, args.iters1, args.budget / 2)
    return {"b1": 1000 * t1["best_s"], "b1_timing": t1}


def child_train(impl: str, args) -> dict:
    import resource

    import keras
    import numpy as np
    import tensorflow as tf

    _tf_threads(args)
    model = _build("ours" if impl == "remat" else impl, args.variant, args.size, remat=impl == "remat")
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 255, (8, args.size, args.size, 3)).astype("float32"))
    y = tf.constant(rng.integers(0, 1000, (8,)))
    optimizer = keras.optimizers.SGD(0.01)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    timing = _time(lambda: step(x, y).numpy(), args.train_iters, args.budget)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"step_s": timing["best_s"], "rss_mib": rss, "step_timing": timing}


def child_export(args) -> dict:
    """Writes our ONNX, int8 ONNX, OpenVINO and LiteRT files; the int8/float top-1 agreement."""
    from efficientnet.export import export_model, quantize_onnx

    model = _build("ours", args.variant, args.size)
    out, times = {}, {}
    for fmt, name in (("onnx", "ours.onnx"), ("openvino", "ours.xml"), ("litert", "ours.tflite")):
        if fmt in args.formats:
            t = time.perf_counter()
            try:
                export_model(model, os.path.join(args.workdir, name), fmt, overwrite=True)
            except ValueError as exc:  # a missing export package: its figures print n/a
                print(f"{fmt} export unavailable: {exc}", file=sys.stderr)
                continue
            times[fmt] = time.perf_counter() - t
    if "int8" in args.formats and "onnx" in times:
        t = time.perf_counter()
        calibration = _photo_folder(os.path.join(args.workdir, "calibration"), args.calibration, seed=0)
        quantize_onnx(
            os.path.join(args.workdir, "ours.onnx"),
            os.path.join(args.workdir, "int8.onnx"),
            calibration,
            overwrite=True,
        )
        times["int8"] = time.perf_counter() - t
    if args.agreement:
        out.update(_int8_agreement(args))
    out.update({f"export_s.{fmt}": seconds for fmt, seconds in times.items()})
    return out


def _int8_agreement(args) -> dict:
    """Top-1 agreement of int8 and float ONNX on photo crops, for Lite0 with its bundled ImageNet weights.

    The benchmarked models have random weights, whose near-flat logits make any top-1 comparison
    noise; Lite0's weights ship with the package, so this runs offline. The calibration and the
    evaluation crops come from the same photos but are different crops.
    """
    import numpy as np
    import onnxruntime

    import efficientnet
    from efficientnet.export import export_model, quantize_onnx
    from efficientnet.preprocessing import center_crop_and_resize, load_image

    workdir = os.path.join(args.workdir, "agreement")
    calibration = _photo_folder(os.path.join(workdir, "calibration"), args.calibration, seed=0)
    evaluation = _photo_folder(os.path.join(workdir, "evaluation"), args.agreement, seed=1)
    model = efficientnet.EfficientNetLite0(weights="imagenet")
    paths = {"float": os.path.join(workdir, "lite0.onnx"), "int8": os.path.join(workdir, "lite0_int8.onnx")}
    export_model(model, paths["float"], "onnx", overwrite=True)
    quantize_onnx(paths["float"], paths["int8"], calibration, overwrite=True)
    files = sorted(os.path.join(evaluation, f) for f in os.listdir(evaluation))
    x = np.stack([center_crop_and_resize(load_image(f), 224) for f in files]).astype("float32")
    probs = {}
    for kind, path in paths.items():
        session = onnxruntime.InferenceSession(path, ort_session_options(), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        probs[kind] = np.concatenate([session.run(None, {name: x[i : i + 8]})[0] for i in range(0, len(x), 8)])
    same = probs["float"].argmax(-1) == probs["int8"].argmax(-1)
    top2 = np.sort(probs["float"], -1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] >= 0.01  # crops whose float top-1 is not a near-tie
    return {
        "int8_agreement": float(np.mean(same)),
        "agreement_images": len(files),
        "int8_agreement_clear": float(np.mean(same[clear])) if clear.any() else float("nan"),
        "agreement_clear_images": int(clear.sum()),
    }


def _photo_folder(folder: str, count: int, seed: int) -> str:
    """``count`` random crops (and flips) of scikit-image's photos as PNG files; random pixels without it."""
    import numpy as np
    from PIL import Image

    os.makedirs(folder)
    rng = np.random.default_rng(seed)
    try:
        import skimage.data

        loaded = [getattr(skimage.data, name)() for name in SKIMAGE_PHOTOS]
        photos = [np.asarray(p[0] if isinstance(p, tuple) else p) for p in loaded]  # stereo: (left, right, ...)
    except ImportError:
        photos = [rng.integers(0, 256, (320, 320, 3), dtype="uint8") for _ in range(14)]
    for i in range(count):
        image = photos[i % len(photos)]
        image = np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image[..., :3]
        h, w = image.shape[:2]
        side = int(min(h, w) * rng.uniform(0.5, 1.0))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = image[top : top + side, left : left + side][:, :: 1 if i % 2 else -1]
        Image.fromarray(np.ascontiguousarray(crop).astype("uint8")).save(os.path.join(folder, f"{i:03d}.png"))
    return folder


def child_export_timm(args) -> dict:
    """timm's same model (random weights) through ``torch.onnx.export`` (dynamic batch)."""
    import types

    try:
        import torchvision  # noqa: F401
    except RuntimeError:  # PyPI's CUDA torchvision beside the CPU torch: timm needs only its Python parts
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
    except ImportError:
        pass
    import timm
    import torch

    model = timm.create_model(f"tf_efficientnet_{args.variant.lower()}", pretrained=False).eval()
    t = time.perf_counter()
    with torch.no_grad():
        torch.onnx.export(
            model,
            torch.zeros(1, 3, args.size, args.size),
            os.path.join(args.workdir, "timm.onnx"),
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,  # the TorchScript exporter: the dynamo one needs onnxscript
        )
    return {"export_s": time.perf_counter() - t, "params": sum(p.numel() for p in model.parameters())}


def run_child(args) -> dict:
    """One figure; ``{"unavailable": reason}`` when a package or an artifact is missing."""
    try:
        return _run_child(args)
    except ModuleNotFoundError as exc:
        return {"unavailable": f"n/a ({exc.name} not installed)"}


def _artifact(workdir: str, name: str) -> str:
    path = os.path.join(workdir, name)
    if not os.path.exists(path):
        raise _Unavailable(f"n/a (no {name}: its export failed or is unavailable)")
    return path


class _Unavailable(Exception):
    pass


def _run_child(args) -> dict:
    try:
        return _dispatch(args)
    except _Unavailable as exc:
        return {"unavailable": str(exc)}


def _dispatch(args) -> dict:
    arm, w = args.child, args.workdir
    if arm == "export":
        return child_export(args)
    if arm == "export-timm":
        return child_export_timm(args)
    if arm in ("tf-ours", "tf-keras"):
        return child_tf(arm[3:], args)
    if arm in ("onnx-ours", "onnx-int8", "onnx-timm"):
        name = {"onnx-ours": "ours.onnx", "onnx-int8": "int8.onnx", "onnx-timm": "timm.onnx"}[arm]
        return child_onnx(_artifact(w, name), "nchw" if arm == "onnx-timm" else "nhwc", args, args.profile_prefix)
    if arm == "openvino":
        return child_openvino(_artifact(w, "ours.xml"), args)
    if arm == "litert":
        return child_litert(_artifact(w, "ours.tflite"), args)
    if arm in ("train-ours", "train-keras", "train-remat"):
        return child_train(arm[6:], args)
    raise ValueError(f"unknown child {arm!r}")


# -- the parent ------------------------------------------------------------------------------------------


def _spawn(arm: str, variant: str, size: int, workdir: str, settings: dict, extra=()) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--child", arm, "--variant", variant, "--size", str(size)]
    command += ["--workdir", workdir] + [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()] + list(extra)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow", PYTHONWARNINGS="ignore")
    t = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[7:])
            result["child_s"] = time.perf_counter() - t
            return result
    tail = (out.stderr or out.stdout)[-2500:]
    return {"failed": f"exit {out.returncode}", "stderr": tail}


def machine_info() -> dict:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    except OSError:
        model = platform.processor() or "?"
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def _median_figures(samples: list[dict]) -> dict:
    """Per metric, the median over child processes; a child's failure or n/a is kept as text."""
    good = [s for s in samples if "failed" not in s and "unavailable" not in s]
    if not good:
        first = samples[0] if samples else {"failed": "not run"}
        return {"unavailable": first.get("unavailable") or f"failed ({first.get('failed')})"}
    keys = {k for s in good for k, v in s.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {k: statistics.median(s[k] for s in good if k in s) for k in keys}


def run_variant(variant: str, size: int, args, settings: dict, workdir: str, log) -> dict:
    sections = args.sections
    samples: dict[str, list] = {}
    formats = []
    if "onnx" in sections:
        formats += ["onnx", "int8", "openvino"]
    if "litert" in sections:
        formats.append("litert")
    if formats:
        log(f"  exporting ours ({', '.join(formats)}) ...")
        extra = [f"--formats={','.join(formats)}", f"--calibration={8 if args.quick else 128}"]
        if "onnx" in sections and variant == args.variants[0]:  # the same Lite0 figure for every variant
            extra.append(f"--agreement={8 if args.quick else 64}")
        samples["export"] = [_spawn("export", variant, size, workdir, settings, extra)]
        if "failed" in samples["export"][0]:
            log("  export failed:\n" + samples["export"][0]["stderr"])
    if "onnx" in sections:
        log("  exporting timm's model with torch.onnx.export ...")
        samples["export-timm"] = [_spawn("export-timm", variant, size, workdir, settings)]
        if "failed" in samples["export-timm"][0]:
            log("  timm export failed:\n" + samples["export-timm"][0]["stderr"])
    for round_ in range(args.repeats):
        for section in SECTIONS:
            if section not in sections:
                continue
            for pair in PAIRS[section]:
                for arm in pair if round_ % 2 == 0 else reversed(pair):
                    result = _spawn(arm, variant, size, workdir, settings)
                    samples.setdefault(arm, []).append(result)
                    shown = {k: round(v, 2) for k, v in result.items() if k in ("b16", "b1", "step_s", "rss_mib")}
                    status = result.get("unavailable") or (
                        f"FAILED {result['failed']}" if "failed" in result else shown
                    )
                    log(f"  round {round_ + 1}/{args.repeats} {arm:12s} {status}  ({result.get('child_s', 0):.0f} s)")
                    if "failed" in result:
                        log(result["stderr"])
    figures = {arm: _median_figures(s) for arm, s in samples.items()}
    profiles = {}
    if args.profile and "onnx" in sections:
        for arm in ("onnx-ours", "onnx-timm"):
            prefix = os.path.join(workdir, f"profile-{arm}")
            result = _spawn(arm, variant, size, workdir, settings, [f"--profile-prefix={prefix}"])
            profiles[arm] = result.get("profile") or result
    return {"size": size, "figures": figures, "samples": samples, "profiles": profiles}


def rows_for(result: dict, sections) -> list[dict]:
    figures = result["figures"]
    rows = []
    for label, ours, reference, better, target in ROWS:
        if ROW_SECTION[label[:3]] not in sections:
            continue
        row = {"label": label, "better": better, "target": target}
        ours_figures = figures.get(ours[0], {"unavailable": "not run"})
        row["ours"] = ours_figures.get(ours[1], ours_figures.get("unavailable", "n/a"))
        if reference is not None:
            ref_figures = figures.get(reference[0], {"unavailable": "not run"})
            row["reference"] = ref_figures.get(reference[1], ref_figures.get("unavailable", "n/a"))
            row["reference_arm"] = reference[0]
        if isinstance(row["ours"], float) and isinstance(row.get("reference"), float) and row["reference"]:
            row["ratio"] = row["ours"] / row["reference"]
        value = row.get("ratio", row["ours"] if reference is None else None)
        if target is not None and isinstance(value, float):  # a ratio, or a figure without a reference
            row["met"] = value >= target if better == "higher" else value <= target
        rows.append(row)
    return rows


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _target(row) -> str:
    if row["target"] is None:
        return ""
    return f"{'>=' if row['better'] == 'higher' else '<='} {row['target']}"


def _status(row) -> str:
    if "met" not in row:
        return ""
    return "met" if row["met"] else "NOT met"


def report(results: dict, machine: dict) -> str:
    lines = []
    for variant, result in results["variants"].items():
        lines.append(f"\nEfficientNet{variant} at {result['size']} px (ours / reference; {variant} random weights)")
        lines.append(f"  {'figure':<54s} {'ours':>9s} {'reference':>10s} {'ratio':>7s}  {'target':<8s} status")
        for row in result["rows"]:
            ratio = f"{row['ratio']:.3f}" if "ratio" in row else ""
            lines.append(
                f"  {row['label']:<54s} {_fmt(row['ours']):>9s} {_fmt(row.get('reference', '')):>10s} "
                f"{ratio:>7s}  {_target(row):<8s} {_status(row)}".rstrip()
            )
        export = result["figures"].get("export", {})
        if "agreement_images" in export:
            lines.append(
                f"  (int8 agreement: Lite0 with its bundled ImageNet weights, {int(export['agreement_images'])} "
                f"crops of the examples' scikit-image photos ({int(export.get('agreement_clear_images', 0))} with a "
                "clear float top-1), float and int8 ONNX in onnxruntime)"
            )
        times = [f"{k[9:]} {v:.0f} s" for k, v in export.items() if k.startswith("export_s.")]
        timm = result["figures"].get("export-timm", {}).get("export_s")
        if times or timm:
            lines.append("  export times: " + ", ".join(times + ([f"timm ONNX {timm:.0f} s"] if timm else [])))
        for arm, profile in result.get("profiles", {}).items():
            if "failed" in profile:
                lines.append(f"  profile {arm}: failed")
                continue
            total = sum(p["ms"] for p in profile.values()) or 1.0
            top = sorted(profile.items(), key=lambda kv: -kv[1]["ms"])[:10]
            lines.append(f"  onnxruntime profile, {arm}, batch 16: {total:.0f} ms of kernels per run")
            for op, p in top:
                lines.append(f"    {op:<26s} {p['ms']:8.1f} ms {100 * p['ms'] / total:5.1f}%  ({p['nodes']} nodes)")
    return "\n".join(lines)


def markdown(results: dict, machine: dict) -> str:
    variants = list(results["variants"])
    head = "| figure | " + " | ".join(f"{v} ours | {v} ref | {v} ratio" for v in variants) + " | target |"
    lines = [head, "|" + "---|" * (2 + 3 * len(variants))]
    labels = [row["label"] for row in results["variants"][variants[0]]["rows"]]
    for i, label in enumerate(labels):
        cells = []
        target = ""
        for v in variants:
            row = results["variants"][v]["rows"][i]
            target = _target(row).replace(">=", "≥").replace("<=", "≤")
            ratio = f"{row['ratio']:.2f}" if "ratio" in row else ""
            if "met" in row:
                ratio += " ✓" if row["met"] else " ✗"
            cells += [_fmt(row["ours"]), _fmt(row.get("reference", "")), ratio]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {target} |")
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    lines.append("")
    threads = results["settings"].get("threads") or "default (one per core)"
    repeats = {len(s) for r in results["variants"].values() for k, s in r["samples"].items() if not k.startswith("ex")}
    lines.append(
        f"{machine['date']}; {machine['cores']} cores, {machine['cpu']}; load average {results['load_before']} "
        f"before, {results['load_after']} after; threads {threads}; median of {max(repeats, default=1)} child "
        f"processes per figure; {versions}."
    )
    return "\n".join(lines)


def _load() -> str:
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=["B0", "B3"])
    parser.add_argument("--repeats", type=int, default=3, help="child processes per figure (median reported)")
    parser.add_argument("--quick", action="store_true", help="CI smoke run: B0 at 128 px, few iterations")
    parser.add_argument("--json", help="write every figure, sample and the machine description here")
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table for bench/README.md")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--profile", action="store_true", help="onnxruntime per-op profiles of ours and timm")
    parser.add_argument("--size", type=int, help="input size (default: the variant's; 128 with --quick)")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="threads for every runtime (TensorFlow intra-op with one inter-op, onnxruntime, OpenVINO, LiteRT); "
        "default: each runtime's own default (one per core)",
    )
    # Child-process arguments (internal).
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--formats", default="", help=argparse.SUPPRESS)
    parser.add_argument("--calibration", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--agreement", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--profile-prefix", help=argparse.SUPPRESS)
    parser.add_argument("--iters16", type=int, default=5, help=argparse.SUPPRESS)
    parser.add_argument("--iters1", type=int, default=20, help=argparse.SUPPRESS)
    parser.add_argument("--train-iters", type=int, default=5, help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=float, default=10.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        args.formats = [f for f in args.formats.split(",") if f]
        print("RESULT " + json.dumps(run_child(args)), flush=True)
        return 0

    if args.quick:
        args.variants, args.repeats = ["B0"], 1
        settings = {"iters16": 2, "iters1": 3, "train_iters": 2, "budget": 0.0}
    else:
        settings = {"iters16": args.iters16, "iters1": args.iters1, "train_iters": args.train_iters}
        settings["budget"] = args.budget
    settings["threads"] = args.threads

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    machine = machine_info()
    results = {"machine": machine, "load_before": _load(), "settings": settings, "variants": {}}
    print(f"bench/bench.py {' '.join(sys.argv[1:])}")
    print(f"date: {machine['date']}")
    print(f"machine: {machine['cores']} cores, {machine['cpu']}, Python {machine['python']}, {machine['platform']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()))
    print(f"load average before: {results['load_before']}")
    threads = args.threads or os.cpu_count()
    tf_threads = f"{args.threads} intra-op and 1 inter-op threads" if args.threads else "default threads"
    print(
        f"runtimes: TensorFlow {tf_threads}; onnxruntime ORT_ENABLE_ALL, sequential, {threads} intra-op threads, "
        f"CPUExecutionProvider (ours, int8 and timm alike); OpenVINO CPU f32, {threads} threads; LiteRT "
        f"interpreter, {threads} threads. Each figure is the best time in its child process, the median over "
        f"{args.repeats} child process(es)."
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="efficientnet-bench-") as root:
        for variant in args.variants:
            size = args.size or (128 if args.quick else SIZES.get(variant, 224))
            workdir = os.path.join(root, variant)
            os.makedirs(workdir)
            log(f"EfficientNet{variant} at {size} px")
            result = run_variant(variant, size, args, settings, workdir, log)
            first = results["variants"][args.variants[0]]["figures"] if results["variants"] else {}
            for key in ("int8_agreement", "agreement_images", "int8_agreement_clear", "agreement_clear_images"):
                if key in first.get("export", {}) and "export" in result["figures"]:
                    result["figures"]["export"][key] = first["export"][key]
            result["rows"] = rows_for(result, args.sections)
            results["variants"][variant] = result
    results["load_after"] = _load()
    results["wall_s"] = time.perf_counter() - started
    print(report(results, machine))
    print(f"\nload average after: {results['load_after']}; {results['wall_s'] / 60:.1f} min")
    if args.markdown:
        print("\n" + markdown(results, machine))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)
    failed = [
        f"{v} {arm}"
        for v, r in results["variants"].items()
        for arm, s in r["samples"].items()
        if any("failed" in x for x in s)
    ]
    if failed:
        print("failed children: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
