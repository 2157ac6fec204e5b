/* Row-sparse optimiser steps: Adagrad and lazy Adam on the U distinct rows a coalesced sparse gradient touches,
 * one pass over each row (read its gradient, parameter and state rows once, write them once) instead of PyTorch's
 * gather / element-wise passes / scatter (emukg.optim).
 *
 * Rows are given by distinct ids idx[0..U) (a coalesced COO gradient's sorted indices; the Python wrapper checks
 * that they are strictly increasing and below N), so no two threads write one row: static schedule over rows.
 *
 * Element operations.  Every element goes through the float32 operations of PyTorch's CPU kernels, in their order
 * and with their fused multiply-adds (ATen on torch 2.13, AVX2 build; checked on random values in the vectorised
 * body and in the scalar tail of a tensor, see tests/test_sparse_optim_kernel.py):
 *   t.addcmul_(a, b, value=v)   t = fma(v * a, b, t)          (the product v * a rounded first, then one fma)
 *   t.addcdiv_(a, b, value=v)   t = t + (v * a) / b           (three roundings, no fma)
 *   t.lerp_(e, w)  |w| < 0.5:   t = fma(w, e - t, t)
 *                  otherwise:   t = fma(w - 1, e - t, e)
 *   t / s, t.add_(s), t.mul_(s)                               one correctly rounded operation each
 * The file is compiled with -ffp-contract=off, so the fmaf calls below are the only fused operations.  Scalars
 * (lr, eps, betas, step size, bias correction) arrive as float32, rounded from Python's doubles as ATen rounds a
 * Scalar (static_cast<float>).
 *
 * The square root.  torch.sqrt on float32 CPU tensors is MKL's vmsSqrt in x86 builds, which is NOT correctly
 * rounded: on the development machine (AMD EPYC, AVX2) 15.5 % of random inputs come out 1 ulp away from sqrtf
 * (never more).  Bit-identity with torch.optim.Adagrad / Adam therefore needs torch's own sqrt, hence two forms:
 *   staged (exact)   the first half of a row's update (the sum / moments) copies the new sum / second moment row
 *                    to a buffer; the caller applies torch.sqrt_ to it (element-wise: any chunking); the second
 *                    half finishes the parameter row from that root.  emukg_adagrad_stage / emukg_adam_stage
 *                    pipeline it over chunks of rows: the second half of one chunk and the first half of the
 *                    next in one interleaved loop (their scattered rows' misses overlap; ~20 % faster than two
 *                    separate passes at 465,000 rows of a 2.5 M x 100 table).
 *   fused            emukg_adagrad_rows / emukg_adam_rows do everything in one pass with a correctly rounded
 *                    sqrt: state rows bit-identical, parameters off by at most 4 ulp of max(|param|, |step|)
 *                    per step (measured; the tests check it).
 *
 * Memory: nothing is allocated (each returns EMUKG_OK, the loader's common status contract).  Traffic per step
 * (bytes): fused Adagrad 20 U D, Adam 28 U D; staged Adagrad 36 U D, Adam 44 U D (with torch.sqrt_'s 8 U D).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__AVX__) || defined(__FMA__)
#include <immintrin.h>
#endif

#include "emukg_kernels.h"

#define MIN_PARALLEL_FLOATS 32768 /* below this many elements one thread: starting a team costs more */

#define ROW_AHEAD 4 /* rows ahead whose table lines are prefetched (the rows are scattered over gigabytes) */

/* prefetch row idx[u + ROW_AHEAD] of a table (for writing) */
static inline void ahead(const float *table, const int64_t *idx, int64_t u, int64_t U, int64_t D) {
    if (u + ROW_AHEAD >= U) return;
    const char *r = (const char *)(table + idx[u + ROW_AHEAD] * D);
    for (int64_t o = 0; o < D * 4; o += 64) __builtin_prefetch(r + o, 1);
}

