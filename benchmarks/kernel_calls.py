"""Milliseconds per call of the training kernels (emukg.kernels.cand_fwd / cand_bwd) at FB15k-237's step shapes.

    PYTHONPATH=src python benchmarks/kernel_calls.py            # this tree
    PYTHONPATH=/tmp/old/src EMUKG_CACHE_DIR=/tmp/old-cache python benchmarks/kernel_calls.py   # another tree

Random float32 tables of N = 14,541 rows, B = 1000 queries, C = 257 candidates (uniform ids), the kinds L1 (TransE,
D = 100), DOT (DistMult D = 100, ComplEx D = 200) and COMPLEX_L1 (RotatE, D = 200), without and with the EMU mutation
(p = 0.39); the backward adds to a zeroed N x D table (the zeroing is timed with it).  Prints the minimum and the median of ``--repeats`` calls
each (the minimum is the steadier on a shared machine).  With EMU the forward keeps the mask's bits for the
backward where the tree's kernels can (``keep_out``), as a training step does.
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import time

import torch


def main(argv=None) -> int:
    import emukg.kernels as K
    from emukg.emu import keep_threshold

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args(argv)
    g = torch.Generator().manual_seed(0)
    N, B, C = 14541, 1000, 257
    keeps = "keep_out" in inspect.signature(K.cand_fwd).parameters
    cand = torch.randint(0, N, (B, C), generator=g)
    gout = torch.randn(B, C, generator=g) * 1e-4
    T = keep_threshold(0.39)

    def timed(fn):
        fn()
        ts = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1e3)
        return min(ts), statistics.median(ts)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; kernels {K.describe()}")
    print(f"{'case':22s} {'fwd min':>8s} {'fwd med':>8s} {'bwd min':>8s} {'bwd med':>8s}")
    for name, kind, D in (("TransE l1", "l1", 100), ("DistMult dot", "dot", 100), ("ComplEx dot", "dot", 200),
                          ("RotatE c2", "c2", 200)):
        code = K.metric_code(kind)
        E, q = torch.randn(N, D, generator=g), torch.randn(B, D, generator=g)
        G = torch.zeros(N, D)
        for mut in (K.Mut.NONE, K.Mut.EMU):
            emu = dict(mut=mut, s0=11, s1=22, T=T) if mut == K.Mut.EMU else {}
            keep = (torch.empty(B, C, K.keep_masks(code, D), dtype=torch.int16) if keeps and mut == K.Mut.EMU else None)
            extra = {"keep_out": keep} if keep is not None else {}
            f = timed(lambda: K.cand_fwd(q, E, cand, code, 1.0, **emu, **extra))
            bextra = {"keep": keep} if keep is not None else {}
            b = timed(lambda: K.cand_bwd(q, E, cand, gout, code, **emu, out_E=G.zero_(), **bextra))
            label = f"{name}{'/emu' if mut == K.Mut.EMU else ''}"
            print(f"{label:22s} {f[0]:8.2f} {f[1]:8.2f} {b[0]:8.2f} {b[1]:8.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
