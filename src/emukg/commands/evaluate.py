"""``emukg evaluate RUN_DIR``: filtered link-prediction metrics of a saved run (table on stdout, JSON file)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# emukg.evaluation.TIE_POLICIES, spelled out: building the parser must not import PyTorch (a test compares them)
TIE_POLICIES = ("optimistic", "pessimistic", "realistic")
PROTOCOLS = ("full", "sampled")  # emukg.evaluation.PROTOCOLS

HELP = "filtered MRR / MR / HITS@k of a trained run"
DESCRIPTION = (
    "Rank every (h, r, ?) and (?, r, t) query of a split against all entities, leaving out the other known "
    "answers (train ∪ valid ∪ test), and print MRR, MR and HITS@1/3/10 under the three tie policies "
    "(optimistic: ties count in the answer's favour, pessimistic: against it, realistic: their mean — the "
    "default), overall and per direction."
)


def _row(label: str, m: dict, width: int) -> str:
    return (f"{label:<{width}} {m['MRR']:>8.4f} {m['MR']:>10.1f} {m['HITS@1']:>8.4f} {m['HITS@3']:>8.4f} "
            f"{m['HITS@10']:>8.4f}")


def format_table(res: dict, per_relation: bool = False) -> str:
    """The human-readable report of an :func:`emukg.evaluation.evaluate` result."""
    width = 22
    head = f"{'':<{width}} {'MRR':>8} {'MR':>10} {'HITS@1':>8} {'HITS@3':>8} {'HITS@10':>8}"
    pol = res["tie_policy"]
    lines = [head]
    for p in ("optimistic", "pessimistic", "realistic"):
        lines.append(_row(p + (" *" if p == pol else ""), res[p], width))
    lines.append("")
    lines.append(f"{'direction (' + pol + ')':<{width}}")
    lines.append(_row("head  (?, r, t)", res["head"], width))
    lines.append(_row("tail  (h, r, ?)", res["tail"], width))
    if per_relation:
        lines.append("")
        lines.append(f"per relation ({pol}); queries, then metrics")
        rel_w = max([len(k) for k in res["per_relation"]] + [8])
        for name, m in sorted(res["per_relation"].items(), key=lambda kv: -kv[1]["num_queries"]):
            lines.append(f"{name:<{rel_w}} {m['num_queries']:>7} {m['MRR']:>8.4f} {m['MR']:>10.1f} {m['HITS@1']:>8.4f} "
                         f"{m['HITS@3']:>8.4f} {m['HITS@10']:>8.4f}")
    return "\n".join(lines)


def number(text: str) -> float:
    """``--memory-mb``'s value (argparse says "invalid number value"): a whole number stays an int, so that an error
    echoes it as typed (``-5``, not ``-5.0``)."""
    value = float(text)
    return int(value) if value.is_integer() else value


def handle(args: argparse.Namespace) -> int:
    from ..evaluation import budget_bytes, check_candidates, evaluate
    from ..io_utils import atomic_write_json, check_writable_file, write_error
    from ..run_folder import checkpoint_file, load_run
    from ..training import resolve_device

    if args.json:  # refuse an unwritable --json before the evaluation runs
        check_writable_file(args.json, "--json", create_parents=False)  # like a shell redirection: the folder must exist
    if args.memory_mb is not None:  # the library's checks (ParamError), said with the flags by emukg.cli.main
        budget_bytes(args.memory_mb)
    if args.candidates is not None:
        check_candidates(args.candidates)
    device = resolve_device(args.device)
    cfg, kg, model = load_run(args.run_dir, args.checkpoint, device=device, dataset=args.dataset)
    memory_mb = args.memory_mb if args.memory_mb is not None else cfg.eval_memory_mb  # (the run's: checked by its Config)
    protocol = args.protocol or getattr(cfg, "eval_protocol", "full")
    candidates = args.candidates if args.candidates is not None else getattr(cfg, "eval_candidates", 500)
    res = evaluate(model, kg, args.split, tie_policy=args.tie_policy, memory_mb=memory_mb,
                   filtered=not args.unfiltered, progress=sys.stderr.isatty(), protocol=protocol, candidates=candidates)
    ckpt = checkpoint_file(args.run_dir, args.checkpoint)
    res["run"] = {"dir": str(args.run_dir), "checkpoint": ckpt, "model": cfg.model, "dataset": kg.name,
                  "dataset_path": str(Path(kg.path).resolve()) if kg.path else None,
                  "hidden_dim": cfg.hidden_dim, "device": str(device)}
    mode = "raw" if args.unfiltered else "filtered"
    if res["protocol"] != "full":
        mode += f", {res['protocol']} (the answer against {res['candidates']} fixed random candidates per query)"
    print(f"{cfg.model} on {kg.name} ({args.run_dir}, {ckpt}): {args.split} split, {mode}, "
          f"{res['num_queries']:,} queries in {res['seconds']:.2f} s ({res['queries_per_s']:,.0f} queries/s)")
    print(f"tie policy: {args.tie_policy} (*)")
    if res["nan_scores"]:
        print(f"warning: {res['nan_scores']:,} NaN scores were ranked as worst")
    print()
    print(format_table(res, per_relation=args.per_relation))
    if args.json:
        try:
            atomic_write_json(args.json, res)
        except OSError as exc:
            raise write_error(args.json, exc, "pass another --json file") from None
        print(f"\nwrote {args.json}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("evaluate", help=HELP, description=DESCRIPTION)
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="run folder written by 'emukg train'")
    p.add_argument("--split", choices=["valid", "test", "train"], default="test", help="split to rank (default: test)")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best",
                   help="best_model (best validation MRR; falls back to the last checkpoint) or the last checkpoint")
    p.add_argument("--dataset", metavar="NAME_OR_FOLDER",
                   help="the run's data (a registered name or a folder), when it is no longer where config.json says")
    p.add_argument("--json", metavar="FILE", help="also write every metric (per policy, direction, relation) as JSON")
    p.add_argument("--tie-policy", choices=TIE_POLICIES, default="realistic",
                   help="which policy the headline metrics use (default: realistic; all three are reported)")
    p.add_argument("--memory-mb", type=number, default=None, metavar="N",
                   help="working-memory budget of one evaluation step in MiB (default: the run's eval_memory_mb, 512)")
    p.add_argument("--protocol", choices=PROTOCOLS, default=None,
                   help="full: rank against every entity; sampled: against --candidates fixed uniform random entities "
                        "per query, OGB's wikikg2 protocol (default: the run's eval_protocol, full)")
    p.add_argument("--candidates", type=int, default=None, metavar="K",
                   help="candidates per query of the sampled protocol (default: the run's eval_candidates, 500)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--unfiltered", action="store_true", help="raw ranking: do not remove the other known answers")
    p.add_argument("--per-relation", action="store_true", help="also print metrics per relation")
    p.set_defaults(func=handle)
    return p
