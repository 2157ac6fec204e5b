"""Hyper-parameter search with Optuna: ``emukg hpo`` and :func:`hpo` (``emukg.hpo``).

    import emukg
    search = emukg.hpo(config="base.yaml", space="space.yaml", trials=20)
    search.best_value, search.best_params, search.out / "best.yaml"

**The base** is a normal ``emukg train`` config (a YAML file, a mapping or a :class:`~emukg.config.Config`);
**the space** maps Config fields to one distribution each::

    emu: {float: [0.1, 0.9]}
    ce_coef: {float: [0.001, 1.0], log: true}
    hidden_dim: {int: [50, 500], step: 50}
    model: {choice: [TransE, RotatE]}

The space is checked strictly before anything is written (unknown field or kind, low ≥ high, ``log`` with
low ≤ 0, an empty choice list, an integer setting given a float range, and every bound or choice the base config
refuses on its own).  A *combination* of sampled values that the Config refuses (``model: RotatE`` with
``double_entity_embedding`` false, both in the space) is not known up front: that trial fails with the Config's
message as its fail reason (``trials.csv`` column ``note``; Optuna's user attribute ``fail_reason``) and the search
goes on, as Optuna users expect; failed trials do not count towards ``trials``, and ten failures in a row stop the
search with the last reason.

**Search.**  Objective: the best validation MRR of the trial's run (maximised).  Sampler: TPE, seeded with
``seed`` and the trial's number, so a trial's settings depend only on the seed, its number and the trials before
it (a resumed study does not replay the random start-up settings).  Pruner: ``MedianPruner`` with
``n_startup_trials=4`` (no pruning before four trials completed) and ``n_warmup_steps`` = the base's
``valid_steps`` (the validation of the untrained model at step 0 is reported but never prunes); every validation
is reported (``trial.report(MRR, step)`` from a :class:`~emukg.training.Callback`) and a trial below the median of
the completed trials at the same step is stopped (state PRUNED, its run folder keeps what it trained).

**Storage, resume, several processes.**  The study lives in ``sqlite:///<out>/study.db`` (or ``storage``: any
SQLAlchemy URL, e.g. PostgreSQL, for Optuna's distributed mode), named ``study`` (default: the base config's
file name), created or loaded (``load_if_exists``).  A run goes on until ``trials`` trials are finished (COMPLETE
or PRUNED) *in the study*, so the same command after a kill runs only the missing ones and several processes on
one storage split them; before each trial the count is re-read, and a trial that finds the quota already taken by
trials of other processes with lower numbers is given up (state FAIL, note "surplus") — an exact total where
Optuna's ``MaxTrialsCallback`` can overshoot by one trial per extra process.  A trial left RUNNING by a killed
process is marked FAIL: at once when it ran on this host and its process is gone (the trial records host and
pid, recorded as it is created; one killed before that is marked FAIL ten seconds after its start), otherwise
through Optuna's heartbeat (``heartbeat_interval`` 10 s, ``grace_period`` 60 s, and
``optuna.storages.fail_stale_trials``) once its heartbeat is a minute old.  The study remembers its base and space
and refuses to continue with different ones.

**Outputs** in ``out`` (default ``hpo/<study>``), each written atomically: ``trial-<number>/`` (a normal run
folder per trial; a folder left by a killed process is replaced), ``trials.csv``, ``best.yaml`` (the base plus the
best settings, without ``save_path``: ``emukg train --config best.yaml --save-path X`` repeats the best trial),
``history.png`` (optimisation history) and ``importances.png`` (parameter importances; needs two completed trials
and a setting that varied, else skipped with a note).
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import io
import json
import math
import os
import re
import socket
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Config, ConfigError
from .errors import EmukgError, ParamError
from .folder_lock import FolderLock
from .io_utils import braces, pid_running, read_yaml

HEARTBEAT_INTERVAL = 10  # seconds between a running trial's heartbeats
GRACE_PERIOD = 60  # a RUNNING trial without a heartbeat for this long is marked FAIL
UNCLAIMED_AFTER = 10  # a RUNNING trial that recorded no process (host, pid) this long after its start is marked FAIL
N_STARTUP_TRIALS = 4
MAX_FAILS_IN_A_ROW = 10
KINDS = ("float", "int", "choice")
NOT_SEARCHABLE = ("save_path", "init_checkpoint")
FINISHED = ("COMPLETE", "PRUNED")


def _optuna():
    """Optuna, imported on first use (an optional extra)."""
    try:
        import optuna
    except ImportError:
        raise EmukgError("emukg hpo needs Optuna; pip install 'emukg[hpo]' (or pip install optuna).") from None
    return optuna


# --- the space --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One searched setting: ``kind`` float/int (``low``, ``high``, ``log``, ``step``) or choice (``choices``)."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def suggest(self, trial):
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high, log=self.log, step=self.step or 1)
        return trial.suggest_categorical(self.name, list(self.choices))

    def values_to_check(self) -> list:
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "low": self.low, "high": self.high, "log": self.log,
                "step": self.step, "choices": list(self.choices)}


def _number(value) -> float | None:
    """``value`` as a finite number (YAML reads 1e-3 as text), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return value
    return None


