/* Fused candidate scoring for one training step (CE, EMU, Mixup, sigmoid losses) on the CPU.
 *
 * For every positive b and candidate column j (column 0 is the positive's own entity x+):
 *
 *     x'_bj = x_bj                                   (mut = 0: plain candidates)
 *     x'_bj = M_bj (.) x_bj + (1 - M_bj) (.) x+_b    (mut = 1: EMU, M from the counter-based hash below)
 *     x'_bj = a_bj x_bj + (1 - a_bj) x+_b            (mut = 2: Mixup, one ratio per candidate)
 *
 *     L1:          s_bj = bias - sum_i |q_bi - x'_bji|      (TransE: q = h + r, or t - r for head-batch)
 *     DOT:         s_bj = bias + sum_i  q_bi * x'_bji       (DistMult, ComplEx: q = the model's query vector)
 *     COMPLEX_L1:  s_bj = bias - sum_k |q_bk - x'_bjk|       (RotatE: complex coordinates k, real parts in the
 *                   first half of a row, imaginary parts in the second; q = h o e^{i theta}, or t o e^{-i theta})
 *
 * where x_bj = E[cand[b, j]] and x+_b = E[cand[b, 0]].  Column 0 is never mutated.  Nothing of size
 * B x C x D is ever stored: the backward pass regenerates the identical mask from the same (seed, b, j, i).
 *
 * EMU mask RNG (must match emukg.emu.hash_mask bit for bit).  h32 is a 32-bit avalanche hash
 * (xorshift-multiply, "lowbias32" constants); all arithmetic is modulo 2^32:
 *
 *     key(b, j) = h32(h32((b*C + j) ^ s0) + s1)
 *     tab(i)    = h32(h32(i ^ s1) + s0)
 *     u         = h32(key(b, j) ^ tab(i))
 *     keep      = (u >> 8) < T,   T = round(p * 2^24)      (24-bit uniform, P(keep) = T / 2^24)
 *
 * Backward: grad_q (B x D) and a dense grad_E (N x D).  Every thread owns a slice of the batch and a private
 * N x D accumulator (thread 0 writes straight into grad_E); the accumulators are summed row-block-wise in a
 * fixed thread order, so the result is deterministic for a given thread count.  D (COMPLEX_L1: D/2) must be >= 16
 * (the Python wrapper pads narrower tables); the last partial vector chunk overlaps the previous one under a
 * lane mask.  Built with -ffp-contract=off: every product and sum is rounded as PyTorch rounds it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#include "emukg_kernels.h"

#pragma GCC optimize("no-math-errno") /* lets sqrtf vectorise; sqrt stays correctly rounded */

#define W 16
#ifndef PF_DIST
#define PF_DIST 2 /* candidates ahead whose rows are prefetched */
#endif
typedef float vf __attribute__((vector_size(64)));
typedef uint32_t vu __attribute__((vector_size(64)));
typedef int32_t vi __attribute__((vector_size(64)));
typedef uint8_t v16b __attribute__((vector_size(16)));

#define LANES ((vi){0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})

/* The mask hash (emu.py's h32): one definition for the scalar and the 16-lane versions. */
#define H32_MIX(x) do { (x) ^= (x) >> 16; (x) *= 0x7feb352dU; (x) ^= (x) >> 15; (x) *= 0x846ca68bU; (x) ^= (x) >> 16; } while (0)

static inline uint32_t h32(uint32_t x) { H32_MIX(x); return x; }

static inline vu h32v(vu x) { H32_MIX(x); return x; }

