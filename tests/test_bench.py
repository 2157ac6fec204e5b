"""Smoke test of ``emukg bench --quick`` (the suite of :mod:`emukg.bench`): it runs end to end and writes the
documented JSON keys; the ``python -m emukg.bench.<name>`` entry points and the evaluation benchmark's child processes work
from any folder.

Timings are never asserted (a shared machine may be slow); only that each figure exists and is a positive number.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

BENCH_KEYS = ("train_step_ms", "eval_queries_per_s", "sans_build_s", "load_s", "peak_rss_mb")


def assert_quick_bench_figures(res: dict) -> None:
    """The JSON of ``emukg bench --quick``: every documented key, each figure a positive finite float
    (tests/test_packaging.py checks an installed wheel's bench with it too)."""
    for key in BENCH_KEYS:
        assert res[key], key
        for case, value in res[key].items():
            assert isinstance(value, float) and math.isfinite(value) and value > 0, (key, case, value)
    assert "TransE/emu/uniform" in res["train_step_ms"]
    assert {"TransE", "DistMult"} <= set(res["eval_queries_per_s"])
    assert "FB15k-237" in res["sans_build_s"] and "FB15k-237" in res["load_s"]
    assert res["machine"]["torch"] and res["machine"]["threads"] >= 1
    assert res["machine"]["kernels"]  # which CPU path ran


def test_bench_quick_writes_every_key(shared_datasets, tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "EMUKG_DATA_DIR": str(shared_datasets), "EMUKG_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "emukg", "bench", "--quick", "--json", str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_quick_bench_figures(json.loads(out.read_text()))
    assert "TransE/emu/uniform" in proc.stdout  # the printed table


def test_bench_cuda_without_gpu_is_a_clear_error(tmp_path):
    import pytest
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the no-GPU error cannot be checked here")
    proc = subprocess.run([sys.executable, "-m", "emukg", "bench", "--device", "cuda"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "no CUDA GPU" in proc.stderr and "Traceback" not in proc.stderr


def test_benchmarks_run_as_modules_of_the_package(tmp_path):
    """``python -m emukg.bench.<name>`` (the commands of README.md and docs/results.md) runs from any folder."""
    for name, option in [("suite", "--quick"), ("train_step", "--losses"), ("eval_speed", "--synthetic-only"),
                         ("sans_build", "--exact"), ("load_dataset", "--check"), ("scale", "--no-ddp"),
                         ("onevsall", "--memory-mb")]:
        proc = subprocess.run([sys.executable, "-m", f"emukg.bench.{name}", "--help"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, (name, proc.stderr[-2000:])
        assert proc.stdout.startswith("usage: ") and option in proc.stdout, (name, proc.stdout[:300])


def test_eval_benchmark_child_runs_as_a_module_from_any_folder(tmp_path, monkeypatch):
    """The per-model child processes are ``python -m emukg.bench.eval_speed --child``: no path into a checkout."""
    from emukg.bench.eval_speed import _child

    monkeypatch.chdir(tmp_path)
    res = _child("synthetic", dict(num_entities=500, hidden_dim=8, memory_mb=4, num_test=2, backend="torch"))
    assert res["entities"] == 500 and res["dim"] == 8 and res["backend"] == "torch"
    assert res["queries"] == 4  # 2 test triples, head and tail
    assert res["seconds"] > 0 and math.isfinite(res["eval_extra_rss_mb"])


def test_step_profile_phases_add_up_and_the_floor_model_counts_by_hand(tiny_dataset):
    """emukg.bench.step_profile: with one timed step the phases add up to the step (the forward's parts are timed
    at the Objective's own boundaries, the rest by difference), and the floor model's counts are the docstring's
    formulas (timings themselves are not asserted)."""
    from emukg.bench.step_profile import PHASES, floor_ms, profile_case
    from emukg.bench.train_step import make_config
    from emukg.data import load_folder

    kg = load_folder(tiny_dataset)
    for loss in ("ce", "emu"):
        cfg = make_config("TransE", loss, dataset=str(tiny_dataset), hidden_dim=8, batch_size=4, negatives=3)
        cfg.validate()
        prof = profile_case(cfg, kg, steps=1, warmup=1)
        assert all(prof[p] >= 0 for p in PHASES if p != "rest")
        assert math.isclose(sum(prof[p] for p in PHASES), prof["step"], rel_tol=1e-6, abs_tol=1e-6)
        assert (prof["emu"] > 0) == (loss == "emu")
        peaks = {"flops_per_s": 1e9, "cache_bytes_per_s": 1e9, "memory_bytes_per_s": 1e9}
        fl = floor_ms("TransE", loss, cfg, kg, prof["params_bytes"], peaks)
        passes = 2 if loss == "emu" else 1
        assert fl["components"] == passes * 4 * (3 + 1) * 8
        assert fl["flops"] == fl["components"] * 9 and fl["cache_bytes"] == fl["components"] * 12
        assert math.isclose(fl["floor_ms"], (max(fl["flops"], fl["cache_bytes"]) + 3 * prof["params_bytes"]) / 1e9 * 1e3)
