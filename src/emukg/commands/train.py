"""``emukg train``: train a model; readable long options generated from :class:`~emukg.config.Config`."""

from __future__ import annotations

import argparse
import dataclasses
import typing

from ..config import Config, ConfigError
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
        elif typing.get_origin(kind) is list:  # --seeds 0 1 2
            parser.add_argument(*names, dest=f.name, type=typing.get_args(kind)[0], nargs="+", default=argparse.SUPPRESS,
                                metavar=f.name.upper()[:-1], help=help_text)
        else:
            parser.add_argument(*names, dest=f.name, type=kind, default=argparse.SUPPRESS, metavar=f.name.upper(), help=help_text)


def config_from_args(args: argparse.Namespace, base: dict | None = None) -> Config:
    """Config defaults, then ``base`` (a resumed run's settings), then ``--config FILE.yaml``, then flags.

    A refused value is reported the way it was given: ``--hidden-dim 0: ...`` for a flag,
    ``FILE.yaml: hidden_dim: 0: ...`` for a YAML entry.
    """
    data = dict(base or {})
    from_yaml = Config.from_yaml(args.config) if getattr(args, "config", None) else {}
    data.update(from_yaml)
    names = set(Config.field_names())
    flags = {k: v for k, v in vars(args).items() if k in names}
    data.update(flags)
    try:
        return Config.from_dict(data, source=getattr(args, "config", None) or "command line")
    except ConfigError as exc:  # spelled here, where it is known whether the value came from a flag or the file
        if exc.param in from_yaml and exc.param not in flags:
            raise EmukgError(exc.render("yaml", args.config)) from None
        raise EmukgError(exc.render("cli")) from None


def handle(args: argparse.Namespace) -> int:
    try:
        if getattr(args, "nproc", 1) != 1:
            return _launch(args)
        return _run(args)
    except ConfigError as exc:  # the library names parameters; on this command line they are flags
        raise exc.restyle("cli") from None


def worker_argv(args: argparse.Namespace) -> list[str]:
    """The command line of one worker of ``--nproc``: the given options, spelled as flags again (no --nproc)."""
    argv = []
    if getattr(args, "config", None):
        argv += ["--config", str(args.config)]
    if getattr(args, "resume", None):
        argv += ["--resume", str(args.resume)]
    if getattr(args, "overwrite", False):
        argv.append("--overwrite")
    given = vars(args)
    for name in Config.field_names():
        if name in given:
            flag, value = "--" + name.replace("_", "-"), given[name]
            if isinstance(value, bool):
                argv.append(flag if value else "--no-" + name.replace("_", "-"))
            elif isinstance(value, list):
                argv += [flag, *map(str, value)]
            else:
                argv += [flag, str(value)]
    return argv


def _launch(args: argparse.Namespace) -> int:
    """``--nproc P``: P data-parallel processes on this machine (torchrun's Python entry); the exit status of the job."""
    import os

    from ..parallel import launch

    if args.nproc < 1:
        raise EmukgError(f"--nproc {args.nproc}: give the number of processes, at least 1.")
    world = os.environ.get("WORLD_SIZE")
    if getattr(args, "seeds", None):
        raise EmukgError("--nproc and --seeds exclude each other: --seeds trains its runs in one process.")
    if world is not None:  # already a worker of torchrun: --nproc must agree with it
        if int(world) != args.nproc:
            raise EmukgError(f"--nproc {args.nproc}: this process is one of {world} started by torchrun; drop --nproc.")
        return _run(args)
    if not args.resume:
        config_from_args(args)  # refuse bad settings here, before P processes start
    return launch(args.nproc, worker_argv(args))


def _run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from ..io_utils import quoted, too_long_name
    from ..multirun import is_multirun, read_manifest, run_folders, train_seeds
    from ..run_folder import CONFIG, RunFolder
    from ..training import train

    if args.resume:
        folder = RunFolder(args.resume)
        long = too_long_name(folder.path)
        if long:
            raise EmukgError(f"--resume {quoted(str(folder.path), 120)}: {long}; pass the run folder's path.")
        if not folder.path.is_dir():
            raise EmukgError(f"--resume {folder.path}: no such run folder; pass a folder written by 'emukg train'.")
        multi = is_multirun(folder.path)  # the runs of --seeds: their shared settings are in seeds.json
        if not multi and not folder.file(CONFIG).is_file():
            raise EmukgError(f"--resume {folder.path}: no {CONFIG} there; pass a run folder written by 'emukg train'.")
        saved = Config.from_dict(read_manifest(folder.path)["config"]) if multi else folder.read_config()
        base = saved.to_dict()
        if "dataset" not in vars(args):
            # the data as recorded; when the recorded string no longer resolves from here (a relative path, moved
            # data), the recorded absolute path or name (the checksums still guard against other data)
            from ..run_folder import _try_resolve, find_run_data

            if _try_resolve(saved.dataset) is None:
                recorded = RunFolder(run_folders(folder.path)[0]) if multi and run_folders(folder.path) else folder
                base["dataset"] = str(find_run_data(recorded, saved)[0])
        if "save_path" in vars(args) and Path(args.save_path).resolve() != folder.path.resolve():
            raise EmukgError(f"--resume {folder.path} continues that run in its own folder; drop --save-path {args.save_path}.")
        base.update(save_path=str(folder.path), init_checkpoint=str(folder.path))
        cfg = config_from_args(args, base)
        if args.overwrite:
            raise EmukgError("--resume and --overwrite exclude each other: --resume continues a run, --overwrite replaces it.")
    else:
        cfg = config_from_args(args)
        if not cfg.dataset:
            raise EmukgError("--dataset is required: a registered name (see 'emukg datasets list') or a dataset folder.")
        if cfg.init_checkpoint:
            raise EmukgError("--init-checkpoint: use --resume RUN_DIR to continue a run.")
    from ..parallel import shutdown

    if cfg.seeds:  # several runs in one process (emukg.multirun), one folder per seed
        for seed, results in train_seeds(cfg, overwrite=args.overwrite).items():
            print_results(results, prefix=f"seed {seed} ")
        return 0
    try:
        results = train(cfg, overwrite=args.overwrite)
    finally:
        shutdown()  # data-parallel workers leave the process group (nothing to do in one process)
    if int(os.environ.get("RANK", "0")) == 0:
        print_results(results)
    return 0


def print_results(results: dict, prefix: str = "") -> None:
    """One line of headline metrics per evaluated split (what ``train`` returns)."""
    for split, metrics in results.items():
        print(f"{prefix}{split}: " + "  ".join(f"{k} {metrics[k]:.4f}" for k in ("MRR", "HITS@1", "HITS@3", "HITS@10") if k in metrics)
              + (f"  MR {metrics['MR']:.1f}" if "MR" in metrics else ""))


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model (EMU, CE, sigmoid, 1-vs-all)",
                       description="Train a KGE model. Settings come from Config defaults, then --config FILE.yaml, then flags.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file of settings (flags override it)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint (flags such as --max-steps override its config)")
    p.add_argument("--overwrite", action="store_true", help="start afresh even if --save-path already holds a run")
    p.add_argument("--nproc", type=int, default=1, metavar="P",
                   help="data-parallel training with P processes on this machine (gloo on CPU, NCCL on GPUs; the same as "
                        "torchrun --nproc_per_node P -m emukg train ...); --batch-size stays the global batch")
    add_config_options(p)
    p.set_defaults(func=handle)
