"""NBFNet's FB15k-237 configuration (``emukg reproduce nbfnet-FB15k-237``) for a few steps on the CPU: time per
step, time per query, peak memory, and the estimate of a full run (docs/results.md, §NBFNet).

    PYTHONPATH=src EMUKG_DATA_DIR=/work/shared/datasets python3 studies/nbfnet_fb15k237_cpu.py [--steps 3] [--batch 4]

A step runs its queries one micro-batch after the other (emukg.nbfnet.step), so the time of a step of the paper's
batch (64) is 64 × the time per query measured here; the script takes a smaller batch to keep the CPU time short and
says so.  Peak memory: the process's maximum resident size (ru_maxrss) after the steps minus before them, for one
query per micro-batch, beside the model's own estimate (NBFNet.bytes_per_query).
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time

import torch


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-queries", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from emukg.paper import experiment_config
    from emukg.training import Trainer

    full = experiment_config("nbfnet-FB15k-237")
    out = tempfile.mkdtemp(prefix="nbfnet_fb_")
    cfg = experiment_config("nbfnet-FB15k-237", batch_size=args.batch, max_steps=args.steps, do_valid=False,
                            do_test=False, threads=args.threads, train_memory_mb=4096, save_path=out, log_steps=1,
                            progress=False)
    t0 = time.perf_counter()
    tr = Trainer(cfg)
    model = tr.model
    setup_s = time.perf_counter() - t0
    per_query_est = model.bytes_per_query(True) / 2**20
    before = rss_mb()
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        logs = tr.train_step()
        times.append(time.perf_counter() - t)
    after = rss_mb()
    model.eval()
    q = tr.kg.splits["test"][:args.eval_queries]
    with torch.no_grad():
        t = time.perf_counter()
        model.score_all(q[:, 0], q[:, 1], "tail")
        eval_per_query = (time.perf_counter() - t) / q.shape[0]
    per_query = sum(times[1:] or times) / len(times[1:] or times) / args.batch  # the first step warms up
    record = {
        "config": "nbfnet-FB15k-237", "entities": model.num_entities, "edges": model.graph_edges,
        "layers": model.num_layers, "width": model.hidden_dim, "aggregation": model.aggregation,
        "batch_measured": args.batch, "steps": args.steps, "threads": args.threads, "setup_s": round(setup_s, 1),
        "step_s": [round(x, 2) for x in times], "train_s_per_query": round(per_query, 3),
        "step_s_at_batch_64": round(per_query * full.batch_size, 1), "queries_per_micro_batch": model.queries_per_pass(4096, True, "train_memory_mb"),
        "peak_rss_mb_before": round(before), "peak_rss_mb_after": round(after),
        "peak_step_mb": round(after - before), "estimated_mb_per_query": round(per_query_est),
        "eval_s_per_query": round(eval_per_query, 3), "loss": logs["loss"],
        "full_run_steps": full.max_steps, "full_run_queries": full.max_steps * full.batch_size,
        "full_run_cpu_hours_train": round(full.max_steps * full.batch_size * per_query / 3600),
        "eval_queries_per_validation": 2 * int(tr.kg.splits["valid"].shape[0]),
        "validations": full.max_steps // full.valid_steps,
        "torch": torch.__version__,
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
