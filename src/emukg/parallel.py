"""Data-parallel training on ``torch.distributed``: one process per rank, the same model on every rank.

Launch::

    torchrun --nproc_per_node P -m emukg train ...                   # one machine (or: emukg train --nproc P ...)
    torchrun --nnodes K --node_rank I --nproc_per_node P \\
             --rdzv_backend c10d --rdzv_endpoint HOST:PORT -m emukg train ...   # K machines, P processes each

:func:`setup` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``)
and joins the process group: **gloo** on the CPU, **NCCL** on CUDA (rank r uses ``cuda:LOCAL_RANK``).  Without
that environment (or with one process) nothing is initialised and training is the one-process loop.

**What a step does** (see :meth:`emukg.objectives.Objective.__call__`).  ``batch_size`` is the GLOBAL batch.  Every
rank draws the global batch's indices, negatives and EMU seed from the same seeded generator — so the generator
streams are identical on all ranks, not one stream per rank: this is what makes P processes train the same model
as one and lets a checkpoint resume with any world size — and keeps its contiguous shard of rows.  Losses are
normalised by the global batch, so the ranks' gradients sum to the one-process gradient; :meth:`Context.reduce_gradients`
sums them: dense gradients (relations, small dense entity tables) with one ``all_reduce`` of a flat buffer,
row-sparse ones (the entity table in sparse mode, :mod:`emukg.optim`) by ``all_gather`` of each rank's touched
rows (ids and values, padded to the largest rank's count) and one ``coalesce`` — only touched rows travel.
Every rank then applies the same optimiser step to the same sum, so the ranks' parameters stay identical.  The
only difference from one process is the summation order (a shard's EMU mask is keyed by its rows' global batch
index, ``Mutation.row0``, so it is the one-process mask's rows).  Cost of drawing the global batch on every rank: the samplers' work is
repeated P times (negligible for uniform negatives; the filtered/SANS samplers' share of a step does not shrink).

**Files.**  Rank 0 alone writes the run folder (logs, metrics, checkpoints, results); other ranks get a
:class:`FollowerFolder`, whose writers do nothing, and a silent logger.  Checkpoints hold no world size, so a run
resumes with any number of processes.  With several machines, the run folder must be on a file system every
node can read (a resumed run reads its checkpoint on every rank); the best model for the final evaluation is
broadcast from rank 0.

**Evaluation** splits a split's triples into P contiguous parts, each rank ranks its part's queries, and the
ranks are gathered on every rank in the one-process order (:meth:`Context.evaluate`): the metrics are those of
one process.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
from dataclasses import dataclass

import torch

from .errors import EmukgError
from .run_folder import RunFolder


@dataclass
class Context:
    """This process's place in the job: ``rank`` of ``world`` (``local_rank`` on its machine); ``world == 1``: no
    process group, every method is the one-process identity."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    # --- collectives ------------------------------------------------------------------------------
    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def broadcast_object(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if not self.active:
            return obj
        box = [obj if self.is_main else None]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Copy rank 0's parameters and buffers into every rank's ``module``."""
        if self.active:
            with torch.no_grad():
                for t in module.state_dict().values():
                    torch.distributed.broadcast(t, src=0)

    def sum_logs(self, logs: dict[str, float], device) -> dict[str, float]:
        """Each logged value summed over the ranks (each rank logs its share of the global batch's means)."""
        if not self.active or not logs:
            return logs
        t = torch.tensor(list(logs.values()), dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        return dict(zip(logs, t.tolist()))

    def reduce_gradients(self, params) -> None:
        """Sum every parameter's gradient over the ranks, in place (a missing gradient counts as zero).

        Row-sparse parameters (:func:`emukg.optim.is_row_sparse`) exchange their touched rows only; the others are
        summed densely in one flat ``all_reduce``.
        """
        if not self.active:
            return
        from .optim import is_row_sparse

        params = [p for p in params if p.requires_grad]
        dense = [p for p in params if not is_row_sparse(p)]
        if dense:
            flat = torch.cat([_dense_grad(p).reshape(-1) for p in dense])
            torch.distributed.all_reduce(flat)
            offset = 0
            for p in dense:
                n = p.numel()
                p.grad = flat[offset:offset + n].view_as(p)
                offset += n
        for p in params:
            if is_row_sparse(p):
                p.grad = self._sum_rows(p)

    def _sum_rows(self, p: torch.Tensor) -> torch.Tensor:
        from .optim import sparse_rows

        g = p.grad
        if g is None:
            idx = torch.zeros(0, dtype=torch.int64, device=p.device)
            val = torch.zeros((0, *p.shape[1:]), dtype=p.dtype, device=p.device)
        else:
            idx, val = sparse_rows(g if g.is_sparse else g.to_sparse(sparse_dim=1))
        count = torch.tensor([idx.numel()], dtype=torch.int64, device=p.device)
        counts = [torch.zeros_like(count) for _ in range(self.world)]
        torch.distributed.all_gather(counts, count)
        counts = [int(c) for c in counts]
        top = max(counts)
        pad = top - idx.numel()
        if pad:
            idx = torch.cat([idx, idx.new_zeros(pad)])
            val = torch.cat([val, val.new_zeros((pad, *val.shape[1:]))])
        all_idx = [torch.empty_like(idx) for _ in range(self.world)]
        all_val = [torch.empty_like(val) for _ in range(self.world)]
        torch.distributed.all_gather(all_idx, idx.contiguous())
        torch.distributed.all_gather(all_val, val.contiguous())
        idx = torch.cat([a[:c] for a, c in zip(all_idx, counts)])
        val = torch.cat([v[:c] for v, c in zip(all_val, counts)])
        return torch.sparse_coo_tensor(idx.unsqueeze(0), val, p.shape, check_invariants=False).coalesce()

    # --- evaluation -------------------------------------------------------------------------------
    def evaluate(self, model, kg, split: str, *, tie_policy: str = "realistic", memory_mb: float = 512,
                 protocol: str = "full", candidates: int = 500) -> dict:
        """:func:`emukg.evaluation.evaluate` of ``split`` with its triples split over the ranks; the metrics (on every
        rank) are those of one process, except the timing and memory-plan fields.  The sampled protocol (whose
        candidates are keyed by the query's position in its split) is cheap and runs whole on every rank."""
        from .evaluation import Ranks, compute_ranks, evaluate, metrics_report

        if not self.active or protocol != "full":
            return evaluate(model, kg, split, tie_policy=tie_policy, memory_mb=memory_mb, protocol=protocol,
                            candidates=candidates)
        triples = kg.splits[split]
        n = triples.shape[0]
        size, extra = divmod(n, self.world)
        start = self.rank * size + min(self.rank, extra)
        mine = triples[start:start + size + (1 if self.rank < extra else 0)]
        part = None
        if mine.shape[0]:
            rk = compute_ranks(model, kg, mine, memory_mb=memory_mb)
            part = (rk.optimistic, rk.pessimistic, rk.seconds, rk.nan_scores, rk.backend, rk.memory)
        parts = [None] * self.world
        torch.distributed.all_gather_object(parts, part)
        parts = [p for p in parts if p is not None]
        halves = [p[0].numel() // 2 for p in parts]

        def order(i):  # tail queries of every part, then head queries of every part (the one-process order)
            return torch.cat([p[i][:h] for p, h in zip(parts, halves)] + [p[i][h:] for p, h in zip(parts, halves)])

        rk = Ranks(split, order(0), order(1), triples[:, 1].cpu().repeat(2), max(p[2] for p in parts),
                   sum(p[3] for p in parts), parts[0][4] if len({p[4] for p in parts}) == 1 else "mixed", parts[0][5])
        return metrics_report(rk, kg, tie_policy, model_name=type(model).__name__)


def _dense_grad(p: torch.Tensor) -> torch.Tensor:
    """``p``'s gradient as a dense tensor (zeros when it has none)."""
    if p.grad is None:
        return torch.zeros_like(p)
    return p.grad.to_dense() if p.grad.is_sparse else p.grad


class FollowerFolder(RunFolder):
    """The run folder as a rank other than 0 sees it: readable, but every writer does nothing (rank 0 writes)."""

    def create(self, overwrite: bool = False) -> None:
        return None

    def clean_temp(self):
        return []

    def remove(self, name: str) -> None:
        return None

    def write_with(self, name: str, write):
        return self.file(name)

    def write_bytes(self, name: str, data: bytes):
        return self.file(name)

    def write_text(self, name: str, text: str):
        return self.file(name)

    def write_json(self, name: str, obj):
        return self.file(name)

    def save_npy(self, name: str, array):
        return self.file(name)

    def save_torch(self, name: str, obj):
        return self.file(name)

    def append_line(self, name: str, text: str):
        return self.file(name)


class SilentLogger:
    """The :class:`emukg.training.RunLogger` interface, doing nothing (ranks other than 0)."""

    record_metrics = False

    def info(self, message: str) -> None: ...

    def warning(self, message: str) -> None: ...

    def metrics(self, mode: str, step: int, metrics: dict) -> None: ...

    def truncate_metrics(self, after_step: int) -> None: ...

    def close(self) -> None: ...


# --- set-up ---------------------------------------------------------------------------------------------
def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def setup(device: torch.device) -> tuple[Context, torch.device]:
    """Join the process group described by torchrun's environment (once per process) and return this rank's
    :class:`Context` and training device (``cuda:LOCAL_RANK`` for CUDA).  One process: ``Context()``, ``device``."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
    else:
        world = env_world_size()
        rank = int(os.environ.get("RANK", "0"))
    if world <= 1:
        return Context(), device
    if not dist.is_available():
        raise EmukgError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed; train with one process.")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise EmukgError(f"LOCAL_RANK {local}: this machine has {torch.cuda.device_count()} CUDA GPUs; start at most "
                             "that many processes per node (--nproc_per_node).")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, **({"device_id": device} if device.type == "cuda" else {}))
        atexit.register(shutdown)
    return Context(rank=rank, world=world, local_rank=local, backend=dist.get_backend()), device


def shutdown() -> None:
    """Leave the process group (if this process joined one)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def launch(nproc: int, argv: list[str]) -> int:
    """``emukg train --nproc P ...``: run ``python -m emukg train ARGV`` as P processes on this machine through
    torchrun's Python entry (``torch.distributed.run --standalone``); returns its exit status."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "emukg", "train", *argv]
    return subprocess.call(cmd)


__all__ = ["Context", "FollowerFolder", "SilentLogger", "setup", "shutdown", "launch", "env_world_size"]
