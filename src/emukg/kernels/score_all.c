/* Evaluation kernels: filtered rank counting for link prediction, without a Python loop over queries.
 *
 *   emukg_rank_fused  scoring and ranking in one pass.  For every query q and entity e it computes
 *                        L1 (TransE)          D[q,e] = sum_i |Q[q,i] - E[e,i]|                    (smaller = better)
 *                        DOT (DistMult, ComplEx)  D[q,e] = sum_i Q[q,i] * E[e,i]                 (larger = better)
 *                        COMPLEX_L1 (RotatE)  D[q,e] = sum_i sqrt((Qre-Ere)^2 + (Qim-Eim)^2)      (smaller = better)
 *                     (the metric codes of emukg_kernels.h, shared with candidates.c and emukg.kernels.Metric)
 *                     and counts per query the candidates better than the answer and better-or-equal, skipping
 *                     the excluded entities (the known answers, and the answer itself).  The score matrix is
 *                     never written: a block of TQ queries (vector lanes) x EB entities keeps its accumulators
 *                     in registers over the feature loop, then compares them with the answer's value.
 *                     Work is split into tasks (group of query tiles, range of entities kept in L2) over OpenMP
 *                     threads.  Exclusions are a per-task bit mask (one bit per lane) built from the CSR lists.
 *
 *   emukg_rank_dense  ranking only, from a precomputed score block S (queries x slice of entities), for any
 *                     model; NaN scores rank as -inf (worst).
 *
 * Exclusions come as CSR: for query q the excluded entity ids are ex_vals[ex_start[q] .. ex_start[q]+ex_count[q])
 * (sorted ascending, as the filter index stores them); the answer ans[q] is excluded in addition.
 *
 * Exactness: every value is an in-order float sum over the feature axis (i = 0, 1, ..., dim-1), one IEEE
 * rounding per operation (an explicit fma for DOT), in the register-blocked kernel and in the scalar code
 * that computes the answer's own value alike, so the answer and its competitors are compared on bit-identical
 * arithmetic and exact ties (e.g. duplicate embeddings) stay ties.  (The FMA with a multiplier of exactly 1
 * used to accumulate L1 rounds once, like the add it replaces.)  Inputs must be finite; the caller
 * checks, and routes non-finite queries to its PyTorch path.
 */
#define _POSIX_C_SOURCE 200112L /* posix_memalign */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "emukg_kernels.h"
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX512F__) || defined(__AVX__)
#include <immintrin.h>
#endif

#ifndef VW
#if defined(__AVX512F__)
#define VW 16           /* lanes per vector */
#else
#define VW 8
#endif
#endif
#ifndef NV
#define NV 2            /* vectors of queries per tile */
#endif
#define TQ (VW * NV)    /* queries per tile (lanes); at most 32 (one exclusion bit each) */
#ifndef EB
#define EB 6            /* entities per register block */
#endif
#ifndef GROUP
#define GROUP 8         /* tiles per task */
#endif
#ifndef RANGE_BYTES
#define RANGE_BYTES (256 * 1024) /* entity rows per task: L2-resident */
#endif
#ifndef USE_FMA_ACC
#define USE_FMA_ACC 1
#endif

typedef float vf __attribute__((vector_size(VW * 4)));
typedef int32_t vi __attribute__((vector_size(VW * 4)));
typedef uint32_t vu __attribute__((vector_size(VW * 4)));

static inline vf vload(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline vf vbcast(float x) { return x - (vf){0}; } /* a splat that keeps the sign of -0 */
static inline vf vabs(vf x) { return (vf)((vi)x & 0x7fffffff); }

/* acc + x with one rounding; on FMA hardware issued as fma(x, 1, acc) so it runs on the multiply pipes and
 * leaves the add pipes to the subtraction (identical result: x*1 is exact). */
static inline vf vacc(vf acc, vf x) {
#if USE_FMA_ACC && defined(__AVX512F__) && VW == 16
    return (vf)_mm512_fmadd_ps((__m512)x, _mm512_set1_ps(1.0f), (__m512)acc);
#elif USE_FMA_ACC && defined(__FMA__) && VW == 8
    return (vf)_mm256_fmadd_ps((__m256)x, _mm256_set1_ps(1.0f), (__m256)acc);
#else
    return acc + x;
#endif
}

/* fma(a, b, acc) with one rounding, as the scalar fmaf below. */
static inline vf vfma(vf a, vf b, vf acc) {
#if defined(__AVX512F__) && VW == 16
    return (vf)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)acc);