def parse_space(data: Any, source: str = "space") -> list[Param]:
    """The searched settings of a space mapping, checked strictly (one-sentence errors naming ``source`` and the key)."""
    import typing

    if not isinstance(data, dict) or not data:
        raise EmukgError(f"{source}: no settings to search; write one line per setting, such as 'emu: {{float: [0.1, 0.9]}}'.")
    hints = typing.get_type_hints(Config)
    params = []
    for raw_key, spec in data.items():
        key = str(raw_key).replace("-", "_")
        where = f"{source}: {raw_key}"
        if key not in Config.field_names():
            raise EmukgError(f"{where}: not a setting of emukg train; use the names listed by 'emukg train --help'.")
        if key in NOT_SEARCHABLE:
            raise EmukgError(f"{where}: cannot be searched (every trial has its own run folder); remove it from the space.")
        if not isinstance(spec, dict):
            raise EmukgError(f"{where}: expected a mapping such as {{float: [low, high]}}, {{int: [low, high]}} or {{choice: [...]}}.")
        kinds = [k for k in spec if k in KINDS]
        extra = [k for k in spec if k not in KINDS and k not in ("log", "step")]
        if extra or len(kinds) != 1:
            bad = extra[0] if extra else ", ".join(map(str, spec)) or "nothing"
            raise EmukgError(f"{where}: unknown kind {bad!r}; give exactly one of float, int or choice (plus log/step for float and int).")
        kind = kinds[0]
        field_kind = next((a for a in typing.get_args(hints[key]) if a is not type(None)), hints[key])
        if kind == "choice":
            if set(spec) != {"choice"}:
                raise EmukgError(f"{where}: log and step apply to float and int ranges only; remove them from the choice.")
            choices = spec["choice"]
            if not isinstance(choices, list) or not choices:
                raise EmukgError(f"{where}: choice needs a non-empty list of values, such as {{choice: [TransE, RotatE]}}.")
            if any(isinstance(c, (list, dict)) for c in choices):
                raise EmukgError(f"{where}: choice values must be plain values (numbers, text, true/false), not lists or mappings.")
            if len(set(map(repr, choices))) != len(choices):
                raise EmukgError(f"{where}: a choice value is listed twice; list each value once.")
            params.append(Param(key, "choice", choices=tuple(choices)))
            continue
        if field_kind not in (int, float):
            raise EmukgError(f"{where}: {key} is not a number setting; search it with {{choice: [...]}}.")
        if kind == "float" and field_kind is int:
            raise EmukgError(f"{where}: {key} is an integer setting; use {{int: [low, high]}}.")
        bounds = spec[kind]
        nums = [_number(b) for b in bounds] if isinstance(bounds, list) and len(bounds) == 2 else [None]
        if any(n is None for n in nums):
            raise EmukgError(f"{where}: {kind} needs [low, high], two finite numbers.")
        low, high = nums
        if kind == "int" and not all(float(n).is_integer() for n in nums):
            raise EmukgError(f"{where}: int bounds must be whole numbers, not {bounds}.")
        if kind == "int":
            low, high = int(low), int(high)
        else:
            low, high = float(low), float(high)
        if not low < high:
            raise EmukgError(f"{where}: low {low} must be below high {high}; write [low, high].")
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise EmukgError(f"{where}: log must be true or false, without quotes.")
        if log and low <= 0:
            raise EmukgError(f"{where}: a log scale needs low > 0, not {low}; raise low or drop log.")
        step = spec.get("step")
        if step is not None:
            num = _number(step)
            if num is None or num <= 0 or (kind == "int" and not float(num).is_integer()):
                raise EmukgError(f"{where}: step must be a positive {'whole ' if kind == 'int' else ''}number, not {step!r}.")
            if log:
                raise EmukgError(f"{where}: step and log exclude each other (Optuna); drop one of them.")
            step = int(num) if kind == "int" else float(num)
        params.append(Param(key, kind, low, high, log, step))
    return params


