"""NBFNet with and without EMU on kinships, umls and countries_S1, beside TransE and RotatE at the same wall-clock
training budget (docs/results.md, §NBFNet).

    PYTHONPATH=src EMUKG_DATA_DIR=/work/shared/datasets python3 studies/nbfnet_small_study.py --out runs.jsonl
    python3 studies/nbfnet_small_study.py --table runs.jsonl        # mean ± std over the seeds, as markdown
    ... --out pna.jsonl --aggregation pna --datasets kinships --seeds 0 --variants NBFNet NBFNet+EMU --no-baselines

Every run: one process thread, the test split ranked in full (filtered, realistic ties, head and tail queries),
the last model (no validation during training).  NBFNet runs a fixed number of steps (:data:`NBF_STEPS`) with the
same batch, negatives and network in every variant:

* ``NBFNet``      the paper's loss: self-adversarial binary loss (temperature 0.5), plain means;
* ``NBFNet-CE``   softmax cross-entropy over the same candidates (EMU's loss without EMU);
* ``NBFNet+EMU``  cross-entropy plus EMU on the final node representations (p = 0.39, λ = 0.53, CE coefficient 0.11,
  the EMU paper's values).

TransE and RotatE then train for as many seconds as the NBFNet runs of that dataset and seed took to train (their
mean), stopping at the first step past that time: the same wall-clock budget, with their own usual settings.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

DATASETS = ["kinships", "umls", "countries_S1"]
SEEDS = [0, 1, 2]
NBF_STEPS = 100
NBF = dict(model="NBFNet", hidden_dim=32, num_layers=3, message_function="distmult", aggregation="sum",
           query_dependent=True, remove_edges="query", batch_size=16, negative_sample_size=32, sampler="filtered",
           optimizer="adam", learning_rate=5e-3, schedule="constant", uni_weight=True, train_memory_mb=64,
           eval_memory_mb=16)
VARIANTS = {
    "NBFNet": dict(NBF, loss="sigmoid", adversarial=True, adversarial_temperature=0.5),
    "NBFNet-CE": dict(NBF, loss="ce"),
    "NBFNet+EMU": dict(NBF, loss="ce", emu=0.39, neg_label=0.53, ce_coef=0.11),
}
EMBEDDING = {
    "TransE": dict(model="TransE", hidden_dim=200, gamma=12.0),
    "RotatE": dict(model="RotatE", hidden_dim=100, gamma=12.0, double_entity_embedding=True),
}
EMB_COMMON = dict(batch_size=256, negative_sample_size=64, loss="sigmoid", sampler="filtered", adversarial=True,
                  adversarial_temperature=1.0, optimizer="adam", learning_rate=1e-3, schedule="constant")
METRICS = ["MRR", "HITS@1", "HITS@3", "HITS@10"]


def run(name: str, dataset: str, seed: int, settings: dict, steps: int | None = None, seconds: float | None = None) -> dict:
    """Train (``steps`` steps, or until ``seconds`` of training have passed) and rank the test split."""
    import torch

    from emukg.config import Config
    from emukg.training import Trainer

    torch.set_num_threads(1)
    folder = tempfile.mkdtemp(prefix=f"nbfstudy_{name.replace('/', '-')}_{dataset}_{seed}_")
    cfg = Config.from_dict(dict(settings, dataset=dataset, seed=seed, max_steps=steps or 10**8, do_valid=False,
                                do_test=False, save_path=folder, log_steps=10**6, save_checkpoint_steps=10**8,
                                threads=1, progress=False))
    tr = Trainer(cfg)
    tr.out.console = False
    t0 = time.perf_counter()
    done = 0
    while (steps is not None and done < steps) or (seconds is not None and time.perf_counter() - t0 < seconds):
        tr.train_step()
        done += 1
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    res = tr.evaluate("test")
    record = {"name": name, "dataset": dataset, "seed": seed, "steps": done, "train_s": round(train_s, 2),
              "eval_s": round(time.perf_counter() - t1, 2), **{k: res[k] for k in METRICS}, "MR": res["MR"],
              "test_queries": res["num_queries"]}
    tr.out.close()
    return record


def study(out: Path, datasets=DATASETS, seeds=SEEDS, variants=None, baselines: bool = True, aggregation: str = "sum") -> None:
    variants = {k: dict(v, aggregation=aggregation) for k, v in VARIANTS.items() if variants is None or k in variants}
    tag = "" if aggregation == "sum" else f"/{aggregation}"
    done = set()
    if out.exists():
        done = {(r["name"], r["dataset"], r["seed"]) for r in map(json.loads, out.read_text().splitlines()) if r}
    with out.open("a") as f:
        def write(rec):
            f.write(json.dumps(rec) + "\n")
            f.flush()
            print(json.dumps(rec), file=sys.stderr)

        for dataset in datasets:
            for seed in seeds:
                for name, settings in variants.items():
                    if (name + tag, dataset, seed) not in done:
                        write(run(name + tag, dataset, seed, settings, steps=NBF_STEPS))
                if not baselines:
                    continue
                rows = [json.loads(x) for x in out.read_text().splitlines() if x]
                budget = [r["train_s"] for r in rows if r["dataset"] == dataset and r["seed"] == seed and r["name"] in VARIANTS]
                seconds = sum(budget) / len(budget)
                for name, settings in EMBEDDING.items():
                    if (name, dataset, seed) not in done:
                        write(dict(run(name, dataset, seed, dict(EMB_COMMON, **settings), seconds=seconds), budget_s=round(seconds, 2)))


def table(path: Path) -> str:
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    lines = ["| dataset | model | seeds | steps | train s | " + " | ".join(METRICS) + " |",
             "|---|---|---|---|---|" + "---|" * len(METRICS)]
    names = list(dict.fromkeys(r["name"] for r in rows))
    for dataset in DATASETS:
        for name in [n for n in [*VARIANTS, *EMBEDDING] if n in names] + [n for n in names if n not in VARIANTS and n not in EMBEDDING]:
            sel = [r for r in rows if r["dataset"] == dataset and r["name"] == name]
            if not sel:
                continue

            def ms(key):
                v = [r[key] for r in sel]
                m = sum(v) / len(v)
                s = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
                return m, s

            steps = ms("steps")[0]
            cells = [f"{ms(k)[0]:.3f} ± {ms(k)[1]:.3f}" for k in METRICS]
            lines.append(f"| {dataset} | {name} | {len(sel)} | {steps:.0f} | {ms('train_s')[0]:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, help="JSON lines file of the runs (appended; finished runs are skipped)")
    ap.add_argument("--table", type=Path, help="print the markdown table of a runs file")
    ap.add_argument("--datasets", nargs="+", default=DATASETS)
    ap.add_argument("--seeds", nargs="+", type=int, default=SEEDS)
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), help="NBFNet variants (default: all)")
    ap.add_argument("--no-baselines", action="store_true", help="skip TransE and RotatE")
    ap.add_argument("--aggregation", choices=["sum", "pna"], default="sum",
                    help="NBFNet's aggregation (pna runs are named NAME/pna)")
    a = ap.parse_args()
    if a.table:
        print(table(a.table))
    elif a.out:
        study(a.out, a.datasets, a.seeds, a.variants, not a.no_baselines, a.aggregation)
    else:
        ap.error("give --out FILE or --table FILE")
