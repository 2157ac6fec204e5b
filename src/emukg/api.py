"""emukg from Python: :func:`train`, :func:`load` and the :class:`Run` they return.

    import emukg
    run = emukg.train(dataset="kinships", model="TransE", hidden_dim=50, loss="ce", sampler="uniform",
                      emu=0.39, neg_label=0.53, max_steps=500, valid_steps=100)
    run.metrics["test"]["MRR"], run.evaluate("valid")["MRR"]
    run.predict(head="person0", relation="term1", top_k=5)
    again = emukg.load(run.run_dir)

Keyword settings are the :class:`~emukg.config.Config` fields, checked by the Config (errors name the
parameters as Python spells them).  Without ``save_path`` the run folder is a fresh ``./runs/<model>-<dataset>-<time>``
(printed).  A call changes no global state behind its caller: PyTorch's thread count, its global random state
and the logging handlers are as they were afterwards.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from .config import Config
from .errors import ParamError


class Prediction(NamedTuple):
    """One row of :meth:`Run.predict`: the entity's name and id, its score, and whether the triple is known
    (in train ∪ valid ∪ test)."""

    name: str
    id: int
    score: float
    known: bool


@contextlib.contextmanager
def _caller_state():
    """Restore PyTorch's thread count and global random state, and the root logger's handlers, on exit."""
    import logging

    import torch

    threads = torch.get_num_threads()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.set_num_threads(threads)
        root.handlers[:] = handlers
        root.setLevel(level)


@dataclass
class Run:
    """A trained run: its folder, settings, data and model (best validation checkpoint unless asked otherwise)."""

    run_dir: Path
    config: Config
    kg: Any
    model: Any
    checkpoint: str = "best"

    @property
    def metrics(self) -> dict:
        """The run's final metrics (``results.json``: ``{'valid': {...}, 'test': {...}, 'step': ..., ...}``), or {}."""
        from .run_folder import RunFolder

        folder = RunFolder(self.run_dir)
        return folder.read_json("results.json") if folder.file("results.json").is_file() else {}

    def evaluate(self, split: str = "test", tie_policy: str = "realistic", memory_mb: float | None = None,
                 filtered: bool = True) -> dict:
        """Filtered link-prediction metrics of ``split`` (see :func:`emukg.evaluation.evaluate`)."""
        from .evaluation import evaluate

        return evaluate(self.model, self.kg, split, tie_policy=tie_policy, filtered=filtered,
                        memory_mb=memory_mb if memory_mb is not None else self.config.eval_memory_mb)

    def predict(self, head=None, relation=None, tail=None, top_k: int = 10, filter_known: bool = False) -> list[Prediction]:
        """The ``top_k`` best tails of (head, relation, ?) — or heads of (?, relation, tail) — best first."""
        import torch

        from .prediction import predict, resolve_query

        rows = predict(self.model, self.kg, head=head, relation=relation, tail=tail, top_k=top_k, filter_known=filter_known)
        side, rel, anchor = resolve_query(self.kg, head, relation, tail)
        _, known = self.kg.filter.answers(torch.tensor([anchor]), torch.tensor([rel]), side)
        known = set(known.tolist())
        return [Prediction(name, self.kg.entity_to_id[name], float(score), self.kg.entity_to_id[name] in known)
                for name, score in rows]

    def embeddings(self) -> dict:
        """``{'entity': (N, entity_dim) float32 array, 'relation': (R, relation_dim), 'entity_names': [...],
        'relation_names': [...]}`` of the loaded checkpoint."""
        return {"entity": self.model.entity_embedding.detach().cpu().numpy(),
                "relation": self.model.relation_embedding.detach().cpu().numpy(),
                "entity_names": list(self.kg.entities), "relation_names": list(self.kg.relations)}


def load(run_dir: str | os.PathLike, checkpoint: str = "best", device: str = "cpu", dataset: str | None = None) -> Run:
    """A saved run: ``checkpoint`` 'best' (best validation MRR; the last checkpoint when there is none) or 'last';
    ``dataset`` points at moved data (a registered name or a folder)."""
    from .run_folder import load_run
    from .training import resolve_device

    import torch

    if not isinstance(run_dir, (str, os.PathLike)) or not os.fspath(run_dir):
        raise ParamError("run_dir", str(run_dir), "must be the path of a run folder (text or a path).")

    with torch.random.fork_rng(devices=[]):  # building the model draws its (then replaced) initial tables
        cfg, kg, model = load_run(run_dir, checkpoint, device=resolve_device(device), dataset=dataset)
    return Run(Path(run_dir), cfg, kg, model, checkpoint)


def default_run_dir(cfg: Config) -> Path:
    """A fresh folder ``./runs/<model>-<dataset>-<YYYYmmdd-HHMMSS>`` (a suffix when it exists)."""
    stem = f"{cfg.model}-{Path(cfg.dataset.rstrip('/')).name or 'data'}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, i = Path("runs") / stem, 1
    while path.exists():
        path, i = Path("runs") / f"{stem}-{i}", i + 1
    return path


def train(dataset: str | None = None, model: str | None = None, *, config: Config | str | os.PathLike | None = None,
          overwrite: bool = False, resume: str | os.PathLike | None = None, **settings) -> Run:
    """Train a run and return it loaded at its best checkpoint.

    Settings: ``config`` (a :class:`Config` or a YAML file), then ``dataset``/``model`` and keyword ``settings``
    (Config fields) on top.  ``resume=RUN_DIR`` continues a run (the settings given here override the saved ones).
    """
    from .training import train as _train

    base: dict = {}
    if isinstance(config, Config):
        base = config.to_dict()
    elif config is not None:
        base = Config.from_yaml(config)
    if resume is not None:
        from .run_folder import RunFolder

        base = {**RunFolder(resume).read_config().to_dict(), **base, "save_path": str(resume), "init_checkpoint": str(resume)}
    for key, value in (("dataset", dataset), ("model", model)):
        if value is not None:
            settings[key] = value
    cfg = Config.from_dict({**base, **settings}, source="emukg.train")
    if cfg.seeds:
        raise ParamError("seeds", cfg.seeds, "emukg.train trains and returns one run; for one run per seed in one process "
                         "use emukg.multirun.train_seeds(config) (emukg train --seeds).")
    if not cfg.dataset:
        raise ParamError("dataset", "", "is required: a registered name or a dataset folder.")
    if not cfg.save_path:
        cfg = cfg.replace(save_path=str(default_run_dir(cfg)))
        print(f"emukg: run folder {cfg.save_path}", file=sys.stderr)
    with _caller_state():
        _train(cfg, overwrite=overwrite)
    return load(cfg.save_path, device=cfg.device if cfg.device != "auto" else "auto")