static int team(int64_t U, int64_t D, int nthreads) {
    if (nthreads < 1 || U * D < MIN_PARALLEL_FLOATS) return 1;
    return nthreads;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Staged (exact) form.  Plain loops: gcc vectorises them (fmaf becomes vfmadd with -march=native). */

/* Adagrad, first half, one row: s = fma(g, g, s)  (sum.addcmul_(g, g, value=1); 1 * g = g exactly), and o = the new
 * row, whose square root the caller takes in place — except that o = 1 where s = 0 and g = 0.  MKL's sqrt takes a
 * slow path on zeros (measured: 58 ms instead of 16 for 46 M elements of which 16 % are zero, as EMU's masked
 * components leave them), and such an element's result does not depend on its root: the step is (-lr * ±0) / std
 * = ±0 for any std > 0 (torch's std is eps there), so the parameter gets the same bits either way. */
static inline void adagrad_sum_row(int64_t D, const float *restrict g, float *restrict s, float *restrict o) {
    for (int64_t j = 0; j < D; j++) {
        const float sj = fmaf(g[j], g[j], s[j]);
        s[j] = sj;
        o[j] = (sj == 0.0f && g[j] == 0.0f) ? 1.0f : sj;
    }
}

/* Adagrad, second half, one row, from r = torch.sqrt(new sum row):
 *   std = r + eps;  p = p + ((-lr) * g) / std      (param.addcdiv_(g, std, value=-lr)) */
static inline void adagrad_param_row(int64_t D, const float *restrict g, const float *restrict r, float *restrict p,
                                     float nlr, float eps) {
    for (int64_t j = 0; j < D; j++) p[j] = p[j] + (nlr * g[j]) / (r[j] + eps);
}

/* The staged (exact) Adagrad is pipelined over chunks of rows: one call finishes chunk A (second half: the
 * parameters, from the square roots rootA the caller took of the previous call's output) and starts chunk B (first
 * half: the sums, their new rows into outB), the two interleaved row by row so that the misses on the scattered
 * parameter and sum rows overlap; either chunk may be empty (nA or nB = 0).  The caller then takes torch.sqrt_ of
 * outB and passes it as the next call's rootA. */
int emukg_adagrad_stage(int64_t D, int64_t nA, const int64_t *idxA, const float *gA, const float *rootA, float *param,
                        float lr, float eps, int64_t nB, const int64_t *idxB, const float *gB, float *sum, float *outB,
                        int nthreads) {
    const float nlr = -lr;
    const int64_t n = nA > nB ? nA : nB;
#pragma omp parallel for num_threads(team(n, D, nthreads)) schedule(static)
    for (int64_t u = 0; u < n; u++) {
        if (u < nB) {
            ahead(sum, idxB, u, nB, D);
            adagrad_sum_row(D, gB + u * D, sum + idxB[u] * D, outB + u * D);
        }
        if (u < nA) {
            ahead(param, idxA, u, nA, D);
            adagrad_param_row(D, gA + u * D, rootA + u * D, param + idxA[u] * D, nlr, eps);
        }
    }
    return EMUKG_OK;
}

/* Lazy Adam (emukg.optim._adam_update), first half, one row, with w1 = 1 - beta1 and w2 = 1 - beta2 formed in double
 * by the caller as the Python expressions are:
 *   m = lerp(m, g, w1)                  exp_avg.lerp_(g, 1 - beta1)      (formula by |w1| < 0.5, see above)
 *   v = fma(w2 * g, g, v * beta2)       exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
 * and o = the new v row, whose square root the caller takes in place. */
static inline void adam_moment_row(int64_t D, const float *restrict g, float *restrict m, float *restrict v,
                                   float *restrict o, int base_is_m, float coeff, float beta2, float w2) {
    for (int64_t j = 0; j < D; j++) {
        const float gj = g[j], m0 = m[j];
        const float mj = fmaf(coeff, gj - m0, base_is_m ? m0 : gj);
        m[j] = mj;
        const float vj = fmaf(w2 * gj, gj, v[j] * beta2);
        v[j] = vj;
        o[j] = (vj == 0.0f && mj == 0.0f) ? 1.0f : vj; /* as in adagrad_sum_row: the step is ±0 whatever the root */
    }
}

/* Lazy Adam, second half, one row, from r = torch.sqrt(new v row) and the new m row:
 *   denom = r / bc2 + eps               (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
 *   p = p + ((-step_size) * m) / denom  param.addcdiv_(exp_avg, denom, value=-step_size) */
static inline void adam_param_row(int64_t D, const float *restrict r, const float *restrict m, float *restrict p,
                                  float nstep, float bc2, float eps) {
    for (int64_t j = 0; j < D; j++) p[j] = p[j] + (nstep * m[j]) / (r[j] / bc2 + eps);
}

/* Lazy Adam pipelined as emukg_adagrad_stage: chunk A's parameters (from rootA and its new m rows), chunk B's
 * moments (the new v rows into outB). */
int emukg_adam_stage(int64_t D, int64_t nA, const int64_t *idxA, const float *rootA, float *param, float step_size,
                     float bc2, float eps, int64_t nB, const int64_t *idxB, const float *gB, float *exp_avg,
                     float *exp_avg_sq, float *outB, float w1, float beta2, float w2, int nthreads) {
    const int base_is_m = fabsf(w1) < 0.5f;
    const float coeff = base_is_m ? w1 : w1 - 1.0f;
    const float nstep = -step_size;
    const int64_t n = nA > nB ? nA : nB;
#pragma omp parallel for num_threads(team(n, D, nthreads)) schedule(static)
    for (int64_t u = 0; u < n; u++) {
        if (u < nB) {
            ahead(exp_avg, idxB, u, nB, D);
            ahead(exp_avg_sq, idxB, u, nB, D);
            adam_moment_row(D, gB + u * D, exp_avg + idxB[u] * D, exp_avg_sq + idxB[u] * D, outB + u * D, base_is_m,
                            coeff, beta2, w2);
        }
        if (u < nA) {
            ahead(param, idxA, u, nA, D);
            adam_param_row(D, rootA + u * D, exp_avg + idxA[u] * D, param + idxA[u] * D, nstep, bc2, eps);
        }
    }
    return EMUKG_OK;
}

/* ---------------------------------------------------------------------------------------------------------------
 * Fused form (correctly rounded sqrt).  Eight lanes at a time with GCC vector types (+ - * / are the IEEE lane
 * operations), sqrt and fma by intrinsics where the CPU has them (else lane by lane: the same correctly rounded
 * results), the row's tail by the same operations in scalar code.  (A plain loop does not vectorise: sqrtf keeps
 * its errno branch, and #pragma GCC optimize("no-math-errno") does not reach these functions.) */
typedef float v8 __attribute__((vector_size(32)));

static inline v8 load8(const float *x) {
    v8 r;
    memcpy(&r, x, sizeof r);
    return r;
}

static inline void store8(float *x, v8 r) { memcpy(x, &r, sizeof r); }

static inline v8 splat8(float a) { return (v8){a, a, a, a, a, a, a, a}; }

static inline v8 vsqrt8(v8 x) {
#ifdef __AVX__
    return (v8)_mm256_sqrt_ps((__m256)x);
#else
    v8 r;
    for (int l = 0; l < 8; l++) r[l] = sqrtf(x[l]);
    return r;
#endif
}

/* a * b + c with one rounding */
static inline v8 vfma8(v8 a, v8 b, v8 c) {
#ifdef __FMA__
    return (v8)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#else
    v8 r;
    for (int l = 0; l < 8; l++) r[l] = fmaf(a[l], b[l], c[l]);
    return r;
#endif
}

static void adagrad_row(int64_t D, const float *restrict g, float *restrict p, float *restrict s, float nlr, float eps) {
    int64_t j = 0;
    const v8 nlr8 = splat8(nlr), eps8 = splat8(eps);
    for (; j + 8 <= D; j += 8) {
        const v8 gj = load8(g + j);
        const v8 sj = vfma8(gj, gj, load8(s + j));
        store8(s + j, sj);
        store8(p + j, load8(p + j) + (nlr8 * gj) / (vsqrt8(sj) + eps8));
    }
    for (; j < D; j++) {
        const float sj = fmaf(g[j], g[j], s[j]);
        s[j] = sj;
        p[j] = p[j] + (nlr * g[j]) / (sqrtf(sj) + eps);
    }
}

/* The whole Adagrad step of adagrad_sum_row + torch.sqrt_ + adagrad_param_row in one pass, with
 * sqrtf for torch.sqrt. */
int emukg_adagrad_rows(int64_t U, int64_t D, const int64_t *idx, const float *grad, float *param, float *sum, float lr,
                       float eps, int nthreads) {
    const float nlr = -lr;
#pragma omp parallel for num_threads(team(U, D, nthreads)) schedule(static)
    for (int64_t u = 0; u < U; u++) adagrad_row(D, grad + u * D, param + idx[u] * D, sum + idx[u] * D, nlr, eps);
    return EMUKG_OK;
}

/* base_is_m = |w1| < 0.5 picks lerp's formula (coeff = w1 and base m, or coeff = w1 - 1 and base g). */
static void adam_row(int64_t D, const float *restrict g, float *restrict p, float *restrict m, float *restrict v,
                     int base_is_m, float coeff, float beta2, float w2, float bc2, float eps, float nstep) {
    int64_t j = 0;
    const v8 coeff8 = splat8(coeff), beta28 = splat8(beta2), w28 = splat8(w2), bc28 = splat8(bc2), eps8 = splat8(eps),
             nstep8 = splat8(nstep);
    for (; j + 8 <= D; j += 8) {
        const v8 gj = load8(g + j), m0 = load8(m + j);
        const v8 mj = vfma8(coeff8, gj - m0, base_is_m ? m0 : gj);
        const v8 vj = vfma8(w28 * gj, gj, load8(v + j) * beta28);
        store8(m + j, mj);
        store8(v + j, vj);
        store8(p + j, load8(p + j) + (nstep8 * mj) / (vsqrt8(vj) / bc28 + eps8));
    }
    for (; j < D; j++) {
        const float gj = g[j], m0 = m[j];
        const float mj = fmaf(coeff, gj - m0, base_is_m ? m0 : gj);
        const float vj = fmaf(w2 * gj, gj, v[j] * beta2);
        m[j] = mj;
        v[j] = vj;
        p[j] = p[j] + (nstep * mj) / (sqrtf(vj) / bc2 + eps);
    }
}

/* The whole lazy Adam step of adam_moment_row + torch.sqrt_ + adam_param_row in one pass, with sqrtf
 * for torch.sqrt. */
int emukg_adam_rows(int64_t U, int64_t D, const int64_t *idx, const float *grad, float *param, float *exp_avg,
                    float *exp_avg_sq, float w1, float beta2, float w2, float step_size, float bc2, float eps,
                    int nthreads) {
    const float nstep = -step_size;
    const int base_is_m = fabsf(w1) < 0.5f;
    const float coeff = base_is_m ? w1 : w1 - 1.0f;
#pragma omp parallel for num_threads(team(U, D, nthreads)) schedule(static)
    for (int64_t u = 0; u < U; u++)
        adam_row(D, grad + u * D, param + idx[u] * D, exp_avg + idx[u] * D, exp_avg_sq + idx[u] * D, base_is_m, coeff,
                 beta2, w2, bc2, eps, nstep);
    return EMUKG_OK;
}

/* ---------------------------------------------------------------------------------------------------------------
 * The rows a row-sparse step touches (emukg.scoring.step_rows.compact_ids): the distinct ids of ids[0..n) in ascending order
 * (uniq[0..*U_out)) and each id's position among them (inverse), as torch.unique(sorted=True, return_inverse=True)
 * gives them, in linear time and without an N-sized index: mark the ids in a bitmap of the N rows (N/8 bytes: 312
 * KB for 2.5 M rows, cache-resident), count the marks before every 64-bit word, list the marked rows in order, and
 * rank every id as (marks before its word) + popcount(marks below it in its word).  Ids must lie in [0, N) (the
 * caller checks).  Allocates N/4 bytes (bitmap and counts); returns EMUKG_OK or EMUKG_ENOMEM.  ~4 ms for 0.5 M ids
 * of 2.5 M rows. */
int emukg_compact_rows(int64_t n, const int64_t *ids, int64_t N, int64_t *uniq, int64_t *inverse, int64_t *U_out,
                       int nthreads) {
    const int64_t words = (N + 63) / 64;
    uint64_t *bits = (uint64_t *)calloc((size_t)(words > 0 ? words : 1), sizeof(uint64_t));
    int64_t *before = (int64_t *)malloc(sizeof(int64_t) * (size_t)(words > 0 ? words : 1));
    if (!bits || !before) {
        free(bits);
        free(before);
        return EMUKG_ENOMEM;
    }
    for (int64_t i = 0; i < n; i++) bits[ids[i] >> 6] |= (uint64_t)1 << (ids[i] & 63);
    int64_t U = 0;
    for (int64_t w = 0; w < words; w++) {
        before[w] = U;
        for (uint64_t m = bits[w]; m; m &= m - 1) uniq[U++] = w * 64 + __builtin_ctzll(m);
    }
    if (nthreads < 1 || n < 65536) nthreads = 1;
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const int64_t w = ids[i] >> 6;
        const uint64_t below = ((uint64_t)1 << (ids[i] & 63)) - 1;
        inverse[i] = before[w] + __builtin_popcountll(bits[w] & below);
    }
    free(bits);
    free(before);
    *U_out = U;
    return EMUKG_OK;
}
