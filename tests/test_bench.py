"""Smoke test of ``emukg bench --quick``: it runs end to end and writes the documented JSON keys.

Timings are never asserted (a shared machine may be slow); only that each figure exists and is a positive number.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys


def test_bench_quick_writes_every_key(shared_datasets, tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "EMUKG_DATA_DIR": str(shared_datasets), "EMUKG_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "emukg", "bench", "--quick", "--json", str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    for key in ("train_step_ms", "eval_queries_per_s", "sans_build_s", "load_s", "peak_rss_mb"):
        assert res[key], key
        for case, value in res[key].items():
            assert isinstance(value, float) and math.isfinite(value) and value > 0, (key, case, value)
    assert "TransE/emu/uniform" in res["train_step_ms"]
    assert {"TransE", "DistMult"} <= set(res["eval_queries_per_s"])
    assert "FB15k-237" in res["sans_build_s"] and "FB15k-237" in res["load_s"]
    assert res["machine"]["torch"] and res["machine"]["threads"] >= 1
    assert "TransE/emu/uniform" in proc.stdout  # the printed table


def test_bench_cuda_without_gpu_is_a_clear_error(tmp_path):
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the no-GPU error cannot be checked here")
    proc = subprocess.run([sys.executable, "-m", "emukg", "bench", "--device", "cuda"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "no CUDA GPU" in proc.stderr and "Traceback" not in proc.stderr