static inline vf ldf(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline vu ldu(const uint32_t *p) { vu v; memcpy(&v, p, sizeof v); return v; }
static inline void stf(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf bcast(float x) { return (vf){0} + x; }
static inline vf sel(vi m, vf a, vf b) { return (vf)(((vi)a & m) | ((vi)b & ~m)); }
static inline vf andm(vf a, vi m) { return (vf)((vi)a & m); }

static inline uint32_t row_key(int64_t b, int64_t C, int64_t j, uint32_t s0, uint32_t s1) {
    return h32(h32((uint32_t)(b * C + j) ^ s0) + s1);
}

static void make_tab(uint32_t *tab, int64_t D, uint32_t s0, uint32_t s1) {
    for (int64_t i = 0; i < D; i++) tab[i] = h32(h32((uint32_t)i ^ s1) + s0);
}

/* the mutated chunk x'[i:i+W] of candidate (b, j); *keep_out receives the keep mask (all ones if unmutated) */
static inline vf mutated(const float *x, const float *xp, int64_t i, int mut, int first, uint32_t key,
                         const uint32_t *tab, vu Tv, float a, vi *keep_out) {
    vf xv = ldf(x + i);
    if (first || mut == EMUKG_MUT_NONE) { *keep_out = (vi){0} - 1; return xv; }
    if (mut == EMUKG_MUT_EMU) {
        vu u = h32v(ldu(tab + i) ^ key);
        vi keep = (vi)((u >> 8) < Tv);
        *keep_out = keep;
        return sel(keep, xv, ldf(xp + i));
    }
    *keep_out = (vi){0} - 1;
    vf av = bcast(a);
    return av * xv + (bcast(1.0f) - av) * ldf(xp + i);
}

static inline float hsum(vf v) {
    float s = 0.0f;
    for (int l = 0; l < W; l++) s += v[l];
    return s;
}

static inline void thread_range(int64_t n, int t, int nt, int64_t *lo, int64_t *hi) {
    int64_t base = n / nt, extra = n % nt;
    *lo = t * base + (t < extra ? t : extra);
    *hi = *lo + base + (t < extra ? 1 : 0);
}

static inline vf vsqrt(vf x) {
    vf r;
    for (int l = 0; l < W; l++) r[l] = __builtin_sqrtf(x[l]);
    return r;
}

/* Chunks of one row: L1/DOT walk [0, D); COMPLEX_L1 walks the complex coordinates [0, D/2) and pairs the real
 * part at i with the imaginary part at D/2 + i.  The last chunk overlaps the previous one under a lane mask.
 * Allocates 4 D bytes (the hash table); returns EMUKG_OK, or EMUKG_ENOMEM with nothing written. */
int emukg_cand_fwd(int64_t B, int64_t C, int64_t D, const float *q, const float *E, const int64_t *cand,
                   int kind, float bias, int mut, uint32_t s0, uint32_t s1, uint32_t T, const float *ratio,
                   float *out, int nthreads) {
    uint32_t *tab = (uint32_t *)malloc(sizeof(uint32_t) * (size_t)D);
    if (!tab) return EMUKG_ENOMEM;
    make_tab(tab, D, s0, s1);
    const int64_t L = kind == EMUKG_METRIC_COMPLEX_L1 ? D / 2 : D;
    const int64_t tail_at = L - W;
    const vi tail_lanes = LANES >= (vi){0} + (int32_t)(W - L % W);
    const vi all_lanes = (vi){0} - 1;
    const vu Tv = (vu){0} + T;
    if (nthreads < 1) nthreads = 1;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t b = 0; b < B; b++) {
        const float *qb = q + b * D;
        const float *xp = E + cand[b * C] * D;
        for (int64_t j = 0; j < C; j++) {
            if (j + PF_DIST < C) {
                const char *nx = (const char *)(E + cand[b * C + j + PF_DIST] * D);
                for (int64_t o = 0; o < D * 4; o += 64) __builtin_prefetch(nx + o);
            }
            const float *x = E + cand[b * C + j] * D;
            const int first = (j == 0);
            const uint32_t key = (mut == EMUKG_MUT_EMU && !first) ? row_key(b, C, j, s0, s1) : 0;
            const float a = (mut == EMUKG_MUT_MIXUP) ? ratio[b * C + j] : 1.0f;
            vf acc = {0};
            vi keep;
            for (int64_t k = 0; k < L; k += W) {
                int64_t i = k;
                vi lanes = all_lanes;
                if (k + W > L) { i = tail_at; lanes = tail_lanes; }
                vf xv = mutated(x, xp, i, mut, first, key, tab, Tv, a, &keep);
                vf qv = ldf(qb + i);
                vf term;
                if (kind == EMUKG_METRIC_L1) {
                    term = (vf)((vu)(qv - xv) & 0x7fffffffU);
                } else if (kind == EMUKG_METRIC_DOT) {
                    term = qv * xv;
                } else {
                    vf xi = mutated(x, xp, L + i, mut, first, key, tab, Tv, a, &keep);
                    vf zr = qv - xv, zi = ldf(qb + L + i) - xi;
                    term = vsqrt(zr * zr + zi * zi);
                }
                acc += andm(term, lanes);
            }
            float s = hsum(acc);
            out[b * C + j] = kind == EMUKG_METRIC_DOT ? bias + s : bias - s;
        }
    }
    free(tab);
    return EMUKG_OK;
}

/* add the gradient gxv of candidate chunk x'[i:i+W] to its two sources: the candidate row (gx) and the positive
 * (gpb), according to the mutation */
static inline void route(float *gx, float *gpb, int64_t i, vf gxv, int mut, int first, vi keep, vf av, vf bv) {
    if (first) {
        stf(gpb + i, ldf(gpb + i) + gxv);
    } else if (mut == EMUKG_MUT_EMU) {
        stf(gx + i, ldf(gx + i) + andm(gxv, keep));
        stf(gpb + i, ldf(gpb + i) + andm(gxv, ~keep));
    } else if (mut == EMUKG_MUT_MIXUP) {
        stf(gx + i, ldf(gx + i) + av * gxv);
        stf(gpb + i, ldf(gpb + i) + bv * gxv);
    } else {
        stf(gx + i, ldf(gx + i) + gxv);
    }
}

/* gq: B x D or NULL; gE: N x D or NULL; scratch: (nthreads - 1) x N x D floats (unused when gE is NULL).
 * Allocates 4 D bytes (the hash table) plus, per thread, three 64-byte aligned rows of 4 ceil(D/16)*16 bytes.
 * Returns EMUKG_OK, or EMUKG_ENOMEM (gq and gE then hold no meaningful values). */
int emukg_cand_bwd(int64_t B, int64_t C, int64_t D, int64_t N, const float *q, const float *E,
                   const int64_t *cand, int kind, int mut, uint32_t s0, uint32_t s1, uint32_t T,
                   const float *ratio, const float *gout, float *gq, float *gE, float *scratch, int nthreads) {
    uint32_t *tab = (uint32_t *)malloc(sizeof(uint32_t) * (size_t)D);
    if (!tab) return EMUKG_ENOMEM;
    make_tab(tab, D, s0, s1);
    int failed = 0;
    const int64_t L = kind == EMUKG_METRIC_COMPLEX_L1 ? D / 2 : D;
    const int64_t tail_at = L - W;
    const vi tail_lanes = LANES >= (vi){0} + (int32_t)(W - L % W);
    const vi all_lanes = (vi){0} - 1;
    const vu Tv = (vu){0} + T;
    const size_t padD = (size_t)((D + W - 1) / W * W);
    if (nthreads < 1) nthreads = 1;
    if (nthreads > B) nthreads = (int)(B > 0 ? B : 1);
#pragma omp parallel num_threads(nthreads)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        float *ge = NULL;
        if (gE) {
            ge = t == 0 ? gE : scratch + (size_t)(t - 1) * (size_t)N * (size_t)D;
            memset(ge, 0, sizeof(float) * (size_t)N * (size_t)D);
        }
        float *gqb = (float *)aligned_alloc(64, sizeof(float) * padD);
        float *gpb = (float *)aligned_alloc(64, sizeof(float) * padD);
        float *gdummy = (float *)aligned_alloc(64, sizeof(float) * padD);
        int64_t lo, hi;
        thread_range(B, t, nt, &lo, &hi);
        if (!gqb || !gpb || !gdummy) {
#pragma omp atomic write
            failed = 1;
            hi = lo; /* skip the work; every thread still reaches the barrier below */
        }
        for (int64_t b = lo; b < hi; b++) {
            const float *qb = q + b * D;
            const int64_t pos = cand[b * C];
            const float *xp = E + pos * D;
            memset(gqb, 0, sizeof(float) * (size_t)D);
            memset(gpb, 0, sizeof(float) * (size_t)D);
            for (int64_t j = 0; j < C; j++) {
                if (j + PF_DIST < C) {
                    const int64_t c2 = cand[b * C + j + PF_DIST];
                    const char *nx = (const char *)(E + c2 * D);
                    for (int64_t o = 0; o < D * 4; o += 64) __builtin_prefetch(nx + o);
                    if (ge) {
                        const char *ng = (const char *)(ge + c2 * D);
                        for (int64_t o = 0; o < D * 4; o += 64) __builtin_prefetch(ng + o, 1);
                    }
                }
                const int64_t c = cand[b * C + j];
                const float *x = E + c * D;
                float *gx = ge ? ge + c * D : gdummy;
                const int first = (j == 0);
                const uint32_t key = (mut == EMUKG_MUT_EMU && !first) ? row_key(b, C, j, s0, s1) : 0;
                const float a = (mut == EMUKG_MUT_MIXUP) ? ratio[b * C + j] : 1.0f;
                const vf gv = bcast(gout[b * C + j]);
                const vf av = bcast(a), bv = bcast(1.0f) - bcast(a);
                for (int64_t k = 0; k < L; k += W) {
                    int64_t i = k;
                    vi lanes = all_lanes;
                    if (k + W > L) { i = tail_at; lanes = tail_lanes; }
                    vi keep;
                    vf xv = mutated(x, xp, i, mut, first, key, tab, Tv, a, &keep);
                    vf qv = ldf(qb + i);
                    if (kind == EMUKG_METRIC_COMPLEX_L1) {
                        vi keep_i;
                        vf xi = mutated(x, xp, L + i, mut, first, key, tab, Tv, a, &keep_i);
                        vf zr = qv - xv, zi = ldf(qb + L + i) - xi;
                        vf m = vsqrt(zr * zr + zi * zi);
                        vi nz = (vi)(m != bcast(0.0f));
                        vf gm = andm(gv / m, nz & lanes);  /* g / |z|, 0 where |z| = 0 */
                        vf gr = zr * gm, gi = zi * gm;      /* ds/dx' = g z / |z| */
                        stf(gqb + i, ldf(gqb + i) - gr);
                        stf(gqb + L + i, ldf(gqb + L + i) - gi);
                        route(gx, gpb, i, gr, mut, first, keep, av, bv);
                        route(gx, gpb, L + i, gi, mut, first, keep_i, av, bv);
                        continue;
                    }
                    vf gxv, gqv;
                    if (kind == EMUKG_METRIC_L1) {
                        vf z = qv - xv;
                        vi nz = (vi)(z != bcast(0.0f));
                        gxv = (vf)((((vu)gv) ^ ((vu)z & 0x80000000U)) & (vu)nz);  /* g * sign(z) */
                        gqv = -gxv;
                    } else {
                        gxv = gv * qv;
                        gqv = gv * xv;
                    }
                    gxv = andm(gxv, lanes);
                    stf(gqb + i, ldf(gqb + i) + andm(gqv, lanes));
                    route(gx, gpb, i, gxv, mut, first, keep, av, bv);
                }
            }
            if (gq) memcpy(gq + b * D, gqb, sizeof(float) * (size_t)D);
            if (ge) {
                float *gp = ge + pos * D;
                for (int64_t i = 0; i < D; i++) gp[i] += gpb[i];
            }
        }
        free(gqb);
        free(gpb);
        free(gdummy);
        if (ge && nt > 1) {
#pragma omp barrier
            int64_t rlo, rhi;
            thread_range(N, t, nt, &rlo, &rhi);
            for (int u = 1; u < nt; u++) {
                const float *src = scratch + (size_t)(u - 1) * (size_t)N * (size_t)D;
                for (int64_t e = rlo * D; e < rhi * D; e++) gE[e] += src[e];
            }
        }
    }
    free(tab);
    return failed ? EMUKG_ENOMEM : EMUKG_OK;
}

