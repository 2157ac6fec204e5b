"""Experiment trackers (``--tracker``): callbacks that mirror a run's metrics to TensorBoard or MLflow.

``metrics.jsonl`` in the run folder stays the always-on record; a tracker is an optional copy of it:

* ``tensorboard``: event files in ``RUN/tensorboard/`` (``tensorboard --logdir RUN/tensorboard``): the scalars
  ``train/<metric>`` at every log (the losses, ``learning_rate``, ``steps_per_s``), ``valid/<metric>`` at every
  validation, and at the end the final ``valid/<metric>`` / ``test/<metric>`` / ``train/<metric>`` at the step
  metrics.jsonl gives them; the resolved config as text (``config``) and as hparams.
* ``mlflow``: one MLflow run per ``emukg train`` (a resumed run is a new MLflow run with the same name) in the
  experiment named after the dataset, on ``--tracking-uri`` or by default the file store ``./mlruns`` of the
  current folder (``mlflow ui --backend-store-uri ./mlruns``); params = the resolved config, flattened; the same
  metrics as TensorBoard with their steps (``@`` and other characters MLflow refuses in a name become ``_``:
  ``valid/HITS_10``); at the end the run folder's small files as artifacts and the status FINISHED, or FAILED
  when the run stopped with an error.

The packages are optional extras (``pip install 'emukg[tensorboard]'`` / ``'emukg[mlflow]'``) and are imported
only when a tracker is asked for.  :func:`check_tracker_available` raises the one-sentence
:class:`~emukg.errors.EmukgError` for a missing package and writes nothing, so the Trainer can call it before the run folder is created.
Once training runs, a tracker that fails to write (a full disk, an unreachable server) logs a warning and the
run goes on: the run folder keeps the full record.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import re
from pathlib import Path

from .errors import EmukgError, ParamError
from .io_utils import braces
from .resolver import Registry, choose

log = logging.getLogger("emukg.tracking")

# tracker name -> its callback's class, built as cls(config, folder) (registered below, where they are defined)
TRACKERS: Registry = Registry("tracker", "tracker")
# the package each tracker imports, and the extra that installs it
_PACKAGES = {"tensorboard": ("tensorboard", "torch.utils.tensorboard"), "mlflow": ("mlflow",)}
# the run folder's small files sent to MLflow as artifacts (never the checkpoints or the .npy embeddings)
ARTIFACTS = ("config.json", "metrics.jsonl", "results.json", "train.log")
TENSORBOARD_DIR = "tensorboard"
MLFLOW_PARAM_LIMIT = 500  # characters of one param value (MLflow 2.x's limit; later versions allow more)
MLFLOW_BATCH_LIMIT = 100  # params per log_batch call
SPLITS = ("valid", "test", "train")  # the final results, in the order metrics.jsonl writes them


def check_tracker_available(config) -> None:
    """Raise :class:`EmukgError` when ``config.tracker`` needs a package that cannot be imported.

    Writes nothing: call it before the run folder is created so that a missing package leaves no trace."""
    tracker = getattr(config, "tracker", None)
    if tracker is None:
        return
    tracker = choose("tracker", tracker, TRACKERS, "tracker", also=" (or leave it unset)")
    missing = ParamError("tracker", tracker, f"needs the {tracker} package; pip install 'emukg[{tracker}]'.")
    for module in _PACKAGES[tracker]:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if (exc.name or tracker).split(".")[0] == tracker:
                raise missing from None
            raise ParamError("tracker", tracker, f"the {tracker} package cannot be imported (module {exc.name!r} is missing); "
                             f"reinstall it with pip install --force-reinstall 'emukg[{tracker}]'.") from None
        except ImportError as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ParamError("tracker", tracker, f"the {tracker} package cannot be imported ({braces(reason)}); "
                             f"reinstall it with pip install --force-reinstall 'emukg[{tracker}]'.") from None


def build_trackers(config, folder) -> list:
    """The tracker callbacks ``config.tracker`` asks for (none when it is unset); a missing package raises the
    one-sentence :class:`EmukgError` of :func:`check_tracker_available`."""
    if config.tracker is None:
        return []
    check_tracker_available(config)
    return [TRACKERS.get(config.tracker)(config, folder)]


# --- shared helpers -------------------------------------------------------------------------------
def scalars(metrics: dict) -> dict:
    """The finite numeric entries of ``metrics`` as floats (what metrics.jsonl records)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:  # a 0-d tensor or numpy scalar
                value = value.item()
            except (AttributeError, ValueError, RuntimeError):
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
        out[str(key)] = float(value)
    return out


def final_metrics(trainer, results: dict) -> tuple[int, dict]:
    """The step and the ``{"split/metric": value}`` of the final evaluation, as metrics.jsonl records them."""
    mark = getattr(trainer, "_mark", None)
    step = int(mark()) if callable(mark) else int(getattr(trainer, "step", 0))
    headline = getattr(trainer, "headline", None)
    out = {}
    for split in SPLITS:
        if isinstance(results.get(split), dict):
            values = headline(results[split]) if callable(headline) else results[split]
            out.update({f"{split}/{k}": v for k, v in scalars(values).items()})
    return step, out


