"""The training loop: read it top to bottom.

One step (:meth:`Trainer.train_step`) reads draw → score → loss → backward → reduce → step → schedule → log, each a
named call: :meth:`~Trainer.draw_batch` takes B training triples and the side they corrupt — the first step the
tail ("tail-batch"), the next the head ("head-batch"), alternating, each side with its own shuffled pass over the
training triples (the reference's bidirectional iterator); :meth:`~Trainer.compute_loss` runs the objective
(:mod:`emukg.objectives`: it draws the negatives, scores them through :mod:`emukg.scoring` and forms the loss —
sigmoid, cross-entropy, 1-vs-all, with EMU and the adversarial term); then the backward pass, the data-parallel
gradient reduction (:mod:`emukg.parallel`; nothing in one process), the optimiser step, the schedule and
:meth:`~Trainer.log_training`.  :meth:`Trainer.__init__` is set-up in named pieces: the folder policy, the resume
policy, the data, the wiring of every part, and the first write to the run folder.

The optimiser and its learning rate belong to a :class:`emukg.schedule.Schedule` (``Config.schedule``): by default
the reference's — Adagrad at ``learning_rate`` (or Adam with ``optimizer='adam'``, the reference's
``-if_Adagrad 1``); at ``warm_up_steps`` (default ``max_steps // 2``) the learning rate is divided by 10, a fresh
Adam replaces the optimiser, and ``warm_up_steps`` is multiplied by 3 — or constant, step decay, cosine with
warm-up, reduce-on-plateau.  :class:`emukg.schedule.EarlyStopping` may end training after a number of
validations without a better MRR; the best model is evaluated either way and ``results.json`` says why training
stopped (``stop``).

Step numbering.  ``emukg train`` counts finished steps: it validates at 0 (the initial model), v, 2v, … and at
the end, logs and checkpoints at multiples of their intervals, and switches the schedule after ``warm_up_steps``
steps.  With ``reference_steps`` (the reference mode) the periodic actions look at the reference loop's 0-based
step index instead: they happen after steps 1, v+1, 2v+1 … (logged as "at step 0, v, 2v"), the switch after
``warm_up_steps + 1`` steps, and neither the initial nor the final model is validated.

The run folder belongs to :class:`emukg.run_folder.RunFolder`.  Nothing is written before every check has passed (the
settings, the folder, the data, the checkpoint to resume from): a refused run leaves no trace.  Within a step
the order is log → validate (maybe ``best_model``) → checkpoint, so that a kill at any moment resumes to the same
run (a validation after the last checkpoint is simply repeated).

Every random draw (shuffles, negatives, EMU masks) comes from one ``torch.Generator`` on the training device,
seeded with ``config.seed``; its state is saved in every checkpoint, so a resumed run continues exactly where
it stopped: on CPU, N steps + resume + N steps equal 2N uninterrupted steps.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time

import torch

from .version import __version__
from .config import Config, ConfigError
from .errors import EmukgError, ParamError
from .io_utils import braces, fault_point
from .run_folder import (BEST, CHECKPOINT, CONFIG, RunFolder, check_fingerprint, data_fingerprint,
                         model_fingerprint, seal)
from .parallel import FollowerFolder, SilentLogger, setup as setup_parallel
from .memory import machine_memory_bytes, release_free_memory, rehome_huge
from .optim import make_optimizer, mark_row_sparse, use_sparse  # make_optimizer: also emukg.training's
from .schedule import EarlyStopping, Schedule, decay_every

log = logging.getLogger("emukg.train")


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda[:i]`` or ``auto`` (a GPU when there is one) as a torch.device; anything else, or CUDA on a
    machine without it, is a :class:`ParamError` about ``device`` (``--device`` on the command line)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ParamError("device", name, "no CUDA GPU is available on this machine; use {device} cpu.")
    if name != "cpu" and not name.startswith("cuda"):
        raise ParamError("device", name, "choose cpu, cuda or auto.")
    return torch.device(name)


# the flags of emukg train whose names are not the settings' own (the reference mode's come from emukg.spellings)
RUN_FLAGS = {"init_checkpoint": "--resume"}


class SideIterator:
    """An endless shuffled pass over ``n`` training triples for one side (head or tail).

    The last batch of a pass may be smaller than B, as in the reference's data loader.
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, device):
        self.n, self.batch_size, self.generator, self.device = n, batch_size, generator, device
        self.perm = torch.randperm(n, generator=generator, device=device)
        self.pos = 0

    def next(self) -> torch.Tensor:
        if self.pos >= self.n:
            self.perm = torch.randperm(self.n, generator=self.generator, device=self.device)
            self.pos = 0
        idx = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += idx.numel()
        return idx

    def state_dict(self) -> dict:
        return {"perm": self.perm.cpu(), "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.perm, self.pos = state["perm"].to(self.device), int(state["pos"])


# what a resumed run may change (documented overrides; recorded in config.json's "resumes"), and what it may not
RESUME_OVERRIDES = ("max_steps", "valid_steps", "log_steps", "save_checkpoint_steps", "test_log_steps", "test_batch_size",
                    "learning_rate", "do_train", "do_valid", "do_test", "evaluate_train", "eval_memory_mb", "tie_policy",
                    "threads", "progress", "save_path", "init_checkpoint", "max_memory_gb", "tracker", "tracking_uri", "early_stop_patience",
                    "early_stop_min_delta", "eval_protocol", "eval_candidates", "train_memory_mb")


def resume_changes(saved: Config, new: Config, run_dir) -> dict:
    """The settings ``new`` changes relative to the ``saved`` run: ``{name: [old, new]}`` for the documented
    overrides; a change to anything else (what shapes the model, its data or its random stream) is refused."""
    changes = {}
    for name in Config.field_names():
        old, value = getattr(saved, name), getattr(new, name)
        if old == value or name in ("save_path", "init_checkpoint", "dataset"):  # the data: compared by checksums
            continue
        if name not in RESUME_OVERRIDES:
            raise ConfigError(name, value, f"the run in {run_dir} has {old!r}; a resumed run may change only the steps, "
                              "intervals, learning rate and evaluation settings, so start a new run for this change.")
        changes[name] = [old, value]
    return changes


class RunLogger:
    """Writes the run's log (``train.log``, the reference's line format), the console, and ``metrics.jsonl``.

    An evaluation-only run of the reference's command line uses it with ``log_name='test.log'``, ``mode='w'`` and
    ``record_metrics=False``: it then writes that log alone.
    """

    def __init__(self, folder: RunFolder, console: bool = True, log_name: str = "train.log", mode: str = "a",
                 record_metrics: bool = True):
        self.folder = folder
        self.record_metrics = record_metrics
        self.logger = logging.getLogger(f"emukg.run.{folder.path.resolve()}.{log_name}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        self.close()
        try:
            fh = logging.FileHandler(folder.file(log_name), mode=mode, encoding="utf-8")
        except OSError as exc:
            raise EmukgError(f"{folder.file(log_name)}: cannot write the log ({exc.strerror or exc}); "
                             "make the run folder writable.") from None
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)-8s %(message)s", "%Y-%m-%d %H:%M:%S"))
        self.logger.addHandler(fh)
        self.console = console

    def info(self, message: str) -> None:
        self.logger.info(message)
        if self.console:
            from tqdm.auto import tqdm  # a widget in Jupyter, a text bar on a terminal

            tqdm.write(message, file=sys.stderr)

    def warning(self, message: str) -> None:
        """A setting that has no effect or lies outside its useful range: in the log and on the console."""
        self.logger.warning(message)
        if self.console:
            from tqdm.auto import tqdm

            tqdm.write(f"warning: {message}", file=sys.stderr)

    def metrics(self, mode: str, step: int, metrics: dict) -> None:
        """One line per metric, as the reference logs them, plus one JSON object in metrics.jsonl."""
        flat = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        for key, value in flat.items():
            self.info(f"{mode} {key} at step {step}: {value:f}")
        if self.record_metrics:
            self.folder.append_line("metrics.jsonl", json.dumps({"split": mode.lower().split()[0], "step": step, **flat}))

    def truncate_metrics(self, after_step: int) -> None:
        """On resume, drop metric lines written after the checkpoint (they will be written again)."""
        path = self.folder.file("metrics.jsonl")
        if not path.is_file():
            return
        keep = []
        for ln in path.read_text(encoding="utf-8").splitlines():
            try:
                if ln.strip() and json.loads(ln).get("step", 0) <= after_step:
                    keep.append(ln)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
        self.folder.write_text("metrics.jsonl", "".join(k + "\n" for k in keep))

    def close(self) -> None:
        for h in list(self.logger.handlers):
            h.close()
            self.logger.removeHandler(h)


class Callback:
    """Hooks into a run, for trackers and searches; every method is optional and called in this order:
    ``on_train_start`` (after the run folder is ready), ``on_log`` (every ``log_steps``: the averaged training
    metrics plus ``learning_rate``), ``on_validation`` (every validation, with its metrics; may raise to stop the
    run, e.g. ``optuna.TrialPruned``), ``on_end`` (the final results; also after an exception, with ``error``)."""

    def on_train_start(self, trainer: "Trainer") -> None: ...

    def on_log(self, trainer: "Trainer", step: int, metrics: dict) -> None: ...

    def on_validation(self, trainer: "Trainer", step: int, metrics: dict) -> None: ...

    def on_end(self, trainer: "Trainer", results: dict, error: BaseException | None = None) -> None: ...


class Trainer:
    """Holds the state of one run; :meth:`fit` runs the loop.

    ``resume='strict'`` (``emukg train --resume``) refuses a resumed run that changes anything but the documented
    overrides (:data:`RESUME_OVERRIDES`); ``'reference'`` (``-init`` of the reference's command line) takes the
    settings as given, as the reference does (its architecture is restored from the run by :mod:`emukg.legacy`).
    """

    def __init__(self, config: Config, kg=None, overwrite: bool = False, resume: str = "strict", callbacks=()):
        from .tracking import check_tracker_available

        config.validate()
        if config.seeds:  # (one Trainer is one run: emukg.multirun builds one per seed)
            raise ConfigError("seeds", config.seeds, "a Trainer trains one run; train the runs of several seeds with "
                              "emukg.multirun.train_seeds (emukg train --seeds).")
        self.config = cfg = config
        self.resume_mode = resume
        # data-parallel training under torchrun (emukg.parallel): join the process group; rank 0 alone writes
        self.dist, self.device = setup_parallel(resolve_device(cfg.device))
        check_tracker_available(cfg)  # a missing tracker package stops the run before anything is written
        # --- the folder's lock, then every check: a refused run writes nothing and leaves no lock ----
        self.lock = None
        try:
            source, same_folder, overwrite = self._folder_policy(resume, overwrite)
            saved_info = self._resume_policy(source, resume)
            self._load_data(kg, source, saved_info, resume)
            self._wire()
            if source is not None:
                self._restore(source)
            warnings = self._settings_without_effect(resume=source is not None)
            if self.dist.is_main:
                self._check_disk_space()
        except BaseException:
            RunFolder.unlock(self.lock, refused=True)
            self.lock = None
            raise
        # --- now write -------------------------------------------------------------------------
        try:
            self._open_run_folder(source, saved_info, overwrite and not same_folder, callbacks)
        except BaseException:
            self.close()
            raise
        if self.lock is not None and self.lock.took_over:
            old = self.lock.took_over
            self.out.info(f"Took over {self.lock.path.name} of pid {old.get('pid')} on {old.get('host')}, which no longer runs")
        for text in warnings:
            self.out.warning(text)
        release_free_memory()  # the set-up's temporaries (reading, counting) need not stay resident for the run

    def close(self) -> None:
        """Release the run folder's lock (:meth:`fit` does at its end; call it for a Trainer that is not fitted)."""
        RunFolder.unlock(self.lock)
        self.lock = None

    # --- set-up, in the order __init__ runs it ---------------------------------------------------
    def _folder_policy(self, resume: str, overwrite: bool):
        """The run folder and the run to resume from: ``(source RunFolder or None, same folder?, overwrite)``.

        A folder holding a run is continued only from itself (``init_checkpoint`` = the folder) or replaced with
        ``overwrite``; a run stopped before its first checkpoint starts again from step 0 (same seed, same run)."""
        cfg = self.config
        if not cfg.save_path:
            raise ConfigError("save_path", cfg.save_path, "is required: the run folder for checkpoints, embeddings and logs.")
        self.folder = folder = (RunFolder if self.dist.is_main else FollowerFolder)(cfg.save_path)
        # errors name the settings; emukg train says --save-path / --resume, the reference mode -save / -init
        folder.check_target("save_path", RUN_FLAGS)
        if self.dist.is_main:  # one writer per folder: a second process is refused here, naming the first
            self.lock = folder.lock("save_path", RUN_FLAGS)
        source = RunFolder(cfg.init_checkpoint) if cfg.init_checkpoint else None
        same_folder = source is not None and source.path.resolve() == folder.path.resolve()
        if folder.has_run() and not same_folder and not overwrite:
            raise ParamError("save_path", str(folder.path), f"a run already exists there; continue it with {{init_checkpoint}} "
                             f"{braces(folder.path)}, pick another folder, or pass {{overwrite}} to replace it.", flags=RUN_FLAGS)
        if source is not None and not source.has_checkpoint("last"):
            if not (same_folder and resume == "strict" and source.file(CONFIG).is_file()):
                raise ParamError("init_checkpoint", str(source.path), "no checkpoint there yet; start the run again "
                                 "without {init_checkpoint}.", flags=RUN_FLAGS)
            # the files written only with or after a checkpoint (a step-0 validation writes best_model alone): with
            # one of them there the checkpoint was lost, not yet written, and starting again would replace the run
            trained = [name for name in ("entity_embedding.npy", "results.json") if source.file(name).is_file()]
            if trained and not overwrite:
                raise ParamError("init_checkpoint", str(source.path), f"its {CHECKPOINT} file is missing while the run "
                                 f"has trained files ({', '.join(trained)}); restore the checkpoint, or pass {{overwrite}} "
                                 "to train the run again from step 0.", flags=RUN_FLAGS)
            source, same_folder, overwrite = None, False, True  # stopped before its first checkpoint: start again
        return source, same_folder, overwrite

    def _resume_policy(self, source, resume: str) -> dict:
        """The saved run's config.json (``{}`` for a new run); ``self.changes``: the documented overrides a strict
        resume makes (:func:`resume_changes` refuses any other change)."""
        self.changes: dict = {}
        if source is None:
            return {}
        if resume == "strict":
            self.changes = resume_changes(source.read_config(), self.config, source.path)
        return source.read_json(CONFIG) if source.file(CONFIG).is_file() else {}

    def _load_data(self, kg, source, saved_info: dict, resume: str) -> None:
        """The graph (given, or resolved from ``dataset``) and its record; a strict resume on other data is refused."""
        from .data import dataset_record

        cfg = self.config
        self.kg = kg if kg is not None else self._read_graph(cfg.dataset)
        self.dataset_record = dataset_record(cfg.dataset) if kg is None else {"name": getattr(kg, "name", ""), "given": cfg.dataset}
        for split, used, setting in (("valid", cfg.do_valid, "do_valid"), ("test", cfg.do_test, "do_test")):
            if used and int(self.kg.splits[split].shape[0]) == 0:  # found now, not after the folder or the training
                raise ParamError("dataset", str(cfg.dataset or getattr(self.kg, "name", "")), f"its {split} split "
                                 f"({split}.txt) holds no triples, so {{{setting}}} has nothing to evaluate; add triples "
                                 f"to it, or turn {{{setting}}} off.", flags=RUN_FLAGS)
        # the memory the run will hold, from the settings and the graph's sizes, before anything large is allocated
        cfg.check_memory(self.kg.num_entities, self.kg.num_relations, sum(int(t.shape[0]) for t in self.kg.splits.values()),
                         machine_memory_bytes(self.device))
        old_sums = (saved_info.get("dataset_record") or {}).get("sha256")
        new_sums = self.dataset_record.get("sha256")
        if source is not None and resume == "strict" and old_sums and new_sums and new_sums != old_sums:
            raise ParamError("dataset", str(self.dataset_record.get('path') or cfg.dataset), "its files differ (SHA-256) from "
                             f"the data the run in {braces(source.path)} was trained on; resume with that data, or start a new run.")

    @staticmethod
    def _read_graph(dataset: str):
        """The graph of ``dataset`` (emukg.multirun's runs share one)."""
        from .data import load_dataset

        return load_dataset(dataset)

    def _wire(self) -> None:
        """Every part of the run, seeded in a fixed order: the model, the samplers, the objective, the schedule,
        the two sides' shuffled passes, and the counters a checkpoint restores."""
        from .models import build_model, model_options
        from .negatives import build_samplers
        from .objectives import build_objective

        cfg = self.config
        if cfg.threads:
            torch.set_num_threads(max(1, min(int(cfg.threads), os.cpu_count() or 1)))
        torch.manual_seed(cfg.seed)
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.model = build_model(cfg.model, self.kg.num_entities, self.kg.num_relations, cfg.hidden_dim, cfg.gamma,
                                 cfg.double_entity_embedding, cfg.double_relation_embedding,
                                 **model_options(cfg)).to(self.device)  # HAKE's weights, NBFNet's settings
        self.model.attach(self.kg)  # the graph of a message-passing model (NBFNet); nothing for embedding models
        # what every checkpoint of this run says it belongs to (emukg.run_folder: checked on resume and on load)
        self.fingerprint = {"model": model_fingerprint(cfg, self.model), "data": data_fingerprint(self.kg)}
        self.train_triples = self.kg.train.to(self.device)
        self.weights = self.kg.subsampling_weights().to(self.device)
        self.sampler, self.adversarial_sampler = build_samplers(cfg, self.kg, self.device, self.generator)
        # row-sparse entity updates (emukg.optim): the optimisers see the table's mark and update touched rows only
        self.sparse = use_sparse(cfg, self.kg.num_entities)
        mark_row_sparse(self.model.entity_embedding, self.sparse)
        if self.sparse:  # a large table read row by row: on 2 MiB pages where the system allows (emukg.memory)
            rehome_huge(self.model.entity_embedding)
        self.objective = build_objective(cfg, self.kg, self.sampler, adversarial_sampler=self.adversarial_sampler,
                                         sparse=self.sparse)
        if self.dist.active:  # every rank draws the global batch and scores its shard of rows
            self.objective.shard = (self.dist.rank, self.dist.world)
        # on CUDA the step's logged values stay on the device and are read once per log_steps (and before every
        # validation and checkpoint, where a loss that is no longer finite must stop the run): no sync per step
        self.deferred_logs = self.device.type == "cuda" and not self.dist.active
        self.objective.log_on_device = self.deferred_logs
        self.schedule = Schedule(cfg, lambda name, lr: make_optimizer(name, self.model.parameters(), lr), self._mark,
                                 say=lambda text: self.out.info(text))
        self.stopper = EarlyStopping(cfg.early_stop_patience, cfg.early_stop_min_delta)
        self.stopped_step: int | None = None  # the step at which early stopping ended training
        n = self.train_triples.shape[0]
        self.iterators = {side: SideIterator(n, cfg.batch_size, self.generator, self.device) for side in ("tail", "head")}
        self.step = 0
        self.best_mrr = -math.inf
        self.best_step = -1
        self.saved_step: int | None = None  # the step of the last checkpoint on disk
        self.last_valid_step = -1  # steps done at the last validation (a final one interrupted by a kill is repeated)
        self.window: list[dict] = []  # the training logs since the last logged step, and when that window began
        self.window_start = time.perf_counter()

    def _open_run_folder(self, source, saved_info: dict, replace: bool, callbacks) -> None:
        """Create (or continue) the run folder, its log and config.json, and the callbacks; the first write."""
        from .tracking import build_trackers

        cfg, folder = self.config, self.folder
        self.dist.barrier()  # every rank has read the folder before rank 0 writes it
        folder.create(overwrite=replace)
        self.progress = (cfg.progress if cfg.progress is not None else sys.stderr.isatty()) and self.dist.is_main
        self.out = RunLogger(folder, console=True) if self.dist.is_main else SilentLogger()
        if source is not None:
            self.out.truncate_metrics(self.step)
        resumes = list(saved_info.get("resumes", []))  # empty for a new run (saved_info is {})
        if source is not None:
            resumes.append({"step": self.step, "from": str(source.path.resolve()), "changes": self.changes})
        self.info = {"emukg_version": __version__, "dataset_record": self.dataset_record,
                     "negatives": self._describe_negatives(), "resumes": resumes}
        folder.write_json(CONFIG, {**cfg.to_dict(), **self.info})
        self.callbacks = [*callbacks, *build_trackers(cfg, folder)] if self.dist.is_main else []

    def _describe_negatives(self) -> dict:
        """What each part of the loss draws, for config.json (exactly the samplers that run)."""
        cfg = self.config
        sans = f"sans (k={cfg.khop}, " + (f"w={cfg.num_random_walks} {cfg.walk_mode} walks)" if cfg.num_random_walks else "exact)")
        text = {"uniform": "uniform, unfiltered, drawn afresh every pass", "filtered": "uniform minus training triples", "sans": sans}
        used = cfg.samplers_used()
        out = {part: (text[name] if name else None) for part, name in used.items()}
        if cfg.fixed_tail_negatives:
            out["tail_side"] = "fixed table of n unfiltered uniform entities per training triple (-if_adv_neg)"
        return out

    # --- checkpoints -------------------------------------------------------------------------
    def _state(self) -> dict:
        return {
            "step": self.step,
            "current_learning_rate": self.learning_rate,
            "warm_up_steps": self.schedule.warm_up_steps,
            "optimizer": self.schedule.optimizer_name,
            "model_state_dict": self.model.state_dict(),
            "optimizer_state_dict": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "early_stopping": {**self.stopper.state_dict(), "stopped_step": self.stopped_step},
            "generator_state": self.generator.get_state(),
            "device": self.device.type,
            "iterators": {side: it.state_dict() for side, it in self.iterators.items()},
            "best_valid_mrr": self.best_mrr,
            "best_step": self.best_step,
            "last_valid_step": self.last_valid_step,
        }

    def save(self, best: bool = False) -> None:
        if not self.dist.is_main:  # rank 0 alone writes the run folder
            if not best:
                self.saved_step = self.step
            return
        prefix = "best_" if best else ""
        self.folder.save_torch(BEST if best else CHECKPOINT, seal(self._state(), self.fingerprint))
        fault_point("checkpoint.between")
        self.folder.save_npy(f"{prefix}entity_embedding.npy", self.model.entity_embedding.detach().cpu().numpy())
        self.folder.save_npy(f"{prefix}relation_embedding.npy", self.model.relation_embedding.detach().cpu().numpy())
        if not best:
            self.saved_step = self.step

    def _check_disk_space(self) -> None:
        """Refuse a run whose files do not fit the free space of the run folder's file system (checked before
        anything is written, so a nearly full disk ends the run here, not inside a checkpoint save): two checkpoints
        (parameters and optimiser state) and their tables, one more checkpoint while a file is being replaced, and
        a margin for the logs; the run's own files already there count as free, since they are replaced."""
        import shutil

        cfg = self.config
        params = sum(p.numel() * p.element_size() for p in self.model.parameters())
        checkpoint = (1 + cfg.optimizer_state_copies) * params
        need = 3 * checkpoint + 2 * params + (1 << 20) + checkpoint // 100
        try:
            free = shutil.disk_usage(self.folder.path).free
        except OSError:
            return
        own = sum(self.folder.file(name).stat().st_size for name in ("checkpoint", "best_model", "entity_embedding.npy",
                  "relation_embedding.npy", "best_entity_embedding.npy", "best_relation_embedding.npy")
                  if self.folder.file(name).is_file())
        if free + own < need:
            raise ParamError("save_path", str(self.folder.path), f"its file system has {(free + own) / 1e6:,.1f} MB free "
                             f"for the run, which writes about {need / 1e6:,.1f} MB (two checkpoints of "
                             f"{checkpoint / 1e6:,.1f} MB, their tables and one more while a file is replaced); free "
                             "some space or pass another {save_path}.", flags=RUN_FLAGS)

    def _settings_without_effect(self, resume: bool) -> list[str]:
        """Settings that change nothing or lie outside their useful range: warned about (in train.log and on the
        console), not refused, since a run with them is still well defined."""
        cfg, said = self.config, []
        if cfg.neg_label is not None and cfg.emu is None:
            said.append(f"neg_label={cfg.neg_label:g} has no effect without emu (EMU is off); set emu p or drop neg_label.")
        n = int(self.kg.train.shape[0])
        if cfg.batch_size > n:
            said.append(f"batch_size={cfg.batch_size} is larger than the {n} training triples; each step takes all of them.")
        cores = os.cpu_count() or 1
        if cfg.threads is not None and cfg.threads > cores:
            said.append(f"threads={cfg.threads} is more than this machine's {cores} cores; {cores} are used.")
        if resume and cfg.do_train and self.step >= cfg.max_steps:
            said.append(f"the run is already at step {self.step}, at or beyond max_steps={cfg.max_steps}; nothing is "
                        "trained (raise max_steps to continue it).")
        return said

    def _restore(self, source: RunFolder) -> None:
        path = source.file(CHECKPOINT)
        state = source.read_checkpoint("last", map_location=self.device, fallback=False)
        # what the checkpoint belongs to: the reference's -init takes its settings as given, so there the model's
        # name, parameter shapes and data are compared; a strict resume compares every shaping setting too
        expected = self.fingerprint if self.resume_mode == "strict" else {
            "model": {"shapes": self.fingerprint["model"]["shapes"], "settings": {"model": self.config.model}},
            "data": self.fingerprint["data"]}
        check_fingerprint(path, state, expected, f"the one in {source.path}",
                          "put back the run's own checkpoint, or start a new run")
        saved_device = state.get("device", self.device.type)
        if saved_device != self.device.type:
            raise ConfigError("device", str(self.device), f"the run in {source.path} was trained on {saved_device}, whose random "
                              f"stream cannot continue on {self.device.type}; resume it on {saved_device}.")
        try:
            self.model.load_state_dict(state["model_state_dict"])
            self.step = int(state["step"])
            # checkpoints of emukg < 0.2 (and the reference's) hold the reference schedule's three values only
            self.schedule.load_state_dict(state.get("schedule") or {
                "name": "reference", "optimizer": state.get("optimizer", self.config.optimizer),
                "warm_up_steps": state["warm_up_steps"], "learning_rate": state["current_learning_rate"],
                "optimizer_state_dict": state["optimizer_state_dict"], "scheduler_state_dict": None})
            stopping = state.get("early_stopping") or {}
            self.stopper.load_state_dict(stopping)
            self.stopped_step = stopping.get("stopped_step")
            if "generator_state" in state:
                gen = state["generator_state"]
                self.generator.set_state(gen.cpu() if self.device.type == "cpu" else gen)
            for side, it in self.iterators.items():
                if side in state.get("iterators", {}):
                    it.load_state_dict(state["iterators"][side])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise EmukgError(f"{path}: the checkpoint does not match this model and dataset ({str(exc).splitlines()[0]}); "
                             "resume with the run's own settings.") from None
        self.best_mrr = float(state.get("best_valid_mrr", -math.inf))
        self.best_step = int(state.get("best_step", -1))
        self.last_valid_step = int(state.get("last_valid_step", -1))
        self.saved_step = self.step
        if "learning_rate" in self.changes:  # a documented override: the new rate applies from this step on
            self.schedule.set_learning_rate(float(self.config.learning_rate))
        if self.stopped_step is not None and not self.stopper.should_stop:
            self.stopped_step = None  # a resumed run with a larger patience goes on training

    # --- evaluation --------------------------------------------------------------------------
    def evaluate(self, split: str) -> dict:
        """emukg.evaluation.evaluate (eval mode, no gradients); data-parallel: the queries split over the ranks and
        the ranks gathered, the same metrics on every rank."""
        cfg = self.config
        return self.dist.evaluate(self.model, self.kg, split, tie_policy=cfg.tie_policy, memory_mb=cfg.eval_memory_mb,
                                  protocol=cfg.eval_protocol, candidates=cfg.eval_candidates)

    @staticmethod
    def headline(metrics: dict) -> dict:
        return {k: metrics[k] for k in ("MRR", "MR", "HITS@1", "HITS@3", "HITS@10") if k in metrics}

    def validate(self, at_step: int | None = None) -> None:
        """Evaluate on valid, log it as ``at_step`` (default: the steps done), keep ``best_model`` on a new best."""
        label = self.step if at_step is None else at_step
        metrics = self.evaluate("valid")
        fault_point("train.validation")
        self._last_valid = (self.step, metrics)
        self.last_valid_step = self.step
        self.out.metrics("Valid", label, self.headline(metrics))
        if metrics["MRR"] > self.best_mrr:
            self.best_mrr, self.best_step = float(metrics["MRR"]), self.step
            self.save(best=True)
            self.out.info(f"New best valid MRR {self.best_mrr:f} at step {label}; saved best_model")
        self.schedule.after_validation(float(metrics["MRR"]))
        if self.stopper.update(float(metrics["MRR"])) and self.stopped_step is None:
            self.stopped_step = self.step
            self.out.info(f"Early stopping at step {label}: {self.stopper.reason()}")
        for cb in self.callbacks:
            cb.on_validation(self, label, self.headline(metrics))

    # --- the loop ----------------------------------------------------------------------------
    def _mark(self) -> int:
        """The step number periodic actions look at: steps done, or the reference loop's 0-based index."""
        return self.step - 1 if self.config.reference_steps else self.step

    def train_step(self) -> dict:
        """One optimisation step, top to bottom: draw → score → loss → backward → reduce → step → schedule → log."""
        side, positives, weights = self.draw_batch()
        loss, logs = self.compute_loss(side, positives, weights)
        self.backward(loss)
        fault_point("train.step")
        self.dist.reduce_gradients(self.model.parameters())  # data-parallel: the ranks' gradients summed (else nothing)
        self.optimizer.step()
        self.step += 1
        self.schedule.after_step()
        self.log_training(logs)
        return logs

    # --- the step's parts, in the order train_step calls them ------------------------------------------
    def draw_batch(self) -> tuple[str, torch.Tensor, torch.Tensor]:
        """The side this step corrupts (tail, head, alternating), its B positives from that side's shuffled pass,
        and their subsampling weights."""
        side = "tail" if self.step % 2 == 0 else "head"
        idx = self.iterators[side].next()
        return side, self.train_triples[idx], self.weights[idx]

    def compute_loss(self, side: str, positives: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """The objective (:mod:`emukg.objectives`: it draws the negatives, scores the candidates and forms the loss)
        and its logged parts; a loss that is not finite stops the run with the last checkpoint intact."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss, logs = self.objective(self.model, positives, side, self.generator, weights)
        if self.dist.active:  # each rank logged its share of the global batch: the sums, the same on every rank
            logs = self.dist.sum_logs(logs, self.device)
        if self.deferred_logs:  # the loss the step optimises, checked when read (read_logs)
            return loss, {**logs, "loss": loss.detach().reshape(()).float()}
        value = logs["loss"] if self.dist.active else float(loss.detach())
        if not math.isfinite(value):  # (data-parallel: the same decision on every rank)
            self._stop_on_loss(self.step + 1, value)
        return loss, logs

    def _stop_on_loss(self, step: int, value: float) -> None:
        kept = (f"the checkpoint of step {self.saved_step} in {self.folder.path} is intact" if self.saved_step is not None
                else f"no checkpoint was saved yet in {self.folder.path}")
        raise EmukgError(f"step {step}: the loss became {value}, so training stopped and {kept}; "
                         "lower the learning rate or gamma, or add regularisation.")

    def read_logs(self) -> None:
        """Deferred logs (CUDA): the window's device values as floats, in one transfer; a loss that is no longer
        finite stops the run here, naming its step, before anything of it is validated or saved."""
        if not self.deferred_logs or not self.window or not isinstance(self.window[-1].get("loss"), torch.Tensor):
            return
        first = next(i for i, w in enumerate(self.window) if isinstance(w.get("loss"), torch.Tensor))
        names = list(self.window[-1])
        # (an objective that logs Python floats, such as NBFNet's, has only its loss on the device)
        value = lambda v: v.reshape(()).float() if isinstance(v, torch.Tensor) else torch.tensor(float(v), device=self.device)  # noqa: E731
        rows = torch.stack([torch.stack([value(w[k]) for k in names]) for w in self.window[first:]]).tolist()
        for i, row in enumerate(rows):
            self.window[first + i] = dict(zip(names, row))
        for i, w in enumerate(self.window):
            if not math.isfinite(w["loss"]):
                self._stop_on_loss(self.step - len(self.window) + i + 1, w["loss"])

    @staticmethod
    def backward(loss: torch.Tensor) -> None:
        if loss.requires_grad:  # (an empty shard of a tiny last batch has no graph: its gradient is zero)
            loss.backward()

    def log_training(self, logs: dict) -> None:
        """Keep the step's logs; at a logging step, their averages (and steps/s) to the log, metrics.jsonl and the
        callbacks."""
        cfg = self.config
        self.window.append(logs)
        mark, last = self._mark(), self.step == cfg.max_steps
        if not (mark % cfg.log_steps == 0 or (last and not cfg.reference_steps)):
            return
        self.read_logs()
        window = self.window
        avg = {k: sum(w[k] for w in window) / len(window) for k in window[0]}
        avg["steps_per_s"] = len(window) / max(time.perf_counter() - self.window_start, 1e-9)
        self.out.metrics("Training average" if cfg.reference_steps else "Training", mark, avg)
        for cb in self.callbacks:
            cb.on_log(self, mark, {**avg, "learning_rate": self.learning_rate})
        self.window, self.window_start = [], time.perf_counter()

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimiser of the current phase (the schedule may replace it: the reference's switch to Adam)."""
        return self.schedule.optimizer

    @property
    def learning_rate(self) -> float:
        return self.schedule.learning_rate

    def _describe_schedule(self) -> str:
        cfg = self.config
        text = {"reference": f"reference (lr/10 and a fresh Adam after {self.schedule.warm_up_steps} steps)",
                "constant": "constant", "cosine": f"cosine to {cfg.lr_min:g}",
                "step": f"step (×{cfg.lr_decay:g} every {decay_every(cfg)} steps)",
                "plateau": f"plateau (×{cfg.lr_decay:g} after {cfg.lr_patience} validations without a better MRR)"}[cfg.schedule]
        if cfg.lr_warmup_steps:
            text += f", linear warm-up over {cfg.lr_warmup_steps} steps"
        if cfg.early_stop_patience:
            text += f"; early stopping after {cfg.early_stop_patience} validations without a gain > {cfg.early_stop_min_delta:g}"
        return text

    def _log_start(self) -> None:
        cfg, out = self.config, self.out
        from .kernels import describe as describe_kernels

        out.info(f"Model: {cfg.model}  dataset: {self.kg.name}  entities: {self.kg.num_entities}  relations: "
                 f"{self.kg.num_relations}  train triples: {self.kg.train.shape[0]}  device: {self.device}")
        if self.device.type == "cpu":
            out.info(f"Kernels: {describe_kernels()}")
        out.info("Negatives: " + json.dumps(self.info["negatives"], sort_keys=True))
        out.info("Config: " + json.dumps(cfg.to_dict(), sort_keys=True))

    def fit(self) -> dict:
        """Train (and validate, checkpoint) to the end, evaluate the best model; the final results."""
        for _ in self.fit_steps():
            pass
        return self.results

    def fit_steps(self):
        """:meth:`fit` as a generator that yields after every training step (its validation and checkpoint
        included), so that :mod:`emukg.multirun` steps several runs in lockstep; at its end ``self.results`` holds
        the final results.  Closing it early ends the run as an exception would (callbacks, log)."""
        from tqdm.auto import tqdm  # a widget in Jupyter, a text bar on a terminal

        cfg, out = self.config, self.out
        ref = cfg.reference_steps
        results: dict = {}
        error: BaseException | None = None
        try:
            self._log_start()
            for cb in self.callbacks:
                cb.on_train_start(self)
            if self.changes:
                out.info(f"Resumed at step {self.step} with changes: " + json.dumps(self.changes, sort_keys=True))
            if cfg.do_train and self.step < cfg.max_steps and self.stopped_step is None:
                if cfg.do_valid and self.step == 0 and not ref:
                    self.validate()
                out.info(f"Start training at step {self.step}: learning rate {self.learning_rate:g}, batch {cfg.batch_size}, "
                         f"negatives {cfg.negative_sample_size}, schedule {self._describe_schedule()}")
                bar = tqdm(total=cfg.max_steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True,
                           disable=not self.progress, file=sys.stderr, leave=False)
                self.window, self.window_start = [], time.perf_counter()
                try:
                    while self.step < cfg.max_steps and self.stopped_step is None:
                        logs = self.train_step()
                        bar.update(1)
                        if isinstance(logs.get("loss"), float):
                            bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)
                        mark, last = self._mark(), self.step == cfg.max_steps
                        validating = cfg.do_valid and mark % cfg.valid_steps == 0 and (ref or not last)
                        if validating or mark % cfg.save_checkpoint_steps == 0 or last:
                            self.read_logs()  # (deferred logs: a loss that is no longer finite stops here)
                        if validating:
                            self.validate(at_step=mark)
                        if mark % cfg.save_checkpoint_steps == 0:
                            self.save()
                        yield self.step
                finally:
                    bar.close()
                if cfg.do_valid and not ref and self.last_valid_step != self.step:
                    self.validate()
                self.save()
            elif not cfg.do_train:
                out.info("Skipping training (--do_train not given)")
            elif self.stopped_step is not None:
                out.info(f"The run stopped early at step {self.stopped_step}: {self.stopper.reason()}")
            elif cfg.do_valid and not ref and self.step > 0 and self.last_valid_step != self.step:
                self.validate()  # the final validation of a run killed between its last checkpoint and that validation
            self.results = results = self._final_evaluation()
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                for cb in self.callbacks:
                    cb.on_end(self, results, error)
            finally:
                out.close()
                self.close()

    def _final_evaluation(self) -> dict:
        """Evaluate the best model (the last one when no validation ran) on the requested splits."""
        cfg, out = self.config, self.out
        results: dict = {}
        if self.dist.broadcast_object(self.folder.has_checkpoint("best")):  # data-parallel: rank 0 reads, broadcasts
            if self.dist.is_main:
                best = self.folder.read_checkpoint("best", map_location=self.device, fallback=False)
                self.model.load_state_dict(best["model_state_dict"])
            self.dist.broadcast_module(self.model)
            out.info(f"Evaluating the best model (valid MRR {self.best_mrr:f} at step {self.best_step})")
        if cfg.do_valid:
            last = getattr(self, "_last_valid", None)
            reuse = last is not None and last[0] == self.best_step
            results["valid"] = last[1] if reuse else self.evaluate("valid")
            out.metrics("Valid", self._mark(), self.headline(results["valid"]))
        if cfg.do_test:
            results["test"] = self.evaluate("test")
            out.metrics("Test", self._mark(), self.headline(results["test"]))
        if cfg.evaluate_train:
            results["train"] = self.evaluate("train")
            out.metrics("Train", self._mark(), self.headline(results["train"]))
        if results:
            stop = ({"reason": "early_stopping", "step": self.stopped_step, "detail": self.stopper.reason()}
                    if self.stopped_step is not None else {"reason": "max_steps", "step": self.step})
            self.folder.write_json("results.json", {"step": self.step, "best_step": self.best_step, "stop": stop, **results})
        return results


def train(config: Config, kg=None, overwrite: bool = False, resume: str = "strict", callbacks=()) -> dict:
    """Train (or resume) a run described by ``config``; returns the final evaluation results."""
    return Trainer(config, kg=kg, overwrite=overwrite, resume=resume, callbacks=callbacks).fit()
