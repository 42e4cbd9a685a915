"""bench/bench.py in --quick mode, so the inference and training benchmark cannot rot (no timing assertions)."""

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "bench.py")
NUMBER = r"\d+(?:\.\d+)?(?:e[-+]?\d+)?"
# Every row bench/bench.py prints, with whether it has a reference and a ratio.
ROWS = [
    "(a) TF graph batch-16 throughput (img/s)",
    "(a) TF graph batch-1 latency (ms)",
    "(b) ONNX/ORT vs keras TF graph, batch-16 throughput",
    "(b) ONNX/ORT vs keras TF graph, batch-1 latency",
    "(b) ONNX/ORT vs timm ONNX/ORT, batch-16 throughput",
    "(b) ONNX/ORT vs timm ONNX/ORT, batch-1 latency",
    "(b) int8 ONNX vs float ONNX, batch-16 throughput",
    "(b) int8 ONNX vs float ONNX, batch-1 latency",
    "(b) OpenVINO vs keras TF graph, batch-16 throughput",
    "(b) OpenVINO vs keras TF graph, batch-1 latency",
    "(d) LiteRT vs keras TF graph, batch-1 latency",
    "(c) training step, batch 8 (s): ours",
    "(c) training step, batch 8 (s): ours-remat",
    "(c) peak RSS, training (MiB): ours",
    "(c) peak RSS, training (MiB): ours-remat",
]
TARGETS = {  # rows with a target print it and "met" / "NOT met"
    "(a) TF graph batch-16 throughput (img/s)": ">= 1.1",
    "(a) TF graph batch-1 latency (ms)": "<= 0.9",
    "(b) ONNX/ORT vs keras TF graph, batch-16 throughput": ">= 2.0",
    "(b) ONNX/ORT vs keras TF graph, batch-1 latency": "<= 0.5",
    "(b) ONNX/ORT vs timm ONNX/ORT, batch-16 throughput": ">= 1.3",
    "(b) ONNX/ORT vs timm ONNX/ORT, batch-1 latency": "<= 0.8",
    "(b) int8 ONNX vs float ONNX, batch-16 throughput": ">= 1.5",
    "(c) training step, batch 8 (s): ours-remat": "<= 1.4",
    "(c) peak RSS, training (MiB): ours-remat": "<= 0.6",
}


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.mark.slow
def test_bench_quick_prints_every_row(tmp_path):
    missing = [m for m in ("onnxruntime", "tf2onnx", "openvino", "ai_edge_litert", "timm", "skimage") if not _has(m)]
    if missing:  # found, not imported: the bench's children import them (timm needs its torchvision workaround)
        pytest.skip(f"bench needs {', '.join(missing)}")
    out_json = tmp_path / "bench.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    result = subprocess.run(
        [sys.executable, BENCH, "--quick", "--json", str(out_json), "--markdown"],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout

    # The machine, the date and the versions, the load before and after.
    assert re.search(r"^machine: \d+ cores, ", out, re.M), out
    assert re.search(r"^date: \d{4}-\d\d-\d\d", out, re.M), out
    assert re.search(r"^versions: efficientnet .*onnxruntime \S+.*timm \S+", out, re.M), out
    assert re.search(rf"^load average before: {NUMBER} / ", out, re.M), out
    assert re.search(rf"^load average after: {NUMBER} / ", out, re.M), out

    for label in ROWS:  # ours, the reference and their ratio
        pattern = rf"^  {re.escape(label)}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\b(.*)$"
        match = re.search(pattern, out, re.M)
        assert match, f"{label!r} missing or without figures:\n{out}"
        if label in TARGETS:
            assert re.fullmatch(rf"\s+{re.escape(TARGETS[label])}\s+(met|NOT met)", match.group(1)), match.group(0)
    agreement = re.search(r"^  \(b\) int8 top-1 agreement with float, Lite0 ImageNet weights\s+(\S+)", out, re.M)
    assert agreement and 0.0 <= float(agreement.group(1)) <= 1.0, out
    assert re.search(r"^  \(b\) int8 top-1 agreement with float.*>= 0\.98\s+(met|NOT met)$", out, re.M), out
    assert re.search(r"^  \(b\) int8 agreement, crops whose float top-2 differ by >= 0\.01\s+\S+", out, re.M), out

    # The Markdown table has the same rows, and the JSON every figure.
    for label in ROWS:
        assert f"| {label} |" in out, label
    figures = json.loads(out_json.read_text())
    b0 = figures["variants"]["B0"]
    assert b0["size"] == 128
    for arm in (
        "tf-ours",
        "tf-keras",
        "onnx-ours",
        "onnx-timm",
        "onnx-int8",
        "openvino",
        "litert",
        "train-ours",
        "train-remat",
    ):
        assert "unavailable" not in b0["figures"][arm], (arm, b0["figures"][arm])
        assert len(b0["samples"][arm]) == 1  # --quick: one child process per figure
    assert figures["machine"]["cores"] == os.cpu_count()
