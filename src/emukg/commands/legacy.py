"""``emukg legacy`` and ``codes/run.py``: the reference's command line (RotatE → SANS → EMU), accepted verbatim — the *reference mode*.

This is the top of the layer order (beside :mod:`emukg.cli`): nothing in emukg imports it but the CLI, and
``codes/run.py``.  The reference's flag spellings it renders errors with live in the leaf :mod:`emukg.spellings`.


Every flag of the reference's parser keeps its spellings, type and default (``tests/test_legacy.py`` checks the
whole list); this module maps them onto :class:`~emukg.config.Config` and defaults every behaviour to the
reference's, so that ``codes/run.py`` / ``emukg legacy`` runs what the paper ran:

* ``-if_CE`` 0–3 become the named ``loss``/``sampler`` (:func:`loss_settings`); ``-khop k > 0`` selects SANS for the
  data loader's negatives, which the loss uses in modes 0 and 2 and the ``-adv`` term in modes 1 and 3 (mode 1's
  CE draws fresh uniform negatives, so ``-khop`` without ``-adv`` has no effect there; a warning says so).
* ``-CE_coef`` defaults to 0.0; ``-if_EMU``, ``-if_Mixup``, ``-if_OnlyLS`` are floats (any non-zero value turns
  them on); ``-if_Adagrad`` any non-zero value selects Adam; ``--warm_up_steps 0`` means unset (max_steps // 2).
* SANS random walks are chained (``--walk_mode chained``): walk j starts where walk j − 1 ended.
* Steps are counted as the reference's loop counts them (``Config.reference_steps``): logging, checkpoints and
  validation after 0-based step indices 0, v, 2v…, the learning-rate change after index ``warm_up_steps``, no
  validation before training nor of the final model.
* ``-if_adv_neg N`` (any N, as the reference tests ``is not None``): tail-batch data-side negatives are a fixed
  table of n uniformly random, unfiltered entities per training triple, drawn once — what the reference's ranking
  code ends up drawing (its rank lookup always yields 0); its ``-best_model_name`` model does not influence them.
* ``-init DIR`` restores the dataset (unless ``--data_path`` is given), ``--model``, ``-d``, ``-g``, ``-de``, ``-dr``
  and ``--test_batch_size`` from DIR's config.json, as the reference does (its checkpoint carries gamma).
* Without ``--do_train`` the command evaluates a saved model and changes nothing: the best model of ``-save``
  (or of ``-init``), architecture from that run's config.json; log lines go to its ``test.log``.

Differences, each a fix (README, *Differences from the reference*): ``-if_Mutup`` is accepted as the old name of
``-if_EMU``; ``-neg_label`` missing with EMU is an error; EMU or ``-if_CE`` values the reference would crash on or
silently ignore are errors (so is ``-if_CE 3`` with a model other than DistMult and ComplEx: the reference has no
1-vs-all for them, ``emukg train --loss 1vsall`` has); ``--cuda`` without a GPU is an error, and without ``--cuda`` the run uses the CPU;
``-cpu N`` sets the CPU threads (capped at the machine's cores); ``--data_path data/wn18rr`` is used when that
folder exists and otherwise resolved by its last component through the dataset registry; a seed is set
(``--seed``, default 0); ``-init DIR`` without ``-save`` continues in DIR; an existing trained run in ``-save``
is continued only with ``-init`` and replaced only with ``--overwrite``; ``-if_Optuna 1`` runs an Optuna search of
``-if_EMU``, ``-neg_label`` and ``-CE_coef`` (``--n_trials``, default 20) around the run (the reference only has
the hooks for one).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from ..config import Config
from ..errors import EmukgError, ParamError
from ..spellings import LEGACY_FLAGS, NOT_ONE_TO_ONE, loss_settings  # noqa: F401  (the reference's spellings)

log = logging.getLogger("emukg")


def _loss_settings(if_CE: int, sans: bool, adversarial: bool) -> dict:
    try:
        return loss_settings(if_CE, sans=sans, adversarial=adversarial)
    except ValueError as exc:
        raise EmukgError(str(exc)) from None


def _parser_error(self, message):
    self.exit(2, f"{self.prog}: error: {message}; see '{self.prog} --help'.\n")


def add_legacy_arguments(p: argparse.ArgumentParser) -> None:
    """The reference's parser, flag for flag (same spellings, types, defaults), plus emukg's few additions."""
    a = p.add_argument
    a("--cuda", action="store_true", help="use GPU")
    a("--do_train", action="store_true")
    a("--do_valid", action="store_true")
    a("--do_test", action="store_true")
    a("--evaluate_train", action="store_true", help="Evaluate on training data")
    a("--data_path", type=str, default=None)
    a("--model", default="TransE", type=str)
    a("-de", "--double_entity_embedding", action="store_true")
    a("-dr", "--double_relation_embedding", action="store_true")
    a("-n", "--negative_sample_size", default=128, type=int)
    a("-d", "--hidden_dim", default=500, type=int)
    a("-g", "--gamma", default=12.0, type=float)
    a("-adv", "--negative_adversarial_sampling", action="store_true")
    a("-a", "--adversarial_temperature", default=1.0, type=float)
    a("-khop", "--negative_k_hop_sampling", "--k_hop", default=0, type=int, help="SANS neighbourhood radius (0 = uniform negatives)")
    a("-nrw", "--negative_n_random_walks", "--n_rw", default=0, type=int, help="SANS random walks per entity (0 = exact k-hop)")
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
    a("-if_CE", "--if_CE", type=int, default=0, help="0 sigmoid, 1 CE uniform, 2 CE with data-side negatives, 3 1-vs-all")
    a("-if_EMU", "--if_EMU", "-if_Mutup", "--if_Mutup", dest="if_EMU", type=float, default=0.0, help="EMU keep probability (0 = off)")
    a("-if_Mixup", "--if_Mixup", type=float, default=0.0, help="EMU ablation: Beta(2,1) mixing (non-zero = on)")
    a("-if_OnlyLS", "--if_OnlyLS", type=float, default=0.0, help="EMU ablation: soft labels only (non-zero = on)")
    a("-CE_coef", "--CE_coef", type=float, default=0.0, help="weight of the CE term next to EMU")
    a("-neg_label", "--neg_label", type=float, default=None, help="EMU soft label of negatives")
    a("-if_Adagrad", "--if_Adagrad", type=int, default=0, help="non-zero = use Adam (inverted name, as in the reference)")
    a("-if_adv_neg", "--if_adv_neg", type=int, default=None, help="given: fixed unfiltered tail negatives per triple, as the reference")
    a("-best_model_name", "--best_model_name", type=str, default=None, help="accepted (the reference's -if_adv_neg model; it does not change the negatives)")
    a("-if_Optuna", "--if_Optuna", type=int, default=0, help="non-zero: search -if_EMU, -neg_label and -CE_coef with Optuna around this run (emukg hpo)")
    # emukg additions
    a("--countries", action="store_true", help="accepted (RotatE's Countries flag); metrics are the usual ones")
    a("--regions", type=int, nargs="+", default=None, help="accepted, unused (RotatE's Countries flag)")
    a("--seed", default=0, type=int, help="random seed (emukg addition; the reference sets none)")
    a("--walk_mode", default="chained", choices=["restart", "chained"], help="SANS walk mode (emukg addition; chained = the reference's)")
    a("--sans_memory_mb", default=2048, type=int, help="memory budget of the SANS table in MiB (emukg addition)")
    a("--no_progress", action="store_true", help="no progress bar (emukg addition; shown only on a terminal anyway)")
    a("--overwrite", action="store_true", help="replace a trained run already in -save (emukg addition)")
    a("--n_trials", type=int, default=20, help="trials of an -if_Optuna search (emukg addition)")


def build_legacy_parser(prog: str = "run.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Training and Testing Knowledge Graph Embedding Models (the reference's flags)")
    p.error = _parser_error.__get__(p)
    add_legacy_arguments(p)
    return p


RESTORED = ("model", "double_entity_embedding", "double_relation_embedding", "hidden_dim", "gamma", "test_batch_size")


def _saved_config(run_dir: str, flag: str) -> Config:
    from ..run_folder import CONFIG

    path = Path(run_dir) / CONFIG
    if not Path(run_dir).is_dir():
        raise EmukgError(f"{flag} {run_dir}: no such run folder; pass a folder written by a training run.")
    if not path.is_file():
        raise EmukgError(f"{flag} {run_dir}: no {CONFIG} there; pass a folder written by a training run.")
    return Config.load_json(path)


def legacy_to_config(args: argparse.Namespace) -> Config:
    """Map parsed reference flags onto a validated Config (raises EmukgError, naming the reference's flags)."""
    import torch

    if args.cuda and not torch.cuda.is_available():
        raise EmukgError("--cuda: no CUDA GPU is available on this machine; drop --cuda to train on the CPU.")
    if not (args.do_train or args.do_valid or args.do_test):
        raise EmukgError("one of --do_train, --do_valid or --do_test is required (as in the reference).")
    if args.init_checkpoint is None and args.data_path is None:
        raise EmukgError("--data_path is required (a dataset folder such as data/wn18rr, or a registered name such as wn18rr).")
    if args.do_train and args.save_path is None and args.init_checkpoint is None:
        raise EmukgError("-save/--save_path is required with --do_train: the folder for checkpoints and embeddings.")
    dataset = _dataset_arg(args.data_path)
    sans = args.negative_k_hop_sampling > 0
    if args.if_CE in (1, 3) and sans and not args.negative_adversarial_sampling:
        log.warning("-khop/-nrw have no effect with -if_CE %d without -adv (as in the reference, whose loss then draws "
                    "no data-loader negatives); the run uses no SANS negatives", args.if_CE)
    if args.if_adv_neg is not None:
        log.warning("-if_adv_neg: tail-batch data-side negatives are a fixed table of n uniformly random entities per "
                    "training triple, as the reference draws them (its best model does not influence them)")
    threads = max(1, min(args.cpu_num, os.cpu_count() or 1)) if args.cpu_num >= 1 else args.cpu_num
    settings = dict(
        dataset=dataset or "",
        model=args.model,
        hidden_dim=args.hidden_dim,
        gamma=args.gamma,
        double_entity_embedding=args.double_entity_embedding,
        double_relation_embedding=args.double_relation_embedding,
        negative_sample_size=args.negative_sample_size,
        batch_size=args.batch_size,
        **_loss_settings(args.if_CE, sans, args.negative_adversarial_sampling),
        fixed_tail_negatives=args.if_adv_neg is not None,
        khop=args.negative_k_hop_sampling if sans else 3,
        num_random_walks=args.negative_n_random_walks,
        walk_mode=args.walk_mode,
        sans_memory_mb=args.sans_memory_mb,
        adversarial=args.negative_adversarial_sampling,
        adversarial_temperature=args.adversarial_temperature,
        uni_weight=args.uni_weight,
        regularization=args.regularization,
        emu=args.if_EMU if args.if_EMU != 0 else None,
        neg_label=args.neg_label,
        ce_coef=args.CE_coef,
        mixup=args.if_Mixup != 0,
        only_ls=args.if_OnlyLS != 0,
        learning_rate=args.learning_rate,
        optimizer="adam" if args.if_Adagrad else "adagrad",
        max_steps=args.max_steps,
        warm_up_steps=args.warm_up_steps or None,  # the reference: 0 (or unset) means max_steps // 2
        reference_steps=True,
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
        save_path=args.save_path or args.init_checkpoint or "",
        init_checkpoint=args.init_checkpoint or "",
        device="cuda" if args.cuda else "cpu",
        threads=threads,
        progress=False if args.no_progress else None,
    )
    if args.init_checkpoint:
        # the reference's override_config: the architecture (and, unless --data_path is given, the data) of -init
        saved = _saved_config(args.init_checkpoint, "-init")
        defaults = build_legacy_parser().parse_args([])
        for name in RESTORED:
            given = getattr(args, name)  # these settings keep their names as the reference's flags' destinations
            if given != getattr(defaults, name) and given != getattr(saved, name):
                log.warning("-init %s: %s %s is replaced by the run's %s (the reference restores the architecture)",
                            args.init_checkpoint, name, given, getattr(saved, name))
            settings[name] = getattr(saved, name)
        if not args.data_path:
            settings["dataset"] = saved.dataset
    if args.if_CE == 3 and args.if_EMU != 0:
        raise EmukgError(f"-if_EMU {args.if_EMU:g}: EMU is not defined for 1-vs-all (-if_CE 3), which scores every entity "
                         "and has no sampled negatives to mutate; use -if_CE 1 or 2 with EMU, or drop -if_EMU.")
    if args.if_CE == 3:
        from ..models import MODELS

        cls = next((c for k, c in MODELS.items() if k.lower() == str(settings["model"]).lower()), None)
        if cls is not None and cls.distance_based:  # the reference's 1-vs-all exists for DistMult and ComplEx only
            raise EmukgError(f"-if_CE 3: the reference's 1-vs-all runs DistMult and ComplEx only, not {cls.__name__}; "
                             "use 'emukg train --loss 1vsall' for 1-vs-all with any model.")
    return Config.from_dict(settings, source="command line", style="legacy")


# -if_Optuna: the reference's main() takes if_EMU, neg_label and CE_coef from an Optuna objective
EMU_SPACE = {"emu": {"float": [0.1, 0.9]}, "neg_label": {"float": [0.0, 1.0]}, "ce_coef": {"float": [0.001, 1.0], "log": True}}


def search_emu(cfg: Config, n_trials: int) -> int:
    """``-if_Optuna 1``: an Optuna search (:mod:`emukg.search`) of EMU's p, λ and CE_coef around the run the other
    flags describe; trials and results go to ``-save``/optuna (study ``study.db`` there, so it resumes)."""
    from ..search import hpo

    if cfg.loss != "ce":
        raise EmukgError("-if_Optuna searches the EMU settings, which need a cross-entropy loss; add -if_CE 1 or -if_CE 2.")
    base = {k: v for k, v in cfg.to_dict().items() if k not in ("save_path", "init_checkpoint")}
    base.update(emu=None, neg_label=None)  # searched
    out = Path(cfg.save_path) / "optuna"
    result = hpo(base, EMU_SPACE, n_trials, out=out, study=Path(cfg.save_path).name or "emu",
                 seed=cfg.seed, flag_names={"trials": "--n_trials", "seed": "--seed"})
    print(f"best valid MRR {result.best_value:.4f} with {result.best_params}; outputs in {out}")
    return 0


def _dataset_arg(data_path: str | None) -> str | None:
    """``--data_path`` as emukg resolves it: the folder when it exists, else its last component ('data/wn18rr' →
    'wn18rr') through the dataset registry."""
    if data_path is None or Path(data_path).is_dir():
        return data_path
    return Path(data_path.rstrip("/")).name


def evaluate_saved(args: argparse.Namespace) -> int:
    """Without --do_train: evaluate the best model of -save (or -init) on the requested splits; writes only test.log."""
    from ..evaluation import evaluate
    from ..folder_lock import FolderLock
    from ..run_folder import RunFolder, load_run
    from ..training import RunLogger, Trainer, resolve_device

    run_dir = args.save_path or args.init_checkpoint
    if run_dir is None:
        raise EmukgError("--do_valid/--do_test without --do_train evaluate a saved run: pass it with -init RUN or -save RUN.")
    saved = _saved_config(run_dir, "-save" if args.save_path else "-init")
    folder = RunFolder(run_dir)
    if not (folder.has_checkpoint("best") or folder.has_checkpoint("last")):
        raise EmukgError(f"{run_dir}: no trained model there (no best_model or checkpoint); train it first with --do_train.")
    device = resolve_device("cuda" if args.cuda else "cpu")
    cfg, kg, model = load_run(run_dir, "best", device=device, dataset=_dataset_arg(args.data_path))
    step = int(folder.read_checkpoint("best").get("step", 0))  # the label of the log lines, as the reference's
    lock = FolderLock(folder.path, "save_path" if args.save_path else "init_checkpoint").acquire()  # test.log: one writer
    out = RunLogger(folder, log_name="test.log", mode="w", record_metrics=False)
    try:
        out.info(f"Evaluating {folder.file(folder.checkpoint_file('best'))} ({saved.model}, {kg.name}); nothing in {run_dir} is changed")
        results = {}
        for split, wanted in (("valid", args.do_valid), ("test", args.do_test), ("train", args.evaluate_train)):
            if wanted:
                results[split] = evaluate(model, kg, split, tie_policy=cfg.tie_policy, memory_mb=cfg.eval_memory_mb)
                out.metrics(split.capitalize(), step, Trainer.headline(results[split]))
    finally:
        out.close()
        lock.release()
    from .train import print_results

    print_results(results)
    return 0


def run_legacy(argv: list[str] | None, prog: str = "run.py") -> int:
    """Parse the reference's flags and run; returns the exit status (2 for user errors, no traceback)."""
    from ..training import train

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_legacy_parser(prog).parse_args(argv)
    try:
        if not args.do_train:
            legacy_to_config(args)  # the same checks as a training run
            return evaluate_saved(args)
        cfg = legacy_to_config(args)
        if args.if_Optuna:
            return search_emu(cfg, args.n_trials)
        train(cfg, overwrite=args.overwrite, resume="reference")
    except ParamError as exc:  # a setting or parameter at fault: said with the reference's flag
        print(f"{prog}: error: {exc.restyle('legacy')}", file=sys.stderr)
        return 2
    except EmukgError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0


# --- the 'emukg legacy' sub-command -------------------------------------------------------------------
def handle(args: argparse.Namespace) -> int:
    return run_legacy(args.legacy_args, prog="emukg legacy")


def add_parser(sub) -> None:
    p = sub.add_parser("legacy", help="the reference's run.py flags, verbatim (e.g. --do_train -if_CE 1 -if_EMU 0.39)",
                       description="Run with the RotatE/SANS/EMU reference's flags; 'emukg legacy --help' lists them.",
                       add_help=False, prefix_chars="\0")
    p.add_argument("legacy_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=handle)
