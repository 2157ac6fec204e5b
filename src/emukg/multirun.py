"""Several runs in one process: ``emukg train --seeds 0 1 2 …`` (``Config.seeds``).

K runs that differ only by their seed are built in one process and stepped **in lockstep**: step s of run 1, step
s of run 2, …, then step s+1 of each (:meth:`emukg.training.Trainer.fit_steps` yields after every step, its
validation and checkpoint included).  Each run is a plain :class:`~emukg.training.Trainer` with its own
``torch.Generator`` seeded with its seed, its own model, optimiser, samplers and shuffled passes, and its own run
folder ``SAVE_PATH/seed<k>`` with its checkpoints, logs and ``results.json``; so each run equals, bit for bit on
the CPU, the same seed trained alone with ``--save-path SAVE_PATH/seed<k>`` (tests/test_multirun.py checks the
parameters, the logged losses and the metrics).  The dataset is read once and shared (it is read-only).

``SAVE_PATH`` itself holds ``seeds.json``: the seeds, their folders and the settings (with ``seeds``), so that
``emukg train --resume SAVE_PATH`` continues every run from its own last checkpoint (a run killed before its first
checkpoint starts again from step 0, which is the same run), and ``emukg report SAVE_PATH`` finds the runs.

What this is and is not.  The runs share one Python process, the data and the compiled kernels; they are not yet
one stacked computation: on the CPU each step of each run is its own call of the fused kernels, so K runs cost K
times one run (the C kernels already use every core for one run).  The GPU plan (issue 24) is a leading run axis
through the parameters (K × N × d), the optimiser state, the samplers (K generators' draws as one (K, B, n)
tensor) and the kernels, so that K small steps become one launch; this module's interface (one config with
``seeds``, one folder per seed, ``seeds.json``) is the one that stacked path keeps.

Memory: K times one run's model, optimiser state and sampler tables; the graph once.

A run that fails (a loss that is no longer finite, a full disk) stops alone; the others go on, and the failures
are reported together at the end (exit status 2).  Before anything is written every run's settings and folder are
checked, and the data is read, so a refused command leaves no trace.
"""

from __future__ import annotations

from pathlib import Path

from .config import Config, ConfigError
from .errors import EmukgError, ParamError
from .io_utils import braces
from .run_folder import CONFIG, RunFolder
from .training import RUN_FLAGS, Trainer, resume_changes

SEEDS_FILE = "seeds.json"
# the settings that may differ between the runs of one group (everything else is "the same shapes")
PER_RUN = ("seed", "seeds", "save_path", "init_checkpoint")


def seed_folder(parent: str | Path, seed: int) -> Path:
    """The run folder of ``seed`` under ``parent``: ``parent/seed<k>``."""
    return Path(parent) / f"seed{seed}"


def is_multirun(path: str | Path) -> bool:
    """True when ``path`` holds the runs of ``emukg train --seeds`` (its ``seeds.json``)."""
    return (Path(path) / SEEDS_FILE).is_file()


def read_manifest(path: str | Path) -> dict:
    """``seeds.json`` of a multi-run folder: ``{"seeds": [...], "folders": {seed: name}, "config": {...}}``."""
    folder = RunFolder(path)
    data = folder.read_json(SEEDS_FILE)
    if not isinstance(data, dict) or not isinstance(data.get("seeds"), list) or not isinstance(data.get("config"), dict):
        raise EmukgError(f"{folder.file(SEEDS_FILE)}: not a list of seeded runs (expected seeds and config); the file is damaged.")
    return data


def run_folders(path: str | Path) -> list[Path]:
    """The run folders of a multi-run folder, in seed order (those written so far)."""
    data = read_manifest(path)
    return [seed_folder(path, k) for k in data["seeds"] if (seed_folder(path, k) / CONFIG).is_file()]


def seed_configs(config: Config) -> list[Config]:
    """One Config per seed of ``config.seeds``: ``seed=k``, ``seeds=None``, ``save_path=SAVE_PATH/seed<k>``, and,
    when ``config.init_checkpoint`` (the multi-run folder) is set, ``init_checkpoint=INIT/seed<k>`` for every run
    written there (a run not begun yet starts afresh)."""
    config.validate()
    if not config.seeds:
        raise ConfigError("seeds", config.seeds, "needs at least one seed.")
    out = []
    for k in config.seeds:
        init = ""
        if config.init_checkpoint and (seed_folder(config.init_checkpoint, k) / CONFIG).is_file():
            init = str(seed_folder(config.init_checkpoint, k))
        out.append(config.replace(seed=k, seeds=None, save_path=str(seed_folder(config.save_path, k)), init_checkpoint=init))
    return out


def same_shapes(configs: list[Config]) -> None:
    """Refuse runs that differ in anything but their seed and folders (they would not share one stacked step)."""
    first = configs[0].to_dict()
    for cfg in configs[1:]:
        for name, value in cfg.to_dict().items():
            if name not in PER_RUN and value != first[name]:
                raise ConfigError(name, value, f"differs between the runs ({first[name]!r} and {value!r}); the runs of "
                                  "one process differ only by {seed}.")


class _SharedGraph(Trainer):
    """A Trainer that reads the dataset from the group's cache (read once, shared by the K runs)."""

    def __init__(self, config: Config, graphs: dict, **kw):
        self._graphs = graphs
        super().__init__(config, **kw)

    def _read_graph(self, dataset: str):
        if dataset not in self._graphs:
            self._graphs[dataset] = super()._read_graph(dataset)
        return self._graphs[dataset]


