"""``emukg train``: train a model; readable long options generated from :class:`~emukg.config.Config`."""

from __future__ import annotations

import argparse
import dataclasses
import typing

from ..config import Config
from ..errors import EmukgError

SHORT = {"dataset": ["-D"], "model": ["-m"], "save_path": ["-o"]}


def _type_of(field: dataclasses.Field):
    hint = typing.get_type_hints(Config)[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One ``--long-option`` per Config field, defaulting to 'not given' so that flags override --config."""
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        kind = _type_of(f)
        default = f.default
        help_text = f"{f.metadata.get('help', '')} (default: {default})"
        names = [flag, *SHORT.get(f.name, [])]
        if kind is bool:
            parser.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(*names, dest=f.name, type=kind, default=argparse.SUPPRESS, metavar=f.name.upper(), help=help_text)


def config_from_args(args: argparse.Namespace, base: dict | None = None) -> Config:
    data = dict(base or {})
    if getattr(args, "config", None):
        data.update(Config.from_yaml(args.config))
    names = set(Config.field_names())
    data.update({k: v for k, v in vars(args).items() if k in names})
    return Config.from_dict(data, source=getattr(args, "config", None) or "command line")


def run(args: argparse.Namespace) -> int:
    from ..training import train

    if args.resume:
        from pathlib import Path

        from ..run import CHECKPOINT, CONFIG

        run_dir = Path(args.resume)
        if not (run_dir / CONFIG).is_file():
            raise EmukgError(f"--resume {run_dir}: no {CONFIG} there; pass a run folder written by 'emukg train'.")
        base = Config.load_json(run_dir / CONFIG).to_dict()
        base.update(save_path=str(run_dir), init_checkpoint=str(run_dir))
        cfg = config_from_args(args, base)
        if not (run_dir / CHECKPOINT).is_file():
            raise EmukgError(f"--resume {run_dir}: no checkpoint there yet; start the run again without --resume.")
    else:
        cfg = config_from_args(args)
        if not cfg.dataset:
            raise EmukgError("--dataset is required: a registered name (see 'emukg datasets list') or a dataset folder.")
    print_results(train(cfg, overwrite=args.overwrite))
    return 0


def print_results(results: dict) -> None:
    """One line of headline metrics per evaluated split (what ``train`` returns)."""
    for split, metrics in results.items():
        print(f"{split}: " + "  ".join(f"{k} {metrics[k]:.4f}" for k in ("MRR", "HITS@1", "HITS@3", "HITS@10") if k in metrics)
              + (f"  MR {metrics['MR']:.1f}" if "MR" in metrics else ""))


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model (EMU, CE, sigmoid, 1-vs-all)",
                       description="Train a KGE model. Settings come from Config defaults, then --config FILE.yaml, then flags.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file of settings (flags override it)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint (flags such as --max-steps override its config)")
    p.add_argument("--overwrite", action="store_true", help="start afresh even if --save-path already holds a run")
    add_config_options(p)
    p.set_defaults(func=run)
