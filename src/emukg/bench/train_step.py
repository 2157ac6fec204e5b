"""Median milliseconds per full training step (objective forward, backward, Adagrad step) on FB15k-237.

The paper's configuration: d=100, B=1000, n=256, γ=24, α=1; losses

* ``ce``          mode 1 (CE with fresh uniform negatives), or mode 2 with ``--sampler sans``;
* ``emu``         the same + EMU p=0.39, λ=0.53, CE_coef=0.11;
* ``sigmoid-adv`` mode 0 with self-adversarial weighting, filtered negatives from the sampler.

Samplers: ``uniform`` (CE losses in mode 1, unfiltered), ``uniform-filtered`` (CE losses in mode 2 with the
reference's filtered uniform negatives: the like-for-like baseline of ``sans``), ``sans`` (mode 2, k=3, w=1000).

Models: TransE, DistMult, ComplEx (-de -dr), RotatE (-de), pRotatE, TransD, HAKE (λ_m 1.0, λ_p 0.5).  Warm-up steps are excluded; steps
alternate tail-/head-batch as in training.  Columns: median full step, median forward+backward (no optimiser),
median forward (objective incl. negative sampling), fastest full step.  ``--no-kernel`` forces the plain PyTorch
path (the fallback).  On a shared machine the medians swing with other processes' load (OpenMP threads that
spin-wait suffer most; ``OMP_WAIT_POLICY=passive`` helps there); the fastest step is the steadier figure.

    EMUKG_DATA_DIR=/work/shared/datasets python -m emukg.bench.train_step --models TransE --losses emu --json out.json

Other benchmark runners import
:func:`bench_train_steps` from ``emukg.bench.train_step``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch

MODELS = ["TransE", "DistMult", "ComplEx", "RotatE", "pRotatE", "TransD", "HAKE"]
LOSSES = ["ce", "emu", "sigmoid-adv"]
LEARNING_RATE = {"TransE": 0.05, "DistMult": 0.1, "ComplEx": 0.1, "RotatE": 0.05, "pRotatE": 0.05, "TransD": 0.05, "HAKE": 0.05}
FLAGS = {"ComplEx": dict(double_entity_embedding=True, double_relation_embedding=True),
         "RotatE": dict(double_entity_embedding=True)}


def make_config(model: str, loss: str, sampler: str = "uniform", dataset: str = "FB15k-237", hidden_dim: int = 100,
                batch_size: int = 1000, negatives: int = 256):
    from emukg.config import Config

    base = dict(dataset=dataset, model=model, hidden_dim=hidden_dim, gamma=24.0, batch_size=batch_size,
                negative_sample_size=negatives, adversarial_temperature=1.0, learning_rate=LEARNING_RATE.get(model, 0.05),
                **FLAGS.get(model, {}))
    if sampler == "sans":  # the paper's SANS setting: -khop 3 -nrw 1000
        base.update(khop=3, num_random_walks=1000)
    # "uniform" cases: CE over fresh unfiltered negatives (-if_CE 1) and the sigmoid loss over filtered ones (-if_CE 0)
    ce_sampler = {"uniform-filtered": "filtered"}.get(sampler, sampler)
    if loss == "ce":
        base.update(loss="ce", sampler=ce_sampler)
    elif loss == "emu":
        base.update(loss="ce", sampler=ce_sampler, emu=0.39, neg_label=0.53, ce_coef=0.11)
    elif loss == "sigmoid-adv":
        base.update(loss="sigmoid", sampler="filtered" if sampler in ("uniform", "uniform-filtered") else sampler, adversarial=True)
    else:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
    return Config.from_dict(base)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_case(cfg, kg, steps: int = 10, warmup: int = 3, device="cpu", seed: int = 0,
              use_kernel: bool | None = None, split: bool = False) -> dict:
    """Time one configuration; returns {'step_ms': median full step, and with ``split`` 'fwd_bwd_ms', 'fwd_ms'}."""
    from emukg.objectives import build_objective
    from emukg.models import build_model, model_options
    from emukg.negatives import build_sampler
    from emukg.optim import make_optimizer

    device = torch.device(device)
    torch.manual_seed(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    model = build_model(cfg.model, kg.num_entities, kg.num_relations, cfg.hidden_dim, cfg.gamma,
                        cfg.double_entity_embedding, cfg.double_relation_embedding, **model_options(cfg)).to(device)
    train = kg.train.to(device)
    weights = kg.subsampling_weights().to(device)
    sampler = build_sampler(cfg, kg, device, gen)
    objective = build_objective(cfg, kg, sampler, use_kernel=use_kernel)
    opt = make_optimizer("adagrad", model, cfg.learning_rate)  # the optimiser a run gets (emukg.optim)
    perm = torch.randperm(train.shape[0], generator=gen, device=device)
    B = cfg.batch_size
    full, fb, fw = [], [], []
    for i in range(warmup + steps):
        idx = perm[(i * B) % (train.shape[0] - B):][:B]
        side = "tail" if i % 2 == 0 else "head"
        _sync(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss, _ = objective(model, train[idx], side, gen, weights[idx])
        _sync(device)
        t1 = time.perf_counter()
        loss.backward()
        _sync(device)
        t2 = time.perf_counter()
        opt.step()
        _sync(device)
        t3 = time.perf_counter()
        if i >= warmup:
            full.append((t3 - t0) * 1e3)
            fb.append((t2 - t0) * 1e3)
            fw.append((t1 - t0) * 1e3)
    out = {"step_ms": statistics.median(full)}
    if split:
        out.update(fwd_bwd_ms=statistics.median(fb), fwd_ms=statistics.median(fw), step_min_ms=min(full))
    return out


def bench_train_steps(models=MODELS, losses=LOSSES, samplers=("uniform",), steps: int = 10, device="cpu", *,
                      warmup: int = 3, use_kernel: bool | None = None, kg=None, dataset: str = "FB15k-237",
                      details: dict | None = None, progress=None, shapes: dict | None = None) -> dict[str, float]:
    """Median ms per full training step for every ``MODEL/loss/sampler`` case (FB15k-237, the paper's config).

    ``details``, if given, receives per case the step/forward+backward/forward medians; ``shapes`` overrides the
    paper's ``hidden_dim``, ``batch_size`` and ``negatives`` (the GPU window's dry mode).
    """
    from emukg.data import load_dataset

    if kg is None:
        kg = load_dataset(dataset)
    results: dict[str, float] = {}
    for sampler in samplers:
        for model in models:
            for loss in losses:
                name = f"{model}/{loss}/{sampler}"
                cfg = make_config(model, loss, sampler, dataset=dataset, **(shapes or {}))
                r = time_case(cfg, kg, steps=steps, warmup=warmup, device=device, use_kernel=use_kernel, split=True)
                results[name] = r["step_ms"]
                if details is not None:
                    details[name] = r
                if progress:
                    progress(name, r)
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--losses", nargs="+", default=LOSSES, choices=LOSSES)
    ap.add_argument("--samplers", nargs="+", default=["uniform"])
    ap.add_argument("--steps", type=int, default=10, help="timed steps per case (median reported)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--dataset", default="FB15k-237")
    ap.add_argument("--no-kernel", action="store_true", help="force the plain PyTorch path (no native kernel)")
    ap.add_argument("--hidden-dim", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--negatives", type=int, default=256)
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = ap.parse_args(argv)
    shapes = dict(hidden_dim=args.hidden_dim, batch_size=args.batch_size, negatives=args.negatives)
    if args.threads:
        torch.set_num_threads(args.threads)
    import emukg.emu as emu

    kernel = emu.kernel_available() and not args.no_kernel
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
          f"native kernel {'on' if kernel else 'off'}", flush=True)
    print(f"{'case':34s} {'step ms':>9s} {'fwd+bwd':>9s} {'fwd':>8s} {'min step':>9s}", flush=True)

    def show(name, r):
        print(f"{name:34s} {r['step_ms']:9.1f} {r['fwd_bwd_ms']:9.1f} {r['fwd_ms']:8.1f} {r['step_min_ms']:9.1f}", flush=True)

    details: dict = {}
    results = bench_train_steps(args.models, args.losses, args.samplers, args.steps, args.device, warmup=args.warmup,
                                use_kernel=False if args.no_kernel else None, dataset=args.dataset, details=details,
                                progress=show, shapes=shapes)
    if args.json:
        payload = {"benchmark": "train_step", "unit": "ms (median full step: forward, backward, Adagrad)",
                   "dataset": args.dataset, "hidden_dim": args.hidden_dim, "batch_size": args.batch_size, "negatives": args.negatives,
                   "device": args.device, "threads": torch.get_num_threads(), "native_kernel": kernel,
                   "torch": torch.__version__, "machine": platform.machine(), "python": sys.version.split()[0],
                   "steps": args.steps, "warmup": args.warmup, "results": results, "details": details}
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
