"""The single source of truth for a run's settings.

Every knob has a default and a one-line description here.  ``emukg train`` builds a :class:`Config` from
``--config FILE.yaml`` plus flags, ``emukg legacy`` / ``codes/run.py`` map the reference's flags onto it, and
the resolved config is written as ``config.json`` in the run folder, which is enough to repeat the run.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import EmukgError


def _opt(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class Config:
    # data and model
    dataset: str = _opt("", "dataset name (see 'emukg datasets list') or folder path")
    model: str = _opt("TransE", "model: TransE, DistMult, ComplEx, RotatE, pRotatE, TransD")
    hidden_dim: int = _opt(500, "embedding width d (-d)")
    gamma: float = _opt(12.0, "margin γ of distance models (-g)")
    double_entity_embedding: bool = _opt(False, "complex entity embeddings, 2d wide (-de; RotatE, ComplEx)")
    double_relation_embedding: bool = _opt(False, "complex relation embeddings, 2d wide (-dr; ComplEx)")
    # negatives and loss
    negative_sample_size: int = _opt(128, "negatives per positive n (-n)")
    batch_size: int = _opt(1024, "positives per step B (-b)")
    ce_mode: int = _opt(0, "loss: 0 sigmoid (RotatE), 1 CE with uniform negatives, 2 CE with sampler negatives, 3 1-vs-all (-if_CE)")
    sampler: str = _opt("uniform", "data-side negatives for modes 0 and 2: 'uniform' (filtered) or 'sans'")
    khop: int = _opt(3, "SANS neighbourhood radius k (-khop)")
    num_random_walks: int = _opt(0, "SANS random walks per entity w; 0 = exact k-hop neighbourhood (-nrw)")
    walk_mode: str = _opt("restart", "SANS walks: 'restart' at the source (SANS's description) or 'chained' (the reference's code)")
    sans_memory_mb: int = _opt(2048, "memory budget of the SANS neighbourhood table in MiB; a larger exact build is refused")
    adversarial: bool = _opt(False, "self-adversarial negative weighting (-adv); in CE modes added as an extra term")
    adversarial_temperature: float = _opt(1.0, "self-adversarial temperature α (-a)")
    uni_weight: bool = _opt(False, "plain means instead of subsampling weights in mode 0 (--uni_weight)")
    regularization: float = _opt(0.0, "L3 regularisation weight (-r)")
    emu: float | None = _opt(None, "EMU keep probability p per component; None = EMU off (-if_EMU)")
    neg_label: float | None = _opt(None, "EMU soft label λ of the negatives (-neg_label; required with EMU)")
    ce_coef: float = _opt(1.0, "weight of the plain CE term next to the EMU term (-CE_coef)")
    mixup: bool = _opt(False, "EMU ablation: one Beta(2,1) mixing ratio per candidate instead of a binary mask (-if_Mixup)")
    only_ls: bool = _opt(False, "EMU ablation: soft labels without mutation (-if_OnlyLS)")
    # optimisation
    learning_rate: float = _opt(1e-4, "learning rate (-lr)")
    optimizer: str = _opt("adagrad", "'adagrad' (reference default) or 'adam' (the reference's -if_Adagrad 1)")
    max_steps: int = _opt(100000, "training steps")
    warm_up_steps: int | None = _opt(None, "step at which lr/10 and a fresh Adam start (default max_steps/2)")
    seed: int = _opt(0, "random seed: same seed, same device -> same run")
    # evaluation and logging
    do_train: bool = _opt(True, "train")
    do_valid: bool = _opt(True, "evaluate on valid during/after training")
    do_test: bool = _opt(True, "evaluate the best model on test after training")
    evaluate_train: bool = _opt(False, "also evaluate on (a sample of) the training triples at the end")
    valid_steps: int = _opt(10000, "validate every this many steps")
    log_steps: int = _opt(100, "log training metrics every this many steps")
    save_checkpoint_steps: int = _opt(10000, "save a checkpoint every this many steps")
    test_log_steps: int = _opt(1000, "log evaluation progress every this many queries")
    test_batch_size: int = _opt(4, "kept for the reference's command line; the evaluator sizes chunks by eval_memory_mb")
    eval_memory_mb: int = _opt(512, "memory budget of one evaluation chunk in MiB")
    tie_policy: str = _opt("realistic", "rank ties: optimistic, pessimistic or realistic (mean of the two)")
    # run
    save_path: str = _opt("", "run folder (-save)")
    init_checkpoint: str = _opt("", "resume from this run folder (-init)")
    device: str = _opt("auto", "cpu, cuda or auto")
    threads: int | None = _opt(None, "CPU threads (-cpu); None = PyTorch's default")
    progress: bool = _opt(True, "tqdm progress bar on the console")

    # ------------------------------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def help_of(cls, name: str) -> str:
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}[name]

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "Config":
        known = set(cls.field_names())
        unknown = sorted(set(data) - known)
        if unknown:
            raise EmukgError(f"{source}: unknown setting {unknown[0]!r}; valid settings are listed by 'emukg train --help'.")
        cfg = cls(**data)
        cfg.validate()
        return cfg

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> dict[str, Any]:
        import yaml

        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise EmukgError(f"--config {path}: file not found; give the path of a YAML file.") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f", line {mark.line + 1}" if mark is not None else ""
            raise EmukgError(f"{path}{where}: not valid YAML; fix the syntax there.") from None
        if not isinstance(data, dict):
            raise EmukgError(f"{path}: expected a mapping of setting: value at the top level.")
        data = {k.replace("-", "_"): v for k, v in data.items()}
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise EmukgError(f"{path}: unknown setting {unknown[0]!r}; valid settings are listed by 'emukg train --help'.")
        return data

    @classmethod
    def load_json(cls, path: str | os.PathLike) -> "Config":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise EmukgError(f"{path}: file not found; is this a run folder written by emukg?") from None
        except json.JSONDecodeError as exc:
            raise EmukgError(f"{path}, line {exc.lineno}: not valid JSON; the run folder's config.json is damaged.") from None
        known = set(cls.field_names())
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "Config":
        cfg = dataclasses.replace(self, **changes)
        cfg.validate()
        return cfg

    @property
    def effective_warm_up_steps(self) -> int:
        return self.warm_up_steps if self.warm_up_steps is not None else self.max_steps // 2

    def validate(self) -> None:
        """Reject invalid combinations with one sentence naming the flag."""
        from .models import model_class

        cls = model_class(self.model)
        self.model = cls.__name__
        cls.check_flags(self.double_entity_embedding, self.double_relation_embedding)
        if self.ce_mode not in (0, 1, 2, 3):
            raise EmukgError(f"-if_CE/--ce-mode {self.ce_mode}: must be 0 (sigmoid), 1 (CE uniform), 2 (CE sampler) or 3 (1-vs-all).")
        if self.ce_mode == 3 and cls.distance_based:
            raise EmukgError(f"-if_CE 3 (1-vs-all) works with DistMult and ComplEx only, not {self.model}; use -if_CE 1 or 2.")
        if self.emu is not None:
            if not 0.0 <= self.emu <= 1.0:
                raise EmukgError(f"-if_EMU/--emu {self.emu}: the keep probability must lie in [0, 1].")
            if self.ce_mode not in (1, 2):
                raise EmukgError("-if_EMU/--emu needs a cross-entropy mode; add -if_CE 1 (uniform) or -if_CE 2 (sampler negatives).")
            if self.neg_label is None:
                raise EmukgError("-if_EMU/--emu needs the soft label of the negatives; add -neg_label λ (the paper uses 0.53).")
        if (self.mixup or self.only_ls) and self.emu is None:
            raise EmukgError("-if_Mixup/-if_OnlyLS are EMU ablations; add -if_EMU p and -neg_label λ.")
        if self.mixup and self.only_ls:
            raise EmukgError("-if_Mixup and -if_OnlyLS exclude each other; choose one.")
        if self.sampler not in ("uniform", "sans"):
            raise EmukgError(f"--sampler {self.sampler}: choose 'uniform' or 'sans'.")
        if self.sans_memory_mb <= 0:
            raise EmukgError(f"--sans-memory-mb {self.sans_memory_mb}: must be a positive number of MiB.")
        if self.walk_mode not in ("restart", "chained"):
            raise EmukgError(f"--walk-mode {self.walk_mode}: choose 'restart' or 'chained'.")
        if self.optimizer not in ("adagrad", "adam"):
            raise EmukgError(f"--optimizer {self.optimizer}: choose 'adagrad' or 'adam'.")
        if self.tie_policy not in ("optimistic", "pessimistic", "realistic"):
            raise EmukgError(f"--tie-policy {self.tie_policy}: choose optimistic, pessimistic or realistic.")
        if self.device not in ("cpu", "cuda", "auto") and not str(self.device).startswith("cuda:"):
            raise EmukgError(f"--device {self.device}: choose cpu, cuda or auto.")
        for name in ("hidden_dim", "batch_size", "negative_sample_size", "valid_steps", "log_steps", "save_checkpoint_steps", "eval_memory_mb"):
            if getattr(self, name) <= 0:
                raise EmukgError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be a positive integer.")
        if self.max_steps < 0:
            raise EmukgError(f"--max-steps {self.max_steps}: must be zero or positive.")
        if self.learning_rate <= 0:
            raise EmukgError(f"-lr/--learning-rate {self.learning_rate}: must be positive.")
