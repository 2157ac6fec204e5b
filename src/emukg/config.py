"""The single source of truth for a run's settings, and their only validator.

Every knob has a default and a one-line description here.  ``emukg train`` builds a :class:`Config` from
``--config FILE.yaml`` plus flags, ``emukg legacy`` / ``codes/run.py`` map the reference's flags onto it
(:mod:`emukg.commands.legacy`), ``emukg.paper`` names the paper's runs, and the resolved config is written as
``config.json`` in the run folder, which is enough to repeat the run.

**Validation.**  :meth:`Config.validate` checks every value's type and range (NaN, infinities, negatives,
numbers where text belongs, a list where a number belongs, ``"no"`` where a boolean belongs) and every
combination, and raises :class:`ConfigError` — an :class:`~emukg.errors.EmukgError` that knows the parameter at
fault.  Its message names the parameter as the caller spells it: ``learning_rate`` from Python, ``--learning-rate``
from ``emukg train``, ``-lr`` from the reference's command line, ``FILE.yaml: learning_rate`` from a YAML file
(:meth:`ConfigError.render`).  Nothing else in emukg re-validates settings.

**Named losses and samplers** (the reference's integer ``-if_CE`` lives only in :mod:`emukg.legacy`):

=================  ==============================  =====================================================
reference          ``loss``                        ``sampler`` (the loss's negatives)
=================  ==============================  =====================================================
``-if_CE 0``       ``sigmoid`` (RotatE's loss)     ``filtered`` or ``sans``
``-if_CE 1``       ``ce`` (softmax cross-entropy)  ``uniform``: n unfiltered entities drawn afresh per pass
``-if_CE 2``       ``ce``                          ``filtered`` or ``sans``
``-if_CE 3``       ``1vsall``                      none (every entity is a candidate; any model, blocked
                                                   under ``train_memory_mb``; no EMU)
=================  ==============================  =====================================================

``filtered``: uniform candidates minus those forming a training triple with the kept pair (the reference's data
loader); ``sans``: the same filter over SANS neighbourhoods.  With ``adversarial`` the self-adversarial term uses
the loss's own negatives when they come from the data side (``filtered``/``sans``); with ``ce`` over ``uniform``
negatives or ``1vsall`` it uses ``adversarial_sampler``'s negatives (``filtered`` by default), as the reference's
``-adv`` uses its data loader's negatives there.  :meth:`validate` normalises the fields a run does not use
(``sampler`` for ``1vsall``, ``adversarial_sampler`` when the term uses the loss's negatives or is off,
``fixed_tail_negatives`` without a data-side sampler), so config.json names exactly the samplers that ran.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import EmukgError, ParamError
from .resolver import choose, or_list
from .spellings import loss_settings

DATA_SIDE = ("filtered", "sans")  # the samplers whose negatives are the data loader's (filtered by training triples)


# Upper bounds that keep every accepted value safe to allocate and to compute with (checked before anything is
# built): an embedding width of 100,000 or 100,000 negatives per positive is already far beyond any published
# setting, and γ, α or a learning rate above 1e6 only overflows the initialiser or the step.
LIMITS = {"hidden_dim": 100_000, "negative_sample_size": 100_000, "gamma": 1e6, "learning_rate": 1e6,
          "adversarial_temperature": 1e6, "regularization": 1e6, "ce_coef": 1e6, "sampler_rounds": 1000}


def _opt(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


class ConfigError(ParamError):
    """A setting the :class:`Config` refuses: ``param`` (a field name), the ``value`` given, and a ``reason``.

    ``reason`` may name other settings as ``{name}``; :meth:`~emukg.errors.ParamError.render` spells every name the
    way the caller wrote it (``style`` ``"python"``, ``"cli"``, ``"legacy"`` or ``"yaml"``), so the message is one
    sentence naming the flag and the allowed range.
    """


@dataclass
class Config:
    # data and model
    dataset: str = _opt("", "dataset name (see 'emukg datasets list') or folder path")
    model: str = _opt("TransE", "model: TransE, DistMult, ComplEx, RotatE, pRotatE, TransD, HAKE, NBFNet")
    hidden_dim: int = _opt(500, "embedding width d (-d)")
    gamma: float = _opt(12.0, "margin γ of distance models, ≥ 0 (-g)")
    double_entity_embedding: bool = _opt(False, "complex entity embeddings, 2d wide (-de; RotatE, ComplEx)")
    double_relation_embedding: bool = _opt(False, "complex relation embeddings, 2d wide (-dr; ComplEx)")
    modulus_weight: float | None = _opt(None, "HAKE's modulus weight λ_m ≥ 0 (unset: 1.0); other models refuse it")
    phase_weight: float | None = _opt(None, "HAKE's phase weight λ_p ≥ 0 (unset: 0.5); other models refuse it")
    num_layers: int | None = _opt(None, "NBFNet's Bellman-Ford layers L ≥ 1 (unset: 6); other models refuse it")
    message_function: str | None = _opt(None, "NBFNet's message: distmult, transe or rotate (unset: distmult); other models refuse it")
    aggregation: str | None = _opt(None, "NBFNet's aggregation: sum or pna (unset: pna); other models refuse it")
    query_dependent: bool | None = _opt(None, "NBFNet's relation representations: a linear function of the query (true, unset) or one table per layer (false); other models refuse it")
    remove_edges: str | None = _opt(None, "NBFNet's edges removed from a training query's graph: query (its edge and the reciprocal; unset), pair (every edge between h and t) or none; other models refuse it")
    # negatives and loss
    negative_sample_size: int = _opt(128, "negatives per positive n (-n)")
    batch_size: int = _opt(1024, "positives per step B (-b)")
    loss: str = _opt("sigmoid", "sigmoid (RotatE's, -if_CE 0), ce (softmax cross-entropy, -if_CE 1/2) or 1vsall (-if_CE 3)")
    sampler: str | None = _opt("filtered", "the loss's negatives: uniform (unfiltered, fresh per pass; -if_CE 1), filtered (uniform minus training triples) or sans")
    adversarial_sampler: str | None = _opt(None, "negatives of the -adv term when the loss's are not data-side (ce over uniform, 1vsall): filtered (default) or sans")
    fixed_tail_negatives: bool = _opt(False, "the reference's -if_adv_neg: tail-side data negatives are one fixed table of n unfiltered uniform entities per training triple")
    khop: int = _opt(3, "SANS neighbourhood radius k (-khop)")
    num_random_walks: int = _opt(0, "SANS random walks per entity w; 0 = exact k-hop neighbourhood (-nrw)")
    walk_mode: str = _opt("restart", "SANS walks: 'restart' at the source (SANS's description) or 'chained' (the reference's code)")
    sampler_rounds: int | None = _opt(None, "filtered and SANS negatives with fixed shapes and no host sync: this many rounds of 2n candidates drawn at once, slots still empty then unfiltered uniform (emukg.negatives.device); 0 = the exact refill loop; None = auto: 4 on CUDA, 0 on the CPU")
    sans_memory_mb: int = _opt(2048, "memory budget of the SANS neighbourhood table in MiB; a larger exact build is refused")
    train_memory_mb: int = _opt(512, "memory budget in MiB of one block of the 1vsall loss (queries × entities scored at once; the dense entity gradient is extra), and of one NBFNet micro-batch (queries × (edges + entities) × width × layers)")
    adversarial: bool = _opt(False, "self-adversarial negative weighting (-adv); with ce/1vsall an extra term")
    adversarial_temperature: float = _opt(1.0, "self-adversarial temperature α ≥ 0 (-a)")
    uni_weight: bool = _opt(False, "plain means instead of subsampling weights (--uni_weight)")
    regularization: float = _opt(0.0, "L3 regularisation weight ≥ 0 (-r)")
    emu: float | None = _opt(None, "EMU keep probability p per component in [0, 1]; None = EMU off (-if_EMU)")
    neg_label: float | None = _opt(None, "EMU soft label λ of the negatives in [0, 1] (-neg_label; required with EMU)")
    ce_coef: float = _opt(1.0, "weight ≥ 0 of the plain CE term next to the EMU term (-CE_coef; the reference's default is 0)")
    mixup: bool = _opt(False, "EMU ablation: one Beta(2,1) mixing ratio per candidate instead of a binary mask (-if_Mixup)")
    only_ls: bool = _opt(False, "EMU ablation: soft labels without mutation (-if_OnlyLS)")
    # optimisation
    learning_rate: float = _opt(1e-4, "learning rate > 0 (-lr)")
    optimizer: str = _opt("adagrad", "'adagrad' (reference default) or 'adam' (the reference's -if_Adagrad 1)")
    sparse: bool | None = _opt(None, "row-sparse entity updates: a step reads, updates and writes only the entity rows it touches (Adagrad exact, Adam lazy: see emukg.optim); None = auto, on when the table has more rows than batch_size·(n+1)·passes and the loss allows it")
    max_steps: int = _opt(100000, "training steps")
    schedule: str = _opt("reference", "learning-rate schedule: reference (the paper's: lr/10 and a fresh Adam at warm_up_steps), constant, step (×lr_decay every lr_decay_steps), cosine (warm-up, then cosine to lr_min) or plateau (×lr_decay after lr_patience validations without a better MRR)")
    warm_up_steps: int | None = _opt(None, "reference schedule: step at which lr/10 and a fresh Adam start, > 0 (default max_steps/2)")
    lr_decay: float = _opt(0.1, "step and plateau schedules: factor in (0, 1) applied to the learning rate at each decay")
    lr_decay_steps: int | None = _opt(None, "step schedule: decay every this many steps, > 0 (default max_steps/2)")
    lr_warmup_steps: int = _opt(0, "constant, step and cosine schedules: linear warm-up of the learning rate over this many steps, ≥ 0")
    lr_min: float = _opt(0.0, "cosine and plateau schedules: the lowest learning rate, ≥ 0 and below learning_rate")
    lr_patience: int = _opt(2, "plateau schedule: validations without a better valid MRR before the rate decays, ≥ 1")
    early_stop_patience: int | None = _opt(None, "stop after this many validations in a row without a better valid MRR (by more than early_stop_min_delta), ≥ 1; None = never")
    early_stop_min_delta: float = _opt(0.0, "early stopping: the improvement of valid MRR that counts, ≥ 0 (absolute)")
    reference_steps: bool = _opt(False, "count steps as the reference's loop: log/checkpoint/validate after 0-based step indices 0, v, 2v…, lr change after index warm_up_steps, no validation before training or of the final model")
    seed: int = _opt(0, "random seed ≥ 0: same seed, same device -> same run")
    seeds: list[int] | None = _opt(None, "several runs in one process, one per seed (distinct, ≥ 0; replaces seed), stepped in lockstep, each in its own run folder SAVE_PATH/seed<k> and equal to that seed's run trained alone (emukg.multirun); None = one run")
    # evaluation and logging
    do_train: bool = _opt(True, "train")
    do_valid: bool = _opt(True, "evaluate on valid during/after training")
    do_test: bool = _opt(True, "evaluate the best model on test after training")
    evaluate_train: bool = _opt(False, "also evaluate on the training triples at the end")
    valid_steps: int = _opt(10000, "validate every this many steps")
    log_steps: int = _opt(100, "log training metrics every this many steps")
    save_checkpoint_steps: int = _opt(10000, "save a checkpoint every this many steps")
    test_log_steps: int = _opt(1000, "log evaluation progress every this many queries")
    test_batch_size: int = _opt(4, "kept for the reference's command line; the evaluator sizes chunks by eval_memory_mb")
    eval_memory_mb: int = _opt(512, "memory budget of one evaluation chunk in MiB (NBFNet: of one pass of queries)")
    tie_policy: str = _opt("realistic", "rank ties: optimistic, pessimistic or realistic (mean of the two)")
    eval_protocol: str = _opt("full", "evaluation: full (filtered ranking against every entity) or sampled (against eval_candidates fixed uniform random entities per query, OGB's wikikg2 protocol)")
    eval_candidates: int = _opt(500, "candidate entities per query of the sampled protocol, ≥ 1 (OGB: 500)")
    # run
    save_path: str = _opt("", "run folder (-save)")
    init_checkpoint: str = _opt("", "resume from this run folder (-init)")
    device: str = _opt("auto", "cpu, cuda or auto")
    max_memory_gb: float | None = _opt(None, "refuse a run whose estimated memory (tables, optimiser state, one step, an evaluation chunk) exceeds this many GB; default: the machine's memory (its cgroup limit where lower)")
    threads: int | None = _opt(None, "CPU threads ≥ 1 (-cpu); None = PyTorch's default")
    progress: bool | None = _opt(None, "tqdm progress bar; None = only when stderr is a terminal")
    tracker: str | None = _opt(None, "experiment tracker besides metrics.jsonl: tensorboard (event files in the run folder) or mlflow")
    tracking_uri: str | None = _opt(None, "MLflow tracking URI (default: a file store ./mlruns)")

    # ------------------------------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def help_of(cls, name: str) -> str:
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}[name]

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config", style: str = "python") -> "Config":
        """A validated Config from ``data`` (unknown keys refused; values converted and checked)."""
        data = upgrade_settings(dict(data))
        known = set(cls.field_names())
        unknown = sorted(set(data) - known)
        if unknown:
            raise EmukgError(f"{source}: unknown setting {unknown[0]!r}; valid settings are listed by 'emukg train --help'.")
        cfg = cls(**data)
        try:
            cfg.validate()
        except ConfigError as exc:
            raise exc.restyle(style, source if style == "yaml" else None) from None
        return cfg

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> dict[str, Any]:
        """The settings of a YAML file (a mapping); values are checked when the Config is built."""
        from .io_utils import read_yaml

        path = Path(path)
        data = read_yaml(path, "path", flags={"path": "--config"})  # the CLI gives it as --config
        if data is None:
            data = {}
        if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
            raise EmukgError(f"{path}: expected a mapping of setting: value at the top level.")
        data = upgrade_settings({k.replace("-", "_"): v for k, v in data.items()}, source=str(path))
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise EmukgError(f"{path}: unknown setting {unknown[0]!r}; valid settings are listed by 'emukg train --help'.")
        return data

    @classmethod
    def load_json(cls, path: str | os.PathLike) -> "Config":
        """The Config saved in a run folder's config.json (extra keys such as 'dataset_record' are ignored)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise EmukgError(f"{path}: file not found; is this a run folder written by emukg?") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            line = f", line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
            raise EmukgError(f"{path}{line}: not valid JSON; the run folder's config.json is damaged.") from None
        except OSError as exc:
            raise EmukgError(f"{path}: cannot be read ({exc.strerror or exc}).") from None
        if not isinstance(data, dict):
            raise EmukgError(f"{path}: not an emukg config (expected a JSON object); the run folder's config.json is damaged.")
        data = upgrade_settings(data)
        known = set(cls.field_names())
        cfg = cls(**{k: v for k, v in data.items() if k in known})
        try:
            cfg.validate()
        except ConfigError as exc:
            raise EmukgError(f"{path}: {exc.render('python')} (the run folder's config.json is damaged or edited by hand)") from None
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "Config":
        cfg = dataclasses.replace(self, **changes)
        cfg.validate()
        return cfg

    @property
    def effective_warm_up_steps(self) -> int:
        return self.warm_up_steps if self.warm_up_steps is not None else self.max_steps // 2

    @property
    def fresh_negatives(self) -> bool:
        """True when the loss's negatives are unfiltered uniform draws made afresh in every pass (-if_CE 1)."""
        return self.loss == "ce" and self.sampler == "uniform"

    @property
    def adversarial_draws_own(self) -> bool:
        """True when the self-adversarial term draws its own data-side negatives (``adversarial_sampler``): with
        ``1vsall`` or CE over fresh uniform negatives, whose loss has no data-side negatives to reuse."""
        return self.adversarial and (self.loss == "1vsall" or self.fresh_negatives)

    def samplers_used(self) -> dict[str, str | None]:
        """Which sampler feeds each part of the loss: ``{'loss': ..., 'adversarial': ...}`` (None = not drawn)."""
        loss = None if self.loss == "1vsall" else self.sampler
        adv = None
        if self.adversarial:
            adv = self.adversarial_sampler if self.adversarial_draws_own else loss
        return {"loss": loss, "adversarial": adv}

    # --- memory -------------------------------------------------------------------------------
    @property
    def optimizer_state_copies(self) -> int:
        """Tables of optimiser state per parameter table: Adagrad's sums 1, Adam's moments 2 (the reference schedule
        ends in Adam); for the memory estimate and the trainer's free-space check."""
        return 2 if (self.optimizer == "adam" or self.schedule == "reference") else 1

    @property
    def step_in_blocks(self) -> bool:
        """Whether a step runs in blocks that fit ``train_memory_mb`` (1-vs-all; message passing: NBFNet)."""
        from .models import model_class

        return self.loss == "1vsall" or getattr(model_class(self.model), "message_passing", False)

    def memory_estimate(self, num_entities: int, num_relations: int, num_triples: int) -> dict[str, int]:
        """Bytes a run of these settings holds at its peak, by part, for a graph of these sizes (a validated Config).

        - ``tables``: the parameters, from the model built on PyTorch's ``meta`` device (shapes, no memory);
        - ``optimiser``: its state — Adagrad one table, Adam two (the reference schedule ends in Adam) — plus the
          dense gradient (row-sparse runs: ``B·(n+1)`` rows of it) and, for dense Adagrad, its √sum + ε table;
        - ``step``: one step's candidates, ``B × (n+1) × d`` float32 about four times over (gathered rows, EMU's
          mutated copy, the scores' and rows' gradients), or, for 1-vs-all and NBFNet (which run their step in
          blocks), the block budget ``train_memory_mb``;
        - ``data``: the triples (three int64 ids, about five copies: splits, filter indexes, pass orders) and the
          SANS table (its budget ``sans_memory_mb`` when used);
        - ``evaluation``: one chunk (``eval_memory_mb``).
        """
        import torch

        from .models import build_model, model_options

        with torch.device("meta"):
            model = build_model(self.model, num_entities, num_relations, self.hidden_dim, self.gamma,
                                self.double_entity_embedding, self.double_relation_embedding, **model_options(self))
        params = sum(p.numel() * p.element_size() for p in model.parameters())
        entity = model.entity_embedding
        row = entity.element_size() * (entity.numel() // max(1, entity.shape[0]))
        candidates = self.batch_size * (self.negative_sample_size + 1)
        sparse = self.sparse is not False and self.loss != "1vsall" and num_entities > candidates * 2
        gradient = min(params, 2 * candidates * row) if sparse else params
        mib = 1 << 20
        step = self.train_memory_mb * mib if self.step_in_blocks else 4 * candidates * row
        sans = self.sans_memory_mb * mib if "sans" in (self.sampler, self.adversarial_sampler) else 0
        # dense Adagrad also keeps its √sum + ε table between steps (emukg.optim): two tables, as Adam's moments (the
        # reference schedule's peak is either phase's two, not their sum)
        state = self.optimizer_state_copies + (1 if self.optimizer_state_copies == 1 and not sparse else 0)
        return {"tables": params, "optimiser": state * params + gradient, "step": step,
                "data": 5 * 3 * 8 * num_triples + sans, "evaluation": self.eval_memory_mb * mib}

    def check_memory(self, num_entities: int, num_relations: int, num_triples: int, available: int | None) -> None:
        """Refuse the run when :meth:`memory_estimate` exceeds ``max_memory_gb`` (else ``available`` bytes, the
        machine's; None: no limit known) — one sentence naming the setting that weighs most and the parts."""
        parts = self.memory_estimate(num_entities, num_relations, num_triples)
        limit = self.max_memory_gb * 1e9 if self.max_memory_gb is not None else available
        total = sum(parts.values())
        if limit is None or total <= limit:
            return
        heaviest = max(parts, key=parts.get)
        blocked = self.step_in_blocks
        param = {"tables": "hidden_dim", "optimiser": "hidden_dim", "step": "train_memory_mb" if blocked
                 else "negative_sample_size", "data": "sans_memory_mb" if parts["data"] > 15 * 8 * num_triples else "dataset",
                 "evaluation": "eval_memory_mb"}[heaviest]
        shown = ", ".join(f"{k} {v / 1e9:.3g}" for k, v in parts.items())
        where = (f"{{max_memory_gb}} {self.max_memory_gb:g} GB" if self.max_memory_gb is not None
                 else f"this machine's {limit / 1e9:.3g} GB")
        lower = "{batch_size} or {negative_sample_size}" if heaviest == "step" and not blocked else f"{{{param}}}"
        raise ConfigError(param, getattr(self, param, None), f"the run needs about {total / 1e9:.3g} GB ({shown}) for "
                          f"{num_entities:,} entities, more than {where}; lower {lower}, or set {{max_memory_gb}} higher "
                          "if the estimate is too cautious.")

    # --- validation ----------------------------------------------------------------------------
    def validate(self) -> None:
        """Check and normalise every setting; raise :class:`ConfigError` naming the first one at fault."""
        self._check_types()
        self._check_ranges()
        self._check_combinations()

    def _check_types(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            hint = hints[f.name]
            args = typing.get_args(hint)
            optional = type(None) in args
            kind = next((a for a in args if a is not type(None)), hint)
            if value is None:
                if optional:
                    continue
                raise ConfigError(f.name, value, f"needs a value ({_kind_text(kind)}).")
            setattr(self, f.name, _convert(f.name, value, kind, optional))

    def _check_ranges(self) -> None:
        positive = ("hidden_dim", "batch_size", "negative_sample_size", "valid_steps", "log_steps", "save_checkpoint_steps",
                    "test_log_steps", "test_batch_size", "eval_memory_mb", "eval_candidates", "sans_memory_mb", "train_memory_mb", "khop")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(name, getattr(self, name), "must be a positive integer.")
        for name, limit in LIMITS.items():
            if getattr(self, name) is not None and getattr(self, name) > limit:
                raise ConfigError(name, getattr(self, name), f"is beyond the largest useful value ({limit:g}); give a smaller one.")
        if self.sampler_rounds is not None and self.sampler_rounds < 0:
            raise ConfigError("sampler_rounds", self.sampler_rounds, "must be an integer ≥ 0 (0: the exact refill loop), or unset.")
        for name in ("max_steps", "num_random_walks", "seed"):
            if getattr(self, name) < 0:
                raise ConfigError(name, getattr(self, name), "must be an integer ≥ 0.")
        if self.seed >= 2**63:
            raise ConfigError("seed", self.seed, "must be below 2**63.")
        if self.seeds is not None:
            if not self.seeds:
                raise ConfigError("seeds", self.seeds, "needs at least one seed (or leave it unset for one run with {seed}).")
            bad = next((k for k in self.seeds if not 0 <= k < 2**63), None)
            if bad is not None:
                raise ConfigError("seeds", self.seeds, f"holds {bad}; every seed must be an integer ≥ 0 and below 2**63.")
            if len(set(self.seeds)) != len(self.seeds):
                raise ConfigError("seeds", self.seeds, "holds a seed twice; give each seed once (each has its own run folder).")
        if self.warm_up_steps is not None and self.warm_up_steps <= 0:
            raise ConfigError("warm_up_steps", self.warm_up_steps, "must be a positive number of steps; leave it unset for max_steps // 2.")
        for name in ("lr_decay_steps", "early_stop_patience"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(name, getattr(self, name), "must be a positive integer (or unset).")
        if self.lr_warmup_steps < 0:
            raise ConfigError("lr_warmup_steps", self.lr_warmup_steps, "must be an integer ≥ 0.")
        if self.lr_patience < 1:
            raise ConfigError("lr_patience", self.lr_patience, "must be a positive integer.")
        if not 0.0 < self.lr_decay < 1.0:
            raise ConfigError("lr_decay", self.lr_decay, "must lie strictly between 0 and 1.")
        for name in ("lr_min", "early_stop_min_delta"):
            if not getattr(self, name) >= 0:
                raise ConfigError(name, getattr(self, name), "must be a finite number ≥ 0.")
        if self.max_memory_gb is not None and not (math.isfinite(self.max_memory_gb) and self.max_memory_gb > 0):
            raise ConfigError("max_memory_gb", self.max_memory_gb, "must be a positive number of GB (or unset for the machine's memory).")
        if self.threads is not None and self.threads < 1:
            raise ConfigError("threads", self.threads, "must be at least 1 (or unset for PyTorch's default).")
        if not self.learning_rate > 0:
            raise ConfigError("learning_rate", self.learning_rate, "must be a finite number > 0.")
        for name in ("gamma", "regularization", "adversarial_temperature", "ce_coef"):
            if not getattr(self, name) >= 0:
                raise ConfigError(name, getattr(self, name), "must be a finite number ≥ 0.")
        for name in ("emu", "neg_label"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v <= 1.0:
                raise ConfigError(name, v, "must lie in [0, 1].")

    def _check_combinations(self) -> None:
        from .negatives import SAMPLERS
        from .objectives import LOSSES
        from .schedule import SCHEDULES

        choices = dict(loss=LOSSES, optimizer=("adagrad", "adam"), walk_mode=("restart", "chained"),
                       tie_policy=("optimistic", "pessimistic", "realistic"), schedule=SCHEDULES,
                       eval_protocol=("full", "sampled"))
        for name, allowed in choices.items():
            setattr(self, name, _choose(name, getattr(self, name), allowed))
        self._check_schedule()
        if self.tracker is not None:
            from .tracking import TRACKERS

            self.tracker = _choose("tracker", self.tracker, TRACKERS, "tracker", also=" (or leave it unset)")
        if self.device not in ("cpu", "cuda", "auto") and not re.fullmatch(r"cuda:\d+", self.device):
            raise ConfigError("device", self.device, "choose cpu, cuda, cuda:N or auto.")
        from .models import MODELS

        self.model = _choose("model", self.model, MODELS, "model")
        cls = MODELS[self.model]
        if cls.requires_double_entity and not self.double_entity_embedding:
            raise ConfigError("model", self.model, "needs complex entity embeddings; add {double_entity_embedding}.")
        if cls.requires_double_relation and not self.double_relation_embedding:
            raise ConfigError("model", self.model, "needs complex relation embeddings; add {double_relation_embedding}.")
        if not cls.takes_double_flags:
            for name in ("double_entity_embedding", "double_relation_embedding"):
                if getattr(self, name):
                    raise ConfigError(name, True, f"does not apply to {self.model}, whose row layout is fixed; remove it.")
        # model-specific settings (HAKE's weights): the model's default when unset, refused by other models
        for name in ("modulus_weight", "phase_weight"):
            if self._given_model_option(cls, name, float) and not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ConfigError(name, getattr(self, name), "must be a finite number ≥ 0.")
        self._check_message_passing(cls)
        # negatives: normalise what this loss does not use, so config.json names what really runs
        if self.loss == "1vsall":  # every model: entities are scored in blocks under train_memory_mb (emukg.objectives.one_vs_all)
            self.sampler = None
        else:
            self.sampler = _choose("sampler", self.sampler, SAMPLERS)
        if self.adversarial_sampler is not None:  # a name is checked even where the term does not use it
            self.adversarial_sampler = _choose("adversarial_sampler", self.adversarial_sampler, DATA_SIDE)
        if self.adversarial_draws_own:
            self.adversarial_sampler = self.adversarial_sampler or "filtered"
            self.adversarial_sampler = _choose("adversarial_sampler", self.adversarial_sampler, DATA_SIDE)
        else:
            self.adversarial_sampler = None
        if self.fixed_tail_negatives and not any(s in DATA_SIDE for s in self.samplers_used().values()):
            self.fixed_tail_negatives = False  # no data-side negatives are drawn: the table would never be read
        if self.emu is not None:
            if self.loss == "1vsall":
                raise ConfigError("emu", self.emu, "EMU is not defined for 1-vs-all, which scores every entity and has no sampled negatives to mutate; use EMU with {loss=ce}, or drop {emu} to keep 1-vs-all.")
            if self.loss != "ce":
                raise ConfigError("emu", self.emu, "needs the cross-entropy loss; set {loss=ce}.")
            if self.neg_label is None:
                raise ConfigError("emu", self.emu, "needs the soft label of the negatives; add {neg_label} (the paper uses 0.53).")
        if (self.mixup or self.only_ls) and self.emu is None:
            raise ConfigError("mixup" if self.mixup else "only_ls", True, "is an EMU ablation; add {emu} p and {neg_label} λ.")
        if self.mixup and self.only_ls:
            raise ConfigError("mixup", True, "excludes {only_ls}; choose one.")
        if self.sparse and self.loss == "1vsall":
            raise ConfigError("sparse", True, "updates the touched entity rows only, but 1-vs-all touches every row; "
                              "leave {sparse} unset (auto) or set it false.")
        if self.sparse and self.regularization:
            raise ConfigError("sparse", True, "updates the touched entity rows only, but {regularization} reads the whole "
                              "table every step; set {regularization} 0 or leave {sparse} unset (auto).")

    def _given_model_option(self, cls, name: str, convert=lambda value: value) -> bool:
        """A setting of some models only (HAKE's weights, NBFNet's layers): refused when ``cls`` does not take it,
        the model's default (through ``convert``) when unset; True when a value was given and is to be checked."""
        from .models import MODELS

        value = getattr(self, name)
        if name not in cls.options:
            if value is not None:
                raise ConfigError(name, value, f"is a setting of {or_list([k for k, c in MODELS.items() if name in c.options])} only; remove it or choose that {{model}}.")
            return False
        if value is None:
            setattr(self, name, convert(cls.options[name]))
            return False
        return True

    def _check_message_passing(self, cls) -> None:
        """NBFNet's settings (the model's default when unset, refused by other models) and what NBFNet cannot run."""
        from .nbfnet.model import AGGREGATIONS, MESSAGES, REMOVALS

        choices = {"message_function": MESSAGES, "aggregation": AGGREGATIONS, "remove_edges": REMOVALS}
        for name in ("num_layers", "message_function", "aggregation", "query_dependent", "remove_edges"):
            if not self._given_model_option(cls, name):
                continue
            value = getattr(self, name)
            if name in choices:
                setattr(self, name, _choose(name, value, choices[name]))
            elif name == "num_layers" and not 1 <= value <= 100:
                raise ConfigError(name, value, "must be an integer from 1 to 100.")
        if not getattr(cls, "message_passing", False):
            return
        m = self.model
        if self.loss not in ("sigmoid", "ce"):
            raise ConfigError("loss", self.loss, f"{m} trains with sigmoid (its self-adversarial binary loss, with {{adversarial}}) or ce (also with EMU); choose one of them.")
        if self.adversarial and self.loss != "sigmoid":
            raise ConfigError("adversarial", True, f"weights {m}'s negatives in the sigmoid loss only; set {{loss=sigmoid}} or drop {{adversarial}}.")
        if self.regularization:
            raise ConfigError("regularization", self.regularization, f"is the L3 norm of embedding tables, which {m} does not have; set it to 0.")
        if self.sparse:
            raise ConfigError("sparse", True, f"updates entity rows, which {m} does not have; leave {{sparse}} unset.")
        self.sparse = False
        if self.eval_protocol != "full":
            raise ConfigError("eval_protocol", self.eval_protocol, f"{m} scores every entity from one pass, so it is evaluated with the full protocol; set {{eval_protocol}} full.")
        if self.message_function == "rotate" and self.hidden_dim % 2:
            raise ConfigError("hidden_dim", self.hidden_dim, "must be even for NBFNet's rotate message (real and imaginary halves).")

    def _check_schedule(self) -> None:
        """Schedule settings that the chosen schedule would silently ignore are refused, not dropped."""
        sched = self.schedule
        used = {"warm_up_steps": sched == "reference", "lr_decay_steps": sched == "step",
                "lr_warmup_steps": sched in ("constant", "step", "cosine")}
        for name, ok in used.items():
            default = 0 if name == "lr_warmup_steps" else None
            if getattr(self, name) != default and not ok:
                raise ConfigError(name, getattr(self, name), f"is not used by the {sched} schedule; remove it or choose a "
                                  "{schedule} that uses it (see 'emukg train --help').")
        if sched in ("cosine", "plateau") and not self.lr_min < self.learning_rate:
            raise ConfigError("lr_min", self.lr_min, f"must be below the learning rate ({self.learning_rate:g}).")
        if sched == "plateau" and not self.do_valid:
            raise ConfigError("schedule", sched, "decays on validation MRR, so it needs {do_valid}.")
        if self.early_stop_patience is not None and not self.do_valid:
            raise ConfigError("early_stop_patience", self.early_stop_patience, "stops on validation MRR, so it needs {do_valid}.")


def _kind_text(kind) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "text"}.get(kind, str(kind))


def _choose(name: str, value, choices, what: str | None = None, also: str = "") -> str:
    """The canonical spelling of a named choice (one resolver: :func:`emukg.resolver.choose`), else a ConfigError."""
    return choose(name, value, choices, what, also, error=ConfigError)


def _plain_scalar(value):
    """A NumPy scalar or a 0-d tensor as the Python number it holds (so ``np.int64(8)`` is an integer, like 8);
    anything else unchanged."""
    import numbers

    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if type(value).__module__.startswith(("numpy", "torch")) and getattr(value, "ndim", None) == 0:
        item = value.item()
        return item if isinstance(item, (bool, int, float)) else value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def _convert(name: str, value, kind, optional: bool):
    """``value`` as ``kind`` (int, float, bool, str), or a ConfigError saying what is expected.

    Strict where a silent conversion would change the meaning (8.7 for an integer, the text "no" for a boolean,
    a list anywhere); lenient where YAML's number syntax gets in the way (PyYAML reads ``1e-4`` and ``1e5`` as
    text: numeric text is accepted for numbers, integral values such as 1e5 or 8.0 for integers).
    """
    unset = " (or null)" if optional else ""
    if typing.get_origin(kind) is list:  # a list of numbers (seeds): each element converted as its kind
        if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
            raise ConfigError(name, value, f"must be a list{unset}, e.g. [0, 1, 2].")
        (item,) = typing.get_args(kind)
        return [_convert(name, v, item, False) for v in value]
    value = _plain_scalar(value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(name, value, f"must be true or false{unset}, without quotes.")
    if kind is int:
        if isinstance(value, bool):
            raise ConfigError(name, value, f"must be an integer{unset}, not true/false.")
        if isinstance(value, int):
            if abs(value) >= 2**63:
                raise ConfigError(name, value, "must be an integer below 2**63 in magnitude.")
            return value
        number = value
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                raise ConfigError(name, value, f"must be an integer{unset}.") from None
        if isinstance(number, float) and math.isfinite(number) and number.is_integer():
            if abs(number) >= 2**63:
                raise ConfigError(name, value, "must be an integer below 2**63 in magnitude.")
            return int(number)
        raise ConfigError(name, value, f"must be an integer{unset}.")
    if kind is float:
        if isinstance(value, bool):
            raise ConfigError(name, value, f"must be a number{unset}, not true/false.")
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                raise ConfigError(name, value, f"must be a number{unset}.") from None
        else:
            raise ConfigError(name, value, f"must be a number{unset}.")
        if not math.isfinite(number):
            raise ConfigError(name, value, "must be a finite number.")
        return number
    if kind is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        raise ConfigError(name, value, f"must be text{unset}.")
    return value


def upgrade_settings(data: dict[str, Any], source: str | None = None) -> dict[str, Any]:
    """Translate settings written by emukg 0.1 (``ce_mode`` 0–3 and ``sampler: uniform`` for filtered negatives)
    into the named ``loss`` / ``sampler``; other mappings pass through unchanged."""
    if "ce_mode" not in data:
        return data
    mode = data.pop("ce_mode")
    old = data.pop("sampler", "uniform")
    if mode not in (0, 1, 2, 3):
        raise ConfigError("ce_mode", mode, "must be 0, 1, 2 or 3 (better: the named loss and sampler settings).", source)
    data.update(loss_settings(mode, sans=(old == "sans"), adversarial=bool(data.get("adversarial", False))))
    return data