def load_space(space: str | os.PathLike | dict) -> tuple[list[Param], str]:
    """The parsed space and the name its errors use (the file's path, or ``space``)."""
    if isinstance(space, dict):
        return parse_space(space, "space"), "space"
    path = Path(space)
    data = read_yaml(path, "space")
    return parse_space(data, str(path)), str(path)


def check_space_against(params: list[Param], base: dict, source: str) -> None:
    """Refuse a bound or choice that the base config refuses on its own (whatever the other searched values)."""
    names = {p.name for p in params}
    for p in params:
        for value in p.values_to_check():
            try:
                Config.from_dict({**base, p.name: value, "save_path": "x"})
            except ConfigError as exc:
                involved = {exc.param, *re.findall(r"\{(\w+)\}", exc.reason)} - {p.name}
                if involved & names:
                    continue  # depends on another searched value: a combination, decided per trial
                raise EmukgError(f"{source}: {p.name}: {value!r}: {exc.render('yaml').split(': ', 2)[-1]}") from None


# --- the base ---------------------------------------------------------------------------------
def load_base(config) -> tuple[dict, str, str | None]:
    """The base settings as given (a dict), the name its errors use, and the default study name."""
    if isinstance(config, Config):
        return config.to_dict(), "config", None
    if isinstance(config, dict):
        return {k.replace("-", "_"): v for k, v in config.items()}, "config", None
    path = Path(config)
    try:
        return Config.from_yaml(path), str(path), path.stem
    except ConfigError:
        raise
    except ParamError as exc:  # the file itself (missing, a folder, unreadable): hpo's parameter is config
        raise ParamError("config", exc.value, exc.reason) from None


def _base_config(base: dict, source: str) -> Config:
    data = {k: v for k, v in base.items() if k not in NOT_SEARCHABLE}
    style = "yaml" if source != "config" else "python"
    try:
        cfg = Config.from_dict({**data, "save_path": "x"}, source=source, style=style)
    except ConfigError as exc:
        raise EmukgError(str(exc)) from None
    if not cfg.dataset:
        raise EmukgError(f"{source}: dataset is required: a registered name (see 'emukg datasets list') or a dataset folder.")
    if not cfg.do_valid or not cfg.do_train:
        bad = "do_valid" if not cfg.do_valid else "do_train"
        raise EmukgError(f"{source}: {bad}: false: the search maximises the validation MRR of trained runs; set {bad} true.")
    return cfg


