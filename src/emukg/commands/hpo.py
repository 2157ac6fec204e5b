"""``emukg hpo``: hyper-parameter search with Optuna around a base ``emukg train`` config (see :mod:`emukg.search`)."""

from __future__ import annotations

import argparse


def handle(args: argparse.Namespace) -> int:
    from ..search import hpo

    search = hpo(config=args.config, space=args.space, trials=args.trials, storage=args.storage, study=args.study,
                 out=args.out, seed=args.seed, verbose=args.verbose,
                 flag_names={"trials": "--trials", "storage": "--storage", "seed": "--seed"})
    from optuna.trial import TrialState

    trials = search.study.get_trials(deepcopy=False)
    count = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    print(f"study {search.study.study_name}: {len(trials)} trials ({count[TrialState.COMPLETE]} complete, "
          f"{count[TrialState.PRUNED]} pruned, {count[TrialState.FAIL]} failed), {search.ran} run now")
    if search.best_value is not None:
        print(f"best: valid MRR {search.best_value:.4f} in {search.best_run}: "
              + "  ".join(f"{k}={v}" for k, v in search.best_params.items()))
    for path in search.files:
        print(f"wrote {path}")
    for note in search.notes:
        print(f"note: {note}")
    return 0


def _whole(minimum: int):
    """An argparse type: a whole number ≥ ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} must be ≥ {minimum}")
        return value

    return parse


def add_parser(sub) -> None:
    p = sub.add_parser("hpo", help="hyper-parameter search with Optuna (TPE, median pruning, resumable)",
                       description="Search settings around a base 'emukg train' config with Optuna: TPE sampling, median "
                       "pruning on the validation MRR, a resumable SQLite (or any RDB) study shared by several processes.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", required=True, metavar="BASE.yaml", help="the base settings (an 'emukg train --config' file)")
    p.add_argument("--space", required=True, metavar="SPACE.yaml",
                   help="one line per searched setting: 'emu: {float: [0.1, 0.9]}', 'ce_coef: {float: [0.001, 1.0], log: true}', "
                   "'hidden_dim: {int: [50, 500], step: 50}', 'model: {choice: [TransE, RotatE]}'")
    p.add_argument("--trials", required=True, type=_whole(1), metavar="N", help="finished (complete or pruned) trials the study should have")
    p.add_argument("--storage", metavar="URL", help="Optuna storage URL (default: sqlite:///OUT/study.db)")
    p.add_argument("--study", metavar="NAME", help="study name (default: the base config's file name)")
    p.add_argument("--out", metavar="DIR", help="folder of the trials and results (default: hpo/STUDY)")
    p.add_argument("--seed", type=_whole(0), default=0, help="seed of the TPE sampler")
    p.set_defaults(func=handle)
