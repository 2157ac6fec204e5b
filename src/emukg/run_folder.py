"""The run folder: what a training run writes, and how to load it back.

Layout (the reference's §6, plus machine-readable extras)::

    RUN_DIR/
      config.json                 the resolved Config, plus "dataset_record" (name, path as given, absolute path,
                                  sha256 of the split files), "negatives" and "resumes" added by the trainer
      checkpoint                  torch.save dict: step, current_learning_rate, warm_up_steps,
                                  model_state_dict, optimizer_state_dict, optimizer, rng states, best
      entity_embedding.npy        last entity table   (float32, N × entity_dim)
      relation_embedding.npy      last relation table
      best_model                  like checkpoint, for the best validation MRR
      best_entity_embedding.npy   best tables
      best_relation_embedding.npy
      train.log                   human log (the reference's line format)
      test.log                    log of a test-only run
      metrics.jsonl               one JSON object per logged metric line
      results.json                final metrics of the best model
      writer.lock                 while a process writes the folder: its pid and host (emukg.folder_lock)

:class:`RunFolder` is the one owner of this layout and of its I/O: every file but the appended logs is written
atomically (temp file + rename, see :mod:`emukg.io_utils`), a write that fails (permission denied, read-only
or full disk) raises one-sentence :class:`EmukgError` naming the file, and checkpoints are read with
``torch.load(..., weights_only=True)``.  Errors about a parameter (``checkpoint``, ``dataset``, ``save_path``) are
:class:`~emukg.errors.ParamError` objects: the command line prints them with its flags.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from .config import Config
from .errors import EmukgError, ParamError
from .folder_lock import FolderLock
from .io_utils import atomic_write_with, braces, check_writable_dir, os_reason, path_kind, temp_files, write_error
from .resolver import choose

CHECKPOINT = "checkpoint"
BEST = "best_model"
CONFIG = "config.json"
RUN_FILES = (
    CONFIG, CHECKPOINT, BEST,
    "entity_embedding.npy", "relation_embedding.npy", "best_entity_embedding.npy", "best_relation_embedding.npy",
    "train.log", "test.log", "metrics.jsonl", "results.json",
)
"""Every file a run writes; ``RunFolder.create(overwrite=True)`` removes exactly these."""

log = logging.getLogger(__name__)


def _checkpoint_name(which: str) -> str:
    return CHECKPOINT if choose("checkpoint", which, ("best", "last")) == "last" else BEST


class RunFolder:
    """One run folder: its layout (``RUN_FILES``), creation, atomic writers and readers.

    Writers raise :class:`EmukgError` naming the file when the folder cannot be written (permission denied,
    read-only file system, full disk); nothing is created until :meth:`create` or a writer is called.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def file(self, name: str) -> Path:
        """The path of ``name`` inside the folder."""
        return self.path / name

    # --- state --------------------------------------------------------------------------------
    def check_target(self, param: str = "save_path", flags: dict | None = None) -> None:
        """Refuse the folder as a place to write a run, creating nothing: it is a file, lies under a file, or it
        (or the nearest existing ancestor) is not writable.  A :class:`ParamError` about ``param`` and the path;
        a ``param`` spelled as a flag (``-save``) is named as given, in a plain :class:`EmukgError`."""
        check_writable_dir(self.path, param, flags)

    def has_run(self) -> bool:
        """True when a run was written here (config.json or a checkpoint is present)."""
        return self.file(CONFIG).is_file() or self.file(CHECKPOINT).is_file()

    def has_checkpoint(self, which: str = "last") -> bool:
        """True when the ``which`` ('last' or 'best') checkpoint file exists (no fallback)."""
        return self.file(_checkpoint_name(which)).is_file()

    def checkpoint_file(self, which: str = "best") -> str:
        """The file ``which`` names: ``best_model`` when asked for and present, else the last ``checkpoint``."""
        name = _checkpoint_name(which)
        return BEST if name == BEST and self.file(BEST).is_file() else CHECKPOINT

    # --- ownership ------------------------------------------------------------------------------
    def lock(self, param: str = "save_path", flags: dict | None = None) -> FolderLock:
        """Create the folder if needed and take its writer's lock (:mod:`emukg.folder_lock`): a second writer is
        refused naming the holder.  Undo with :meth:`unlock` (``refused=True`` also removes the folders this call
        created, so that a refused run leaves nothing behind)."""
        missing = []
        for cand in (self.path, *self.path.parents):
            if os.path.lexists(cand):
                break
            missing.append(cand)
        self._make()
        lock = FolderLock(self.path, param, "run folder", flags)
        lock.created = missing
        try:
            return lock.acquire()
        except BaseException:
            self.unlock(lock, refused=True)
            raise

    @staticmethod
    def unlock(lock: FolderLock | None, refused: bool = False) -> None:
        """Release ``lock``; with ``refused``, remove the (empty) folders its :meth:`lock` created."""
        if lock is None:
            return
        lock.release()
        if refused:
            for folder in lock.created:
                try:
                    folder.rmdir()
                except OSError:
                    break

    # --- creation and cleaning ------------------------------------------------------------------
    def _make(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise ParamError("save_path", str(self.path),
                             "cannot create the run folder (a file is in the way); pass another {save_path}.") from None
        except OSError as exc:
            raise ParamError("save_path", str(self.path), f"cannot create the run folder ({os_reason(exc)}); "
                             "make its parent writable or pass another {save_path}.") from None

    def create(self, overwrite: bool = False) -> None:
        """Create the folder (and its parents), remove temp files of interrupted writes and, with ``overwrite``,
        every file of a previous run (``RUN_FILES``; nothing else the user put there)."""
        self._make()
        self.clean_temp()
        if overwrite:
            for name in RUN_FILES:
                self.remove(name)

    def clean_temp(self) -> list[Path]:
        """Remove the temp files (``.NAME.*.tmp``, see ``io_utils.TEMP_PATTERN``) that interrupted atomic writes
        of ``RUN_FILES`` left behind; return the paths removed."""
        removed = []
        for name in RUN_FILES:
            for tmp in temp_files(self.path, name):
                try:
                    tmp.unlink()
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise write_error(tmp, exc, "make the run folder writable or remove the file") from None
                removed.append(tmp)
        if removed:
            log.info("%s: removed %d temp file(s) of interrupted writes", self.path, len(removed))
        return removed

    def remove(self, name: str) -> None:
        """Delete ``name`` if present."""
        path = self.file(name)
        try:
            path.unlink(missing_ok=True)
        except IsADirectoryError:
            raise ParamError("save_path", str(self.path), f"its {name} is a folder where the run writes a file; "
                             "remove it or pass another {save_path}.") from None
        except OSError as exc:
            raise EmukgError(f"{path}: cannot remove ({os_reason(exc)}); make the run folder writable.") from None

    # --- writers --------------------------------------------------------------------------------
    def write_with(self, name: str, write) -> Path:
        """Atomically create ``name`` by calling ``write(file)`` on a temporary file (streamed, never held in memory)."""
        path = self.file(name)
        try:
            atomic_write_with(path, write)
        except OSError as exc:
            raise write_error(path, exc, "make the run folder writable or free some space") from None
        return path

    def write_bytes(self, name: str, data: bytes) -> Path:
        """Atomically write ``data`` to ``name``."""
        return self.write_with(name, lambda f: f.write(data))

    def write_text(self, name: str, text: str) -> Path:
        """Atomically write ``text`` (UTF-8) to ``name``."""
        return self.write_bytes(name, text.encode("utf-8"))

    def write_json(self, name: str, obj: Any) -> Path:
        """Atomically write ``obj`` as indented, key-sorted JSON to ``name``."""
        return self.write_text(name, json.dumps(obj, indent=2, sort_keys=True) + "\n")

    def save_npy(self, name: str, array) -> Path:
        """Atomically write ``array`` in ``.npy`` format to ``name``."""
        import numpy as np

        return self.write_with(name, lambda f: np.save(f, np.asarray(array)))

    def save_torch(self, name: str, obj: Any) -> Path:
        """Atomically ``torch.save`` ``obj`` to ``name``, streamed into the temporary file (a checkpoint of parameters
        and optimiser state is not serialised into memory first: at 2.5 M entities that would be ≈ 3 GB more)."""
        import torch

        return self.write_with(name, lambda f: torch.save(obj, f))

    def append_line(self, name: str, text: str) -> Path:
        """Append ``text`` plus a newline to ``name`` (not atomic: for logs such as metrics.jsonl)."""
        path = self.file(name)
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(text if text.endswith("\n") else text + "\n")
        except OSError as exc:
            raise write_error(path, exc, "make the run folder writable or free some space") from None
        return path

    # --- readers --------------------------------------------------------------------------------
    def read_json(self, name: str) -> Any:
        """The JSON content of ``name``; missing, unreadable or damaged → :class:`EmukgError`."""
        path = self.file(name)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise EmukgError(f"{path}: file not found; is this a run folder written by emukg?") from None
        except json.JSONDecodeError as exc:
            raise EmukgError(f"{path}, line {exc.lineno}: not valid JSON; the run folder's {name} is damaged.") from None
        except UnicodeDecodeError:
            raise EmukgError(f"{path}: not UTF-8 text; the run folder's {name} is damaged.") from None
        except OSError as exc:
            raise EmukgError(f"{path}: cannot read ({os_reason(exc)}); make the file readable.") from None

    def read_config(self) -> Config:
        """The run's :class:`Config` from config.json via :meth:`Config.load_json` (extra keys such as
        "dataset_record" are ignored; a missing or damaged file raises :class:`EmukgError`)."""
        return Config.load_json(self.file(CONFIG))

    def read_checkpoint(self, which: str = "last", map_location="cpu", fallback: bool = True) -> dict:
        """The ``which`` ('last' or 'best') checkpoint dict; 'best' falls back to the last checkpoint when
        ``best_model`` is absent (as :meth:`checkpoint_file`), unless ``fallback=False``."""
        name = self.checkpoint_file(which) if fallback else _checkpoint_name(which)
        return read_checkpoint(self.file(name), map_location=map_location)


# ------------------------------------------------------------------------------------------- checkpoint integrity
#
# Every checkpoint emukg writes carries ``state["integrity"] = {"fingerprint": ..., "checksum": ...}``:
# the fingerprint says what it belongs to (the model, its parameter shapes, the settings that shape it, and the
# data: entity and relation counts, a digest of their names in id order, a digest of the training triples), the
# checksum (CRC-32 of every tensor's bytes and of every other value, in a fixed order) what it holds.  Reading a
# checkpoint recomputes the checksum (a flipped byte in a tensor, inside an intact zip, is refused); resuming
# compares the fingerprint with the resumed run's, and loading a run for evaluation, prediction or export compares
# it with config.json and with the data found.  Checkpoints without the record (emukg < 0.3, the reference's) are
# read as before.  CRC-32 finds damage, not tampering (crafted files are kept out by ``weights_only`` loading);
# it costs one pass over the tensors, about 1 s per GB.

SHAPING = ("model", "hidden_dim", "gamma", "double_entity_embedding", "double_relation_embedding")
"""The settings that shape a model's parameters or scores (besides the model's own ``options``)."""


def data_fingerprint(kg) -> dict:
    """What identifies a graph's ids and training data: counts, and SHA-256 digests of the entity and relation names
    in id order and of the training triples' ids (a few ms for FB15k-237; about 1 s at 2.5 M entities)."""
    import hashlib

    import numpy as np

    def names(seq) -> str:
        digest = hashlib.sha256()
        for start in range(0, len(seq), 65536):
            digest.update(("\n".join(seq[start:start + 65536]) + "\n").encode("utf-8"))
        return digest.hexdigest()

    train = np.ascontiguousarray(kg.train.cpu().numpy(), dtype=np.int64)
    return {"entities": int(kg.num_entities), "relations": int(kg.num_relations), "entity_names": names(kg.entities),
            "relation_names": names(kg.relations), "train": hashlib.sha256(memoryview(train).cast("B")).hexdigest()}


def model_fingerprint(cfg: Config, model) -> dict:
    """The model part of a fingerprint: its name, shaping settings (:data:`SHAPING` and the model's options) and
    the shape of every parameter."""
    from .models import model_options

    settings = {name: getattr(cfg, name) for name in SHAPING}
    settings.update(model_options(cfg))
    return {"settings": json.loads(json.dumps(settings, default=str)),
            "shapes": {k: list(v.shape) for k, v in model.state_dict().items()}}


def checksum(state: Any) -> str:
    """CRC-32 (hex) of ``state`` without its ``"integrity"`` entry: every tensor's dtype, shape and bytes, every
    other value's ``repr``, walked in key order."""
    import zlib

    import torch

    crc = 0

    def feed(obj, key: str) -> None:
        nonlocal crc
        crc = zlib.crc32(key.encode("utf-8"), crc)
        if isinstance(obj, torch.Tensor):
            t = obj.detach()
            t = t.cpu() if t.device.type != "cpu" else t
            crc = zlib.crc32(f"{t.dtype}{tuple(t.shape)}".encode(), crc)
            if t.numel():
                crc = zlib.crc32(memoryview(t.contiguous().reshape(-1).view(torch.uint8).numpy()), crc)
        elif isinstance(obj, dict):
            for k in sorted(obj, key=str):
                if key == "" and k == "integrity":
                    continue
                feed(obj[k], f"{key}/{k}")
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                feed(v, f"{key}[{i}]")
        else:
            crc = zlib.crc32(repr(obj).encode("utf-8"), crc)

    feed(state, "")
    return f"{crc:08x}"


def seal(state: dict, fingerprint: dict) -> dict:
    """``state`` with its integrity record (fingerprint and checksum) added, ready for ``torch.save``."""
    return {**state, "integrity": {"fingerprint": fingerprint, "checksum": checksum(state)}}


def fingerprint_differences(saved: dict, expected: dict, prefix: str = "") -> list[str]:
    """The entries (``model.settings.gamma``, ``data.train``) where ``saved`` differs from ``expected``, in the
    entries ``expected`` has (a partial ``expected`` compares those alone), for a message."""
    out = []
    for key in sorted(expected):
        a, b = saved.get(key), expected.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += fingerprint_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def read_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """``torch.load`` a checkpoint file (weights only) and verify its checksum; missing, damaged or altered →
    :class:`EmukgError`."""
    import torch

    path = Path(path)
    if not path.is_file():
        kind = path_kind(path)
        if kind:
            raise EmukgError(f"{path}: is {kind}, not a checkpoint file; restore the run's checkpoint.")
        raise EmukgError(f"{path}: checkpoint not found; is this a run folder written by emukg train?")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except PermissionError:
        raise EmukgError(f"{path}: cannot read the checkpoint (permission denied); make the file readable.") from None
    except Exception as exc:  # damaged or foreign file
        raise EmukgError(f"{path}: cannot read the checkpoint ({type(exc).__name__}); it is damaged or not an emukg checkpoint.") from None
    record = state.get("integrity") if isinstance(state, dict) else None
    if record is not None:
        if not isinstance(record, dict) or not isinstance(record.get("checksum"), str):
            raise EmukgError(f"{path}: its integrity record is damaged; restore the checkpoint from a copy or train again.")
        if checksum(state) != record["checksum"]:
            raise EmukgError(f"{path}: its contents do not match their checksum (the file was damaged or altered after "
                             "it was written); restore the checkpoint from a copy or train again.")
    return state


def check_fingerprint(path, state: dict, expected: dict, what: str, fix: str) -> None:
    """Refuse the checkpoint ``state`` (read from ``path``) when its fingerprint differs from ``expected`` in the
    parts ``expected`` has: one sentence naming the entries that differ, ``what`` it was compared with, and
    ``fix``.  A checkpoint without a fingerprint (older emukg, the reference's) passes."""
    saved = ((state.get("integrity") or {}).get("fingerprint") if isinstance(state, dict) else None)
    if not isinstance(saved, dict):
        return
    diff = fingerprint_differences(saved, expected)
    if diff:
        shown = ", ".join(diff[:4]) + (f" and {len(diff) - 4} more" if len(diff) > 4 else "")
        raise EmukgError(f"{path}: the checkpoint belongs to another run than {what} (its {shown} differ); {fix}.")


def checkpoint_file(run_dir: str | os.PathLike, checkpoint: str = "best") -> str:
    """The file ``checkpoint`` ('best' or 'last') names in ``run_dir``: ``best_model`` when asked for and present,
    else the last ``checkpoint``."""
    return RunFolder(run_dir).checkpoint_file(checkpoint)


def _try_resolve(name_or_path: str) -> Path | None:
    """The dataset folder ``name_or_path`` names, or None; a registered name may be downloaded (as before)."""
    from .data.registry import find_registered, resolve_dataset

    if not name_or_path or not str(name_or_path).strip():
        return None
    try:
        return resolve_dataset(name_or_path, download=find_registered(str(name_or_path)) is not None)
    except EmukgError:
        return None


def find_run_data(run: RunFolder, cfg: Config, dataset: str | os.PathLike | None = None) -> tuple[Path, str, bool]:
    """Where the run's data is: ``(folder, display name, given)``.

    Order: ``dataset`` (a name or a folder) when given; else the absolute path in config.json's
    ``"dataset_record"`` if it still exists (a warning is logged when its files' sha256 differ from the record);
    else the recorded name through the dataset resolver; else the ``dataset`` string as recorded.  Nothing found
    → :class:`ParamError` asking for ``dataset``.
    """
    from .data.registry import file_digests, find_registered, resolve_dataset

    if dataset is not None:
        text = os.fspath(dataset)
        try:
            folder = resolve_dataset(text, download=find_registered(text) is not None)
        except EmukgError as exc:
            reason = str(exc)
            raise ParamError("dataset", text, reason[len(text) + 2:] if reason.startswith(f"{text}: ") else reason) from None
        info = None if Path(text).expanduser().is_dir() else find_registered(text)
        return folder, info.name if info else folder.name, True
    raw = run.read_json(CONFIG)
    record = raw.get("dataset_record") if isinstance(raw, dict) else None
    record = record if isinstance(record, dict) else {}
    recorded_path = record.get("path")
    if isinstance(recorded_path, str) and Path(recorded_path).is_dir():
        folder = Path(recorded_path)
        expected = record.get("sha256") if isinstance(record.get("sha256"), dict) else {}
        if expected:
            actual = file_digests(folder, tuple(expected))
            changed = sorted(n for n in expected if actual.get(n) != expected[n])
            if changed:
                log.warning("%s: the dataset at %s changed since the run was trained (%s differ from the record in %s)",
                            run.path, folder, ", ".join(changed), run.file(CONFIG))
        return folder, str(record.get("name") or folder.name), False
    for candidate in (record.get("name"), cfg.dataset):
        if isinstance(candidate, str):
            folder = _try_resolve(candidate)
            if folder is not None:
                info = None if Path(candidate).expanduser().is_dir() else find_registered(candidate)
                return folder, info.name if info else folder.name, False
    name = record.get("name") or cfg.dataset
    where = f" (recorded at {recorded_path})" if isinstance(recorded_path, str) else ""
    raise ParamError("dataset", "", f"{run.file(CONFIG)}: the run's dataset {name!r}{where} is not found; "
                     "pass {dataset} NAME_OR_FOLDER.")


def load_run(run_dir: str | os.PathLike, checkpoint: str = "best", device="cpu",
             dataset: str | os.PathLike | None = None):
    """Load ``(config, kg, model)`` from a run folder.

    ``checkpoint='best'`` uses ``best_model`` when it exists (else the last checkpoint); ``'last'`` the
    last ``checkpoint``.  The data is found by :func:`find_run_data` (``dataset``: a
    registered name or a folder); data whose entity or relation count differs from the checkpoint's is refused.
    """
    from .data import load_folder
    from .models import build_model, model_options

    run = RunFolder(run_dir)
    if not run.path.is_dir():
        raise EmukgError(f"{run.path}: run folder not found; pass a folder written by a training run.")
    name = run.checkpoint_file(checkpoint)
    cfg = run.read_config()
    state = read_checkpoint(run.file(name))
    weights = state.get("model_state_dict") if isinstance(state, dict) else None
    if not isinstance(weights, dict):
        raise EmukgError(f"{run.file(name)}: holds no model weights; it is damaged or not an emukg checkpoint.")
    folder, data_name, given = find_run_data(run, cfg, dataset)
    kg = load_folder(folder, name=data_name)
    for what, have, table in (("entities", kg.num_entities, weights.get("entity_embedding")),
                              ("relations", kg.num_relations, weights.get("relation_embedding"))):
        if table is not None and getattr(table, "ndim", 0) >= 1 and int(table.shape[0]) != have:
            where = "" if given else f"{run.file(CONFIG)}: the run's data at {folder} "
            raise ParamError("dataset", os.fspath(dataset) if given else "",
                             f"{where}has {have} {what} but the checkpoint {name} has {int(table.shape[0])}; "
                             "pass the data the run was trained on with {dataset} NAME_OR_FOLDER.")
    model = build_model(cfg.model, kg.num_entities, kg.num_relations, cfg.hidden_dim, cfg.gamma,
                        cfg.double_entity_embedding, cfg.double_relation_embedding, **model_options(cfg))
    # the checkpoint's fingerprint: it must be this run's (config.json) and fit the data's ids; other training
    # triples over the same ids (a new split, a grown graph) are evaluated with a warning
    check_fingerprint(run.file(name), state, {"model": model_fingerprint(cfg, model)}, f"{run.file(CONFIG)} describes",
                      "put back the run's own checkpoint")
    saved = (state.get("integrity") or {}).get("fingerprint", {}).get("data")
    if isinstance(saved, dict):
        data = data_fingerprint(kg)
        ids = [k for k in ("entity_names", "relation_names") if saved.get(k) != data[k]]
        if ids:
            where = f"the data at {braces(folder)}" if given else f"{braces(run.file(CONFIG))}: the run's data at {braces(folder)}"
            raise ParamError("dataset", os.fspath(dataset) if given else "",
                             f"{where} names its {' and '.join({'entity_names': 'entities', 'relation_names': 'relations'}[k] for k in ids)} otherwise than the data "
                             f"the checkpoint {name} was trained on (same counts, other names or order), so its ids "
                             "mean other things; pass the run's own data with {dataset} NAME_OR_FOLDER.")
        if saved.get("train") != data["train"]:
            log.warning("%s: the training triples of the data at %s differ from those the run was trained on; "
                        "the filtered metrics use this data's triples", run.path, folder)
    try:
        model.load_state_dict(weights)
    except (KeyError, RuntimeError) as exc:
        raise EmukgError(f"{run.file(name)}: the saved model does not match config.json ({str(exc).splitlines()[0]}).") from None
    model = model.to(device).eval()
    model.attach(kg)  # the graph of a message-passing model (NBFNet)
    return cfg, kg, model