# --- the Optuna side ---------------------------------------------------------------------------
def _make_sampler(seed: int):
    """TPE re-seeded per trial from ``seed`` and the trial's number (see the module docstring)."""
    optuna = _optuna()

    class PerTrialTPE(optuna.samplers.BaseSampler):
        def __init__(self):
            self.seed = seed
            self._tpe = optuna.samplers.TPESampler(seed=seed)

        def before_trial(self, study, trial):
            # who runs the trial, recorded milliseconds after its creation (see _fail_orphans)
            study._storage.set_trial_user_attr(trial._trial_id, "host", socket.gethostname())
            study._storage.set_trial_user_attr(trial._trial_id, "pid", os.getpid())
            self._tpe = optuna.samplers.TPESampler(seed=(seed * 1_000_003 + trial.number) % 2**32)
            self._tpe.before_trial(study, trial)

        def infer_relative_search_space(self, study, trial):
            return self._tpe.infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            return self._tpe.sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self._tpe.sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study, trial, state, values):
            self._tpe.after_trial(study, trial, state, values)

    return PerTrialTPE()


@contextlib.contextmanager
def _schema_lock(url: str):
    """An exclusive lock (``<database>.lock`` beside a SQLite file) around opening the storage: Optuna creates its
    schema on first open, and two processes doing that at once on a new file race (one fails on
    ``alembic_version``'s UNIQUE constraint); serialised, the second finds the schema made.  Other databases
    serialise their own schema creation; no lock there."""
    path = url.split(":///", 1)[1] if url.startswith("sqlite:///") else ""
    if not path or path.startswith(":memory:") or not Path(path).parent.is_dir():
        yield
        return
    import fcntl

    with open(f"{path}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _open_storage(url: str | None, out: Path, flags: dict | None = None):
    """The Optuna storage at ``url`` (default: ``out``/study.db); a bad URL is a ParamError about ``storage``
    (``flags``: its CLI flag, when not ``--storage``)."""
    optuna = _optuna()
    if url is None:
        url = f"sqlite:///{(out / 'study.db').resolve()}"
    if "://" not in url:
        raise ParamError("storage", url, "not a database URL; give one such as sqlite:///study.db or postgresql://user@host/db.",
                         flags=flags)
    kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
    try:
        with warnings.catch_warnings(), _schema_lock(url):
            warnings.simplefilter("ignore")
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_INTERVAL,
                                              grace_period=GRACE_PERIOD)
    except Exception as exc:  # SQLAlchemy's many errors (bad URL, missing driver, unreachable server)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ParamError("storage", url, f"cannot open the study storage ({braces(first)}).", flags=flags) from None


def _pid_alive(pid: int) -> bool:
    # this process has no trial running yet: a trial recorded with its pid is an old one whose pid was reused
    return pid != os.getpid() and pid_running(pid)


def _fail_orphans(study) -> list[int]:
    """Mark FAIL the RUNNING trials of this host whose process is gone; then Optuna's heartbeat check for the rest."""
    optuna = _optuna()
    from optuna.trial import TrialState

    failed = []
    host = socket.gethostname()
    storage = study._storage
    now = datetime.datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        if pid is None:  # killed between creating the trial and recording its process (a few milliseconds)
            gone = t.datetime_start is not None and (now - t.datetime_start).total_seconds() > UNCLAIMED_AFTER
            reason = f"no process claimed it within {UNCLAIMED_AFTER} s of its creation"
        else:
            gone = t.user_attrs.get("host") == host and isinstance(pid, int) and not _pid_alive(pid)
            reason = f"its process (pid {pid}) ended while it ran"
        if gone:
            try:
                storage.set_trial_user_attr(t._trial_id, "fail_reason", reason)
                storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
                failed.append(t.number)
            except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
                pass  # finished meanwhile
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(study)
    return failed


class _Reporter:
    """The training callback of one trial: reports every validation MRR and prunes below the median."""

    def __init__(self, trial):
        from .training import Callback

        class Report(Callback):
            def on_train_start(cb, trainer):
                self.trainer = trainer

            def on_validation(cb, trainer, step, metrics):
                self.trainer = trainer
                mrr = float(metrics["MRR"])
                trial.report(mrr, step)
                if trial.should_prune():
                    raise _optuna().TrialPruned(f"valid MRR {mrr:.4f} at step {step} is below the median of the completed trials")

        self.trainer = None
        self.callback = Report()


