"""How much of a random-walk SANS neighbourhood lies within k hops of its source (a measurement, not a test).

For each dataset, builds the ``restart`` and ``chained`` random-walk neighbourhoods (``k`` steps, ``w`` walks,
seed 0) and the k-hop ball of every entity: the entities at graph distance <= k on the undirected training
adjacency (self loops included).  For an entity with an edge the ball is exactly the exact SANS pattern
``A^k + A^(k-1)`` (a neighbour at distance d < k is reached in d + 2j steps), for one without edges it is the
entity itself.  The exact pattern comes from :func:`emukg.negatives.sans.exact_neighbourhood`; if that build is refused
for memory, the balls of ``--sample`` random sources are found by breadth-first search instead.

Printed per dataset and walk mode:

* ``entries``: mean neighbourhood entries per entity;
* ``entries in ball``: fraction of all neighbourhood entries (pooled over entities) within k hops; entities
  without training edges (those seen only in valid/test) have ``w`` uniformly random entries and pull it down,
  so ``(with edges)`` repeats it over the entities that have an edge;
* ``draws in ball``: probability that a negative candidate drawn uniformly from the kept entity's neighbourhood
  lies within k hops, with kept entities weighted as training uses them (an entity is kept once per training
  triple it heads, in tail-batch, and once per triple it tails, in head-batch): ``sum_e c_e f_e / sum_e c_e``
  with ``f_e`` the in-ball fraction of e's row;
* ``uniform``: the same probability for a candidate drawn uniformly from all entities (``|ball_e| / N``), the
  baseline.

Restart walks of exactly k steps end inside the ball by construction (1.0 is a check); chained walks start where
the previous walk ended and wander further.  Cost: the exact build (seconds to a minute for FB15k-237, k=3) and
one dense ``block x N`` boolean mask per block of sources.

    EMUKG_DATA_DIR=/work/shared/datasets python studies/sans_within_khop.py [--k 3 --walks 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

DATASETS = ["FB15k-237", "wn18rr"]
MODES = ["restart", "chained"]
_BLOCK = 1024


def _exact_balls(indptr, indices, N: int, k: int):
    """CSR of the k-hop balls of all entities, or None when the exact build is refused for memory."""
    from emukg.errors import EmukgError
    from emukg.negatives.sans import exact_neighbourhood

    try:
        return exact_neighbourhood(indptr, indices, N, k)
    except EmukgError as exc:
        print(f"  exact build refused ({exc}); using BFS from sampled sources", file=sys.stderr)
        return None


def _bfs_ball_mask(indptr, indices, N: int, k: int, sources: np.ndarray) -> np.ndarray:
    """(len(sources), N) bool: distance <= k, by a level-synchronous BFS over all sources at once."""
    import scipy.sparse as sp

    A = sp.csr_matrix((np.ones(indices.size, dtype=np.float32), indices, indptr), shape=(N, N))
    seen = np.zeros((sources.size, N), dtype=bool)
    seen[np.arange(sources.size), sources] = True
    frontier = seen.copy()
    for _ in range(k):
        nxt = np.asarray((sp.csr_matrix(frontier.astype(np.float32)) @ A).todense()) > 0
        frontier = nxt & ~seen
        seen |= nxt
    return seen


def measure(name: str, k: int, w: int, seed: int = 0, sample: int = 2000) -> dict:
    from emukg.data import load_dataset
    from emukg.negatives.sans import undirected_adjacency, walk_neighbourhood

    kg = load_dataset(name)
    N = kg.num_entities
    train = kg.train.numpy()
    indptr, indices = undirected_adjacency(train, N)
    has_edge = np.diff(indptr) > 0
    kept_weight = np.bincount(train[:, 0], minlength=N) + np.bincount(train[:, 2], minlength=N)
    t0 = time.perf_counter()
    balls = _exact_balls(indptr, indices, N, k)
    exact_s = time.perf_counter() - t0
    if balls is None:
        sources = np.sort(np.random.default_rng(seed).choice(N, size=min(N, sample), replace=False))
    else:
        sources = np.arange(N)
    hoods = {mode: walk_neighbourhood(indptr, indices, N, k, w, mode, seed) for mode in MODES}
    in_ball = {mode: np.zeros(sources.size) for mode in MODES}  # per source: entries within k hops
    size = {mode: np.zeros(sources.size) for mode in MODES}
    ball_size = np.zeros(sources.size)
    for b0 in range(0, sources.size, _BLOCK):
        src = sources[b0 : b0 + _BLOCK]
        rows = np.arange(src.size)
        if balls is None:
            mask = _bfs_ball_mask(indptr, indices, N, k, src)
        else:
            mask = np.zeros((src.size, N), dtype=bool)
            counts = balls[0][src + 1] - balls[0][src]
            mask[np.repeat(rows, counts), balls[1][balls[0][src[0]] : balls[0][src[-1] + 1]]] = True
            mask[rows, src] = True  # distance 0 (the exact pattern lacks it only for entities without edges)
        ball_size[b0 : b0 + src.size] = mask.sum(1)
        for mode, (hp, hi) in hoods.items():
            counts = hp[src + 1] - hp[src]
            ids = np.concatenate([hi[hp[s] : hp[s + 1]] for s in src]) if src.size else hi[:0]
            hit = mask[np.repeat(rows, counts), ids]
            size[mode][b0 : b0 + src.size] = counts
            in_ball[mode][b0 : b0 + src.size] = np.bincount(np.repeat(rows, counts), weights=hit, minlength=src.size)
    wgt = kept_weight[sources].astype(float)
    out = {"entities": N, "sources": int(sources.size), "exact": balls is not None, "exact_build_s": exact_s,
           "entities_with_edges": int(has_edge.sum()), "self_loop_triples": int((train[:, 0] == train[:, 2]).sum()),
           "mean_ball": float(ball_size.mean()),
           "uniform_in_ball": float((wgt * ball_size / N).sum() / wgt.sum())}
    for mode in MODES:
        frac = in_ball[mode] / np.maximum(size[mode], 1)
        out[mode] = {"entries": float(size[mode].mean()),
                     "entries_in_ball": float(in_ball[mode].sum() / size[mode].sum()),
                     "entries_in_ball_entities_with_edges": float(in_ball[mode][has_edge[sources]].sum()
                                                                  / size[mode][has_edge[sources]].sum()),
                     "draws_in_ball": float((wgt * frac).sum() / wgt.sum()),
                     "draws_in_ball_entities_with_edges": float((wgt * frac)[has_edge[sources]].sum() / wgt[has_edge[sources]].sum())}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=DATASETS)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--walks", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sample", type=int, default=2000, help="sources for the BFS fallback")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    results = {}
    print(f"k={args.k}, w={args.walks}, seed={args.seed}: fraction within {args.k} hops of the source")
    print(f"{'dataset':<11} {'mode':<8} {'entries':>9} {'entries in ball':>16} {'(with edges)':>13} {'draws in ball':>14} "
          f"{'uniform':>8}")
    for name in args.datasets:
        res = measure(name, args.k, args.walks, args.seed, args.sample)
        results[name] = res
        for mode in MODES:
            r = res[mode]
            print(f"{name:<11} {mode:<8} {r['entries']:>9.1f} {r['entries_in_ball']:>16.4f} "
                  f"{r['entries_in_ball_entities_with_edges']:>13.4f} {r['draws_in_ball']:>14.4f} {res['uniform_in_ball']:>8.4f}")
        print(f"{'':<11} ball: {res['mean_ball']:.1f} of {res['entities']} entities on average "
              f"({'exact, all' if res['exact'] else 'BFS, sampled'} {res['sources']} sources; "
              f"{res['entities'] - res['entities_with_edges']} without training edges; "
              f"{res['self_loop_triples']} self-loop triples)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
