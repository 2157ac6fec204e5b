"""``emukg export RUN_DIR --format npy|tsv|word2vec [--out DIR]``: a run's embeddings with their names."""

from __future__ import annotations

import argparse
from pathlib import Path

# emukg.exports.FORMATS, spelled out: emukg.exports imports NumPy, the parser must not (a test compares them)
FORMATS = ("npy", "tsv", "word2vec")


def handle(args: argparse.Namespace) -> int:
    from ..api import load
    from ..exports import export_embeddings
    from ..io_utils import check_writable_dir

    out = Path(args.out) if args.out else Path(args.run_dir) / f"export-{args.format}"
    check_writable_dir(out, "--out")  # before the run is loaded: a refused export writes nothing
    run_ = load(args.run_dir, args.checkpoint, dataset=args.dataset)
    for path in export_embeddings(run_.embeddings(), out, args.format):
        print(path)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="write a run's embeddings with their names (npy, TSV for the projector, word2vec)",
                       description="Export the entity and relation embeddings of a run, with names, atomically.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by 'emukg train'")
    p.add_argument("--format", choices=FORMATS, default="tsv", help="npy, tsv (TensorBoard projector) or word2vec (default: tsv)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: RUN_DIR/export-FORMAT)")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best", help="best_model (default) or the last checkpoint")
    p.add_argument("--dataset", metavar="NAME_OR_FOLDER", help="the run's data, when it moved")
    p.set_defaults(func=handle)
