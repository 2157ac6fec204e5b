"""The training loop: read it top to bottom.

One step takes B training triples and corrupts one side: the first step corrupts the tail ("tail-batch"),
the next the head ("head-batch"), alternating; each side has its own shuffled pass over the training triples
(the reference's bidirectional iterator).  The objective (:mod:`emukg.losses`) computes the loss — sigmoid,
cross-entropy, 1-vs-all, EMU — from the model's single score function and the negative sampler.

Optimiser schedule (the reference's): Adagrad at ``learning_rate`` (or Adam with ``optimizer='adam'``, the
reference's ``-if_Adagrad 1``); at ``warm_up_steps`` (default ``max_steps // 2``) the learning rate is divided by
10, a fresh Adam replaces the optimiser, and ``warm_up_steps`` is multiplied by 3.

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
from pathlib import Path

import torch

from . import run as runfolder
from .config import Config
from .errors import EmukgError
from .io_utils import atomic_save_npy, atomic_torch_save, atomic_write_json

log = logging.getLogger("emukg.train")


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda[:i]`` or ``auto`` (a GPU when there is one) as a torch.device; anything else, or CUDA on a
    machine without it, is an :class:`EmukgError` naming ``--device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise EmukgError(f"--device {name}: no CUDA GPU is available on this machine; use --device cpu.")
    if name != "cpu" and not name.startswith("cuda"):
        raise EmukgError(f"--device {name}: choose cpu, cuda or auto.")
    return torch.device(name)


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


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.Adagrad(params, lr=lr)


class RunLogger:
    """Writes ``train.log`` (the reference's line format), the console, and ``metrics.jsonl``."""

    def __init__(self, run_dir: Path, console: bool = True):
        self.run_dir = run_dir
        self.logger = logging.getLogger(f"emukg.run.{run_dir.resolve()}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        self.logger.handlers.clear()
        fh = logging.FileHandler(run_dir / "train.log", mode="a", encoding="utf-8")
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)-8s %(message)s", "%Y-%m-%d %H:%M:%S"))
        self.logger.addHandler(fh)
        self.console = console
        self.metrics_path = run_dir / "metrics.jsonl"

    def info(self, message: str) -> None:
        self.logger.info(message)
        if self.console:
            from tqdm import tqdm

            tqdm.write(message, file=sys.stderr)

    def metrics(self, mode: str, step: int, metrics: dict) -> None:
        """One line per metric, as the reference logs them, plus one JSON object in metrics.jsonl."""
        flat = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        for key, value in flat.items():
            self.info(f"{mode} {key} at step {step}: {value:f}")
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"split": mode.lower(), "step": step, **flat}) + "\n")

    def truncate_metrics(self, after_step: int) -> None:
        """On resume, drop metric lines written after the checkpoint (they will be written again)."""
        if not self.metrics_path.is_file():
            return
        keep = [ln for ln in self.metrics_path.read_text(encoding="utf-8").splitlines()
                if ln.strip() and json.loads(ln).get("step", 0) <= after_step]
        from .io_utils import atomic_write_text

        atomic_write_text(self.metrics_path, "".join(k + "\n" for k in keep))

    def close(self) -> None:
        for h in list(self.logger.handlers):
            h.close()
            self.logger.removeHandler(h)