#elif defined(__FMA__) && VW == 8
    return (vf)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)acc);
#else
    vf r;
    for (int l = 0; l < VW; l++) r[l] = fmaf(a[l], b[l], acc[l]);
    return r;
#endif
}

static inline vf vsqrt(vf x) {
#if defined(__AVX512F__) && VW == 16
    return (vf)_mm512_sqrt_ps((__m512)x);
#elif defined(__AVX__) && VW == 8
    return (vf)_mm256_sqrt_ps((__m256)x);
#else
    vf r;
    for (int l = 0; l < VW; l++) r[l] = sqrtf(x[l]);
    return r;
#endif
}

/* ------------------------------------------------------------------------------------------------------- */
/* Scalar distance of one (query, entity) pair: the same operations, in the same order, as one lane below.  */
static float dist_scalar(int metric, const float *q, const float *e, int64_t dim) {
    float s = 0.0f;
    if (metric == EMUKG_METRIC_L1) {
        for (int64_t i = 0; i < dim; i++) s = s + fabsf(q[i] - e[i]);
    } else if (metric == EMUKG_METRIC_DOT) {
        for (int64_t i = 0; i < dim; i++) s = fmaf(q[i], e[i], s);
    } else {
        int64_t h = dim / 2;
        for (int64_t i = 0; i < h; i++) {
            float dr = q[i] - e[i], di = q[h + i] - e[h + i];
            s = s + sqrtf(dr * dr + di * di);
        }
    }
    return s;
}

/* One register block: NV query vectors (TQ queries of one tile, transposed: qt[i*TQ + lane]) against NB
 * entities e0..e0+NB-1 (rows of E with leading dimension ld).  Adds the counts to cgt/cge (as negative
 * numbers: comparison masks are -1). */
#define DEFINE_BLOCK_(NB)                                                                                    \
    static inline __attribute__((always_inline)) void block_l1_##NB(                                       \
        int metric, const float *qt, const float *E, int64_t ld, int64_t dim, int64_t e0, const vf *thr,    \
        const uint32_t *mask, const vu *lanebit, vi *cgt, vi *cge) {                                        \
        vf acc[NV][NB];                                                                                     \
        const float *er[NB];                                                                                \
        for (int j = 0; j < NB; j++) {                                                                      \
            er[j] = E + (e0 + j) * ld;                                                                      \
            for (int v = 0; v < NV; v++) acc[v][j] = (vf){0};                                               \
        }                                                                                                   \
        if (metric == EMUKG_METRIC_L1) {                                                                    \
            for (int64_t i = 0; i < dim; i++) {                                                             \
                vf q[NV];                                                                                   \
                for (int v = 0; v < NV; v++) q[v] = vload(qt + i * TQ + v * VW);                            \
                for (int j = 0; j < NB; j++) {                                                              \
                    vf b = vbcast(er[j][i]);                                                                \
                    for (int v = 0; v < NV; v++) acc[v][j] = vacc(acc[v][j], vabs(q[v] - b));               \
                }                                                                                           \
            }                                                                                               \
        } else if (metric == EMUKG_METRIC_DOT) {                                                            \
            for (int64_t i = 0; i < dim; i++) {                                                             \
                vf q[NV];                                                                                   \
                for (int v = 0; v < NV; v++) q[v] = vload(qt + i * TQ + v * VW);                            \
                for (int j = 0; j < NB; j++) {                                                              \
                    vf b = vbcast(er[j][i]);                                                                \
                    for (int v = 0; v < NV; v++) acc[v][j] = vfma(q[v], b, acc[v][j]);                      \
                }                                                                                           \
            }                                                                                               \
        } else {                                                                                            \
            int64_t h = dim / 2;                                                                            \
            for (int64_t i = 0; i < h; i++) {                                                               \
                vf qr[NV], qi[NV];                                                                          \
                for (int v = 0; v < NV; v++) {                                                              \
                    qr[v] = vload(qt + i * TQ + v * VW);                                                    \
                    qi[v] = vload(qt + (h + i) * TQ + v * VW);                                              \
                }                                                                                           \
                for (int j = 0; j < NB; j++) {                                                              \
                    vf br = vbcast(er[j][i]), bi = vbcast(er[j][h + i]);                                    \
                    for (int v = 0; v < NV; v++) {                                                          \
                        vf dr = qr[v] - br, di = qi[v] - bi;                                                \
                        acc[v][j] = acc[v][j] + vsqrt(dr * dr + di * di);                                   \
                    }                                                                                       \
                }                                                                                           \
            }                                                                                               \
        }                                                                                                   \
        for (int j = 0; j < NB; j++) {                                                                      \
            vu m = (vu){0} + mask[j];                                                                       \
            for (int v = 0; v < NV; v++) {                                                                  \
                vi keep = (m & lanebit[v]) == 0;                                                            \
                if (metric == EMUKG_METRIC_DOT) { /* similarity: better = larger */                         \
                    cgt[v] += (acc[v][j] > thr[v]) & keep;                                                  \
                    cge[v] += (acc[v][j] >= thr[v]) & keep;                                                 \
                } else {           /* distance: better = smaller */                                         \
                    cgt[v] += (acc[v][j] < thr[v]) & keep;                                                  \
                    cge[v] += (acc[v][j] <= thr[v]) & keep;                                                 \
                }                                                                                           \
            }                                                                                               \
        }                                                                                                   \
    }