class MultiRun:
    """K runs of the same shapes in one process, stepped in lockstep (see the module's docstring).

    ``config.seeds`` names the runs; ``config.save_path`` is the multi-run folder; ``config.init_checkpoint`` (that
    same folder) continues them.  :meth:`fit` returns ``{seed: results}``.
    """

    def __init__(self, config: Config, overwrite: bool = False, callbacks=()):
        config.validate()
        if not config.save_path:
            raise ConfigError("save_path", config.save_path, "is required: the folder of the runs (one sub-folder per seed).")
        parent = RunFolder(config.save_path)
        parent.check_target("save_path", RUN_FLAGS)
        # one writer of the group (each run's folder has its own lock too): a second --seeds process into the same
        # folder is refused here, naming the first, before it reads or writes anything there
        self.lock = parent.lock("save_path", RUN_FLAGS)
        self.trainers: dict[int, Trainer] = {}
        try:
            self._set_up(config, parent, overwrite, callbacks)
        except BaseException:
            for trainer in self.trainers.values():
                trainer.close()
            RunFolder.unlock(self.lock, refused=True)  # (removes only the folders its lock created, when empty)
            raise

    def _set_up(self, config: Config, parent: RunFolder, overwrite: bool, callbacks) -> None:
        if parent.has_run():
            raise ParamError("save_path", str(parent.path), "holds a single run (its config.json); the runs of {seeds} need "
                             "a folder of their own, so pick another folder.", flags=RUN_FLAGS)
        resuming = bool(config.init_checkpoint)
        if resuming:
            source = Path(config.init_checkpoint)
            if source.resolve() != parent.path.resolve():
                raise ParamError("init_checkpoint", str(source), "the runs of {seeds} continue in their own folder; give "
                                 "the same folder as {save_path}.", flags=RUN_FLAGS)
            if not is_multirun(source):
                raise ParamError("init_checkpoint", str(source), f"no {SEEDS_FILE} there: it holds no runs of {{seeds}}; "
                                 "pass the folder that 'emukg train --seeds' wrote.", flags=RUN_FLAGS)
            saved = read_manifest(source)["seeds"]
            if list(saved) != list(config.seeds):
                raise ConfigError("seeds", config.seeds, f"the runs in {source} have seeds {saved}; resume them with those.")
        elif is_multirun(parent.path) and not overwrite:
            raise ParamError("save_path", str(parent.path), f"runs already exist there; continue them with {{init_checkpoint}} "
                             f"{braces(parent.path)}, pick another folder, or pass {{overwrite}} to replace them.", flags=RUN_FLAGS)
        self.config = config
        self.configs = seed_configs(config)
        same_shapes(self.configs)
        # every run's folder is checked and the data read before anything is written
        for cfg in self.configs:
            folder = RunFolder(cfg.save_path)
            folder.check_target("save_path", RUN_FLAGS)
            if folder.has_run() and not cfg.init_checkpoint and not overwrite:
                raise ParamError("save_path", str(folder.path), "a run already exists there; continue the runs with "
                                 f"{{init_checkpoint}} {braces(parent.path)} or pass {{overwrite}}.", flags=RUN_FLAGS)
        self.graphs: dict = {}
        for cfg in self.configs:  # a resume that changes what shapes a run is refused here, before any write
            if cfg.init_checkpoint:
                resume_changes(RunFolder(cfg.init_checkpoint).read_config(), cfg, cfg.init_checkpoint)
        self.graphs[config.dataset] = Trainer._read_graph(config.dataset)
        parent.create()
        parent.write_json(SEEDS_FILE, {"seeds": list(config.seeds),
                                       "folders": {str(k): seed_folder(".", k).name for k in config.seeds},
                                       "config": {**config.to_dict(), "init_checkpoint": "", "save_path": str(parent.path)}})
        for cfg in self.configs:
            self.trainers[cfg.seed] = _SharedGraph(cfg, self.graphs, overwrite=overwrite, callbacks=callbacks)
        self.results: dict[int, dict] = {}
        self.errors: dict[int, BaseException] = {}

    def fit(self) -> dict[int, dict]:
        """Step the runs in lockstep to their ends; ``{seed: results}``.  A run that fails with an
        :class:`EmukgError` stops alone; the failures are raised together once the others have finished."""
        steps = {seed: t.fit_steps() for seed, t in self.trainers.items()}
        alive = list(steps)
        try:
            while alive:
                for seed in list(alive):
                    try:
                        next(steps[seed])
                    except StopIteration:
                        alive.remove(seed)
                        self.results[seed] = self.trainers[seed].results
                    except EmukgError as exc:
                        alive.remove(seed)
                        self.errors[seed] = exc
        finally:
            for gen in steps.values():
                gen.close()
            RunFolder.unlock(self.lock)
        if self.errors:
            said = "; ".join(f"seed {seed}: {exc}" for seed, exc in self.errors.items())
            ok = ", ".join(map(str, self.results)) or "none"
            raise EmukgError(f"{len(self.errors)} of {len(self.trainers)} runs failed ({said}); the runs of seeds {ok} finished.")
        return self.results


def train_seeds(config: Config, overwrite: bool = False, callbacks=()) -> dict[int, dict]:
    """Train (or, with ``init_checkpoint``, resume) the runs of ``config.seeds`` in one process; ``{seed: results}``."""
    return MultiRun(config, overwrite=overwrite, callbacks=callbacks).fit()
