"""bench/bench_ema.py in --quick mode, so the EMA cost benchmark cannot rot (no timing assertions)."""

import json
import os
import re
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "bench_ema.py")


@pytest.mark.slow
def test_bench_ema_quick_prints_both_step_times_and_the_ratio(tmp_path):
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
    assert "EMA over 311 variables" in out, out  # B0: 213 trainable weights + 49 x 2 BN statistics
    assert re.search(r"step time without EMA \(s\): \d+\.\d+", out), out
    assert re.search(r"step time with EMA \(s\):\s+\d+\.\d+", out), out
    assert re.search(r"ratio EMA / plain \(target <= 1\.05\): \d+\.\d+", out), out
    samples = json.loads(out_json.read_text())["samples"]
    assert len(samples["plain"]) == len(samples["ema"]) == 1 and samples["ema"][0]["steps"] == 3