class Trainer:
    """Holds the state of one run; :meth:`fit` runs the loop."""

    def __init__(self, config: Config, kg=None, overwrite: bool = False):
        from .data import load_dataset
        from .losses import build_objective
        from .models import build_model
        from .sampling import build_sampler

        config.validate()
        self.config = cfg = config
        if cfg.threads:
            torch.set_num_threads(max(1, min(int(cfg.threads), os.cpu_count() or 1)))
        self.device = resolve_device(cfg.device)
        if not cfg.save_path:
            raise EmukgError("--save-path (-save) is required: the run folder for checkpoints, embeddings and logs.")
        self.run_dir = Path(cfg.save_path)
        resuming = bool(cfg.init_checkpoint)
        if not resuming and (self.run_dir / runfolder.CHECKPOINT).exists() and not overwrite:
            raise EmukgError(f"--save-path {self.run_dir}: a run already exists there; continue it with --resume {self.run_dir}, "
                             "pick another folder, or pass --overwrite.")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not resuming:
            for name in ("train.log", "metrics.jsonl", runfolder.BEST):
                (self.run_dir / name).unlink(missing_ok=True)

        torch.manual_seed(cfg.seed)
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.kg = kg if kg is not None else load_dataset(cfg.dataset)
        self.model = build_model(cfg.model, self.kg.num_entities, self.kg.num_relations, cfg.hidden_dim, cfg.gamma,
                                 cfg.double_entity_embedding, cfg.double_relation_embedding).to(self.device)
        self.train_triples = self.kg.train.to(self.device)
        self.weights = self.kg.subsampling_weights().to(self.device)
        self.sampler = build_sampler(cfg, self.kg, self.device, self.generator)
        self.objective = build_objective(cfg, self.kg, self.sampler)
        self.learning_rate = cfg.learning_rate
        self.warm_up_steps = cfg.effective_warm_up_steps
        self.optimizer_name = cfg.optimizer
        self.optimizer = make_optimizer(self.optimizer_name, self.model.parameters(), self.learning_rate)
        n = self.train_triples.shape[0]
        self.iterators = {side: SideIterator(n, cfg.batch_size, self.generator, self.device) for side in ("tail", "head")}
        self.step = 0
        self.best_mrr = -math.inf
        self.best_step = -1
        self.out = RunLogger(self.run_dir, console=True)
        if resuming:
            self._restore(Path(cfg.init_checkpoint))
            self.out.truncate_metrics(self.step)
        atomic_write_json(self.run_dir / runfolder.CONFIG, cfg.to_dict())

    # --- checkpoints -------------------------------------------------------------------------
    def _state(self) -> dict:
        return {
            "step": self.step,
            "current_learning_rate": self.learning_rate,
            "warm_up_steps": self.warm_up_steps,
            "optimizer": self.optimizer_name,
            "model_state_dict": self.model.state_dict(),
            "optimizer_state_dict": self.optimizer.state_dict(),
            "generator_state": self.generator.get_state(),
            "iterators": {side: it.state_dict() for side, it in self.iterators.items()},
            "best_valid_mrr": self.best_mrr,
            "best_step": self.best_step,
        }

    def save(self, best: bool = False) -> None:
        state = self._state()
        name = runfolder.BEST if best else runfolder.CHECKPOINT
        prefix = "best_" if best else ""
        atomic_torch_save(self.run_dir / name, state)
        atomic_save_npy(self.run_dir / f"{prefix}entity_embedding.npy", self.model.entity_embedding.detach().cpu().numpy())
        atomic_save_npy(self.run_dir / f"{prefix}relation_embedding.npy", self.model.relation_embedding.detach().cpu().numpy())

    def _restore(self, run_dir: Path) -> None:
        path = run_dir / runfolder.CHECKPOINT if run_dir.is_dir() else run_dir
        state = runfolder.read_checkpoint(path, map_location=self.device)
        try:
            self.model.load_state_dict(state["model_state_dict"])
        except RuntimeError as exc:
            raise EmukgError(f"{path}: the checkpoint does not match this model/dataset ({str(exc).splitlines()[0]}).") from None
        self.step = int(state["step"])
        self.learning_rate = float(state["current_learning_rate"])
        self.warm_up_steps = int(state["warm_up_steps"])
        self.optimizer_name = state.get("optimizer", self.optimizer_name)
        self.optimizer = make_optimizer(self.optimizer_name, self.model.parameters(), self.learning_rate)
        self.optimizer.load_state_dict(state["optimizer_state_dict"])
        if "generator_state" in state:
            self.generator.set_state(state["generator_state"].cpu() if self.device.type == "cpu" else state["generator_state"])
        for side, it in self.iterators.items():
            if side in state.get("iterators", {}):
                it.load_state_dict(state["iterators"][side])
        self.best_mrr = float(state.get("best_valid_mrr", -math.inf))
        self.best_step = int(state.get("best_step", -1))
        self.out.info(f"Resuming from {path} at step {self.step} (learning rate {self.learning_rate:g}, warm-up {self.warm_up_steps})")

    # --- evaluation --------------------------------------------------------------------------
    def evaluate(self, split: str) -> dict:
        from .evaluation import evaluate  # puts the model in eval mode without gradients, and restores it

        return evaluate(self.model, self.kg, split, tie_policy=self.config.tie_policy, memory_mb=self.config.eval_memory_mb)

    @staticmethod
    def headline(metrics: dict) -> dict:
        return {k: metrics[k] for k in ("MRR", "MR", "HITS@1", "HITS@3", "HITS@10") if k in metrics}

    def validate(self) -> None:
        metrics = self.evaluate("valid")
        self._last_valid = (self.step, metrics)
        self.out.metrics("Valid", self.step, self.headline(metrics))
        if metrics["MRR"] > self.best_mrr:
            self.best_mrr, self.best_step = float(metrics["MRR"]), self.step
            self.save(best=True)
            self.out.info(f"New best valid MRR {self.best_mrr:f} at step {self.step}; saved best_model")

    # --- the loop ----------------------------------------------------------------------------
    def train_step(self) -> dict:
        side = "tail" if self.step % 2 == 0 else "head"
        idx = self.iterators[side].next()
        positives = self.train_triples[idx]
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss, logs = self.objective(self.model, positives, side, self.generator, self.weights[idx])
        if not torch.isfinite(loss):
            raise EmukgError(f"step {self.step + 1}: the loss became {float(loss.detach())}; training stopped and the last good checkpoint "
                             f"in {self.run_dir} is intact. Lower the learning rate (-lr) or gamma, or add regularisation (-r).")
        loss.backward()
        self.optimizer.step()
        self.step += 1
        if self.step >= self.warm_up_steps:
            self.learning_rate /= 10
            self.out.info(f"Change learning_rate to {self.learning_rate:f} at step {self.step}")
            self.optimizer_name = "adam"
            self.optimizer = make_optimizer("adam", self.model.parameters(), self.learning_rate)
            self.warm_up_steps *= 3
        return logs

    def fit(self) -> dict:
        from tqdm import tqdm

        cfg = self.config
        out = self.out
        if self.step == 0:
            out.info(f"Model: {cfg.model}  dataset: {self.kg.name}  entities: {self.kg.num_entities}  relations: "
                     f"{self.kg.num_relations}  train triples: {self.kg.train.shape[0]}  device: {self.device}")
            out.info("Config: " + json.dumps(cfg.to_dict(), sort_keys=True))
        results: dict = {}
        if cfg.do_train and self.step < cfg.max_steps:
            if cfg.do_valid and self.step == 0:
                self.validate()
            out.info(f"Start training at step {self.step}: learning rate {self.learning_rate:g}, batch {cfg.batch_size}, "
                     f"negatives {cfg.negative_sample_size}, warm-up steps {self.warm_up_steps}")
            bar = tqdm(total=cfg.max_steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True,
                       disable=not cfg.progress, file=sys.stderr, leave=False)
            window: list[dict] = []
            t0 = time.perf_counter()
            try:
                while self.step < cfg.max_steps:
                    logs = self.train_step()
                    window.append(logs)
                    bar.update(1)
                    if "loss" in logs:
                        bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)
                    if self.step % cfg.log_steps == 0 or self.step == cfg.max_steps:
                        avg = {k: sum(w[k] for w in window) / len(window) for k in window[0]}
                        avg["steps_per_s"] = len(window) / max(time.perf_counter() - t0, 1e-9)
                        out.metrics("Training", self.step, avg)
                        window, t0 = [], time.perf_counter()
                    if self.step % cfg.save_checkpoint_steps == 0:
                        self.save()
                    if cfg.do_valid and self.step % cfg.valid_steps == 0 and self.step < cfg.max_steps:
                        self.validate()
            finally:
                bar.close()
            self.save()
            if cfg.do_valid:
                self.validate()
        elif not cfg.do_train:
            out.info("Skipping training (--do_train not given)")

        # final evaluation of the best model (the reference evaluates the best model after training)
        if (self.run_dir / runfolder.BEST).is_file():
            best = runfolder.read_checkpoint(self.run_dir / runfolder.BEST, map_location=self.device)
            self.model.load_state_dict(best["model_state_dict"])
            out.info(f"Evaluating the best model (valid MRR {self.best_mrr:f} at step {self.best_step})")
        if cfg.do_valid:
            last = getattr(self, "_last_valid", None)
            reuse = last is not None and last[0] == self.best_step
            results["valid"] = last[1] if reuse else self.evaluate("valid")
            out.metrics("Valid", self.step, self.headline(results["valid"]))
        if cfg.do_test:
            results["test"] = self.evaluate("test")
            out.metrics("Test", self.step, self.headline(results["test"]))
        if cfg.evaluate_train:
            results["train"] = self.evaluate("train")
            out.metrics("Train", self.step, self.headline(results["train"]))
        if results:
            atomic_write_json(self.run_dir / "results.json", {"step": self.step, "best_step": self.best_step, **results})
        self.out.close()
        return results


def train(config: Config, kg=None, overwrite: bool = False) -> dict:
    """Train (or resume) a run described by ``config``; returns the final evaluation results."""
    return Trainer(config, kg=kg, overwrite=overwrite).fit()