#define DEFINE_BLOCK(NB) DEFINE_BLOCK_(NB)
DEFINE_BLOCK(EB)
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define BLOCK_EB CAT(block_l1_, EB)
DEFINE_BLOCK(1)

static int64_t lower_bound(const int64_t *a, int64_t n, int64_t x) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (a[mid] < x) lo = mid + 1; else hi = mid;
    }
    return lo;
}

int emukg_score_all_lanes(void) { return TQ; }

/* Fused distance + rank counting.
 *   Q      (nq, dim) row-major query vectors (TransE: h+r for tail queries, t-r for head queries; RotatE: h∘r, t∘conj(r))
 *   E      (n_ent, ld) entity table, the first dim columns used
 *   ans    (nq) answer entity per query
 *   ex_*   CSR exclusions (see top); ex_start/ex_count may be NULL (no exclusions besides the answer)
 *   gt, ge (nq) outputs: # candidates with smaller distance / with smaller-or-equal distance, answer excluded
 *   thr    (nq) output: the answer's distance
 * Memory: 4 ceil(nq/TQ) TQ (dim + 1) bytes of query tiles, 8 nq (nparts + 1) bytes of exclusion offsets (nparts
 * entity ranges of RANGE_BYTES), and per thread a 4-byte mask word per entity of a range.
 * Returns EMUKG_OK, or EMUKG_ENOMEM when an allocation fails (outputs then undefined). */
