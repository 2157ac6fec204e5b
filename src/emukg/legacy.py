"""The reference's command line (RotatE → SANS → EMU ``codes/run.py``), accepted verbatim.

Every flag keeps its name and default; this module only maps them onto :class:`~emukg.config.Config`.
Differences, all deliberate:

* ``-if_Mutup`` is accepted as the older name of ``-if_EMU`` (the reference's own README uses it and its parser
  rejects it).  ``-if_EMU 0`` (the default) means EMU off.
* ``-if_Adagrad 1`` selects Adam, as in the reference (the name is inverted).
* ``-cpu N`` sets the number of CPU threads (capped at the machine's cores).
* ``--cuda`` without a GPU is an error that says to drop it; without ``--cuda`` the run uses the CPU.
* ``--data_path data/wn18rr`` is used when that folder exists, and is otherwise resolved by its last
  component through the dataset registry.
* ``-khop k`` (k > 0) selects SANS negatives for modes 0 and 2; ``-nrw w`` random walks (0 = exact k-hop).
* ``-if_adv_neg`` is accepted and has no effect (in the reference it always falls back to random negatives);
  ``-if_Optuna`` and ``-best_model_name`` are accepted; Optuna search is not part of this command.
* A seed is set (``--seed``, default 0); the reference sets none.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .config import Config
from .errors import EmukgError

log = logging.getLogger("emukg")


def _parser_error(self, message):
    self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'.\n")


def add_legacy_arguments(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("--cuda", action="store_true", help="use GPU")
    a("--do_train", action="store_true")
    a("--do_valid", action="store_true")
    a("--do_test", action="store_true")
    a("--evaluate_train", action="store_true", help="Evaluate on training data")
    a("--countries", action="store_true", help="Use Countries S1/S2/S3 datasets (accepted; metrics are the usual ones)")
    a("--regions", type=int, nargs="+", default=None, help="Region Id for Countries S1/S2/S3 datasets (accepted, unused)")
    a("--data_path", type=str, default=None)
    a("--model", default="TransE", type=str)
    a("-de", "--double_entity_embedding", action="store_true")
    a("-dr", "--double_relation_embedding", action="store_true")
    a("-n", "--negative_sample_size", default=128, type=int)
    a("-d", "--hidden_dim", default=500, type=int)
    a("-g", "--gamma", default=12.0, type=float)
    a("-adv", "--negative_adversarial_sampling", action="store_true")
    a("-a", "--adversarial_temperature", default=1.0, type=float)
    a("-b", "--batch_size", default=1024, type=int)
    a("-r", "--regularization", default=0.0, type=float)
    a("--test_batch_size", default=4, type=int, help="valid/test batch size")
    a("--uni_weight", action="store_true", help="Otherwise use subsampling weighting like in word2vec")
    a("-lr", "--learning_rate", default=0.0001, type=float)
    a("-cpu", "--cpu_num", default=10, type=int)
    a("-init", "--init_checkpoint", default=None, type=str)
    a("-save", "--save_path", default=None, type=str)
    a("--max_steps", default=100000, type=int)
    a("--warm_up_steps", default=None, type=int)
    a("--save_checkpoint_steps", default=10000, type=int)
    a("--valid_steps", default=10000, type=int)
    a("--log_steps", default=100, type=int, help="train log every xx steps")
    a("--test_log_steps", default=1000, type=int, help="valid/test log every xx steps")
    a("--nentity", type=int, default=0, help="DO NOT MANUALLY SET")
    a("--nrelation", type=int, default=0, help="DO NOT MANUALLY SET")
    a("-khop", "--k_hop", default=0, type=int, help="SANS neighbourhood radius (0 = uniform negatives)")
    a("-nrw", "--n_rw", default=0, type=int, help="SANS random walks per entity (0 = exact k-hop)")
    a("-if_CE", "--if_CE", default=0, type=int, help="0 sigmoid, 1 CE uniform, 2 CE with data-side negatives, 3 1-vs-all")
    a("-if_EMU", "--if_EMU", "-if_Mutup", "--if_Mutup", dest="if_EMU", default=0.0, type=float, help="EMU keep probability (0 = off)")
    a("-neg_label", "--neg_label", default=None, type=float, help="EMU soft label of negatives")
    a("-CE_coef", "--CE_coef", default=1.0, type=float, help="weight of the CE term next to EMU")
    a("-if_Mixup", "--if_Mixup", default=0, type=int)
    a("-if_OnlyLS", "--if_OnlyLS", default=0, type=int)
    a("-if_Adagrad", "--if_Adagrad", default=0, type=int, help="1 = use Adam (inverted name, as in the reference)")
    a("-if_adv_neg", "--if_adv_neg", default=0, type=int, help="accepted, no effect (as in the reference)")
    a("-best_model_name", "--best_model_name", default="best_model", type=str)
    a("-if_Optuna", "--if_Optuna", default=0, type=int, help="accepted; use 'emukg' configs for searches")
    # emukg additions
    a("--seed", default=0, type=int, help="random seed (emukg addition; the reference sets none)")
    a("--walk_mode", default="restart", choices=["restart", "chained"], help="SANS walk mode (emukg addition)")
    a("--sans_memory_mb", default=2048, type=int, help="memory budget of the SANS table in MiB (emukg addition)")
    a("--no_progress", action="store_true", help="no progress bar (emukg addition)")


def build_legacy_parser(prog: str = "run.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Training and Testing Knowledge Graph Embedding Models (the reference's flags)")
    p.error = _parser_error.__get__(p)
    add_legacy_arguments(p)
    return p


def legacy_to_config(args: argparse.Namespace) -> Config:
    """Map parsed reference flags onto a Config (raises EmukgError on invalid combinations)."""
    import torch

    if args.cuda and not torch.cuda.is_available():
        raise EmukgError("--cuda: no CUDA GPU is available on this machine; drop --cuda to train on the CPU.")
    if not (args.do_train or args.do_valid or args.do_test or args.evaluate_train):
        raise EmukgError("one of --do_train, --do_valid, --do_test or --evaluate_train is required (as in the reference).")
    if args.init_checkpoint is None and args.data_path is None:
        raise EmukgError("--data_path is required (a dataset folder such as data/wn18rr, or a registered name such as wn18rr).")
    if args.do_train and args.save_path is None:
        raise EmukgError("-save/--save_path is required with --do_train: the folder for checkpoints and embeddings.")
    dataset = args.data_path
    if dataset is not None and not Path(dataset).is_dir():
        dataset = Path(dataset.rstrip("/")).name  # resolve 'data/wn18rr' through the registry
    if args.if_adv_neg:
        log.warning("-if_adv_neg has no effect (in the reference it always falls back to random negatives)")
    if args.if_Optuna:
        log.warning("-if_Optuna is accepted but ignored: this command runs one training job")
    emu = args.if_EMU if args.if_EMU and args.if_EMU > 0 else None
    cfg = dict(
        dataset=dataset or "",
        model=args.model,
        hidden_dim=args.hidden_dim,
        gamma=args.gamma,
        double_entity_embedding=args.double_entity_embedding,
        double_relation_embedding=args.double_relation_embedding,
        negative_sample_size=args.negative_sample_size,
        batch_size=args.batch_size,
        ce_mode=args.if_CE,
        sampler="sans" if args.k_hop > 0 else "uniform",
        khop=args.k_hop if args.k_hop > 0 else 3,
        num_random_walks=args.n_rw,
        walk_mode=args.walk_mode,
        sans_memory_mb=args.sans_memory_mb,
        adversarial=args.negative_adversarial_sampling,
        adversarial_temperature=args.adversarial_temperature,
        uni_weight=args.uni_weight,
        regularization=args.regularization,
        emu=emu,
        neg_label=args.neg_label,
        ce_coef=args.CE_coef,
        mixup=bool(args.if_Mixup),
        only_ls=bool(args.if_OnlyLS),
        learning_rate=args.learning_rate,
        optimizer="adam" if args.if_Adagrad == 1 else "adagrad",
        max_steps=args.max_steps,
        warm_up_steps=args.warm_up_steps,
        seed=args.seed,
        do_train=args.do_train,
        do_valid=args.do_valid,
        do_test=args.do_test,
        evaluate_train=args.evaluate_train,
        valid_steps=args.valid_steps,
        log_steps=args.log_steps,
        save_checkpoint_steps=args.save_checkpoint_steps,
        test_log_steps=args.test_log_steps,
        test_batch_size=args.test_batch_size,
        save_path=args.save_path or "",
        init_checkpoint=args.init_checkpoint or "",
        device="cuda" if args.cuda else "cpu",
        threads=args.cpu_num,
        progress=not args.no_progress,
    )
    if args.init_checkpoint:
        from .run import CONFIG

        prev = Path(args.init_checkpoint) / CONFIG
        if prev.is_file() and not args.data_path:
            cfg["dataset"] = Config.load_json(prev).dataset
        if not args.save_path:
            cfg["save_path"] = args.init_checkpoint
    return Config.from_dict(cfg, source="command line")


def run_legacy(argv: list[str] | None, prog: str = "run.py") -> int:
    """Parse the reference's flags and run; returns the exit status (2 for user errors, no traceback)."""
    import sys

    from .training import train

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_legacy_parser(prog).parse_args(argv)
    try:
        cfg = legacy_to_config(args)
        if not args.do_train:
            cfg = cfg.replace(max_steps=0)
        # the reference overwrites an existing -save folder; so does this command (resume with -init)
        train(cfg, overwrite=True)
    except EmukgError as exc:
        print(f"emukg: error: {exc}", file=sys.stderr)
        return 2
    return 0
