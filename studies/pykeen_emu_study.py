"""PyKEEN models with and without EMU at the same budget (issue 21): kinships and umls, 3 seeds, mean ± std.

Every run is PyKEEN's ``pipeline`` on emukg's copy of the dataset (its ids and splits), with the same model width,
optimiser (Adam), learning rate, batch size, number of epochs, and PyKEEN's default negative sampler (uniform head
or tail corruption, ``num_negs_per_pos`` negatives); the two arms differ only in the loss:

* ``ce``  — PyKEEN's sLCWA training loop with its ``CrossEntropyLoss`` (softmax cross-entropy over [positive,
  negatives]: emukg's and the reference's ``-if_CE 1`` baseline loss);
* ``emu`` — ``training_loop="emu"``: L = L_EMU/n + ce_coef·L_CE over the same negatives, the paper's settings
  p = 0.39, λ = 0.53, ce_coef = 0.11.

Test metrics (filtered by train ∪ valid ∪ test, realistic ranks) come from ``evaluator="emukg"`` (equal to
PyKEEN's ``RankBasedEvaluator``, tests/test_pykeen.py).  Each finished run appends one JSON line to ``--out``; a run
already there is skipped, so the study resumes.

    python studies/pykeen_emu_study.py --out studies/pykeen_emu_runs.jsonl          # run (resumable)
    python studies/pykeen_emu_study.py --out studies/pykeen_emu_runs.jsonl --table  # the table of docs/results.md
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path


def run_one(dataset: str, model: str, arm: str, seed: int, args) -> dict:
    import torch
    from pykeen.pipeline import pipeline
    from pykeen.triples import TriplesFactory

    import emukg.pykeen  # noqa: F401  (registers "emu" and "emukg")
    from emukg.data import load_dataset

    torch.set_num_threads(args.threads)
    kg = load_dataset(dataset)
    ent = {n: i for i, n in enumerate(kg.entities)}
    rel = {n: i for i, n in enumerate(kg.relations)}
    train, valid, test = (TriplesFactory(mapped_triples=x, entity_to_id=ent, relation_to_id=rel)
                          for x in (kg.train, kg.valid, kg.test))
    loop = dict(training_loop="emu", training_loop_kwargs=dict(emu=0.39, neg_label=0.53, ce_coef=0.11)) \
        if arm == "emu" else dict(training_loop="slcwa", loss="crossentropy")
    t0 = time.perf_counter()
    result = pipeline(training=train, validation=valid, testing=test, model=model,
                      model_kwargs=dict(embedding_dim=args.dim), optimizer="adam", optimizer_kwargs=dict(lr=args.lr),
                      negative_sampler_kwargs=dict(num_negs_per_pos=args.negatives),
                      training_kwargs=dict(num_epochs=args.epochs, batch_size=args.batch_size, use_tqdm=False),
                      evaluator="emukg", evaluation_kwargs=dict(use_tqdm=False), random_seed=seed, **loop)
    m = result.metric_results
    return {"dataset": dataset, "model": model, "arm": arm, "seed": seed, "dim": args.dim, "epochs": args.epochs,
            "batch_size": args.batch_size, "negatives": args.negatives, "lr": args.lr,
            "seconds": round(time.perf_counter() - t0, 1),
            "MRR": m.get_metric("both.realistic.inverse_harmonic_mean_rank"),
            "HITS@1": m.get_metric("both.realistic.hits_at_1"), "HITS@10": m.get_metric("both.realistic.hits_at_10"),
            "torch": torch.__version__, "pykeen": emukg.pykeen.PYKEEN_VERSION}


def key(r: dict) -> tuple:
    return (r["dataset"], r["model"], r["arm"], r["seed"], r["dim"], r["epochs"], r["batch_size"], r["negatives"], r["lr"])


def table(rows: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["model"], r["arm"]), []).append(r)

    def ms(vals):
        return f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f}" if len(vals) > 1 else f"{vals[0]:.3f}"

    out = ["| dataset | model | arm | seeds | MRR | HITS@1 | HITS@10 | s / run |", "|---|---|---|---|---|---|---|---|"]
    for (d, m, a), rs in sorted(groups.items()):
        out.append(f"| {d} | {m} | {a} | {len(rs)} | {ms([r['MRR'] for r in rs])} | {ms([r['HITS@1'] for r in rs])} | "
                   f"{ms([r['HITS@10'] for r in rs])} | {statistics.mean(r['seconds'] for r in rs):.0f} |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--datasets", default="kinships,umls")
    p.add_argument("--models", default="TransE,DistMult")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--negatives", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--table", action="store_true", help="print the markdown table of --out and stop")
    args = p.parse_args()
    rows = [json.loads(line) for line in args.out.read_text().splitlines() if line.strip()] if args.out.exists() else []
    if args.table:
        print(table(rows))
        return 0
    logging.getLogger("pykeen").setLevel(logging.ERROR)
    logging.getLogger("torch_max_mem").setLevel(logging.ERROR)
    done = {key(r) for r in rows}
    for dataset in args.datasets.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            for model in args.models.split(","):
                for arm in ("ce", "emu"):
                    probe = {"dataset": dataset, "model": model, "arm": arm, "seed": seed, "dim": args.dim,
                             "epochs": args.epochs, "batch_size": args.batch_size, "negatives": args.negatives,
                             "lr": args.lr}
                    if key(probe) in done:
                        continue
                    r = run_one(dataset, model, arm, seed, args)
                    with open(args.out, "a", encoding="utf-8") as f:
                        f.write(json.dumps(r) + "\n")
                    print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
