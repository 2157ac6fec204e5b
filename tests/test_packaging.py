"""emukg as a package: the command line starts without PyTorch, and a built wheel works on its own.

The slow test builds the wheel from a copy of the sources, installs it into a clean virtual environment (no
system site-packages: the wheel's declared dependencies must bring everything) and, from a folder outside the
checkout, runs ``emukg --help``, ``emukg bench --quick`` and README.md's "From Python" example.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from conftest import shared_datasets_path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "numpy", "scipy", "yaml", "tqdm")


def test_building_the_parser_imports_no_heavy_module():
    """``emukg --help`` builds the parser, which imports every commands/<name>.py: none may import PyTorch & co."""
    code = ("import sys; from emukg.cli import build_parser; text = build_parser().format_help(); "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules)); assert 'bench' in text")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]", f"building the parser imported {proc.stdout.strip()}"


def test_emukg_help_runs_without_torch():
    """``python -m emukg --help`` prints every command and exits 0 with PyTorch never imported."""
    code = ("import runpy, sys\n"
            "sys.argv = ['emukg', '--help']\n"
            "try:\n    runpy.run_module('emukg', run_name='__main__')\n"
            "except SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n"
            "assert 'torch' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for command in ("train", "evaluate", "predict", "export", "bench", "reproduce", "report"):
        assert command in proc.stdout


def test_parser_choices_match_the_library():
    """The choices spelled out in the command modules (to keep torch/numpy out of start-up) are the library's."""
    from emukg import evaluation
    from emukg import exports as export
    from emukg.commands import evaluate as evaluate_cmd
    from emukg.commands import export as export_cmd

    assert evaluate_cmd.TIE_POLICIES == evaluation.TIE_POLICIES
    assert export_cmd.FORMATS == export.FORMATS


def readme_python_example() -> str:
    """The ```python block under README.md's "## From Python" heading."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## From Python", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README.md's 'From Python' section has no ```python block"
    return match.group(1)


def _run(cmd, *, cwd, env, timeout):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_wheel_installs_into_a_clean_venv_and_runs(tmp_path):
    """Build, install into a clean venv, then run the command line, the bench suite and the README example."""
    pytest.importorskip("build", reason="the 'build' package (pip install -e '.[test]') builds the wheel")
    import torch

    t0 = time.perf_counter()
    # 1. the wheel, built from a copy (no stale build/ folder, nothing written into the checkout)
    src = tmp_path / "source"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.so"))
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", dist, src], cwd=tmp_path, env=dict(os.environ), timeout=300)
    (wheel,) = dist.glob("emukg-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    kernels = {n for n in names if n.startswith("emukg/kernels/")}
    assert {f"emukg/kernels/{p.name}" for p in (REPO / "src/emukg/kernels").glob("*.[ch]")} <= kernels
    assert "emukg/kernels/emukg_kernels.h" in kernels
    for module in ("__init__", "suite", "train_step", "eval_speed", "sans_build", "load_dataset"):
        assert f"emukg/bench/{module}.py" in names

    # 2. a clean venv; the same PyTorch as this interpreter's (a local CPU wheel here and on CI), the rest from the
    #    wheel's own dependency list
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=tmp_path, env=dict(os.environ), timeout=120)
    py, emukg_exe = venv / "bin" / "python", venv / "bin" / "emukg"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
               EMUKG_CACHE_DIR=str(tmp_path / "cache"))
    _run([py, "-m", "pip", "install", "--quiet", f"torch=={torch.__version__}", wheel], cwd=tmp_path, env=env, timeout=600)
    t_installed = time.perf_counter()

    # 3. from a folder outside the checkout
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = _run([py, "-c", "import emukg; print(emukg.__file__)"], cwd=outside, env=env, timeout=60).stdout.strip()
    assert Path(where).resolve().is_relative_to(venv.resolve()), where
    help_text = _run([emukg_exe, "--help"], cwd=outside, env=env, timeout=60).stdout
    assert "bench" in help_text and "train" in help_text
    datasets = shared_datasets_path()
    if not datasets.is_dir():
        pytest.skip(f"wheel built, installed and 'emukg --help' ran ({time.perf_counter() - t0:.0f} s); the bench and "
                    "README parts need the reference datasets: set EMUKG_DATA_DIR to the shared datasets folder")
    env["EMUKG_DATA_DIR"] = str(datasets)

    proc = _run([emukg_exe, "bench", "--quick", "--json", "out.json"], cwd=outside, env=env, timeout=600)
    from test_bench import assert_quick_bench_figures

    assert_quick_bench_figures(json.loads((outside / "out.json").read_text()))
    assert "TransE/emu/uniform" in proc.stdout

    (outside / "example.py").write_text(readme_python_example(), encoding="utf-8")
    proc = _run([py, "example.py"], cwd=outside, env=env, timeout=600)
    assert re.search(r"^[0-9.e-]+ [0-9.e-]+$", proc.stdout, re.M), proc.stdout[:500]  # the two MRRs
    assert any((outside / "runs").iterdir())  # the default run folder, under the current folder
    print(f"wheel test: build + venv + install {t_installed - t0:.0f} s, all {time.perf_counter() - t0:.0f} s")
