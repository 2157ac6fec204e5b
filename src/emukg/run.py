"""The run folder: what a training run writes, and how to load it back.

Layout (the reference's §6, plus machine-readable extras)::

    RUN_DIR/
      config.json                 the resolved Config
      checkpoint                  torch.save dict: step, current_learning_rate, warm_up_steps,
                                  model_state_dict, optimizer_state_dict, optimizer, rng states, best
      entity_embedding.npy        last entity table   (float32, N × entity_dim)
      relation_embedding.npy      last relation table
      best_model                  like checkpoint, for the best validation MRR
      best_entity_embedding.npy   best tables
      best_relation_embedding.npy
      train.log                   human log (the reference's line format)
      metrics.jsonl               one JSON object per logged metric line

Every file is written atomically (temp file + rename).  Checkpoints are read with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .config import Config
from .errors import EmukgError

CHECKPOINT = "checkpoint"
BEST = "best_model"
CONFIG = "config.json"


def read_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise EmukgError(f"{path}: checkpoint not found; is this a run folder written by emukg train?")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # damaged or foreign file
        raise EmukgError(f"{path}: cannot read the checkpoint ({type(exc).__name__}); it is damaged or not an emukg checkpoint.") from None


def checkpoint_file(run_dir: str | os.PathLike, checkpoint: str = "best") -> str:
    """The file ``checkpoint`` ('best' or 'last') names in ``run_dir``: ``best_model`` when asked for and present,
    else the last ``checkpoint``."""
    return BEST if checkpoint == "best" and (Path(run_dir) / BEST).is_file() else CHECKPOINT


def load_run(run_dir: str | os.PathLike, checkpoint: str = "best", device="cpu"):
    """Load ``(config, kg, model)`` from a run folder.

    ``checkpoint='best'`` uses ``best_model`` when it exists (else the last checkpoint); ``'last'`` the
    last ``checkpoint``.
    """
    from .data import load_dataset
    from .models import build_model

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EmukgError(f"{run_dir}: run folder not found; pass the folder given to 'emukg train --save-path'.")
    if checkpoint not in ("best", "last"):
        raise EmukgError(f"--checkpoint {checkpoint}: choose 'best' or 'last'.")
    cfg = Config.load_json(run_dir / CONFIG)
    kg = load_dataset(cfg.dataset)
    name = checkpoint_file(run_dir, checkpoint)
    state = read_checkpoint(run_dir / name)
    model = build_model(cfg.model, kg.num_entities, kg.num_relations, cfg.hidden_dim, cfg.gamma,
                        cfg.double_entity_embedding, cfg.double_relation_embedding)
    try:
        model.load_state_dict(state["model_state_dict"])
    except (KeyError, RuntimeError) as exc:
        raise EmukgError(f"{run_dir / name}: the saved model does not match config.json ({str(exc).splitlines()[0]}).") from None
    return cfg, kg, model.to(device).eval()
