"""``emukg reproduce``: the paper's runs (``experiments_EMU.sh``, ``experiments_base.sh``) by name."""

from __future__ import annotations

import argparse
import sys


def handle(args: argparse.Namespace) -> int:
    import yaml

    from ..paper import experiment_config, experiments

    if args.list or not args.name:
        for name, s in experiments().items():
            extra = " ".join(f"{k}={s[k]}" for k in ("loss", "sampler", "adversarial", "emu", "regularization", "learning_rate") if k in s)
            print(f"{name:36s} {extra}")
        return 0
    overrides = dict(max_steps=args.steps, device=args.device, seed=args.seed)
    if args.steps is not None:
        # a shortened run is a prefix of the paper's run: the warm-up stays at the paper's step (half its steps)
        full = experiment_config(args.name)
        if full.schedule == "reference":
            overrides["warm_up_steps"] = full.max_steps // 2
        overrides["valid_steps"] = max(1, min(500, args.steps))
    cfg = experiment_config(args.name, **overrides)
    if args.seeds:
        cfg = cfg.replace(seeds=args.seeds)
    if args.show:
        yaml.safe_dump(cfg.to_dict(), sys.stdout, sort_keys=True)
        return 0
    save = args.save_path or f"runs/{args.name}"
    cfg = cfg.replace(save_path=save, progress=False if args.no_progress else None)
    if args.resume:
        cfg = cfg.replace(init_checkpoint=save)
    from ..training import train
    from .train import print_results

    if cfg.seeds:  # one run per seed in one process (emukg.multirun): SAVE/seed<k>
        from ..multirun import train_seeds

        for seed, results in train_seeds(cfg, overwrite=args.overwrite).items():
            print_results(results, prefix=f"seed {seed} ")
    else:
        print_results(train(cfg, overwrite=args.overwrite))
    print(f"run folder: {save}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("reproduce", help="run one of the paper's experiments by name (--list shows them)",
                       description="The paper's experiments_EMU.sh and experiments_base.sh runs as named configs.")
    p.add_argument("name", nargs="?", help="experiment name, e.g. emu-TransE-FB15k-237-uniform")
    p.add_argument("--list", action="store_true", help="list the experiments")
    p.add_argument("--show", action="store_true", help="print the experiment's resolved config as YAML and exit")
    p.add_argument("--steps", type=int, help="override max_steps (e.g. a short CPU run)")
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], help="training device")
    p.add_argument("--seed", type=int, help="random seed")
    p.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                   help="one run per seed in one process, each in SAVE_PATH/seed<k> (see emukg train --seeds)")
    p.add_argument("--save-path", help="run folder (default runs/NAME)")
    p.add_argument("--resume", action="store_true", help="continue the run in the run folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in the run folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=handle)