/* The EMU keep mask of a (B, C, D) block as bytes (1 = keep the candidate's component; column 0 all ones).
 * Used by the PyTorch path on the CPU for models without a fused kernel, and by tests.  Allocates 4 D bytes;
 * returns EMUKG_OK or EMUKG_ENOMEM. */
int emukg_emu_mask(int64_t B, int64_t C, int64_t D, uint32_t s0, uint32_t s1, uint32_t T, uint8_t *out,
                   int nthreads) {
    uint32_t *tab = (uint32_t *)malloc(sizeof(uint32_t) * (size_t)D);
    if (!tab) return EMUKG_ENOMEM;
    make_tab(tab, D, s0, s1);
    const vu Tv = (vu){0} + T;
    if (nthreads < 1) nthreads = 1;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < C; j++) {
            uint8_t *o = out + (b * C + j) * D;
            if (j == 0) { memset(o, 1, (size_t)D); continue; }
            const uint32_t key = row_key(b, C, j, s0, s1);
            int64_t i = 0;
            for (; i + W <= D; i += W) {
                vi keep = (vi)((h32v(ldu(tab + i) ^ key) >> 8) < Tv);
                v16b bytes = __builtin_convertvector(keep & 1, v16b);
                memcpy(o + i, &bytes, W);
            }
            for (; i < D; i++) o[i] = (uint8_t)((h32(key ^ tab[i]) >> 8) < T);
        }
    free(tab);
    return EMUKG_OK;
}
