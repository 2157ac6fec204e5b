"""``emukg import-pykeen PYKEEN_DIR --out RUN_DIR``: a trained PyKEEN model as an emukg run folder."""

from __future__ import annotations

import argparse


def handle(args: argparse.Namespace) -> int:
    from ..pykeen import import_saved  # needs the extra: a missing PyKEEN is one sentence (MissingExtraError)

    path = import_saved(args.pykeen_dir, args.out, validation=args.valid, testing=args.test, overwrite=args.overwrite)
    print(path)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("import-pykeen", help="turn a trained PyKEEN model into an emukg run folder (needs emukg[pykeen])",
                       description="Convert the model PyKEEN's result.save_to_directory() wrote (TransE with "
                                   "p=1, DistMult, ComplEx) into a run folder for emukg evaluate / predict / export.")
    p.add_argument("pykeen_dir", metavar="PYKEEN_DIR", help="folder with trained_model.pkl and training_triples/")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="the run folder to write")
    p.add_argument("--valid", metavar="FILE", help="labelled head<TAB>relation<TAB>tail validation triples (default: none)")
    p.add_argument("--test", metavar="FILE", help="labelled test triples (default: none)")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in RUN_DIR")
    p.set_defaults(func=handle)
