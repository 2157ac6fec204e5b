"""The boundary to the C kernels (emukg.kernels): one metric numbering, declared prototypes, checking wrappers
that refuse bad arguments before C runs (also under ``python -O``), out-of-range ids in the public entry points,
allocation failures as MemoryError, and the one-line warning plus PyTorch fallback when compiling fails.

Cases that would crash the interpreter if a check regressed run in a subprocess, so a regression is a failed
test rather than a dead pytest.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from emukg import emu, evaluation, kernels
from emukg import scoring
from emukg.data import KnowledgeGraph
from emukg.errors import EmukgError

KDIR = Path(kernels.__file__).resolve().parent
native = {name: kernels.available(name) for name in kernels.KERNELS}
needs = {name: pytest.mark.skipif(not ok, reason=f"native kernel {name} unavailable: {kernels.status()['kernels'][name]['reason']}")
         for name, ok in native.items()}


def run_py(code: str, *flags: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    full = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, *flags, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=full, timeout=timeout)


def graph(n_ent=20, n_rel=3, seed=0) -> KnowledgeGraph:
    g = torch.Generator().manual_seed(seed)

    def trip(n):
        return torch.stack([torch.randint(0, n_ent, (n,), generator=g), torch.randint(0, n_rel, (n,), generator=g),
                            torch.randint(0, n_ent, (n,), generator=g)], 1)

    return KnowledgeGraph([f"e{i}" for i in range(n_ent)], [f"r{i}" for i in range(n_rel)],
                          {"train": trip(60), "valid": trip(10), "test": trip(10)}, name="random")


# the code a subprocess runs to build the same graph and model as graph() / this seed
SETUP = """
import json, sys, torch
from emukg.data import KnowledgeGraph
from emukg.models import build_model
g = torch.Generator().manual_seed(0)
def trip(n):
    return torch.stack([torch.randint(0, 20, (n,), generator=g), torch.randint(0, 3, (n,), generator=g),
                        torch.randint(0, 20, (n,), generator=g)], 1)
kg = KnowledgeGraph([f"e{i}" for i in range(20)], [f"r{i}" for i in range(3)],
                    {"train": trip(60), "valid": trip(10), "test": trip(10)}, name="random")
