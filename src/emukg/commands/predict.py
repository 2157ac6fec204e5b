"""``emukg predict RUN_DIR --head NAME --relation NAME``: the top-k tails (or heads, with --tail) of one query."""

from __future__ import annotations

import argparse
from pathlib import Path


HELP = "top-k tails of (head, relation, ?) or heads of (?, relation, tail)"
DESCRIPTION = (
    "Score every entity for one query of a trained run and print the best ones: --head and --relation predict "
    "tails, --tail and --relation predict heads. Known triples (train ∪ valid ∪ test) are marked with '*', or "
    "left out with --filter-known."
)


def handle(args: argparse.Namespace) -> int:
    import torch

    from ..prediction import check_query, predict
    from ..run_folder import checkpoint_file, load_run
    from ..training import resolve_device

    check_query(args.head, args.relation, args.tail, args.top_k)  # before the dataset is loaded
    device = resolve_device(args.device)
    cfg, kg, model = load_run(args.run_dir, args.checkpoint, device=device, dataset=args.dataset)
    rows = predict(model, kg, head=args.head, relation=args.relation, tail=args.tail, top_k=args.top_k,
                   filter_known=args.filter_known)
    ids = torch.tensor([kg.entity_to_id[name] for name, _ in rows], dtype=torch.long)
    r = torch.full_like(ids, kg.relation_to_id[args.relation])
    if args.head is not None:
        query = f"({args.head}, {args.relation}, ?)"
        known = kg.filter.contains(torch.full_like(ids, kg.entity_to_id[args.head]), r, ids)
    else:
        query = f"(?, {args.relation}, {args.tail})"
        known = kg.filter.contains(ids, r, torch.full_like(ids, kg.entity_to_id[args.tail]))
    what = "tails" if args.head is not None else "heads"
    extra = ", known triples left out" if args.filter_known else ", * = known triple"
    print(f"{query}: top {len(rows)} {what} ({cfg.model}, {checkpoint_file(args.run_dir, args.checkpoint)}{extra})")
    width = max([len(n) for n, _ in rows] + [6])
    print(f"{'rank':>4}  {'entity':<{width}}  {'score':>12}")
    for i, ((name, score), k) in enumerate(zip(rows, known.tolist()), 1):
        mark = " *" if k and not args.filter_known else ""
        print(f"{i:>4}  {name:<{width}}  {score:>12.6g}{mark}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("predict", help=HELP, description=DESCRIPTION)
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="run folder written by 'emukg train'")
    p.add_argument("--head", metavar="NAME", help="head entity: predict tails of (NAME, relation, ?)")
    p.add_argument("--tail", metavar="NAME", help="tail entity: predict heads of (?, relation, NAME)")
    p.add_argument("--relation", metavar="NAME", required=True, help="relation name")
    p.add_argument("--top-k", type=int, default=10, metavar="K", help="how many entities to print (default 10)")
    p.add_argument("--filter-known", action="store_true",
                   help="leave out entities that already form a known triple (train ∪ valid ∪ test) with the query")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best",
                   help="best_model (falls back to the last checkpoint) or the last checkpoint")
    p.add_argument("--dataset", metavar="NAME_OR_FOLDER",
                   help="the run's data (a registered name or a folder), when it is no longer where config.json says")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.set_defaults(func=handle)
    return p
