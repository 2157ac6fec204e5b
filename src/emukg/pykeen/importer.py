"""A trained PyKEEN model as an emukg run folder: :func:`import_model`, :func:`import_saved` (``emukg import-pykeen``).

The folder is what ``emukg train`` writes, minus the training history, so ``emukg evaluate / predict / export``
(and :func:`emukg.load`) work on it::

    OUT/
      config.json       the emukg Config of the converted model (γ = 0, see emukg.pykeen.convert) + "imported_from"
      checkpoint        {"step": 0, "model_state_dict": …}
      entity_embedding.npy  relation_embedding.npy
      data/             the dataset in emukg's layout: entities.dict, relations.dict (PyKEEN's ids and labels),
                        train.txt (the triples factory's triples), valid.txt, test.txt (given, else empty)

Only the interactions emukg has convert (TransE with p = 1, DistMult, ComplEx; not RotatE, whose PyKEEN score differs; :func:`~emukg.pykeen.convert.why_not`
says why another does not); :func:`emukg.pykeen.evaluate` ranks any PyKEEN model.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from ..config import Config
from ..errors import EmukgError, ParamError
from ..io_utils import atomic_write_text
from ..run_folder import CHECKPOINT, CONFIG, RunFolder
from ..version import __version__
from .convert import to_emukg_model, why_not

DATA = "data"
# the command line's spelling of these parameters (emukg import-pykeen)
FLAGS = {"out_dir": "--out", "validation": "--valid", "testing": "--test", "directory": "PYKEEN_DIR",
         "overwrite": "--overwrite", "model": "PYKEEN_DIR"}


def _labels(mapping, count: int, what: str) -> list[str]:
    """Labels by id from PyKEEN's label → id map (a factory without labels: the ids as names)."""
    names = [str(i) for i in range(count)]
    for label, i in (mapping or {}).items():
        if 0 <= int(i) < count:
            names[int(i)] = str(label)
    for name in names:
        if any(c in name for c in "\t\r\n") or name != name.strip() or not name:
            raise EmukgError(f"the {what} label {name[:80]!r} holds a tab, a line break or edge whitespace, which "
                             "emukg's dataset files cannot store; relabel it in the triples factory.")
    if len(set(names)) != len(names):
        raise EmukgError(f"two {what} ids share a label in the triples factory; emukg's dataset files need unique names.")
    return names


def _triples_text(mapped: torch.Tensor, ents: list[str], rels: list[str]) -> str:
    rows = mapped.to("cpu", torch.long).reshape(-1, 3).tolist()
    return "".join(f"{ents[h]}\t{rels[r]}\t{ents[t]}\n" for h, r, t in rows)


def _mapped(x) -> torch.Tensor | None:
    if x is None:
        return None
    return torch.as_tensor(getattr(x, "mapped_triples", x)).to(torch.long).reshape(-1, 3)


def import_model(model, triples_factory, out_dir: str | os.PathLike, *, validation=None, testing=None,
                 overwrite: bool = False) -> Path:
    """Write ``model`` (trained on ``triples_factory``) as an emukg run folder at ``out_dir`` and return its path.

    ``validation`` / ``testing``: triples factories (sharing the training factory's ids) or (n, 3) id tensors, or
    paths of labelled ``head<TAB>relation<TAB>tail`` files copied as they are; None writes an empty split.
    """
    conv = to_emukg_model(model)
    if conv is None:
        raise ParamError("model", "", f"the PyKEEN {type(model).__name__} has no emukg equivalent "
                         f"({why_not(model) or 'unsupported representations'}); emukg has TransE with p=1, DistMult and "
                         "ComplEx — rank other models with emukg.pykeen.evaluate.", flags=FLAGS)
    run = RunFolder(out_dir)
    run.check_target("out_dir", flags=FLAGS)
    if run.has_run() and not overwrite:
        raise ParamError("out_dir", str(run.path), "already holds a run; pass another folder or {overwrite}.", flags=FLAGS)
    N, R = conv.model.num_entities, conv.model.num_relations
    ents = _labels(getattr(triples_factory, "entity_to_id", None), N, "entity")
    rels = _labels(getattr(triples_factory, "relation_to_id", None), R, "relation")
    data = (run.path / DATA).resolve()
    cfg = Config(dataset=str(data), model=conv.name, hidden_dim=conv.hidden_dim, gamma=0.0,
                 double_entity_embedding=conv.double_entity_embedding,
                 double_relation_embedding=conv.double_relation_embedding, save_path=str(run.path), do_train=False)
    cfg.validate()
    for param, split in (("validation", validation), ("testing", testing)):  # before anything is written
        if isinstance(split, (str, os.PathLike)) and not Path(split).is_file():
            raise ParamError(param, str(split), "is not a file; pass a labelled head<TAB>relation<TAB>tail file.",
                             flags=FLAGS)
    run.create(overwrite=overwrite)
    data.mkdir(exist_ok=True)
    atomic_write_text(data / "entities.dict", "".join(f"{i}\t{n}\n" for i, n in enumerate(ents)))
    atomic_write_text(data / "relations.dict", "".join(f"{i}\t{n}\n" for i, n in enumerate(rels)))
    atomic_write_text(data / "train.txt", _triples_text(_mapped(triples_factory), ents, rels))
    for name, split in (("valid.txt", validation), ("test.txt", testing)):
        if isinstance(split, (str, os.PathLike)):
            shutil.copyfile(split, data / name)
        else:
            mapped = _mapped(split)
            atomic_write_text(data / name, "" if mapped is None else _triples_text(mapped, ents, rels))
    from ._require import pykeen_version

    E = conv.model.entity_embedding.detach().cpu()
    Rw = conv.model.relation_embedding.detach().cpu()
    record = {"name": "pykeen-import", "path": str(data)}
    origin = {"pykeen": pykeen_version(), "model": type(model).__name__, "interaction": type(model.interaction).__name__}
    run.write_json(CONFIG, {**cfg.to_dict(), "emukg_version": __version__, "dataset_record": record,
                            "imported_from": origin})
    run.save_torch(CHECKPOINT, {"step": 0, "model_state_dict": {k: v.cpu() for k, v in conv.model.state_dict().items()},
                                "imported_from": origin})
    run.save_npy("entity_embedding.npy", E.numpy())
    run.save_npy("relation_embedding.npy", Rw.numpy())
    return run.path


def import_saved(directory: str | os.PathLike, out_dir: str | os.PathLike, *, validation=None, testing=None,
                 overwrite: bool = False) -> Path:
    """:func:`import_model` of what PyKEEN's ``result.save_to_directory(directory)`` wrote: ``trained_model.pkl``
    (a pickle: load only files you trust) and the ``training_triples`` folder."""
    from pykeen.triples import TriplesFactory

    folder = Path(directory)
    pkl, triples = folder / "trained_model.pkl", folder / "training_triples"
    for path, what in ((pkl, "trained_model.pkl"), (triples, "training_triples")):
        if not path.exists():
            raise ParamError("directory", str(folder), f"holds no {what}; pass the folder PyKEEN's "
                             "result.save_to_directory() wrote.", flags=FLAGS)
    try:
        model = torch.load(pkl, map_location="cpu", weights_only=False)
    except Exception as exc:  # a damaged or foreign pickle: one sentence
        raise EmukgError(f"{pkl}: cannot be loaded as a PyKEEN model ({type(exc).__name__}); is it PyKEEN's trained_model.pkl?") from None
    factory = TriplesFactory.from_path_binary(triples)
    return import_model(model, factory, out_dir, validation=validation, testing=testing, overwrite=overwrite)