class _TrialFailed(Exception):
    """A trial that could not run (its settings refused, training stopped): FAIL with the reason."""


class _Surplus(Exception):
    """The study's quota was taken by other processes while this trial was being created."""


@dataclass
class Search:
    """What :func:`hpo` returns: the Optuna study, the output folder, the best trial, the files written."""

    study: Any
    out: Path
    best_value: float | None
    best_params: dict
    best_run: Path | None
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ran: int = 0


def hpo(config, space, trials: int, storage: str | None = None, study: str | None = None,
        out: str | os.PathLike | None = None, seed: int = 0, n_startup_trials: int = N_STARTUP_TRIALS,
        n_warmup_steps: int | None = None, verbose: bool = False, log=None, flag_names: dict | None = None) -> Search:
    """Search the ``space`` around the ``config`` with Optuna until the study has ``trials`` finished trials.

    ``config``: a base YAML file, mapping or Config; ``space``: a space YAML file or mapping; ``storage``: an
    SQLAlchemy URL (default ``sqlite:///<out>/study.db``); ``study``: its name (default: the base file's name);
    ``out``: the output folder (default ``hpo/<study>``); ``seed``: the TPE sampler's seed; ``n_startup_trials``
    and ``n_warmup_steps`` (default: the base's ``valid_steps``): the MedianPruner's.  ``verbose`` shows each
    trial's training log (always in its ``train.log``); ``log`` (default: stderr) gets one line per trial.
    A refused ``out``, ``storage``, ``study``, ``space`` or ``config`` is a :class:`~emukg.errors.ParamError` naming
    the parameter (the CLI renders its flag); ``flag_names`` maps ``trials``, ``storage`` and ``seed`` to the
    caller's flags.
    """
    flags = {"trials": "trials", "storage": "storage", "seed": "seed", **(flag_names or {})}
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise EmukgError(f"{flags['trials']} {trials!r}: must be a positive number of trials.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise EmukgError(f"{flags['seed']} {seed!r}: must be an integer ≥ 0.")
    # --- every check before anything is written -----------------------------------------------------
    base, base_source, base_stem = load_base(config)
    base_cfg = _base_config(base, base_source)
    params, space_source = load_space(space)
    check_space_against(params, {k: v for k, v in base.items() if k not in NOT_SEARCHABLE}, space_source)
    optuna = _optuna()

    name = study or base_stem or "emukg-study"
    out = Path(out) if out is not None else Path("hpo") / name
    if out.exists() and not out.is_dir():
        raise ParamError("out", str(out), "is a file; give a folder for the trials and results.")
    warmup = base_cfg.valid_steps if n_warmup_steps is None else n_warmup_steps
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    space_json = [p.to_json() for p in params]
    base_json = {k: v for k, v in base_cfg.to_dict().items() if k not in NOT_SEARCHABLE}
    # --- open (or create) the study ------------------------------------------------------------------
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        rdb = _open_storage(storage, out, {k: v for k, v in flags.items() if v.startswith("-")})
    except EmukgError:
        if created:  # a refused storage leaves no empty output folder behind
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        st = optuna.create_study(storage=rdb, study_name=name, direction="maximize", load_if_exists=True,
                                 sampler=_make_sampler(seed),
                                 pruner=optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials, n_warmup_steps=warmup))
        if st.direction != optuna.study.StudyDirection.MAXIMIZE:
            raise ParamError("study", name, "that study minimises; emukg hpo maximises the validation MRR, so pick another study name.")
        saved = st.user_attrs
        for key, value, what in (("emukg_space", space_json, "space"), ("emukg_base", base_json, "config")):
            if key not in saved:
                st.set_user_attr(key, value)
            elif json.loads(json.dumps(saved[key])) != json.loads(json.dumps(value)):
                raise ParamError(what, "", f"differs from what study {braces(repr(name))} was started with; continue it with "
                                 "the same files, or start another study with {study} NAME.")
        orphans = _fail_orphans(st)
        if orphans:
            log(f"hpo: trials {', '.join(map(str, orphans))} were left running by a process that ended; marked FAIL")
        ran = _search(st, params, base, base_source, trials, out, verbose, log)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optuna.storages.fail_stale_trials(st)
        # the study's folder is shared by its workers (each trial's run folder has its own lock); its result files
        # are written by one worker at a time, so that a table, a best.yaml and a plot always come from one writer
        with FolderLock(out, "out", "study folder").acquire(wait=True):
            return _write_outputs(st, params, base, name, out, ran)
    finally:
        optuna.logging.set_verbosity(verbosity)