int emukg_rank_fused(int metric, const float *Q, int64_t nq, int64_t dim, const float *E, int64_t n_ent, int64_t ld,
                  const int64_t *ans, const int64_t *ex_start, const int64_t *ex_count, const int64_t *ex_vals,
                  int64_t *gt, int64_t *ge, float *thr_out, int nthreads) {
    if (nq <= 0) return 0;
    if (nthreads < 1) nthreads = 1;
    int64_t ntiles = (nq + TQ - 1) / TQ;
    float *Qt = NULL, *thr = NULL;
    if (posix_memalign((void **)&Qt, 64, (size_t)(ntiles * dim * TQ) * sizeof(float))) return EMUKG_ENOMEM;
    if (posix_memalign((void **)&thr, 64, (size_t)(ntiles * TQ) * sizeof(float))) { free(Qt); return EMUKG_ENOMEM; }
    /* transpose the queries into tiles; pad lanes with zeros */
    memset(Qt, 0, (size_t)(ntiles * dim * TQ) * sizeof(float));
    for (int64_t q = 0; q < nq; q++) {
        float *tile = Qt + (q / TQ) * dim * TQ;
        int lane = (int)(q % TQ);
        for (int64_t i = 0; i < dim; i++) tile[i * TQ + lane] = Q[q * dim + i];
    }
    for (int64_t q = 0; q < ntiles * TQ; q++) {
        thr[q] = q < nq ? dist_scalar(metric, Q + q * dim, E + ans[q] * ld, dim) : -1.0f;
        if (q < nq) { thr_out[q] = thr[q]; gt[q] = 0; ge[q] = 0; }
    }
    /* Tasks: (group of tiles, entity range).  A range of RANGE_BYTES of entity rows stays in L2 while every
     * tile of the group streams past it; ranges and groups shrink until every thread has several tasks. */
    int64_t range = RANGE_BYTES / (dim * (int64_t)sizeof(float));
    if (range < 8 * EB) range = 8 * EB;
    if (range > n_ent) range = n_ent;
    range = (range + EB - 1) / EB * EB;
    int64_t group = GROUP;
    int64_t nparts = (n_ent + range - 1) / range, ngroups = (ntiles + group - 1) / group;
    while (group > 1 && ngroups * nparts < 4 * (int64_t)nthreads) {
        group /= 2;
        ngroups = (ntiles + group - 1) / group;
    }
    while (ngroups * nparts < 4 * (int64_t)nthreads && range > 8 * EB) {
        range = (range / 2 + EB - 1) / EB * EB;
        nparts = (n_ent + range - 1) / range;
    }
    int64_t ntasks = ngroups * nparts;
    int failed = 0;
    /* where each query's (sorted) exclusion list enters each entity range: one merge walk per query */
    int64_t *ex_off = NULL;
    if (ex_start && ex_count) {
        ex_off = (int64_t *)malloc((size_t)(nq * (nparts + 1)) * sizeof(int64_t));
        if (!ex_off) { free(Qt); free(thr); return EMUKG_ENOMEM; }
#pragma omp parallel for schedule(static) num_threads(nthreads)
        for (int64_t q = 0; q < nq; q++) {
            const int64_t *vals = ex_vals + ex_start[q];
            int64_t cnt = ex_count[q], k = 0;
            for (int64_t p = 0; p <= nparts; p++) {
                int64_t bound = p * range;
                while (k < cnt && vals[k] < bound) k++;
                ex_off[q * (nparts + 1) + p] = ex_start[q] + k;
            }
            ex_off[q * (nparts + 1) + nparts] = ex_start[q] + cnt;
        }
    }

#pragma omp parallel num_threads(nthreads)
    {
        uint32_t *mask = NULL;
        if (posix_memalign((void **)&mask, 64, (size_t)range * sizeof(uint32_t))) {
#pragma omp atomic write
            failed = 1;
        }
        vu lanebit[NV];
        for (int v = 0; v < NV; v++)
            for (int l = 0; l < VW; l++) lanebit[v][l] = 1u << (v * VW + l);
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < ntasks; task++) {
            if (!mask) continue;
            int64_t grp = task / nparts, part = task % nparts;
            int64_t e_begin = part * range, e_end = e_begin + range < n_ent ? e_begin + range : n_ent;
            if (e_begin >= e_end) continue;
            int64_t t_end = (grp + 1) * group < ntiles ? (grp + 1) * group : ntiles;
            for (int64_t tile = grp * group; tile < t_end; tile++) {
                int64_t q0 = tile * TQ;
                int nlanes = (int)(nq - q0 < TQ ? nq - q0 : TQ);
                /* exclusion mask: bit `lane` of mask[e - e_begin] set when entity e is excluded for that query */
                memset(mask, 0, (size_t)(e_end - e_begin) * sizeof(uint32_t));
                for (int lane = 0; lane < nlanes; lane++) {
                    int64_t q = q0 + lane;
                    uint32_t bit = 1u << lane;
                    int64_t a = ans[q];
                    if (a >= e_begin && a < e_end) mask[a - e_begin] |= bit;
                    if (ex_off) {
                        const int64_t *o = ex_off + q * (nparts + 1) + part;
                        for (int64_t k = o[0]; k < o[1]; k++) {
                            const int64_t v = ex_vals[k]; /* bounds test: an unsorted list must not write outside */
                            if (v >= e_begin && v < e_end) mask[v - e_begin] |= bit;
                        }
                    }
                }
                const float *qt = Qt + tile * dim * TQ;
                vf th[NV];
                vi cgt[NV], cge[NV];
                for (int v = 0; v < NV; v++) {
                    th[v] = vload(thr + q0 + v * VW);
                    cgt[v] = (vi){0};
                    cge[v] = (vi){0};
                }
                int64_t e = e_begin;
                for (; e + EB <= e_end; e += EB)
                    BLOCK_EB(metric, qt, E, ld, dim, e, th, mask + (e - e_begin), lanebit, cgt, cge);
                for (; e < e_end; e++)
                    block_l1_1(metric, qt, E, ld, dim, e, th, mask + (e - e_begin), lanebit, cgt, cge);
                for (int lane = 0; lane < nlanes; lane++) {
                    int64_t g = -(int64_t)cgt[lane / VW][lane % VW], h = -(int64_t)cge[lane / VW][lane % VW];
#pragma omp atomic
                    gt[q0 + lane] += g;
#pragma omp atomic
                    ge[q0 + lane] += h;
                }
            }
        }
        free(mask);
    }
    free(ex_off);
    free(Qt);
    free(thr);
    return failed ? EMUKG_ENOMEM : EMUKG_OK;
}

