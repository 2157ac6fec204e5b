"""``emukg datasets list | info | download``: what datasets exist, what is in one, and fetching one."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path

HELP = "list, inspect and download link-prediction datasets"
DESCRIPTION = (
    "Datasets are found by name (case-insensitive) in $EMUKG_DATA_DIR/<name>, then in the user cache "
    "($EMUKG_CACHE_DIR, $XDG_CACHE_HOME/emukg or ~/.cache/emukg, under datasets/<name>), or given as a folder "
    "path. 'download' fetches a registered dataset into the cache and verifies every file's SHA-256."
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("datasets", help=HELP, description=DESCRIPTION)
    actions = parser.add_subparsers(dest="datasets_action", metavar="ACTION", parser_class=type(parser))

    p = actions.add_parser("list", help="registered datasets, their sizes, and where each is available locally",
                           description="List the registered datasets with their published sizes and local copies.")
    p.add_argument("--json", metavar="FILE", help="also write the list as JSON to FILE")
    p.set_defaults(func=cmd_list)

    p = actions.add_parser("info", help="counts, unseen entities and degree statistics of one dataset",
                           description="Read a dataset (registered name or folder path) and print its statistics. "
                                       "Does not download; use 'emukg datasets download NAME' first.")
    p.add_argument("dataset", metavar="NAME|PATH", help="registered dataset name or dataset folder")
    p.add_argument("--json", metavar="FILE", help="also write the statistics as JSON to FILE")
    p.set_defaults(func=cmd_info)

    p = actions.add_parser("download", help="download a registered dataset into the cache, verifying SHA-256",
                           description="Download a registered dataset into the user cache. Every file is checked "
                                       "against its registered SHA-256 before the dataset is stored.")
    p.add_argument("dataset", metavar="NAME", help="registered dataset name (see 'emukg datasets list')")
    p.add_argument("--mirror", metavar="URL", default=None,
                   help="fetch files from URL/<folder>/<file> instead of the registered sources "
                        "(default: $EMUKG_MIRROR); a local folder works too")
    p.add_argument("--force", action="store_true", help="download again even when the cache has the dataset")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="accept datasets registered without checksums (YAGO3-10, FB15k, wn18); "
                        "files that have a checksum are still verified")
    p.set_defaults(func=cmd_download)

    p = actions.add_parser("synthetic", help="write a synthetic graph with power-law degrees (millions of triples)",
                           description="Write a dataset folder (entities.dict, relations.dict, train/valid/test.txt) "
                                       "of distinct random triples: heads and tails from a Zipf law over a random "
                                       "permutation of the entities (degree exponent 1 + 1/EXPONENT), relations "
                                       "Zipf too; valid and test triples are disjoint from train and use only "
                                       "entities seen in train. Same arguments and seed, same files.")
    p.add_argument("--entities", type=int, required=True, metavar="N", help="number of entities (≥ 2)")
    p.add_argument("--relations", type=int, required=True, metavar="R", help="number of relations (≥ 1)")
    p.add_argument("--triples", type=int, required=True, metavar="M", help="training triples")
    p.add_argument("--valid", type=int, default=None, metavar="V", help="validation triples (default: 2%% of M, at least 1)")
    p.add_argument("--test", type=int, default=None, metavar="T", help="test triples (default: 2%% of M, at least 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--exponent", type=float, default=0.75, metavar="S",
                   help="Zipf exponent of the entity ranks (default 0.75: degree exponent ≈ 2.33; 0 = uniform)")
    p.add_argument("--relation-exponent", type=float, default=1.0, metavar="S",
                   help="Zipf exponent of the relation ranks (default 1.0)")
    p.add_argument("--out", required=True, metavar="DIR", help="new or empty folder to write the dataset into")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    p.set_defaults(func=cmd_synthetic)

    def no_action(args) -> int:
        parser.print_help(sys.stderr)
        return 2

    parser.set_defaults(func=no_action)
    return parser


def _fmt(n) -> str:
    return "?" if n is None else str(n)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    return "\n".join(lines)


def _check_json(path) -> None:
    """Refuse an unwritable ``--json FILE`` before any work, creating nothing (a missing folder is refused too)."""
    from ..io_utils import check_writable_file

    if path:
        check_writable_file(path, "--json", create_parents=False)


def _write_json(path, obj) -> None:
    from ..io_utils import atomic_write_json, write_error

    try:
        atomic_write_json(path, obj)
    except OSError as exc:
        raise write_error(path, exc, "pass another --json file") from None


def cmd_list(args) -> int:
    from ..data import registry

    _check_json(args.json)
    rows, records = [], []
    for info in registry.list_datasets():
        local = registry.find_local(info.name)
        tri = " / ".join(map(str, info.triples)) if info.triples else "?"
        if local is not None:
            where = str(local)
        elif info.verified:
            where = "- (download)"
        else:
            where = "- (download --no-verify)"
        rows.append([info.name, _fmt(info.entities), _fmt(info.relations), tri,
                     "yes" if info.verified else "no", where])
        records.append({**info.to_dict(), "local_path": str(local) if local else None})
    print(_table(rows, ["NAME", "ENTITIES", "RELATIONS", "TRIPLES (train / valid / test)", "VERIFIED", "LOCAL COPY"]))
    if args.json:
        _write_json(args.json, {"datasets": records, "cache_dir": str(registry.dataset_cache_dir())})
    return 0


@contextlib.contextmanager
def _quiet(logger_name: str, enabled: bool):
    """Hold back the loader's warnings (their content is in the table) unless -v was given."""
    logger = logging.getLogger(logger_name)
    old = logger.level
    if enabled:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(old)