def _counts(study, before: int | None = None) -> tuple[int, int]:
    """(finished trials, RUNNING trials with a number below ``before``) of the study, as stored now."""
    from optuna.trial import TrialState

    ts = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING))
    finished = sum(t.state != TrialState.RUNNING for t in ts)
    running = sum(t.state == TrialState.RUNNING and (before is None or t.number < before) for t in ts)
    return finished, running


def _search(st, params, base, base_source, n_trials, out, verbose, log) -> int:
    _optuna()  # the extra must be installed (one-sentence error otherwise)
    from optuna.trial import TrialState

    from .api import _caller_state
    from .training import train

    ran, fails, last_reason = 0, 0, ""
    state = {}

    def objective(trial):
        finished, running = _counts(st, before=trial.number)
        if finished + running >= n_trials:
            state["surplus"] = True
            trial.set_user_attr("fail_reason", "surplus: other processes took the study's last trials")
            raise _Surplus()
        settings = {p.name: p.suggest(trial) for p in params}
        run_dir = out / f"trial-{trial.number}"
        trial.set_user_attr("run_folder", str(run_dir))
        data = {k: v for k, v in base.items() if k not in NOT_SEARCHABLE}
        try:
            cfg = Config.from_dict({**data, **settings, "save_path": str(run_dir), "progress": False})
        except ConfigError as exc:
            reason = f"settings refused: {exc.render('python')}"
            trial.set_user_attr("fail_reason", reason)
            raise _TrialFailed(reason) from None
        reporter = _Reporter(trial)
        quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stderr(io.StringIO())
        try:
            with _caller_state(), quiet:
                train(cfg, overwrite=True, callbacks=[reporter.callback])
        except EmukgError as exc:
            reason = f"training stopped: {exc}"
            trial.set_user_attr("fail_reason", reason)
            raise _TrialFailed(reason) from None
        best = reporter.trainer.best_mrr if reporter.trainer is not None else -math.inf
        if not math.isfinite(best):
            reason = "no validation MRR was recorded"
            trial.set_user_attr("fail_reason", reason)
            raise _TrialFailed(reason)
        trial.set_user_attr("best_step", int(reporter.trainer.best_step))
        return float(best)

    def report(study, ft):
        state["trial"] = ft
        dur = f"{ft.duration.total_seconds():.1f} s" if ft.duration else "?"
        value = f"valid MRR {ft.value:.4f}" if ft.value is not None else ""
        if ft.state == TrialState.PRUNED:
            value = f"best valid MRR {max(ft.intermediate_values.values()):.4f}, pruned at step {ft.last_step}"
        note = ft.user_attrs.get("fail_reason", "") if ft.state == TrialState.FAIL else ""
        if not note.startswith("surplus"):
            log(f"trial {ft.number} {ft.state.name.lower()} ({dur}) {value}{note} "
                + " ".join(f"{k}={_fmt(v)}" for k, v in ft.params.items()))

    while True:
        _fail_orphans(st)
        finished, running = _counts(st)
        if finished >= n_trials:
            break
        if finished + running >= n_trials:
            log(f"hpo: {running} trial(s) still running elsewhere complete the study's {n_trials}; "
                f"a trial left by a killed process on another host is marked FAIL after {GRACE_PERIOD} s without heartbeat")
            break
        state.clear()
        st.optimize(objective, n_trials=1, catch=(_TrialFailed, _Surplus), callbacks=[report], gc_after_trial=False)
        if state.get("surplus"):
            break
        ran += 1
        last = state.get("trial")
        if last is not None and last.state == TrialState.FAIL:
            fails, last_reason = fails + 1, last.user_attrs.get("fail_reason", "")
            if fails >= MAX_FAILS_IN_A_ROW:
                raise ParamError("space", "", f"{fails} trials in a row failed (last: {braces(last_reason)}); "
                                 "fix the space or the base config.")
        else:
            fails = 0
        _write_table(st, params, out)
    return ran


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# --- outputs ------------------------------------------------------------------------------------
def _write_table(st, params, out: Path) -> Path:
    from .io_utils import atomic_write_text

    names = [p.name for p in params]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["number", "state", "value", *names, "duration_s", "run_folder", "note"])
    for t in st.get_trials(deepcopy=False):
        note = t.user_attrs.get("fail_reason", "")
        if t.state.name == "PRUNED":
            note = f"pruned at step {t.last_step}"
        dur = f"{t.duration.total_seconds():.2f}" if t.duration else ""
        value = "" if t.value is None else repr(float(t.value))
        w.writerow([t.number, t.state.name, value, *(t.params.get(n, "") for n in names), dur,
                    t.user_attrs.get("run_folder", ""), note])
    path = out / "trials.csv"
    atomic_write_text(path, buf.getvalue())
    return path


