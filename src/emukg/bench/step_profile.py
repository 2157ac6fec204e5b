"""Where a CPU training step's time goes, phase by phase, against a floor model of the work it must do (issue 20).

    EMUKG_DATA_DIR=../shared/datasets python -m emukg.bench.step_profile --models TransE RotatE --losses ce emu --json out.json

For each model × loss on FB15k-237 at the paper's shapes (d=100, B=1000, n=256, the cases of
:mod:`emukg.bench.train_step`), the median milliseconds of each phase of a step, timed at the boundaries of the
Objective's own parts (the bench wraps the instance's methods; nothing in the library is changed):

* ``draw``      the negatives (sampler) and EMU's mask seed / Mixup ratios;
* ``score``     the loss pass: the candidates' gathers and the scoring kernel's forward;
* ``loss``      the loss over those scores (CE or the sigmoid loss);
* ``emu``       EMU's term: the mutated pass (mask, gathers, kernel forward) and its soft-label loss;
* ``rest``      everything else of the objective's forward (batch set-up, the adversarial term, the logs' one sync);
* ``backward``  ``loss.backward()``: every kernel's backward and the gradient accumulation;
* ``optimiser`` Adagrad's step.

The floor model: one pass scores ``C = B·(n+1)`` candidates of ``D`` floats (D = the entity row: 100 for TransE and
DistMult, 200 for ComplEx and RotatE), so a step touches ``P·C·D`` candidate components, P = 1 pass for CE and 2 with
EMU; per component a forward does ``f`` float operations (TransE 3: subtract, absolute value, add; DistMult 2; ComplEx
4; RotatE 4 plus a square root per complex pair) and a backward about ``2f``, reading the gathered row (4 bytes per
component) forward and adding a gradient (8: read and write) backward.  The machine's peaks come from small probes
run in the same process: an fp32 matrix product (flop/s), a reduction over a table that fits the cache (the entity
table of FB15k-237 is 5.8 MB: gathers are served there), and one over a 1 GB table (memory).  The floor of a step is
the larger of its arithmetic and its cache traffic at those peaks, plus the dense optimiser's pass over the tables at
memory speed; ``step / floor`` says how far the step is from it.  A floor model is a yardstick, not a promise: gathers
are random accesses, which the streaming probe flatters.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from .train_step import FLAGS, make_config

FLOPS_PER_COMPONENT = {"TransE": 3, "DistMult": 2, "ComplEx": 4, "RotatE": 5}
PHASES = ("draw", "score", "loss", "emu", "rest", "backward", "optimiser")


def probe_machine(threads: int) -> dict:
    """The peaks a floor needs, measured now: fp32 matmul flop/s, in-cache and in-memory read bytes/s."""
    torch.set_num_threads(threads)

    def best(fn, repeat=5) -> float:
        fn()
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    flops = 2 * 1024 ** 3 / best(lambda: torch.mm(a, b))
    small = torch.randn(1_450_000)  # 5.8 MB, FB15k-237's TransE table
    cache = small.numel() * 4 * 20 / best(lambda: [small.sum() for _ in range(20)])
    big = torch.randn(250_000_000)  # 1 GB
    memory = big.numel() * 4 / best(lambda: big.sum(), repeat=3)
    del big
    return {"flops_per_s": flops, "cache_bytes_per_s": cache, "memory_bytes_per_s": memory}


def floor_ms(model: str, loss: str, cfg, kg, params_bytes: int, peaks: dict) -> dict:
    """The floor model of one step (module docstring): components, flops, bytes and the floor in ms."""
    row = cfg.hidden_dim * (2 if cfg.double_entity_embedding else 1)
    passes = 2 if loss == "emu" else 1
    components = passes * cfg.batch_size * (cfg.negative_sample_size + 1) * row
    f = FLOPS_PER_COMPONENT.get(model, 4)
    flops = components * 3 * f  # forward f, backward about 2f
    traffic = components * 12  # read the row forward; read and write its gradient backward
    optimiser = 3 * params_bytes  # dense Adagrad: read the parameter, its state, the gradient (and write two)
    arith = flops / peaks["flops_per_s"]
    cache = traffic / peaks["cache_bytes_per_s"]
    total = max(arith, cache) + optimiser / peaks["memory_bytes_per_s"]
    return {"components": components, "flops": flops, "cache_bytes": traffic, "optimiser_bytes": optimiser,
            "arith_ms": arith * 1e3, "cache_ms": cache * 1e3, "floor_ms": total * 1e3}


def profile_case(cfg, kg, steps: int = 10, warmup: int = 3, seed: int = 0) -> dict:
    """The median ms of each phase (``PHASES``) and of the whole step, over ``steps`` timed steps."""
    from emukg.models import build_model, model_options
    from emukg.negatives import build_sampler
    from emukg.optim import make_optimizer
    from emukg.objectives import build_objective

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build_model(cfg.model, kg.num_entities, kg.num_relations, cfg.hidden_dim, cfg.gamma,
                        cfg.double_entity_embedding, cfg.double_relation_embedding, **model_options(cfg))
    train, weights = kg.train, kg.subsampling_weights()
    objective = build_objective(cfg, kg, build_sampler(cfg, kg, "cpu", gen))
    opt = make_optimizer("adagrad", model, cfg.learning_rate)  # the optimiser a run gets (emukg.optim)
    spent: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*args, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t0
        return wrapper

    objective.draw = timed("draw", objective.draw)
    make_scorer = objective.scorer

    def scorer(*args, **kw):  # the loss pass's scoring; EMU's passes are timed inside its term
        s = make_scorer(*args, **kw)
        call = s.__call__
        first = []

        class Timed:
            def __getattr__(self, name):
                return getattr(s, name)

            def __call__(self, *a, **k):
                if not first:
                    first.append(1)
                    return timed("score", call)(*a, **k)
                return call(*a, **k)
        return Timed()

    objective.scorer = scorer
    objective.loss = timed("loss", objective.loss)
    if objective.emu is not None:
        objective.emu.add = timed("emu", objective.emu.add)
    perm = torch.randperm(train.shape[0], generator=gen)
    B = cfg.batch_size
    rows: dict[str, list[float]] = {p: [] for p in (*PHASES, "step")}
    for i in range(warmup + steps):
        idx = perm[(i * B) % (train.shape[0] - B):][:B]
        side = "tail" if i % 2 == 0 else "head"
        spent.clear()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss, _ = objective(model, train[idx], side, gen, weights[idx])
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if i < warmup:
            continue
        forward = t1 - t0
        for p in ("draw", "score", "loss", "emu"):
            rows[p].append(spent.get(p, 0.0) * 1e3)
        rows["rest"].append((forward - sum(spent.values())) * 1e3)
        rows["backward"].append((t2 - t1) * 1e3)
        rows["optimiser"].append((t3 - t2) * 1e3)
        rows["step"].append((t3 - t0) * 1e3)
    out = {p: statistics.median(v) for p, v in rows.items()}
    out["step_min"] = min(rows["step"])
    out["params_bytes"] = sum(p.numel() * p.element_size() for p in model.parameters())
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["TransE", "DistMult", "ComplEx", "RotatE"])
    p.add_argument("--losses", nargs="+", default=["ce", "emu"])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--dataset", default="FB15k-237")
    p.add_argument("--json")
    args = p.parse_args(argv)
    from emukg.data import load_dataset

    torch.set_num_threads(args.threads)
    peaks = probe_machine(args.threads)
    print(f"peaks: {peaks['flops_per_s'] / 1e9:.1f} GFLOP/s fp32 matmul, {peaks['cache_bytes_per_s'] / 1e9:.1f} GB/s "
          f"in cache (5.8 MB), {peaks['memory_bytes_per_s'] / 1e9:.1f} GB/s from memory (1 GB); threads {args.threads}")
    kg = load_dataset(args.dataset)
    head = f"{'case':18s}" + "".join(f"{p:>10s}" for p in (*PHASES, "step", "floor", "×floor"))
    print(head)
    results = {}
    for model in args.models:
        if model not in FLOPS_PER_COMPONENT:
            raise SystemExit(f"--models: {model} has no floor model here (one of {', '.join(FLOPS_PER_COMPONENT)}).")
        for loss in args.losses:
            cfg = make_config(model, loss)
            cfg.validate()
            prof = profile_case(cfg, kg, steps=args.steps)
            fl = floor_ms(model, loss, cfg, kg, prof["params_bytes"], peaks)
            case = f"{model}/{loss}"
            results[case] = {"phases_ms": {p: prof[p] for p in PHASES}, "step_ms": prof["step"],
                             "step_min_ms": prof["step_min"], "floor": fl}
            print(f"{case:18s}" + "".join(f"{prof[p]:10.1f}" for p in (*PHASES, "step")) +
                  f"{fl['floor_ms']:10.2f}{prof['step'] / fl['floor_ms']:10.1f}")
    if args.json:
        from emukg.io_utils import atomic_write_json

        atomic_write_json(args.json, {"benchmark": "step_profile", "unit": "ms (median per step)", "threads": args.threads,
                                      "torch": torch.__version__, "peaks": peaks, "flags": {k: v for k, v in FLAGS.items()},
                                      "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
