"""The row-sparse optimiser kernels (sparse_optim.c through emukg.kernels.adagrad_rows / adam_rows) and their use in
emukg.optim: bit-identical to torch.optim.Adagrad / Adam and to the chunked PyTorch path on random rows (row widths
with and without a vector tail, several steps, one and two threads, one and several root chunks), the fused form
within its documented bound, bad arguments refused before C runs, and the PyTorch path under EMUKG_NO_NATIVE=1."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from emukg import kernels, optim
from emukg.optim import LazyAdam, RowSparseAdagrad

native = kernels.available("sparse_optim")
needs_native = pytest.mark.skipif(not native, reason=f"sparse_optim unavailable: "
                                  f"{kernels.status()['kernels']['sparse_optim']['reason']}")
WIDTHS = [7, 16, 100, 250]


def wide(shape, g):
    """Random float32 values over many binades, with exact zeros (gradients of untouched coordinates)."""
    x = torch.randn(shape, generator=g) * torch.exp(torch.randn(shape, generator=g) * 3)
    return torch.where(torch.rand(shape, generator=g) < 0.05, torch.zeros(()), x)


def sizes(D):
    """(N, U): enough elements (U·D > 32768) for the kernels' OpenMP team."""
    U = max(64, 40000 // D + 1)
    return U + U // 2, U


def rows(N, U, g):
    """U distinct sorted row ids below N (a coalesced gradient's): no duplicates by construction."""
    return torch.randperm(N, generator=g)[:U].sort().values


def dense(N, idx, vals):
    return torch.zeros(N, vals.shape[1]).index_copy_(0, idx, vals)


def coalesced(N, idx, vals):
    return torch.sparse_coo_tensor(idx[None], vals, (N, vals.shape[1]), is_coalesced=True, check_invariants=True)


def ulp(x):
    x = x.abs()
    return torch.nextafter(x, torch.full_like(x, float("inf"))) - x


# ---------------------------------------------------------------------------------------------------------
# the wrappers against torch's optimisers
@needs_native
@pytest.mark.parametrize("D", WIDTHS)
@pytest.mark.parametrize("threads,chunk_rows", [(1, None), (2, None), (2, 5)])
def test_adagrad_rows_equal_torch_adagrad_bit_for_bit(D, threads, chunk_rows):
    g = torch.Generator().manual_seed(D)
    N, U = sizes(D)
    start = wide((N, D), g)
    ref = torch.nn.Parameter(start.clone())
    opt = torch.optim.Adagrad([ref], lr=0.3)
    param, total = start.clone(), torch.zeros(N, D)
    for _ in range(4):
        idx = rows(N, U, g)
        vals = wide((U, D), g)
        ref.grad = dense(N, idx, vals)
        opt.step()
        kernels.adagrad_rows(param, total, idx, vals, 0.3, 1e-10, threads,
                             chunk_bytes=None if chunk_rows is None else chunk_rows * 4 * D)
    assert torch.equal(param, ref.detach()) and torch.equal(total, opt.state[ref]["sum"])


@needs_native
@pytest.mark.parametrize("D", WIDTHS)
@pytest.mark.parametrize("beta1", [0.9, 0.3])  # lerp weight 1 - beta1 below / above 0.5: its two formulas
def test_adam_rows_equal_torch_adam_on_rows_touched_every_step(D, beta1):
    g = torch.Generator().manual_seed(D + 1)
    N = sizes(D)[0]
    start = wide((N, D), g)
    ref = torch.nn.Parameter(start.clone())
    opt = torch.optim.Adam([ref], lr=0.01, betas=(beta1, 0.999))
    param, m, v = start.clone(), torch.zeros(N, D), torch.zeros(N, D)
    every = torch.arange(N)
    for step in range(1, 5):
        G = wide((N, D), g)
        ref.grad = G.clone()
        opt.step()
        kernels.adam_rows(param, m, v, every, G, beta1, 0.999, 0.01 / (1 - beta1 ** step), (1 - 0.999 ** step) ** 0.5,
                          1e-8, chunk_bytes=7 * 4 * D)
    st = opt.state[ref]
    assert torch.equal(param, ref.detach())
    assert torch.equal(m, st["exp_avg"]) and torch.equal(v, st["exp_avg_sq"])


@needs_native
@pytest.mark.parametrize("D", [7, 100])
def test_zero_sums_skip_the_slow_root_without_changing_a_bit(D):
    """Most components zero (EMU's masked components), ±0 in gradients and parameters, and gradients so small that
    g² underflows to 0 (a zero sum with a nonzero gradient: its root must stay torch's): Adagrad and Adam equal
    torch's bit for bit, signs of zero included."""
    g = torch.Generator().manual_seed(5)
    N, U = sizes(D)

    def grads(shape):
        x = wide(shape, g)
        x = torch.where(torch.rand(shape, generator=g) < 0.6, torch.zeros(()), x)
        x = torch.where(torch.rand(shape, generator=g) < 0.05, torch.full((), -0.0), x)
        return torch.where(torch.rand(shape, generator=g) < 0.05, torch.randn(shape, generator=g) * 1e-25, x)

    start = torch.where(torch.rand(N, D, generator=g) < 0.1, torch.full((), -0.0), wide((N, D), g))
    ref_a, ref_m = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    ada, adam = torch.optim.Adagrad([ref_a], lr=0.3), torch.optim.Adam([ref_m], lr=0.01)
    pa, total = start.clone(), torch.zeros(N, D)
    pm, m, v = start.clone(), torch.zeros(N, D), torch.zeros(N, D)
    every = torch.arange(N)
    for step in range(1, 4):
        idx = rows(N, U, g)
        vals = grads((U, D))
        ref_a.grad = dense(N, idx, vals)
        ada.step()
        kernels.adagrad_rows(pa, total, idx, vals, 0.3, 1e-10)
        G = grads((N, D))
        ref_m.grad = G.clone()
        adam.step()
        kernels.adam_rows(pm, m, v, every, G, 0.9, 0.999, 0.01 / (1 - 0.9 ** step), (1 - 0.999 ** step) ** 0.5, 1e-8)
    bits = lambda t: t.view(torch.int32)  # noqa: E731  (torch.equal treats -0 and +0 as equal)
    assert torch.equal(bits(pa), bits(ref_a.detach())) and torch.equal(bits(total), bits(ada.state[ref_a]["sum"]))
    assert torch.equal(bits(pm), bits(ref_m.detach())) and torch.equal(bits(v), bits(adam.state[ref_m]["exp_avg_sq"]))
    assert (total == 0).float().mean() > 0.3  # the zero sums were there


# ---------------------------------------------------------------------------------------------------------
# the optimisers: kernel path vs their chunked PyTorch path
def _run(opt_cls, start, grads, monkeypatch, use_kernel, **kw):
    calls = []
    if use_kernel:
        for name in ("adagrad_rows", "adam_rows"):
            real = getattr(kernels, name)
            monkeypatch.setattr(kernels, name, lambda *a, _real=real, **k: (calls.append(1), _real(*a, **k))[1])
    else:
        monkeypatch.setattr(optim, "native_rows", lambda *a: None)
    p = torch.nn.Parameter(start.clone())
    opt = opt_cls([p], **kw)
    for G in grads:
        p.grad = G
        opt.step()
    monkeypatch.undo()
    return p.detach(), opt.state[p], len(calls)


@needs_native
@pytest.mark.parametrize("D", WIDTHS)
@pytest.mark.parametrize("opt_cls,kw", [(RowSparseAdagrad, dict(lr=0.2)), (LazyAdam, dict(lr=0.05)),
                                        (LazyAdam, dict(lr=0.05, betas=(0.4, 0.99)))])
def test_optimizers_kernel_path_equals_pytorch_path(D, opt_cls, kw, monkeypatch):
    g = torch.Generator().manual_seed(3 * D)
    N, U = sizes(D)
    start = wide((N, D), g)
    grads = []
    for _ in range(4):
        idx = rows(N, U, g)
        grads.append(coalesced(N, idx, wide((U, D), g)))
    p_k, st_k, calls = _run(opt_cls, start, grads, monkeypatch, True, **kw)
    p_t, st_t, _ = _run(opt_cls, start, grads, monkeypatch, False, **kw)
    assert calls == len(grads)  # the kernel ran on every step
    assert torch.equal(p_k, p_t)
    assert st_k.keys() == st_t.keys() and all(torch.equal(st_k[k], st_t[k]) for k in st_k)


def test_native_rows_only_for_sorted_distinct_rows_of_cpu_float32(monkeypatch):
    g = torch.Generator().manual_seed(0)
    p, s = torch.zeros(10, 3), torch.zeros(10, 3)
    idx = torch.tensor([1, 4, 7])
    vals = torch.randn(3, 3, generator=g)
    got = optim.native_rows(p, coalesced(10, idx, vals), s)
    if native:
        assert torch.equal(got[0], idx) and torch.equal(got[1], vals)
    else:
        assert got is None
    dup = torch.sparse_coo_tensor(torch.tensor([[1, 4, 4]]), vals, (10, 3), check_invariants=True)
    assert optim.native_rows(p, dup, s) is None  # repeated rows: row_chunks' summation order
    unsorted = torch.sparse_coo_tensor(torch.tensor([[4, 1, 7]]), vals, (10, 3), check_invariants=True)
    assert optim.native_rows(p, unsorted, s) is None
    # sorted distinct rows without the coalesced flag (as autograd's accumulation leaves a gradient): native
    unflagged = torch.sparse_coo_tensor(idx[None], vals, (10, 3), check_invariants=True)
    assert not unflagged.is_coalesced()
    assert (optim.native_rows(p, unflagged, s) is not None) == native
    assert optim.native_rows(p.double(), coalesced(10, idx, vals.double()), s.double()) is None
    assert optim.native_rows(p, coalesced(10, idx, vals), torch.zeros(3, 10).t()) is None  # non-contiguous state
    assert optim.native_rows(p, vals.to_sparse(), s) is None  # element-sparse
    monkeypatch.setattr(kernels, "available", lambda name: False)
    assert optim.native_rows(p, coalesced(10, idx, vals), s) is None


@needs_native
def test_a_gradient_through_autograd_reaches_the_kernel(monkeypatch):
    """A leaf's sparse gradient from autograd is not flagged coalesced (the accumulation drops the flag, embedding's
    backward never sets it); sorted distinct rows still go native."""
    calls = []
    real = kernels.adagrad_rows
    monkeypatch.setattr(kernels, "adagrad_rows", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    g = torch.Generator().manual_seed(5)
    start = torch.randn(50, 16, generator=g)
    a, b = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    ref, opt = torch.optim.Adagrad([a], lr=0.1), RowSparseAdagrad([b], lr=0.1)
    for _ in range(3):
        ids = rows(50, 40, g)  # sorted distinct: the sparse gradient's rows in this order
        w = torch.randn(40, 16, generator=g)
        for p, sparse in ((a, False), (b, True)):
            p.grad = None
            (torch.nn.functional.embedding(ids, p, sparse=sparse) * w).sum().backward()
        assert not b.grad.is_coalesced() and torch.equal(b.grad._indices()[0], ids)
        ref.step(), opt.step()
    assert len(calls) == 3 and torch.equal(a, b)


def test_no_native_runs_the_pytorch_path_and_stays_exact():
    code = textwrap.dedent("""
        import torch
        from emukg import kernels, optim
        assert not kernels.available("sparse_optim")
        g = torch.Generator().manual_seed(0)
        N, D = 40, 9
        start = torch.randn(N, D, generator=g)
        a, b = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
        ref, opt = torch.optim.Adagrad([a], lr=0.3), optim.RowSparseAdagrad([b], lr=0.3)
        for _ in range(3):
            idx = torch.randperm(N, generator=g)[:25].sort().values
            vals = torch.randn(25, D, generator=g)
            a.grad = torch.zeros(N, D).index_copy_(0, idx, vals)
            b.grad = torch.sparse_coo_tensor(idx[None], vals, (N, D), is_coalesced=True)
            ref.step(), opt.step()
        assert torch.equal(a, b) and torch.equal(ref.state[a]["sum"], opt.state[b]["sum"])
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "EMUKG_NO_NATIVE": "1"})
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


# ---------------------------------------------------------------------------------------------------------
# the fused form: state exact, parameters within the documented bound
@needs_native
@pytest.mark.parametrize("D", [7, 100])
def test_fused_form_state_exact_and_param_within_4_ulp(D):
    g = torch.Generator().manual_seed(11)
    N, U = sizes(D)
    idx = rows(N, U, g)
    p, s, m = wide((N, D), g), torch.rand(N, D, generator=g), wide((N, D), g)
    vals = wide((U, D), g)
    for run in ("adagrad", "adam"):
        exact = [p.clone(), s.clone()] if run == "adagrad" else [p.clone(), m.clone(), s.clone()]
        fused = [t.clone() for t in exact]
        if run == "adagrad":
            kernels.adagrad_rows(*exact, idx, vals, 0.5, 1e-10)
            kernels.adagrad_rows(*fused, idx, vals, 0.5, 1e-10, exact=False)
        else:
            kernels.adam_rows(*exact, idx, vals, 0.9, 0.999, 0.5, 0.1, 1e-8)
            kernels.adam_rows(*fused, idx, vals, 0.9, 0.999, 0.5, 0.1, 1e-8, exact=False)
        assert all(torch.equal(a, b) for a, b in zip(exact[1:], fused[1:])), run
        step = (exact[0] - p).abs()
        scale = torch.maximum(torch.maximum(p.abs(), exact[0].abs()), step)
        assert bool(((exact[0] - fused[0]).abs() <= 4 * ulp(scale)).all()), run
        assert not torch.equal(exact[0], fused[0]), run  # MKL's sqrt differs somewhere (else: drop the staged form)


# ---------------------------------------------------------------------------------------------------------
# arguments refused before C sees a pointer
@needs_native
def test_bad_arguments_raise_before_the_kernel_runs():
    N, D = 8, 5
    p, s, m = torch.zeros(N, D), torch.zeros(N, D), torch.zeros(N, D)
    idx, grad = torch.tensor([0, 3, 7]), torch.ones(3, D)
    cases = [
        (ValueError, "dtype", dict(param=p.double())),
        (ValueError, "shape", dict(sum=torch.zeros(N, D + 1))),
        (ValueError, "shape", dict(grad=torch.ones(2, D))),
        (ValueError, "contiguous", dict(param=torch.zeros(D, N).t())),
        (ValueError, "dtype", dict(idx=idx.int())),
        (IndexError, "id 8", dict(idx=torch.tensor([0, 3, 8]))),
        (IndexError, "id -1", dict(idx=torch.tensor([-1, 3, 7]))),
        (ValueError, "strictly increasing", dict(idx=torch.tensor([0, 7, 3]))),
        (ValueError, "strictly increasing", dict(idx=torch.tensor([0, 3, 3]))),
        (ValueError, "shares its memory", dict(sum=p)),
        (ValueError, "threads", dict(threads=0)),
    ]
    for exc, match, over in cases:
        a = dict(param=p, sum=s, idx=idx, grad=grad, lr=0.1, eps=1e-10, threads=None) | over
        with pytest.raises(exc, match=match):
            kernels.adagrad_rows(**a)
        b = dict(param=a["param"], exp_avg=m, exp_avg_sq=a["sum"], idx=a["idx"], grad=a["grad"], beta1=0.9,
                 beta2=0.999, step_size=0.1, bias_correction2_sqrt=0.5, eps=1e-8, threads=a["threads"])
        with pytest.raises(exc, match=match):
            kernels.adam_rows(**b)
    assert torch.equal(p, torch.zeros(N, D)) and torch.equal(s, torch.zeros(N, D)) and torch.equal(m, torch.zeros(N, D))


@needs_native
def test_empty_gradient_changes_nothing_and_in_place_bumps_the_version():
    p, s = torch.ones(4, 3), torch.ones(4, 3)
    kernels.adagrad_rows(p, s, torch.zeros(0, dtype=torch.int64), torch.zeros(0, 3), 0.1, 1e-10)
    assert torch.equal(p, torch.ones(4, 3)) and torch.equal(s, torch.ones(4, 3))
    v = p._version
    kernels.adagrad_rows(p, s, torch.tensor([2]), torch.full((1, 3), 2.0), 0.5, 0.0)
    # sum 1 + 4 = 5, param 1 − 0.5·2/√5 (rows 0, 1, 3 untouched)
    want = torch.ones(4, 3)
    want[2] = 1 + (-0.5 * 2.0) / torch.tensor(5.0).sqrt()
    assert torch.equal(p, want) and torch.equal(s[2], torch.full((3,), 5.0)) and p._version > v