def cmd_info(args) -> int:
    from ..data import registry
    from ..data.graph import load_folder

    _check_json(args.json)
    path = registry.resolve_dataset(args.dataset, download=False)
    is_folder = Path(args.dataset).expanduser().is_dir()
    info = registry.find_registered(path.name if is_folder else args.dataset)
    with _quiet("emukg", not getattr(args, "verbose", False)):
        kg = load_folder(path, name=info.name if info else path.name)
    s = kg.summary()
    tr = s["triples"]
    d = s["degree"]
    print(f"{s['name']}: {s['entities']} entities, {s['relations']} relations, "
          f"{tr['train']} / {tr['valid']} / {tr['test']} triples (train / valid / test)")
    print(f"folder: {s['path']}")
    rows = [["train", str(tr["train"]), "-", "-"]]
    for split in ("valid", "test"):
        rows.append([split, str(tr[split]), str(s["unseen_entity_triples"][split]), str(s["unseen_entities"][split])])
    print()
    print(_table(rows, ["SPLIT", "TRIPLES", "TRIPLES WITH UNSEEN ENTITIES", "UNSEEN ENTITIES"]))
    print()
    print(f"entity degree in train (head + tail): min {d['min']}, median {d['median']:g}, mean {d['mean']:.2f}, "
          f"max {d['max']}; {d['isolated_entities']} entities never occur in train")
    if any(s["unseen_entity_triples"].values()):
        print("triples with entities unseen in training are kept, as LibKGE does.")
    if info is not None and info.entities is not None:
        expected = (info.entities, info.relations, *(info.triples or ()))
        got = (s["entities"], s["relations"], tr["train"], tr["valid"], tr["test"])
        if info.triples and expected != got:
            print(f"note: the published sizes of {info.name} are {info.entities} entities, {info.relations} relations, "
                  f"{' / '.join(map(str, info.triples))} triples; this copy differs.")
    if args.json:
        record = dict(s)
        if info is not None:
            record["registered"] = info.to_dict()
        record["source"] = registry.read_source_record(path)
        _write_json(args.json, record)
    return 0


def cmd_download(args) -> int:
    from ..data import registry

    info = registry.get_dataset(args.dataset)
    cached = registry.dataset_cache_dir() / info.name
    if cached.is_dir() and not args.force:
        print(f"{info.name}: already in the cache at {cached} (pass --force to download again)")
        return 0
    path = registry.download_dataset(info.name, mirror=args.mirror, force=args.force, verify=args.verify)
    print(f"{info.name}: {len(info.files)} files downloaded and verified into {path}")
    return 0


def cmd_synthetic(args) -> int:
    from ..data.synthetic import write_synthetic

    rec = write_synthetic(args.out, args.entities, args.relations, args.triples, valid=args.valid, test=args.test,
                          seed=args.seed, exponent=args.exponent, relation_exponent=args.relation_exponent,
                          overwrite=args.overwrite)
    tr = rec["triples"]
    print(f"{args.out}: {rec['entities']} entities, {rec['relations']} relations, {tr['train']} / {tr['valid']} / "
          f"{tr['test']} triples (train / valid / test), seed {rec['seed']}, written in {rec['seconds']:.1f} s")
    return 0


__all__ = ["add_parser", "cmd_list", "cmd_info", "cmd_download", "cmd_synthetic"]