/* Ranking from a score block S (nq rows, n columns, row stride ld) holding entities col0 .. col0+n-1.
 * thr[q] is the answer's score.  NaN scores (in S or thr) count as -inf.  Adds to gt/ge (over the
 * non-excluded candidates of this block: > thr and >= thr) and to nan_count (NaN entries of the block). */
void emukg_rank_dense(const float *S, int64_t nq, int64_t n, int64_t ld, int64_t col0, const float *thr,
                      const int64_t *ans, const int64_t *ex_start, const int64_t *ex_count, const int64_t *ex_vals,
                      int64_t *gt, int64_t *ge, int64_t *nan_count, int nthreads) {
    if (nthreads < 1) nthreads = 1;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t q = 0; q < nq; q++) {
        const float *row = S + q * ld;
        float t = thr[q];
        if (t != t) t = -INFINITY;
        vf tv = vbcast(t);
        vi vg = (vi){0}, ve = (vi){0}, vn = (vi){0};
        int64_t j = 0;
        for (; j + VW <= n; j += VW) {
            vf s = vload(row + j);
            vg += s > tv;
            ve += s >= tv;
            vn += s != s;
        }
        int64_t cg = 0, ce = 0, cn = 0;
        for (int l = 0; l < VW; l++) { cg -= vg[l]; ce -= ve[l]; cn -= vn[l]; }
        for (; j < n; j++) {
            float s = row[j];
            cg += s > t;
            ce += s >= t;
            cn += s != s;
        }
        if (t == -INFINITY) ce += cn; /* NaN counts as -inf: ties with a -inf answer */
        /* remove the excluded candidates (the answer and, filtered, the known answers) */
        int64_t a = ans[q];
        if (a >= col0 && a < col0 + n) {
            float s = row[a - col0];
            if (s != s) s = -INFINITY;
            cg -= s > t;
            ce -= s >= t;
        }
        if (ex_start && ex_count) {
            const int64_t *vals = ex_vals + ex_start[q];
            int64_t cnt = ex_count[q];
            for (int64_t k = lower_bound(vals, cnt, col0); k < cnt && vals[k] < col0 + n; k++) {
                if (vals[k] == a || vals[k] < col0) continue; /* < col0 only if unsorted: never read outside */
                float s = row[vals[k] - col0];
                if (s != s) s = -INFINITY;
                cg -= s > t;
                ce -= s >= t;
            }
        }
        gt[q] += cg;
        ge[q] += ce;
        nan_count[q] += cn;
    }
}
