"""The Triton candidate kernels against the PyTorch path: milliseconds of scoring forward + backward, and the
largest difference of the scores and gradients (emukg.scoring.triton_kernels; for the GPU window).

One case per kind (``l1`` as TransE's, ``dot`` as DistMult's), the paper's shapes by default: B=1000 queries,
C=257 candidates (the positive and n=256 negatives), d=100, N=14,541 entities, EMU p=0.39.  Each path is timed
as the median of ``steps`` runs after ``warmup`` (the device synchronised around each).  Without Triton the
result says so and times nothing.

    python -m emukg.bench.triton_step --device cuda --json triton.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def bench_triton(device="cuda", B=1000, C=257, D=100, N=14541, p=0.39, steps=10, warmup=2) -> dict:
    from ..emu import draw_seed, hash_mask, mutate
    from ..scoring import triton_kernels as tk

    out: dict = {"benchmark": "triton_step", "device": device, "B": B, "C": C, "D": D, "N": N, "p": p, "cases": {}}
    if not tk.available():
        out["skipped"] = "Triton is not installed"
        return out
    g = torch.Generator(device=device).manual_seed(0)
    E0 = torch.randn(N, D, generator=g, device=device) * 0.1
    q0 = torch.randn(B, D, generator=g, device=device) * 0.1
    cand = torch.randint(0, N, (B, C), generator=g, device=device)
    seed = draw_seed(g)
    gout = torch.randn(B, C, generator=g, device=device)

    def torch_path(q, E, kind):
        X = mutate(E[cand], hash_mask(seed, B, C, D, p, use_kernel=False))
        return 2.0 - (q[:, None] - X).abs().sum(-1) if kind == "l1" else 2.0 + (q[:, None] * X).sum(-1)

    def fused(q, E, kind):
        return tk.FusedCandidates.apply(q, E, cand, kind, 2.0, seed, p, 0)

    for kind in ("l1", "dot"):
        res, ms = {}, {}
        for name, fn in (("torch", torch_path), ("triton", fused)):
            times = []
            for i in range(warmup + steps):
                q, E = q0.clone().requires_grad_(True), E0.clone().requires_grad_(True)
                _sync(device)
                t0 = time.perf_counter()
                s = fn(q, E, kind)
                (s * gout).sum().backward()
                _sync(device)
                if i >= warmup:
                    times.append(1e3 * (time.perf_counter() - t0))
            ms[name] = statistics.median(times)
            res[name] = (s.detach(), q.grad, E.grad)
        diff = {f"max_abs_diff_{part}": float((a - b).abs().max()) for part, a, b in zip(("scores", "grad_q", "grad_E"), res["torch"], res["triton"])}
        out["cases"][kind] = {"torch_ms": ms["torch"], "triton_ms": ms["triton"], "speedup": ms["torch"] / ms["triton"], **diff}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--B", type=int, default=1000)
    ap.add_argument("--C", type=int, default=257)
    ap.add_argument("--D", type=int, default=100)
    ap.add_argument("--N", type=int, default=14541)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args(argv)
    res = bench_triton(a.device, a.B, a.C, a.D, a.N, steps=a.steps, warmup=a.warmup)
    print(json.dumps(res, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
