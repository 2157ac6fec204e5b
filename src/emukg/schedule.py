"""Learning-rate schedules and early stopping: small named pieces the training loop calls.

A :class:`Schedule` owns the run's optimiser and its learning rate.  The loop calls :meth:`Schedule.after_step`
after every optimiser step and :meth:`Schedule.after_validation` after every validation; the checkpoint holds
:meth:`Schedule.state_dict`, so a resumed run continues the schedule exactly (the same rates at the same steps,
the same plateau counters).  ``Config.schedule`` names one of:

``reference``  the paper's (the reference code's and RotatE's): ``optimizer`` at ``learning_rate`` until
               ``warm_up_steps`` (default ``max_steps // 2``); then the rate is divided by 10, a *fresh* Adam
               replaces the optimiser (its moments start at zero), and the next switch comes 3× later.  The
               default of ``emukg train``, the reference mode and ``emukg reproduce``.
``constant``   ``optimizer`` at ``learning_rate`` throughout.
``step``       ``optimizer`` throughout, the rate multiplied by ``lr_decay`` every ``lr_decay_steps`` steps
               (default ``max_steps // 2``: the reference's decay without replacing the optimiser).
``cosine``     linear warm-up over ``lr_warmup_steps`` steps, then a half cosine from ``learning_rate`` down to
               ``lr_min`` at ``max_steps`` (SGDR without restarts, Loshchilov & Hutter 2017).
``plateau``    ``optimizer`` throughout; the rate is multiplied by ``lr_decay`` when ``lr_patience`` validations
               in a row have not improved the best validation MRR (``torch.optim.lr_scheduler.ReduceLROnPlateau``,
               mode max, absolute threshold 0), never below ``lr_min``.

``constant``, ``step`` and ``cosine`` are :class:`torch.optim.lr_scheduler.LambdaLR` with the closed-form factor
of :func:`lr_factor`: the rate of a step depends only on the number of steps done (``warm-up``: the rate of step
``s + 1`` is ``learning_rate · (s + 1) / lr_warmup_steps`` while ``s < lr_warmup_steps``), so a resumed run
that changes ``max_steps`` simply continues the new curve.  A resumed run that changes ``learning_rate`` (a
documented override) rescales the curve (LambdaLR's base rate) or, for ``reference`` and ``plateau``, sets the
current rate.

:class:`EarlyStopping` follows PyKEEN's and LibKGE's definition: after every validation, the MRR counts as an
improvement when it exceeds the best MRR so far by more than ``early_stop_min_delta`` (absolute); training stops
after ``early_stop_patience`` validations in a row without one.  The best model (``best_model``, kept on *any*
new best) is then evaluated as at the end of a full run, and ``results.json`` records why the run stopped.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .resolver import Registry

# schedule name -> the builder of its torch scheduler (None: the schedule changes the rate itself, or never)
SCHEDULES: Registry = Registry("schedule", "schedule")


def decay_every(config) -> int:
    """The step schedule's interval: ``lr_decay_steps``, by default ``max_steps // 2`` (at least 1)."""
    return config.lr_decay_steps or max(1, config.max_steps // 2)


def lr_factor(config, steps_done: int) -> float:
    """The multiplier of ``learning_rate`` for the step after ``steps_done`` steps (constant/step/cosine)."""
    s, warm = steps_done, config.lr_warmup_steps
    if s < warm:
        return (s + 1) / warm
    if config.schedule == "step":
        return config.lr_decay ** (s // decay_every(config))
    if config.schedule == "cosine":
        floor = config.lr_min / config.learning_rate
        span = max(1, config.max_steps - warm)
        progress = min(1.0, (s - warm) / span)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def _no_scheduler(optimizer, config):
    """``reference`` (the switch at ``warm_up_steps`` happens in :meth:`Schedule.after_step`)."""
    return None


def _factor_scheduler(optimizer, config):
    """``constant``, ``step``, ``cosine``: LambdaLR with the closed-form :func:`lr_factor`."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(config, s))


def _plateau_scheduler(optimizer, config):
    """``plateau``: ReduceLROnPlateau on the validation MRR (mode max, absolute threshold 0)."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=config.lr_decay, patience=config.lr_patience - 1, threshold=0.0,
        threshold_mode="abs", min_lr=config.lr_min, eps=0.0)


for _name, _builder in (("reference", _no_scheduler), ("constant", _factor_scheduler), ("step", _factor_scheduler),
                        ("cosine", _factor_scheduler), ("plateau", _plateau_scheduler)):
    SCHEDULES.register(_builder, name=_name)


class Schedule:
    """The optimiser of a run and its learning rate over the steps (see the module docstring).

    ``make_optimizer(name, lr)`` builds an optimiser over the model's parameters; ``mark()`` is the step number
    the reference schedule compares with ``warm_up_steps`` (steps done, or the reference loop's 0-based index);
    ``say(text)`` logs a line.
    """

    def __init__(self, config, make_optimizer: Callable[[str, float], torch.optim.Optimizer],
                 mark: Callable[[], int], say: Callable[[str], None] = lambda text: None):
        self.config, self.make_optimizer, self.mark, self.say = config, make_optimizer, mark, say
        self.name = config.schedule
        self.optimizer_name = config.optimizer
        self.warm_up_steps = config.effective_warm_up_steps  # the reference schedule's next switch
        self.optimizer = make_optimizer(self.optimizer_name, config.learning_rate)
        self.scheduler = None
        self._build_scheduler()

    def _build_scheduler(self) -> None:
        self.scheduler = SCHEDULES.get(self.name)(self.optimizer, self.config)

    @property
    def learning_rate(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def after_step(self) -> None:
        """Called after every optimiser step."""
        if self.name == "reference":
            if self.mark() >= self.warm_up_steps:
                lr = self.learning_rate / 10
                self.say(f"Change learning_rate to {lr:f} at step {self.mark()}")
                self.optimizer_name = "adam"
                self.optimizer = self.make_optimizer("adam", lr)
                self.warm_up_steps *= 3
        elif self.scheduler is not None and self.name != "plateau":
            self.scheduler.step()

    def after_validation(self, mrr: float) -> None:
        """Called after every validation with its MRR (only the plateau schedule listens)."""
        if self.name == "plateau":
            before = self.learning_rate
            self.scheduler.step(float(mrr))
            if self.learning_rate < before:
                self.say(f"Change learning_rate to {self.learning_rate:f}: valid MRR has not improved in "
                         f"{self.config.lr_patience} validations")

    def set_learning_rate(self, lr: float) -> None:
        """A resumed run's new ``learning_rate``: the base of a LambdaLR curve, else the current rate."""
        if isinstance(self.scheduler, torch.optim.lr_scheduler.LambdaLR):
            self.scheduler.base_lrs = [lr for _ in self.optimizer.param_groups]
            factor = lr_factor(self.config, self.scheduler.last_epoch)
            for group in self.optimizer.param_groups:
                group["lr"] = lr * factor
                group["initial_lr"] = lr
        else:
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    # --- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"name": self.name, "optimizer": self.optimizer_name, "warm_up_steps": self.warm_up_steps,
                "learning_rate": self.learning_rate, "optimizer_state_dict": self.optimizer.state_dict(),
                "scheduler_state_dict": None if self.scheduler is None else self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore a saved schedule (its optimiser, rate and counters); the checkpoint's schedule must match."""
        if state.get("name", "reference") != self.name:
            raise ValueError(f"the checkpoint's schedule is {state.get('name')!r}, not {self.name!r}")
        self.optimizer_name = state["optimizer"]
        self.warm_up_steps = int(state["warm_up_steps"])
        self.optimizer = self.make_optimizer(self.optimizer_name, float(state["learning_rate"]))
        self._build_scheduler()
        self.optimizer.load_state_dict(state["optimizer_state_dict"])
        if self.scheduler is not None and state.get("scheduler_state_dict") is not None:
            self.scheduler.load_state_dict(state["scheduler_state_dict"])
        for group in self.optimizer.param_groups:  # the saved rate, whatever a constructor set
            group["lr"] = float(state["learning_rate"])


class EarlyStopping:
    """Stop after ``patience`` validations in a row whose MRR does not beat the best by more than ``min_delta``.

    ``patience`` None: never stop.  The state (best MRR, validations without improvement, the stop step) travels
    in the checkpoint; a resumed run may change ``patience``/``min_delta`` (the counter is kept).
    """

    def __init__(self, patience: int | None, min_delta: float = 0.0):
        self.patience, self.min_delta = patience, float(min_delta)
        self.best = -math.inf
        self.bad = 0  # validations since the last improvement

    def update(self, mrr: float) -> bool:
        """Record one validation's MRR; True when the run should stop now."""
        if mrr > self.best + self.min_delta:
            self.best, self.bad = float(mrr), 0
        else:
            self.bad += 1
        return self.should_stop

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad >= self.patience

    def reason(self) -> str:
        return (f"valid MRR did not improve by more than {self.min_delta:g} on the best ({self.best:f}) "
                f"in {self.bad} validations (patience {self.patience})")

    def state_dict(self) -> dict:
        return {"best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad = float(state.get("best", -math.inf)), int(state.get("bad", 0))
