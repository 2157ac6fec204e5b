"""EMU (Embedding MUtation): the mutation of candidates and its counter-based mask.

For a positive (h, r, t⁺) corrupted on one side, the candidates are X = [x⁺, x₁, …, xₙ] (the positive's entity
first, then n negatives).  EMU scores the mutated candidates

    X' = M ⊙ X + (1 − M) ⊙ x⁺,      M ~ Bernoulli(p) per component, the positive's row all ones,

so every component of a negative is kept with probability p and otherwise replaced by the positive's component
(real and imaginary parts are separate components).  Gradients reach the negatives' rows through M and the
positive's row through 1 − M.  The Mixup ablation uses one ratio a ~ Beta(2, 1) per candidate instead:
X' = a·X + (1 − a)·x⁺ — the ratio weights the *negative*, like p does (E[a] = 2/3), drawn as a = √U.

**Mask RNG.**  The mask is a counter-based hash, not a stream: keep(b, j, i) depends only on a 64-bit step seed
(two 32-bit words s0, s1 drawn each step from the run's seeded ``torch.Generator`` on the training device, see
:func:`draw_seed`) and the position (b, j, i)::

    key(b, j) = h32(h32((b·C + j) ^ s0) + s1)        tab(i) = h32(h32(i ^ s1) + s0)
    keep      = (h32(key ^ tab(i)) >> 8) < round(p · 2²⁴)          (all arithmetic mod 2³²)

with h32 a 32-bit xorshift-multiply avalanche hash.  P(keep) = round(p·2²⁴)/2²⁴ (|error| < 3·10⁻⁸).  The native
kernel (``kernels/candidates.c``) evaluates it inside its loops, so the forward and backward passes regenerate the
identical mask without storing it; :func:`hash_mask` evaluates the same formula with torch integer ops on any
device, so the PyTorch path (GPU, other models, no compiler) draws the *same* mask for the same seed, and the
whole run stays determined by ``--seed``.  Nothing is drawn with NumPy or on the host.

Candidate scoring (the fused kernel, the PyTorch path, the step's gradient table) lives in :mod:`emukg.scoring`;
its docstring gives the memory of a step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import emukg.kernels as kernels

MASK_BITS = 24
HASH_CHUNK = 1 << 20  # elements of int64 hash temporaries at a time in hash_mask
_M32 = 0xFFFFFFFF


# --- the counter-based mask RNG ------------------------------------------------------------------
def keep_threshold(p: float) -> int:
    """Integer threshold T with P(keep) = T / 2²⁴ nearest to ``p``."""
    return int(min(max(round(float(p) * (1 << MASK_BITS)), 0), 1 << MASK_BITS))


def draw_seed(generator: torch.Generator) -> torch.Tensor:
    """Two 32-bit words (int64 tensor of shape (2,), on the generator's device) seeding one step's mask."""
    return torch.randint(0, 1 << 32, (2,), generator=generator, device=generator.device, dtype=torch.int64)


def _mul32_(x: torch.Tensor, c: int, tmp: torch.Tensor) -> torch.Tensor:
    """x ← x·c mod 2³² in place, for int64 tensors holding values in [0, 2³²), without int64 overflow."""
    torch.mul(x, c >> 16, out=tmp)
    tmp.bitwise_and_(0xFFFF).bitwise_left_shift_(16)
    return x.mul_(c & 0xFFFF).add_(tmp).bitwise_and_(_M32)


def _h32_(x: torch.Tensor) -> torch.Tensor:
    tmp = torch.empty_like(x)
    x.bitwise_xor_(torch.bitwise_right_shift(x, 16, out=tmp))
    _mul32_(x, 0x7FEB352D, tmp)
    x.bitwise_xor_(torch.bitwise_right_shift(x, 15, out=tmp))
    _mul32_(x, 0x846CA68B, tmp)
    return x.bitwise_xor_(torch.bitwise_right_shift(x, 16, out=tmp))


def h32(x: torch.Tensor) -> torch.Tensor:
    """The kernel's 32-bit avalanche hash on int64 tensors holding values in [0, 2³²)."""
    return _h32_(x.to(torch.int64, copy=True))


def hash_mask(seed: torch.Tensor, B: int, C: int, D: int, p: float, use_kernel: bool | None = None,
              row0: int = 0) -> torch.Tensor:
    """The EMU keep mask (B, C, D) bool on ``seed``'s device; column 0 (the positive) is all True.

    Bit-identical to the mask the fused kernel generates for the same seed (see the module docstring).  On the
    CPU the native library evaluates it when available (``use_kernel`` None/True); otherwise torch integer ops do,
    in cache-sized chunks.  ``row0``: the mask of batch rows ``row0 .. row0 + B − 1`` (one row chunk of a larger
    batch; the hash counts rows from the batch's first).
    """
    device = seed.device
    if use_kernel is not False and device.type == "cpu" and _lib() is not None:
        return kernel_mask(seed, B, C, D, p, row0=row0)
    s0, s1 = seed[0].to(torch.int64) & _M32, seed[1].to(torch.int64) & _M32
    T = keep_threshold(p)
    i = torch.arange(D, device=device, dtype=torch.int64)
    tab = h32(((h32(i ^ s1) + s0) & _M32))
    out = torch.empty(B, C, D, dtype=torch.bool, device=device)
    rows_per_chunk = max(1, HASH_CHUNK // max(1, C * D))
    j = torch.arange(C, device=device, dtype=torch.int64)
    for b0 in range(0, B, rows_per_chunk):
        b1 = min(B, b0 + rows_per_chunk)
        r = (torch.arange(row0 + b0, row0 + b1, device=device, dtype=torch.int64)[:, None] * C + j) & _M32
        key = h32((h32(r ^ s0) + s1) & _M32)
        u = _h32_(key[:, :, None] ^ tab)
        torch.lt(u.bitwise_right_shift_(8), T, out=out[b0:b1])
    out[:, 0] = True
    return out


def mutate(X: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """X' = M ⊙ X + (1 − M) ⊙ x⁺ for candidates X (B, C, D) whose column 0 is x⁺; differentiable in X."""
    return torch.where(mask, X, X[:, :1])


def mixup_ratios(B: int, C: int, generator: torch.Generator) -> torch.Tensor:
    """One ratio a ~ Beta(2, 1) per candidate (a = √U), shape (B, C); column 0 (the positive) is 1."""
    a = torch.rand(B, C, generator=generator, device=generator.device).sqrt_()
    a[:, 0] = 1.0
    return a


def mixup(X: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """X' = a·X + (1 − a)·x⁺ with one ratio per candidate (``ratio`` (B, C)); column 0 of X is x⁺."""
    a = ratio.unsqueeze(-1).to(X.dtype)
    return a * X + (1 - a) * X[:, :1]


@dataclass
class Mutation:
    """How the candidates of one pass are changed before scoring: ``kind`` 'emu' (``seed``, ``p``) or 'mixup' (``ratio``)."""

    kind: str
    seed: torch.Tensor | None = None
    p: float = 1.0
    ratio: torch.Tensor | None = None
    row0: int = 0  # EMU: the candidates scored are batch rows row0, row0 + 1, … of the step (a data-parallel shard)

    @classmethod
    def emu(cls, p: float, generator: torch.Generator) -> "Mutation":
        return cls("emu", seed=draw_seed(generator), p=float(p))

    @classmethod
    def mix(cls, B: int, C: int, generator: torch.Generator) -> "Mutation":
        return cls("mixup", ratio=mixup_ratios(B, C, generator))

    def apply(self, X: torch.Tensor, row0: int = 0) -> torch.Tensor:
        """The mutated candidates X' of X (B, C, D); ``row0``: X holds the batch rows ``row0 .. row0 + B − 1``."""
        if self.kind == "emu":
            B, C, D = X.shape
            return mutate(X, hash_mask(self.seed, B, C, D, self.p, row0=self.row0 + row0))
        if self.kind == "mixup":
            return mixup(X, self.ratio[row0:row0 + X.shape[0]])
        raise ValueError(f"unknown mutation kind {self.kind!r}")


# --- candidate scoring ---------------------------------------------------------------------------
# The native kernel is reached only through the checked wrappers of emukg.kernels (cand_fwd, cand_bwd, emu_mask).
def _lib():
    return kernels.load("candidates")


def kernel_available() -> bool:
    """Whether the native candidate-scoring kernel compiled and loaded (CPU only)."""
    return _lib() is not None


def kernel_mask(seed: torch.Tensor, B: int, C: int, D: int, p: float, row0: int = 0) -> torch.Tensor:
    """The mask the native kernel uses, as (B, C, D) bool, of batch rows ``row0 .. row0 + B − 1``; requires the kernel."""
    s0, s1 = (int(v) & _M32 for v in seed.tolist())
    return kernels.emu_mask(B, C, D, s0, s1, keep_threshold(p), row0=row0).view(torch.bool)


def expected_keep_fraction(p: float) -> float:
    """P(keep) actually realised by the 24-bit threshold (differs from p by < 3·10⁻⁸)."""
    return keep_threshold(p) / float(1 << MASK_BITS)
