"""bench/bench_train.py in --quick mode, so the fine-tuning benchmark cannot rot (no timing assertions)."""

import os
import re
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "bench_train.py")


@pytest.mark.slow
def test_bench_train_quick_prints_the_three_figures_and_ratios(tmp_path):
    pytest.importorskip("skimage")
    out_json = tmp_path / "bench.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    result = subprocess.run(
        [sys.executable, BENCH, "--quick", "--json", str(out_json)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    number = r"\s+\d+\.\d+\s+\d+\.\d+"
    assert re.search(r"\(1\) ours: efficientnet\.training\.train" + number, out), out
    assert re.search(r"\(2\) keras: applications\.EfficientNetB0 \+ fit" + number, out), out
    assert re.search(r"\(3\) ours: input pipeline alone" + number, out), out
    assert re.search(r"ratio ours / keras \(training, target >= 1\.0\): \d+\.\d+", out), out
    assert re.search(r"ratio pipeline / ours training step rate \(target >= 3\.0\): \d+\.\d+", out), out
    assert out_json.exists()