def _save_plot(ax, path: Path) -> None:
    import matplotlib.pyplot as plt

    from .io_utils import atomic_write_bytes

    fig = ax.figure
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _write_outputs(st, params, base, name, out: Path, ran: int) -> Search:
    import yaml

    from optuna.trial import TrialState

    from .io_utils import atomic_write_text

    files = [_write_table(st, params, out)]
    notes: list[str] = []
    complete = st.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = max(complete, key=lambda t: (t.value, -t.number)) if complete else None
    if best is not None:
        settings = {k: v for k, v in base.items() if k not in NOT_SEARCHABLE}
        settings.update(best.params)
        head = (f"# emukg hpo: study {name!r}, best of {len(complete)} completed trials: trial {best.number}, "
                f"valid MRR {best.value:.6f}\n# repeat it: emukg train --config best.yaml --save-path RUN_DIR\n")
        atomic_write_text(out / "best.yaml", head + yaml.safe_dump(settings, sort_keys=False, allow_unicode=True))
        files.append(out / "best.yaml")
    else:
        notes.append("no trial completed yet: no best.yaml")
    try:
        import matplotlib
    except ImportError:
        notes.append("plots skipped: they need matplotlib (pip install 'emukg[hpo]')")
        return _search_result(st, best, out, files, notes, ran)
    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        with contextlib.suppress(Exception):
            matplotlib.use("Agg")
    from optuna.visualization import matplotlib as ovm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if complete:
            _save_plot(ovm.plot_optimization_history(st), out / "history.png")
            files.append(out / "history.png")
        varied = [p.name for p in params if len({repr(t.params.get(p.name)) for t in complete}) > 1]
        if len(complete) >= 2 and varied:
            _save_plot(ovm.plot_param_importances(st, params=varied), out / "importances.png")
            files.append(out / "importances.png")
        else:
            notes.append("importances.png skipped: it needs two completed trials and a setting that varied")
    return _search_result(st, best, out, files, notes, ran)


def _search_result(st, best, out, files, notes, ran) -> Search:
    return Search(study=st, out=out, best_value=None if best is None else float(best.value),
                  best_params=dict(best.params) if best else {},
                  best_run=Path(best.user_attrs["run_folder"]) if best and "run_folder" in best.user_attrs else None,
                  files=files, notes=notes, ran=ran)