def flatten(data: dict, prefix: str = "") -> dict:
    """Nested dicts as one level of ``a.b`` keys; lists and other values as they are."""
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def resolved_config(trainer) -> dict:
    """The settings the run uses plus what config.json adds (version, dataset record, negatives)."""
    data = dict(trainer.config.to_dict())
    info = getattr(trainer, "info", None) or {}
    for key in ("emukg_version", "dataset_record", "negatives"):
        if key in info:
            data[key] = info[key]
    return data


class _Tracker:
    """A :class:`~emukg.training.Callback` whose write failures are warnings (reported once per kind)."""

    name = "tracker"

    def __init__(self):
        self._warned: set[str] = set()

    def _warn(self, what: str, exc: BaseException) -> None:
        if what not in self._warned:
            self._warned.add(what)
            log.warning("--tracker %s: could not %s (%s: %s); training goes on, metrics.jsonl keeps the record",
                        self.name, what, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")

    # the Callback interface (emukg.training.Callback), duck-typed to keep this module torch-free
    def on_train_start(self, trainer) -> None: ...

    def on_log(self, trainer, step: int, metrics: dict) -> None:
        self._log(step, {f"train/{k}": v for k, v in scalars(metrics).items()}, "log training metrics")

    def on_validation(self, trainer, step: int, metrics: dict) -> None:
        self._log(step, {f"valid/{k}": v for k, v in scalars(metrics).items()}, "log validation metrics")

    def on_end(self, trainer, results: dict, error: BaseException | None = None) -> None: ...

    def _log(self, step: int, metrics: dict, what: str) -> None:
        raise NotImplementedError


# --- TensorBoard ----------------------------------------------------------------------------------
class TensorBoardTracker(_Tracker):
    """Event files in ``RUN/tensorboard/`` (see the module docstring for the tags)."""

    name = "tensorboard"

    def __init__(self, config, folder):
        super().__init__()
        self.folder = folder
        self.logdir = Path(folder.file(TENSORBOARD_DIR))
        self.writer = None

    def on_train_start(self, trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        step = int(getattr(trainer, "step", 0))
        if step == 0 and self.logdir.is_dir():
            # a run that starts from step 0 replaces what an earlier run in this folder wrote
            for old in self.logdir.glob("events.out.tfevents.*"):
                old.unlink(missing_ok=True)
        try:
            # on resume, TensorBoard drops what the earlier process logged after the checkpoint (as metrics.jsonl does)
            self.writer = SummaryWriter(log_dir=str(self.logdir), purge_step=step + 1 if step > 0 else None)
        except OSError as exc:
            raise EmukgError(f"{self.logdir}: cannot write TensorBoard event files ({exc.strerror or exc}); "
                             "make the run folder writable or drop --tracker tensorboard.") from None
        config = resolved_config(trainer)
        text = json.dumps(config, indent=2, sort_keys=True, default=str)
        try:
            self.writer.add_text("config", "\n".join("    " + ln for ln in text.splitlines()), global_step=step)
            self._add_hparams(trainer.config.to_dict())
            self.writer.flush()
        except Exception as exc:  # noqa: BLE001 - a tracker never stops training
            self._warn("write the config", exc)

    def _add_hparams(self, config: dict) -> None:
        """The config in TensorBoard's HParams tab, in this run's own event file (not a sub-run as
        ``SummaryWriter.add_hparams`` makes), with the validation and test metrics as its columns."""
        from torch.utils.tensorboard.summary import hparams

        values = {k: (v if isinstance(v, (bool, int, float, str)) else json.dumps(v)) for k, v in config.items()
                  if v is not None}
        metric_names = [f"{split}/{m}" for split in ("valid", "test") for m in ("MRR", "MR", "HITS@1", "HITS@3", "HITS@10")]
        exp, ssi, sei = hparams(values, {name: 0.0 for name in metric_names})
        file_writer = self.writer._get_file_writer()
        for summary in (exp, ssi, sei):
            file_writer.add_summary(summary)

    def _log(self, step: int, metrics: dict, what: str) -> None:
        if self.writer is None:
            return
        try:
            for tag, value in metrics.items():
                self.writer.add_scalar(tag, value, global_step=step)
        except Exception as exc:  # noqa: BLE001
            self._warn(what, exc)

    def on_validation(self, trainer, step: int, metrics: dict) -> None:
        super().on_validation(trainer, step, metrics)
        if self.writer is not None:
            try:
                self.writer.flush()  # validations are rare: make them visible in a running TensorBoard at once
            except Exception as exc:  # noqa: BLE001
                self._warn("flush the event file", exc)

    def on_end(self, trainer, results: dict, error: BaseException | None = None) -> None:
        if self.writer is None:
            return
        try:
            if results:
                step, metrics = final_metrics(trainer, results)
                self._log(step, metrics, "log the final results")
        finally:
            try:
                self.writer.close()  # flushes
            except Exception as exc:  # noqa: BLE001
                self._warn("close the event file", exc)
            self.writer = None


# --- MLflow ---------------------------------------------------------------------------------------
_MLFLOW_BAD_CHARS = re.compile(r"[^\w./\- ]")


def mlflow_name(name: str) -> str:
    """``name`` with the characters MLflow refuses in metric names replaced by ``_`` (``HITS@10`` → ``HITS_10``)."""
    return _MLFLOW_BAD_CHARS.sub("_", name)


def default_tracking_uri() -> str:
    """``file:`` URI of ``./mlruns`` in the current folder (absolute, so a later ``chdir`` changes nothing)."""
    return Path("mlruns").resolve().as_uri()


def _is_file_store(uri: str) -> bool:
    scheme = uri.split(":", 1)[0].lower() if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", uri) else ""
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")  # a bare path, or C:\ on Windows


class MlflowTracker(_Tracker):
    """One MLflow run per ``emukg train`` (see the module docstring).  Uses an :class:`mlflow.MlflowClient` of
    its own, so it neither needs nor changes MLflow's global tracking URI or active run."""

    name = "mlflow"

    def __init__(self, config, folder):
        super().__init__()
        self.folder = folder
        self.uri = config.tracking_uri or default_tracking_uri()
        self.client = None
        self.run_id: str | None = None

    def _experiment_name(self, trainer) -> str:
        record = getattr(trainer, "dataset_record", None) or {}
        kg = getattr(trainer, "kg", None)
        return str(record.get("name") or getattr(kg, "name", "") or "emukg")

    def on_train_start(self, trainer) -> None:
        from mlflow.entities import Param, RunTag
        from mlflow.tracking import MlflowClient

        if _is_file_store(self.uri):
            # MLflow ≥ 3.1x refuses its file store unless asked for it explicitly; it is this tracker's default
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        name = self._experiment_name(trainer)
        try:
            self.client = client = MlflowClient(tracking_uri=self.uri)
            experiment = client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment is not None else client.create_experiment(name)
            if experiment is not None and experiment.lifecycle_stage == "deleted":
                client.restore_experiment(experiment_id)
            step = int(getattr(trainer, "step", 0))
            tags = {"emukg.run_folder": str(Path(self.folder.path).resolve()), "emukg.model": str(trainer.config.model)}
            if step > 0:
                tags["emukg.resumed_at_step"] = str(step)
            run = client.create_run(experiment_id, run_name=Path(self.folder.path).resolve().name, tags=tags)
        except Exception as exc:  # noqa: BLE001 - bad URI, unreachable server, unwritable store
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ParamError("tracking_uri", self.uri, f"MLflow cannot start a run there ({braces(reason)}); pass a "
                             "reachable tracking URI or a writable folder.") from None
        self.run_id = run.info.run_id
        params = []
        for key, value in sorted(flatten(resolved_config(trainer)).items()):
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            params.append(Param(mlflow_name(key), text[:MLFLOW_PARAM_LIMIT]))
        try:
            for i in range(0, len(params), MLFLOW_BATCH_LIMIT):
                client.log_batch(self.run_id, params=params[i:i + MLFLOW_BATCH_LIMIT])
            client.log_batch(self.run_id, tags=[RunTag("mlflow.source.name", "emukg train")])
        except Exception as exc:  # noqa: BLE001
            self._warn("log the config as params", exc)

    def _log(self, step: int, metrics: dict, what: str) -> None:
        if self.run_id is None:
            return
        from mlflow.entities import Metric

        try:
            import time

            now = int(time.time() * 1000)
            batch = [Metric(mlflow_name(k), v, now, step) for k, v in metrics.items() if math.isfinite(v)]
            if batch:
                self.client.log_batch(self.run_id, metrics=batch)
        except Exception as exc:  # noqa: BLE001
            self._warn(what, exc)

    def on_end(self, trainer, results: dict, error: BaseException | None = None) -> None:
        if self.run_id is None:
            return
        try:
            if results:
                step, metrics = final_metrics(trainer, results)
                self._log(step, metrics, "log the final results")
            for name in ARTIFACTS:
                path = Path(self.folder.file(name))
                if path.is_file():
                    try:
                        self.client.log_artifact(self.run_id, str(path))
                    except Exception as exc:  # noqa: BLE001
                        self._warn("upload the run folder's files as artifacts", exc)
        finally:
            status = "FINISHED" if error is None else ("KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
            if error is not None:
                reason = str(error).splitlines()[0] if str(error) else ""
                try:
                    self.client.set_tag(self.run_id, "emukg.error", f"{type(error).__name__}: {reason}"[:MLFLOW_PARAM_LIMIT])
                except Exception as exc:  # noqa: BLE001
                    self._warn("tag the MLflow run with its error", exc)
            try:
                self.client.set_terminated(self.run_id, status=status)
            except Exception as exc:  # noqa: BLE001
                self._warn("end the MLflow run", exc)
            self.run_id = None


TRACKERS.register(TensorBoardTracker, name="tensorboard")
TRACKERS.register(MlflowTracker, name="mlflow")