torch.manual_seed(0)
model = build_model("TransE", 20, 3, 16, 4.0)
"""


# ---------------------------------------------------------------------------------------------------------
# one numbering, declared prototypes
def _defines(prefix: str) -> dict[str, int]:
    text = (KDIR / "emukg_kernels.h").read_text()
    return {m.group(1): int(m.group(2)) for m in re.finditer(rf"#define {prefix}(\w+) \(?(-?\d+)\)?", text)}


def test_python_codes_equal_the_shared_header():
    assert _defines("EMUKG_METRIC_") == {m.name: int(m) for m in kernels.Metric}
    assert _defines("EMUKG_MUT_") == {m.name: int(m) for m in kernels.Mut}
    assert _defines("EMUKG_")["OK"] == kernels.STATUS_OK and _defines("EMUKG_")["ENOMEM"] == kernels.STATUS_ENOMEM
    # the training hook's 'c2' and the evaluation hook's 'complex_l1' are one metric with one code
    assert kernels.metric_code("c2") == kernels.metric_code("complex_l1") == kernels.Metric.COMPLEX_L1
    with pytest.raises(ValueError, match="kind"):
        kernels.metric_code("l2")


def test_every_c_file_uses_the_header_codes_not_literals():
    for name in kernels.KERNELS:
        src = (KDIR / f"{name}.c").read_text()
        assert '#include "emukg_kernels.h"' in src, name
        assert not re.search(r"\b(metric|kind|mut)\s*==\s*\d", src), name


def test_every_exported_function_has_a_declared_prototype():
    for name in kernels.KERNELS:
        src = (KDIR / f"{name}.c").read_text()
        exported = {fn: ret for ret, fn in re.findall(r"^(int|void|float)\s+(emukg_\w+)\s*\(", src, re.M)}
        assert set(exported) == set(kernels.PROTOTYPES[name]), name
        for fn, ret in exported.items():
            restype, argtypes = kernels.PROTOTYPES[name][fn]
            assert (restype is None) == (ret == "void"), fn
            m = re.search(rf"{fn}\s*\(([^)]*)\)", src)
            nargs = 0 if m.group(1).strip() in ("", "void") else m.group(1).count(",") + 1
            assert nargs == len(argtypes), fn


def test_cache_key_changes_with_the_header(tmp_path, monkeypatch):
    before = kernels.so_path("score_all")
    fake = tmp_path / "emukg_kernels.h"
    fake.write_text((KDIR / "emukg_kernels.h").read_text().replace("EMUKG_METRIC_DOT 1", "EMUKG_METRIC_DOT 7"))
    monkeypatch.setattr(kernels.build, "HEADER", fake)  # read where so_path is: emukg.kernels.build
    assert kernels.so_path("score_all") != before


@pytest.mark.skipif(not (native["candidates"] and native["score_all"]), reason="native kernels unavailable")
@pytest.mark.parametrize("kind", ["l1", "dot", "c2"])
def test_training_and_evaluation_kernels_agree_on_each_code(kind):
    """The same code means the same metric in both C files: the evaluation kernel's answer value equals the
    training kernel's score of that answer (score = −distance, or +dot)."""
    g = torch.Generator().manual_seed(1)
    q = (torch.randint(-8, 9, (5, 32), generator=g) / 8).float()  # k/8 grid: every summation order is exact
    E = (torch.randint(-8, 9, (9, 32), generator=g) / 8).float()
    ans = torch.tensor([0, 3, 8, 4, 4])
    code = kernels.metric_code(kind)
    s = kernels.cand_fwd(q, E, ans[:, None].contiguous(), code, 0.0)[:, 0]
    _, _, thr = kernels.rank_fused(code, q, E, ans)
    assert torch.allclose(s, thr if kind == "dot" else -thr, atol=1e-5)
    if kind == "dot":
        assert torch.allclose(s, (q * E[ans]).sum(1))
    elif kind == "l1":
        assert torch.allclose(s, -(q - E[ans]).abs().sum(1))
    else:
        d = torch.complex(q[:, :16] - E[ans, :16], q[:, 16:] - E[ans, 16:]).abs().sum(1)
        assert torch.allclose(s, -d, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# wrappers refuse bad arguments before C runs
def _fwd_args():
    q = torch.randn(4, 16)
    E = torch.randn(10, 16)
    cand = torch.randint(0, 10, (4, 3))
    return q, E, cand


@needs["candidates"]
def test_cand_wrappers_refuse_bad_arguments():
    q, E, cand = _fwd_args()
    L1 = kernels.Metric.L1
    assert kernels.cand_fwd(q, E, cand, L1).shape == (4, 3)
    with pytest.raises(ValueError, match="dtype"):
        kernels.cand_fwd(q.double(), E, cand, L1)
    with pytest.raises(ValueError, match="dtype"):
        kernels.cand_fwd(q, E, cand.int(), L1)
    with pytest.raises(ValueError, match="contiguous"):
        kernels.cand_fwd(q, torch.randn(16, 10).t(), cand, L1)
    with pytest.raises(ValueError, match="shape"):
        kernels.cand_fwd(q[:3], E, cand, L1)
    with pytest.raises(ValueError, match="CPU"):
        kernels.cand_fwd(q.to("meta"), E, cand, L1)
    with pytest.raises(ValueError, match="too narrow"):
        kernels.cand_fwd(q[:, :8].contiguous(), E[:, :8].contiguous(), cand, L1)
    with pytest.raises(ValueError, match="too narrow"):  # COMPLEX_L1 needs 16 complex coordinates
        kernels.cand_fwd(q, E, cand, kernels.Metric.COMPLEX_L1)
    with pytest.raises(ValueError, match="metric"):
        kernels.cand_fwd(q, E, cand, 5)
    with pytest.raises(ValueError, match="ratio"):
        kernels.cand_fwd(q, E, cand, L1, mut=kernels.Mut.MIXUP)
    with pytest.raises(ValueError, match="T must be"):
        kernels.cand_fwd(q, E, cand, L1, mut=kernels.Mut.EMU, T=(1 << 24) + 1)
    for bad in (10, -1):
        c = cand.clone()
        c[2, 1] = bad
        with pytest.raises(IndexError, match=rf"cand holds id {bad}, outside the valid range 0\.\.9"):
            kernels.cand_fwd(q, E, c, L1)
        with pytest.raises(IndexError, match="cand"):
            kernels.cand_bwd(q, E, c, torch.ones(4, 3), L1)
    with pytest.raises(ValueError, match="gout"):
        kernels.cand_bwd(q, E, cand, torch.ones(4, 2), L1)


@needs["score_all"]
def test_rank_wrappers_refuse_bad_arguments():
    g = torch.Generator().manual_seed(0)
    Q, E = torch.randn(6, 8, generator=g), torch.randn(12, 8, generator=g)
    ans = torch.tensor([0, 1, 2, 3, 4, 11])
    start, count = torch.tensor([0, 2, 2, 3, 3, 3]), torch.tensor([2, 0, 1, 0, 0, 2])
    vals = torch.tensor([1, 5, 7, 2, 9])
    gt, ge, thr = kernels.rank_fused(kernels.Metric.L1, Q, E, ans, start, count, vals)
    assert gt.shape == (6,) and bool((ge >= gt).all())
    with pytest.raises(IndexError, match="answer holds id 12"):
        kernels.rank_fused(kernels.Metric.L1, Q, E, torch.tensor([0, 1, 2, 3, 4, 12]))
    with pytest.raises(IndexError, match="vals holds id 99"):
        kernels.rank_fused(kernels.Metric.L1, Q, E, ans, start, count, torch.tensor([1, 5, 7, 2, 99]))
    with pytest.raises(IndexError, match="segments"):
        kernels.rank_fused(kernels.Metric.L1, Q, E, ans, start, count + 1, vals)
    with pytest.raises(ValueError, match="together"):
        kernels.rank_fused(kernels.Metric.L1, Q, E, ans, start, None, vals)
    with pytest.raises(ValueError, match="shape"):
        kernels.rank_fused(kernels.Metric.L1, Q[:, :4].contiguous(), E, ans)
    with pytest.raises(ValueError, match="contiguous"):
        kernels.rank_fused(kernels.Metric.L1, torch.randn(8, 6).t(), E, ans)
    with pytest.raises(ValueError, match="dtype"):
        kernels.rank_fused(kernels.Metric.DOT, Q.half(), E, ans)
    S = torch.randn(6, 12, generator=g)
    thr = S[torch.arange(6), ans].contiguous()
    kernels.rank_dense(S, thr, ans, start, count, vals)
    with pytest.raises(IndexError, match="answer holds id 12"):
        kernels.rank_dense(S, thr, torch.tensor([0, 1, 2, 3, 4, 12]))
    with pytest.raises(ValueError, match="contiguous"):
        kernels.rank_dense(torch.randn(12, 6).t(), thr, ans)
    with pytest.raises(ValueError, match="columns"):
        kernels.rank_dense(S, thr, ans, col0=4, num_entities=12)


@needs["sample_step"]
def test_filter_fill_refuses_bad_arguments():
    start, count, vals = torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([3, 1, 4])
    rows, cand = torch.tensor([0, 1]), torch.tensor([[3, 2, 5], [1, 4, 6]])

    def call(**kw):
        a = dict(rows=rows, cand=cand, out=torch.zeros(2, 2, dtype=torch.int64), filled=torch.zeros(2, dtype=torch.int64),
                 start=start, count=count, vals=vals, num_entities=8)
        a.update(kw)
        return kernels.filter_fill(**a), a["out"]

    found, out = call()
    assert found.tolist() == [2, 1] and out.tolist() == [[2, 5], [6, 0]]
    with pytest.raises(IndexError, match="cand holds id 8"):
        call(cand=torch.tensor([[3, 2, 8], [1, 4, 6]]))
    with pytest.raises(IndexError, match="rows holds id 2"):
        call(rows=torch.tensor([0, 2]))
    with pytest.raises(IndexError, match="vals holds id -1"):
        call(vals=torch.tensor([3, -1, 4]))
    with pytest.raises(ValueError, match="filled"):
        call(filled=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="dtype"):
        call(cand=cand.int())
    with pytest.raises(ValueError, match="required"):
        call(start=None)


def test_ptr_checks_without_assert():
    with pytest.raises(ValueError, match="contiguous"):
        kernels.ptr(torch.zeros(4, 4).t())
    t = torch.zeros(3)
    assert kernels.ptr(t) == t.data_ptr()
    with pytest.raises(ValueError, match="CPU"):
        kernels.ptr(torch.zeros(3, device="meta"))
    assert kernels.ptr(None) is None


# ---------------------------------------------------------------------------------------------------------
# public entry points: out-of-range ids are errors, not crashes (subprocesses)
@pytest.mark.parametrize("env, backend", [({}, "native"), ({}, "auto"), ({}, "torch"), ({"EMUKG_NO_NATIVE": "1"}, "auto")])
def test_evaluate_out_of_range_entity_is_an_emukg_error(env, backend):
    if backend == "native" and not native["score_all"]:
        pytest.skip("native evaluation kernel unavailable")
    code = SETUP + f"""
from emukg.errors import EmukgError
from emukg.evaluation import evaluate
for bad, col in ((20, 2), (1000000, 0), (-1, 2), (3, 1)):
    t = kg.splits["test"].clone()
    t[4, col] = bad
    try:
        evaluate(model, kg, t, backend={backend!r})
    except EmukgError as exc:
        print("EmukgError:", exc)
    else:
        print("no error for", bad)
print("OK", evaluate(model, kg, "test", backend={backend!r})["backend"])
"""
    proc = run_py(code, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 5, proc.stdout
    assert "entity id 20, outside 0..19" in lines[0] and "triples passed as split" in lines[0]
    assert "entity id 1000000" in lines[1] and "entity id -1" in lines[2]
    assert "relation id 3, outside 0..2" in lines[3]
    assert all(line.count(".") >= 1 and line.startswith("EmukgError") for line in lines[:4])
    assert lines[4].startswith("OK")


def test_evaluate_out_of_range_in_process_names_the_split():
    kg = graph()
    kg.splits["test"][0, 0] = 20
    from emukg.models import build_model

    model = build_model("TransE", 20, 3, 16, 4.0)
    with pytest.raises(EmukgError, match=r"split 'test' holds entity id 20, outside 0\.\.19"):
        evaluation.evaluate(model, kg, "test")


@pytest.mark.parametrize("use_kernel", [None, False])
def test_candidate_scorer_out_of_range_is_an_index_error(use_kernel):
    if use_kernel is None and not native["candidates"]:
        pytest.skip("native training kernel unavailable")
    code = SETUP + f"""
from emukg import emu, scoring
pos = kg.splits["train"][:8]
scorer = scoring.CandidateScorer(model, pos, "tail", use_kernel={use_kernel!r})
assert (scorer.hook is not None) == {use_kernel is None}
cand = torch.cat([pos[:, 2:3], torch.randint(0, 20, (8, 5))], 1)
print("fine", tuple(scorer(cand).shape))
for bad in (20, 10**9, -3):
    c = cand.clone(); c[3, 2] = bad
    for mut in (None, emu.Mutation.emu(0.5, torch.Generator().manual_seed(0))):
        try:
            scorer(c, mut).sum().backward()
        except IndexError as exc:
            print("IndexError:", exc)
bad_pos = pos.clone(); bad_pos[1, 0] = 25
try:
    scoring.CandidateScorer(model, bad_pos, "tail", use_kernel={use_kernel!r})
except IndexError as exc:
    print("IndexError:", exc)
"""
    proc = run_py(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "fine (8, 6)"
    assert len(lines) == 8, proc.stdout
    assert all(ln.startswith("IndexError: CandidateScorer: candidates holds id") for ln in lines[1:7])
    assert "outside the valid range 0..19" in lines[1]
    assert "positives[:, 0] (entity ids) holds id 25" in lines[7]


def test_checks_survive_python_O():
    code = SETUP + """
assert False, "this must not run under -O"
"""
    assert run_py(code, "-O").returncode == 0  # -O really strips asserts here
    code = SETUP + """
from emukg import emu, kernels
from emukg.errors import EmukgError
from emukg.evaluation import evaluate
t = kg.splits["test"].clone(); t[0, 2] = 99
try:
    evaluate(model, kg, t)
except EmukgError:
    print("evaluate: EmukgError")
try:
    kernels.ptr(torch.zeros(4, 4).t())
except ValueError:
    print("ptr: ValueError")
if kernels.available("candidates"):
    try:
        kernels.cand_fwd(torch.zeros(2, 16), torch.zeros(5, 16), torch.tensor([[0, 5], [1, 2]]), kernels.Metric.L1)
    except IndexError:
        print("cand_fwd: IndexError")
    try:
        kernels.cand_fwd(torch.zeros(2, 16), torch.zeros(5, 16), torch.tensor([[0, 1], [1, 2]], dtype=torch.int32), 0)
    except ValueError:
        print("cand_fwd: ValueError")
else:
    print("cand_fwd: IndexError"); print("cand_fwd: ValueError")
"""
    proc = run_py(code, "-O")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("\n")[:4] == ["evaluate: EmukgError", "ptr: ValueError", "cand_fwd: IndexError",
                                          "cand_fwd: ValueError"]


# ---------------------------------------------------------------------------------------------------------
# allocation failures
@needs["sample_step"]
def test_allocation_failure_is_a_memory_error():
    """A bitmap of 2**37 bytes per thread cannot be allocated under a 2 GiB address-space headroom: the C kernel
    returns EMUKG_ENOMEM and the wrapper raises MemoryError naming the kernel and the bytes (no crash)."""
    code = """
import resource, torch
from emukg import kernels
kernels.load("sample_step")
kernels.filter_fill(torch.tensor([0]), torch.tensor([[1]]), torch.zeros(1, 1, dtype=torch.int64),
                    torch.zeros(1, dtype=torch.int64), torch.tensor([0]), torch.tensor([0]), torch.tensor([0]), 8)
with open("/proc/self/status") as f:
    vm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize"))
resource.setrlimit(resource.RLIMIT_AS, (vm + (2 << 30), resource.getrlimit(resource.RLIMIT_AS)[1]))
N = 1 << 43
try:
    kernels.filter_fill(torch.tensor([0]), torch.tensor([[N - 1]]), torch.zeros(1, 1, dtype=torch.int64),
                        torch.zeros(1, dtype=torch.int64), torch.tensor([0]), torch.tensor([1]), torch.tensor([N - 2]), N,
                        threads=1)
except MemoryError as exc:
    print("MemoryError:", exc)
"""
    proc = run_py(code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("MemoryError: emukg_filter_fill: could not allocate"), proc.stdout
    assert f"{(1 << 43) // 8:,} bytes" in proc.stdout


# ---------------------------------------------------------------------------------------------------------
# compile failure: one warning line, the PyTorch fallback, same results
FALLBACK = SETUP + """
import logging
from emukg import emu, kernels, scoring
from emukg.evaluation import evaluate
from emukg.negatives import FilteredUniformSampler
res = evaluate(model, kg, "test")
pos = kg.splits["train"][:8]
cand = torch.cat([pos[:, 2:3], torch.randint(0, 20, (8, 5), generator=torch.Generator().manual_seed(3))], 1)
scores = scoring.CandidateScorer(model, pos, "tail")(cand)
neg = FilteredUniformSampler(kg, 4, "cpu", torch.Generator().manual_seed(0)).sample(pos, "tail")
print(json.dumps({"status": kernels.status(), "describe": kernels.describe(), "MRR": res["MRR"],
                  "backend": res["backend"], "scores": scores.tolist(), "neg": neg.shape[1]}))
"""


def _warning_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "native C kernels unavailable" in ln]


def test_compile_failure_warns_once_and_falls_back(tmp_path):
    proc = run_py(FALLBACK, env={"CC": "/bin/false", "EMUKG_CACHE_DIR": str(tmp_path / "cache"), "EMUKG_NO_NATIVE": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    warn = _warning_lines(proc.stderr)
    assert len(warn) == 1, proc.stderr
    assert "compiling" in warn[0] and "/bin/false failed" in warn[0] and "same results" in warn[0], warn[0]
    out = json.loads(proc.stdout)
    assert out["status"]["native"] is False and out["backend"] == "torch"
    assert out["describe"].startswith("PyTorch fallback: compiling ")
    assert not any(v["native"] for v in out["status"]["kernels"].values())
    assert out["neg"] == 4
    # the same results as this process (native where available)
    kg = graph()
    from emukg.models import build_model

    torch.manual_seed(0)
    model = build_model("TransE", 20, 3, 16, 4.0)
    assert out["MRR"] == pytest.approx(evaluation.evaluate(model, kg, "test")["MRR"], abs=1e-9)
    pos = kg.splits["train"][:8]
    cand = torch.cat([pos[:, 2:3], torch.randint(0, 20, (8, 5), generator=torch.Generator().manual_seed(3))], 1)
    assert torch.allclose(torch.tensor(out["scores"]), scoring.CandidateScorer(model, pos, "tail")(cand).detach(), atol=1e-5)


def test_compiler_error_message_is_the_reason(tmp_path):
    fake = tmp_path / "fakecc"
    fake.write_text("#!/bin/sh\necho 'fakecc: error: unsupported option -march=native' >&2\necho second line >&2\nexit 1\n")
    fake.chmod(0o755)
    proc = run_py(FALLBACK, env={"CC": str(fake), "EMUKG_CACHE_DIR": str(tmp_path / "cache"), "EMUKG_NO_NATIVE": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    warn = _warning_lines(proc.stderr)
    assert len(warn) == 1 and "fakecc: error: unsupported option -march=native" in warn[0], proc.stderr
    assert "second line" not in proc.stderr


def test_no_compiler_found(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = run_py(FALLBACK, env={"CC": "", "PATH": str(empty), "EMUKG_CACHE_DIR": str(tmp_path / "cache"),
                                 "EMUKG_NO_NATIVE": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    warn = _warning_lines(proc.stderr)
    assert len(warn) == 1 and "no C compiler found (set CC or install gcc)" in warn[0], proc.stderr


def test_no_native_is_deliberate_no_warning():
    proc = run_py(FALLBACK, env={"EMUKG_NO_NATIVE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _warning_lines(proc.stderr) == []
    out = json.loads(proc.stdout)
    assert out["describe"] == "PyTorch fallback: disabled by EMUKG_NO_NATIVE=1"


def test_status_and_describe_in_this_process():
    st = kernels.status()
    assert set(st["kernels"]) == set(kernels.KERNELS)
    assert st["native"] == all(native.values())
    line = kernels.describe()
    assert "\n" not in line
    assert line.startswith("native C kernels" if st["native"] else "PyTorch fallback: ")


# ---------------------------------------------------------------------------------------------------------
# the EMU mask's bits kept by the forward for the backward (issue 20)
@needs["candidates"]
@pytest.mark.parametrize("kind, D", [("l1", 100), ("dot", 37), ("c2", 64), ("c2", 200)])
def test_kept_mask_bits_are_the_hashed_mask_and_give_the_same_gradients(kind, D):
    """The forward's stored keep masks are exactly emu_mask's bits (chunk c holds components 16c..16c+15; the last,
    overlapping chunk the last 16), and the backward that reads them returns the same gradients, bit for bit, as
    the one that hashes the mask again."""
    g = torch.Generator().manual_seed(3)
    B, C, N = 7, 9, 40
    code = kernels.metric_code(kind)
    q, E = torch.randn(B, D, generator=g), torch.randn(N, D, generator=g)
    cand = torch.randint(0, N, (B, C), generator=g)
    from emukg.emu import keep_threshold

    s0, s1, T = 12345, 678, keep_threshold(0.39)
    keep = torch.empty(B, C, kernels.keep_masks(code, D), dtype=torch.int16)
    scores = kernels.cand_fwd(q, E, cand, code, 1.5, kernels.Mut.EMU, s0, s1, T, b0=2, keep_out=keep)
    assert torch.equal(scores, kernels.cand_fwd(q, E, cand, code, 1.5, kernels.Mut.EMU, s0, s1, T, b0=2))
    mask = kernels.emu_mask(B, C, D, s0, s1, T, row0=2).bool()
    L = D // 2 if kind == "c2" else D
    parts = 2 if kind == "c2" else 1
    bits = keep.to(torch.int32) & 0xFFFF
    for c in range(-(-L // 16)):
        start = min(16 * c, L - 16)
        for h in range(parts):
            lanes = (bits[:, 1:, c * parts + h, None] >> torch.arange(16)) & 1
            assert torch.equal(lanes.bool(), mask[:, 1:, h * L + start:h * L + start + 16]), (c, h)
    gout = torch.randn(B, C, generator=g)
    hashed = kernels.cand_bwd(q, E, cand, gout, code, kernels.Mut.EMU, s0, s1, T, b0=2)
    kept = kernels.cand_bwd(q, E, cand, gout, code, kernels.Mut.EMU, s0, s1, T, b0=2, keep=keep)
    assert torch.equal(hashed[0], kept[0]) and torch.equal(hashed[1], kept[1])
    with pytest.raises(ValueError, match="keep masks exist only for mut=EMU"):
        kernels.cand_fwd(q, E, cand, code, 0.0, kernels.Mut.NONE, keep_out=keep)
    with pytest.raises(ValueError, match="keep"):
        kernels.cand_bwd(q, E, cand, gout, code, kernels.Mut.EMU, s0, s1, T, keep=keep[:, :1])


@needs["candidates"]
@pytest.mark.parametrize("kind", ["l1", "dot"])
@pytest.mark.parametrize("emu", [False, True])
def test_register_and_memory_backwards_give_the_same_bits(kind, emu):
    """Rows of at most 8 chunks take the backward whose sums live in registers (on AVX-512), wider rows the one whose
    sums live in memory (emukg_cand_bwd).  A table of 128 floats and the same table padded with 8 zero columns go one
    each way, and every score and gradient of the first 128 columns must be the same bits (zero columns add exact
    zeros, and both sum every component over the candidates in column order)."""
    from emukg.emu import keep_threshold

    g = torch.Generator().manual_seed(7)
    B, C, N, D = 6, 11, 50, 128
    code = kernels.metric_code(kind)
    q, E = torch.randn(B, D, generator=g), torch.randn(N, D, generator=g)
    cand = torch.randint(0, N, (B, C), generator=g)
    gout = torch.randn(B, C, generator=g)
    args = (kernels.Mut.EMU, 5, 9, keep_threshold(0.39)) if emu else ()
    pad = lambda t: torch.nn.functional.pad(t, (0, 8))  # noqa: E731
    narrow = kernels.cand_fwd(q, E, cand, code, 2.0, *args), kernels.cand_bwd(q, E, cand, gout, code, *args)
    wide = kernels.cand_fwd(pad(q), pad(E), cand, code, 2.0, *args), kernels.cand_bwd(pad(q), pad(E), cand, gout, code, *args)
    assert torch.equal(narrow[0], wide[0])
    assert torch.equal(narrow[1][0], wide[1][0][:, :D]) and torch.equal(narrow[1][1], wide[1][1][:, :D])


@needs["candidates"]
def test_a_training_backward_reads_the_mask_bits_its_forward_kept(monkeypatch):
    """On the kernel path an EMU pass that will be differentiated keeps its mask's bits for the backward (an autograd
    Function's forward runs with grad mode off, so the decision is made before it); under no_grad nothing is kept.
    The gradient agrees with the plain PyTorch path's."""
    import emukg.scoring.fused as fused
    from emukg import emu
    from emukg.models import build_model
    from emukg.scoring import CandidateScorer

    seen, kept = [], []
    real_bwd, real_masks = fused.kernels.cand_bwd, fused.kernels.keep_masks
    monkeypatch.setattr(fused.kernels, "cand_bwd", lambda *a, **k: seen.append(k.get("keep")) or real_bwd(*a, **k))
    monkeypatch.setattr(fused.kernels, "keep_masks", lambda *a: kept.append(a) or real_masks(*a))
    torch.manual_seed(0)
    model = build_model("TransE", 20, 3, 32, 6.0)
    positives = torch.tensor([[0, 1, 2], [3, 0, 4]])
    cand = torch.tensor([[2, 5, 6, 7], [4, 8, 9, 1]])
    mutation = emu.Mutation.emu(0.4, torch.Generator().manual_seed(1))
    with torch.no_grad():
        CandidateScorer(model, positives, "tail", use_kernel=True)(cand, mutation)
    assert kept == []  # no backward to come: no bits kept
    CandidateScorer(model, positives, "tail", use_kernel=True)(cand, mutation).sum().backward()
    assert len(kept) == 1 and len(seen) == 1 and seen[0] is not None
    fast = model.entity_embedding.grad.clone()
    model.zero_grad()
    CandidateScorer(model, positives, "tail", use_kernel=False)(cand, mutation).sum().backward()
    assert torch.allclose(fast, model.entity_embedding.grad, rtol=1e-5, atol=1e-6)


@needs["candidates"]
@pytest.mark.parametrize("kind, D", [("l1", 100), ("dot", 200), ("c2", 64)])
def test_every_thread_count_owns_each_candidate_once(kind, D):
    """Threads own gradient rows by entity block: a power-of-two thread count finds its rows with a mask, any other
    with a division (candidates.c, owned_cols).  Without mutation a candidate row's gradient is summed over its
    candidates in (row, column) order by its one owner, so the entity gradient is the same bits for 1, 2, 3 and 4
    threads (a candidate skipped or counted twice would show); the query gradient, summed per thread and then over
    the threads, agrees to rounding."""
    g = torch.Generator().manual_seed(11)
    B, C, N = 9, 33, 300  # ids span 19 blocks of 16, so every thread owns some
    code = kernels.metric_code(kind)
    q, E = torch.randn(B, D, generator=g), torch.randn(N, D, generator=g)
    cand = torch.randint(0, N, (B, C), generator=g)
    gout = torch.randn(B, C, generator=g)
    one = kernels.cand_bwd(q, E, cand, gout, code, threads=1)
    for threads in (2, 3, 4):
        gq, gE = kernels.cand_bwd(q, E, cand, gout, code, threads=threads)
        assert torch.equal(gE, one[1]), threads
        assert torch.allclose(gq, one[0], rtol=1e-5, atol=1e-5), threads
    dense = torch.zeros(N, D).index_add_(0, cand.reshape(-1), torch.ones(B * C, 1).expand(-1, D))
    assert torch.equal(one[1] != 0, (dense != 0) & (one[1] != 0))  # only candidate rows receive a gradient
