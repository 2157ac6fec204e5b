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
 *     key(b, j) = h32(h32((b*C + j) ^ s0) + s1)     (b counted from b0: a call may score rows b0.. of a batch)
 *     tab(i)    = h32(h32(i ^ s1) + s0)
 *     u         = h32(key(b, j) ^ tab(i))
 *     keep      = (u >> 8) < T,   T = round(p * 2^24)      (24-bit uniform, P(keep) = T / 2^24)
 *
 * Backward: grad_q (B x D), and the candidates' gradients ADDED to the rows of a gradient table gE: the whole
 * table (row = entity id) or a compact table of the rows one training step touches (row = slot[b, j]), so that a
 * step on millions of entities never allocates N x D.  Threads own gradient rows by entity id (owner() below):
 * no private N x D accumulators, deterministic for a given thread count.  D (COMPLEX_L1: D/2) must be >= 16
 * (the Python wrapper pads narrower tables); the last partial vector chunk overlaps the previous one under a
 * lane mask.  Built with -ffp-contract=off: every product and sum is rounded as PyTorch rounds it.
 *
 * Speed (issue 20; kernel figures in docs/results.md section K2).  Each kernel is specialised for its kind and
 * mutation at compile time (a switch over always-inline bodies), the forward scores a block of candidates at a time,
 * sums stay in registers (GCC had kept the lane sum's vector on the stack, a store-to-load round trip per chunk),
 * square roots are vector instructions (GCC had emitted 16 scalar ones per chunk), the EMU forward stores the
 * mask's bits for the backward (keep_out / keep_in) instead of the backward hashing every component again, and on
 * AVX-512 the L1/DOT backward of rows up to 128 floats keeps the query row and its sums in registers.  None of this
 * changes a sum's order: scores and gradients are the same bits as before (tests/test_golden_step.py).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#if defined(__AVX__)
#include <immintrin.h>
#endif

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

/* Lane masks without vector comparisons: GCC (12) splits a comparison of 16-lane vectors into 16 scalar compares
 * when the target has no 512-bit registers (AVX2), so masks come from the sign bit of a difference instead (exact
 * for the operand ranges at each use). */
static inline vi neg_mask(vi x) { return x >> 31; } /* -1 where x < 0 */
/* -1 where x != ±0 (NaN too, as a float != 0 says) */
static inline vi nonzero_mask(vf x) { return neg_mask((vi){0} - (vi)((vu)x & 0x7fffffffU)); }
/* -1 where the hash u keeps its component: (u >> 8) < T, both below 2^25 */
static inline vi keep_mask(vu u, vu Tv) { return neg_mask((vi)(u >> 8) - (vi)Tv); }

static inline uint32_t row_key(int64_t b, int64_t C, int64_t j, uint32_t s0, uint32_t s1) {
    return h32(h32((uint32_t)(b * C + j) ^ s0) + s1);
}

static void make_tab(uint32_t *tab, int64_t D, uint32_t s0, uint32_t s1) {
    for (int64_t i = 0; i < D; i++) tab[i] = h32(h32((uint32_t)i ^ s1) + s0);
}

/* A chunk's keep mask as 16 bits (bit l = lane l) and back: the forward stores them (emukg_cand_fwd's keep), so the
 * backward reads 2 bytes per chunk instead of hashing it again. */
static inline __attribute__((always_inline)) uint16_t pack_keep(vi keep) {
#if defined(__AVX512DQ__)
    __m512i v;
    memcpy(&v, &keep, sizeof v);
    return (uint16_t)_mm512_movepi32_mask(v); /* one instruction: the lanes' sign bits */
#elif defined(__AVX__)
    __m256 lo, hi;
    memcpy(&lo, &keep, sizeof lo);
    memcpy(&hi, (const char *)&keep + sizeof lo, sizeof hi);
    return (uint16_t)(_mm256_movemask_ps(lo) | _mm256_movemask_ps(hi) << 8);
#else
    uint16_t m = 0;
    for (int l = 0; l < W; l++) m |= (uint16_t)((keep[l] & 1) << l);
    return m;
#endif
}

static inline __attribute__((always_inline)) vi unpack_keep(uint16_t m) {
#if defined(__AVX512DQ__)
    const __m512i v = _mm512_movm_epi32((__mmask16)m); /* one instruction: lane l = -1 where bit l is set */
    vi r;
    memcpy(&r, &v, sizeof r);
    return r;
#else
    return (vi){0} - (((vi){0} + (int32_t)m) >> LANES & 1);
#endif
}

/* the EMU-mutated chunk x'[i:i+W] from its stored keep mask m */
static inline __attribute__((always_inline)) vf memo_mutated(const float *x, const float *xp, int64_t i, uint16_t m,
                                                              vi *keep_out) {
    const vi keep = unpack_keep(m);
    *keep_out = keep;
    return sel(keep, ldf(x + i), ldf(xp + i));
}

/* the mutated chunk x'[i:i+W] of candidate (b, j); *keep_out receives the keep mask (all ones if unmutated) */
static inline __attribute__((always_inline)) vf mutated(const float *x, const float *xp, int64_t i, int mut, int first,
                                                         uint32_t key, const uint32_t *tab, vu Tv, float a, vi *keep_out) {
    vf xv = ldf(x + i);
    if (first || mut == EMUKG_MUT_NONE) { *keep_out = (vi){0} - 1; return xv; }
    if (mut == EMUKG_MUT_EMU) {
        vu u = h32v(ldu(tab + i) ^ key);
        vi keep = keep_mask(u, Tv);
        *keep_out = keep;
        return sel(keep, xv, ldf(xp + i));
    }
    *keep_out = (vi){0} - 1;
    vf av = bcast(a);
    return av * xv + (bcast(1.0f) - av) * ldf(xp + i);
}

/* Sums of the 16 lanes in registers.  hsum_serial: lane by lane, 0 + l0 + l1 + ... + l15 (the L1/DOT/COMPLEX_L1
 * kernels' order, kept bit for bit; written with shuffles because GCC kept a lane-indexed vector on the stack, a
 * store-to-load round trip per chunk that made the forward twice as slow).  hsum: by halving (the extended
 * metrics' order). */
typedef float vf8 __attribute__((vector_size(32)));
typedef float vf4 __attribute__((vector_size(16)));
static inline __attribute__((always_inline)) float hsum(vf v) {
    vf8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) + __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
    vf4 c = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
    return (c[0] + c[2]) + (c[1] + c[3]);
}

static inline __attribute__((always_inline)) float hsum_serial(vf v) {
    const vf4 c[4] = {__builtin_shufflevector(v, v, 0, 1, 2, 3), __builtin_shufflevector(v, v, 4, 5, 6, 7),
                      __builtin_shufflevector(v, v, 8, 9, 10, 11), __builtin_shufflevector(v, v, 12, 13, 14, 15)};
    float s = 0.0f;
    for (int h = 0; h < 4; h++)
        for (int l = 0; l < 4; l++) s += c[h][l];
    return s;
}

/* hsum_serial of four vectors at once, out[u] = 0 + a[u][0] + ... + a[u][15] for u = 0..3: the same additions in the
 * same order, made four candidates to one 4-lane add (a 4x4 transpose within each 128-bit group, then 16 adds along
 * the lanes).  One chain of 16 dependent adds serves the four sums instead of four chains and 64 scalar adds (the
 * lane sums were 40 % of the L1 forward's time). */
#if defined(__AVX512F__)
static inline __attribute__((always_inline)) void hsum_serial4(const vf a[4], float out[4]) {
    /* t01lo per group h: a0[4h], a1[4h], a0[4h+1], a1[4h+1]; t01hi: the same of lanes 4h+2, 4h+3 */
    const vf t01lo = __builtin_shufflevector(a[0], a[1], 0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13, 29);
    const vf t01hi = __builtin_shufflevector(a[0], a[1], 2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14, 30, 15, 31);
    const vf t23lo = __builtin_shufflevector(a[2], a[3], 0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13, 29);
    const vf t23hi = __builtin_shufflevector(a[2], a[3], 2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14, 30, 15, 31);
    /* c[k] per group h: a0[4h+k], a1[4h+k], a2[4h+k], a3[4h+k] */
    const vf c[4] = {
        __builtin_shufflevector(t01lo, t23lo, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29),
        __builtin_shufflevector(t01lo, t23lo, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31),
        __builtin_shufflevector(t01hi, t23hi, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29),
        __builtin_shufflevector(t01hi, t23hi, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31)};
    vf4 s = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int k = 0; k < 4; k++) s += __builtin_shufflevector(c[k], c[k], 0, 1, 2, 3);
    for (int k = 0; k < 4; k++) s += __builtin_shufflevector(c[k], c[k], 4, 5, 6, 7);
    for (int k = 0; k < 4; k++) s += __builtin_shufflevector(c[k], c[k], 8, 9, 10, 11);
    for (int k = 0; k < 4; k++) s += __builtin_shufflevector(c[k], c[k], 12, 13, 14, 15);
    memcpy(out, &s, sizeof s);
}
#endif

static inline void thread_range(int64_t n, int t, int nt, int64_t *lo, int64_t *hi) {
    int64_t base = n / nt, extra = n % nt;
    *lo = t * base + (t < extra ? t : extra);
    *hi = *lo + base + (t < extra ? 1 : 0);
}

/* Row ownership in the backward passes: the gradient row of candidate c (an entity id) is written by one thread
 * alone, the owner of its block of OWN_BLOCK ids, so threads never race on a row and need no private N x D
 * accumulators; the sums that belong to a query (its gradient, the positive's share, TransD/HAKE's aux) are kept
 * per thread and summed in thread order afterwards.  Blocks of 16 rows span a whole number of cache lines (16 D
 * floats = D lines), so in a whole-table gradient two threads never write one line (no false sharing).  The result
 * is deterministic for a given thread count, and identical whether the gradient rows are the whole table or a
 * compact table of the step's rows (slot), because ownership follows the entity id. */
#define OWN_BLOCK 16
static inline int owner(int64_t c, int nt) { return (int)(((uint64_t)c / OWN_BLOCK) % (uint64_t)nt); }

/* the columns j of one batch row (ids cb[0..C)) whose candidate thread t owns, in order; returns their count */
static inline int64_t owned_cols(const int64_t *cb, int64_t C, int t, int nt, int64_t *own) {
    int64_t n = 0;
    if ((nt & (nt - 1)) == 0) { /* a power of two (1, 2, 4 threads...): the owner is a mask of the block, not a
                                 * 64-bit division per candidate (which took a fifth of the L1 backward) */
        const uint64_t m = (uint64_t)nt - 1;
        for (int64_t j = 0; j < C; j++) {
            own[n] = j;
            n += (int64_t)((((uint64_t)cb[j] / OWN_BLOCK) & m) == (uint64_t)t);
        }
        return n;
    }
    for (int64_t j = 0; j < C; j++) { /* branchless: the owner test is a coin flip per candidate */
        own[n] = j;
        n += owner(cb[j], nt) == t;
    }
    return n;
}

/* Prefetch the candidate row of column j2 of batch row b (ids cb) and, with a gradient table, its gradient row (for
 * writing): bytes [lo, hi) of each (a backward's rows ahead of the one it works on). */
static inline __attribute__((always_inline)) void prefetch_rows(const float *E, const float *gE, const int64_t *cb,
                                                                 const int64_t *slot, int64_t b, int64_t C, int64_t j2,
                                                                 int64_t D, int64_t lo, int64_t hi) {
    const char *nx = (const char *)(E + cb[j2] * D);
    for (int64_t o = lo; o < hi; o += 64) __builtin_prefetch(nx + o);
    if (gE) {
        const char *ng = (const char *)(gE + (slot ? slot[b * C + j2] : cb[j2]) * D);
        for (int64_t o = lo; o < hi; o += 64) __builtin_prefetch(ng + o, 1);
    }
}

/* What the backward needs of one owned candidate (column j of batch row b): its row, its gradient row (gdummy
 * without a table), whether it is the positive itself, its EMU key, its Mixup ratio and shares, its output
 * gradient, and its stored keep masks (kb, the first of the row's nmask; NULL: hash them). */
struct cand_bwd_ctx {
    const float *x;
    float *gx;
    int first;
    uint32_t key;
    float a;
    vf gv, av, bv;
    const uint16_t *kb;
};

static inline __attribute__((always_inline)) struct cand_bwd_ctx cand_bwd_setup(
    int mut, int64_t b, int64_t j, int64_t C, int64_t D, const int64_t *cb, const float *E, float *gE,
    const int64_t *slot, float *gdummy, uint32_t s0, uint32_t s1, int64_t b0, const float *ratio,
    const float *gout, const uint16_t *keep_in, int64_t nmask) {
    struct cand_bwd_ctx k;
    const int64_t c = cb[j];
    k.x = E + c * D;
    k.gx = gE ? gE + (slot ? slot[b * C + j] : c) * D : gdummy;
    k.first = j == 0;
    k.key = (mut == EMUKG_MUT_EMU && !k.first) ? row_key(b0 + b, C, j, s0, s1) : 0;
    k.a = (mut == EMUKG_MUT_MIXUP) ? ratio[b * C + j] : 1.0f;
    k.gv = bcast(gout[b * C + j]);
    k.av = bcast(k.a);
    k.bv = bcast(1.0f) - bcast(k.a);
    k.kb = (mut == EMUKG_MUT_EMU && keep_in && !k.first) ? keep_in + (b * C + j) * nmask : NULL;
    return k;
}

/* The start of a backward's batch row b: its candidate ids cb, this thread's n owned columns own[0..n) (none: on to
 * the next row), its query qb, the positive's row xp and this thread's partial rows gqb (query) and gpb (positive). */
#define OWNED_ROW(b)                                                                                                  \
    const int64_t *cb = cand + (b) * C;                                                                               \
    const int64_t n = owned_cols(cb, C, t, nt, own);                                                                  \
    if (n == 0) continue;                                                                                             \
    const float *qb = q + (b) * D;                                                                                    \
    const float *xp = E + cb[0] * D;                                                                                  \
    float *gqb = mine + (size_t)(b) * padD, *gpb = mine + ((size_t)B + (size_t)(b)) * padD

/* The owned candidate own[m] of a backward's batch row (after OWNED_ROW): the rows PF_DIST candidates ahead
 * prefetched, then the fields of its cand_bwd_ctx as the local names the backward bodies use (nmask: the keep masks
 * per candidate). */
#define OWNED_CANDIDATE(m, nmask)                                                                                     \
    if ((m) + PF_DIST < n) prefetch_rows(E, gE, cb, slot, b, C, own[(m) + PF_DIST], D, 0, D * 4);                     \
    const struct cand_bwd_ctx cd = cand_bwd_setup(mut, b, own[m], C, D, cb, E, gE, slot, gdummy, s0, s1, b0, ratio,   \
                                                  gout, keep_in, nmask);                                              \
    const float *x = cd.x;                                                                                            \
    float *gx = cd.gx;                                                                                                \
    const int first = cd.first;                                                                                       \
    const uint32_t key = cd.key;                                                                                      \
    const float a = cd.a;                                                                                             \
    const vf gv = cd.gv, av = cd.av, bv = cd.bv;                                                                      \
    const uint16_t *kb = cd.kb

/* After the partial sums are summed (into thread 0's rows): thread t adds the positives' shares to the gradient rows
 * it owns, b ascending.  Row b's share: P parts of L floats, part p at shares + b * stride + p * pstride; the row
 * of gE is slot[b, 0] (or the entity id) and its part p starts at p * L. */
static void add_positive_shares(float *gE, const int64_t *slot, const int64_t *cand, int64_t B, int64_t C, int64_t D,
                                const float *shares, size_t stride, int P, int64_t L, size_t pstride, int t, int nt) {
    for (int64_t b = 0; b < B; b++) {
        const int64_t pos = cand[b * C];
        if (owner(pos, nt) != t) continue;
        float *gp = gE + (slot ? slot[b * C] : pos) * D;
        const float *sb = shares + (size_t)b * stride;
        for (int p = 0; p < P; p++)
            for (int64_t i = 0; i < L; i++) gp[p * L + i] += sb[(size_t)p * pstride + i];
    }
}

/* The working memory of a backward pass: the hash table, per thread B x per_b partial-sum floats, C column ids and
 * row_floats floats of scratch rows.  One allocation each, 64-byte aligned. */
struct partials {
    uint32_t *tab;
    float *part, *row;
    int64_t *own;
    size_t per_thread, row_floats;
};

static void *aligned_floats(size_t n) { return aligned_alloc(64, ((n * 4 + 63) / 64) * 64); }

static void partials_free(struct partials *P) {
    free(P->tab);
    free(P->part);
    free(P->own);
    free(P->row);
}

static int partials_alloc(struct partials *P, int nthreads, int64_t B, int64_t C, size_t per_b, size_t row_floats,
                          int64_t D) {
    P->per_thread = (size_t)B * per_b;
    P->row_floats = row_floats;
    P->tab = (uint32_t *)malloc(sizeof(uint32_t) * (size_t)(D > 0 ? D : 1));
    P->part = (float *)aligned_floats(P->per_thread * (size_t)nthreads);
    P->own = (int64_t *)malloc(sizeof(int64_t) * (size_t)(C > 0 ? C : 1) * (size_t)nthreads);
    P->row = (float *)aligned_floats(row_floats * (size_t)nthreads);
    if (!P->tab || !P->part || !P->own || !P->row) {
        partials_free(P);
        return EMUKG_ENOMEM;
    }
    return EMUKG_OK;
}

/* correctly rounded square roots of 16 lanes: one vsqrtps (AVX-512) or two (AVX); GCC does not vectorise a lane loop
 * of sqrtf (it emitted 16 vsqrtss, which made RotatE's kernels five times slower) */
static inline __attribute__((always_inline)) vf vsqrt(vf x) {
#if defined(__AVX512F__)
    __m512 v;
    memcpy(&v, &x, sizeof v);
    v = _mm512_sqrt_ps(v);
    memcpy(&x, &v, sizeof v);
    return x;
#elif defined(__AVX__)
    __m256 lo, hi;
    memcpy(&lo, &x, sizeof lo);
    memcpy(&hi, (const char *)&x + sizeof lo, sizeof hi);
    lo = _mm256_sqrt_ps(lo);
    hi = _mm256_sqrt_ps(hi);
    memcpy(&x, &lo, sizeof lo);
    memcpy((char *)&x + sizeof lo, &hi, sizeof hi);
    return x;
#else
    vf r;
    for (int l = 0; l < W; l++) r[l] = __builtin_sqrtf(x[l]);
    return r;
#endif
}

/* The forward's mutated chunk and its keep mask as 16 bits (bit l = lane l kept; all ones if unmutated).  On AVX-512
 * the EMU mask is a compare into a mask register, the blend and the stored bits read it directly (mutated() forms
 * the lanes' mask with a subtract and a shift, and pack_keep moves it back: two instructions saved per chunk, and
 * the same bits: keep where (u >> 8) < T either way). */
static inline __attribute__((always_inline)) vf fwd_mutated(const float *x, const float *xp, int64_t i, int mut, int first,
                                                             uint32_t key, const uint32_t *tab, vu Tv, float a,
                                                             uint16_t *bits) {
#if defined(__AVX512F__)
    if (mut == EMUKG_MUT_EMU && !first) {
        const vu u = h32v(ldu(tab + i) ^ key) >> 8;
        __m512i uu, tt;
        memcpy(&uu, &u, sizeof uu);
        memcpy(&tt, &Tv, sizeof tt);
        const __mmask16 k = _mm512_cmplt_epu32_mask(uu, tt);
        *bits = (uint16_t)k;
        const __m512 r = _mm512_mask_blend_ps(k, _mm512_loadu_ps(xp + i), _mm512_loadu_ps(x + i));
        vf v;
        memcpy(&v, &r, sizeof v);
        return v;
    }
#endif
    vi keep;
    const vf v = mutated(x, xp, i, mut, first, key, tab, Tv, a, &keep);
    *bits = mut == EMUKG_MUT_EMU ? pack_keep(keep) : 0xFFFF;
    return v;
}

/* One chunk's term of candidate x' against the query chunk(s) qv (COMPLEX_L1: qv real, qvi imaginary parts); bits,
 * bits_i: the keep masks of the chunk (and of its imaginary part). */
static inline __attribute__((always_inline)) vf chunk_term(int kind, int mut, const float *x, const float *xp, int64_t i,
                                                            int64_t L, vf qv, vf qvi, int first, uint32_t key,
                                                            const uint32_t *tab, vu Tv, float a, uint16_t *bits,
                                                            uint16_t *bits_i) {
    vf xv = fwd_mutated(x, xp, i, mut, first, key, tab, Tv, a, bits);
    if (kind == EMUKG_METRIC_L1) return (vf)((vu)(qv - xv) & 0x7fffffffU);
    if (kind == EMUKG_METRIC_DOT) return qv * xv;
    vf xi = fwd_mutated(x, xp, L + i, mut, first, key, tab, Tv, a, bits_i);
    vf zr = qv - xv, zi = qvi - xi;
    return vsqrt(zr * zr + zi * zi);
}

/* X(kind, mutation) for each of the nine pairs the L1/DOT/COMPLEX_L1 kernels are instantiated for (the switches
 * that pick a compile-time specialised body) */
#define EACH_KIND_MUT(X)                                                                                              \
    X(EMUKG_METRIC_L1, EMUKG_MUT_NONE) X(EMUKG_METRIC_L1, EMUKG_MUT_EMU) X(EMUKG_METRIC_L1, EMUKG_MUT_MIXUP)           \
    X(EMUKG_METRIC_DOT, EMUKG_MUT_NONE) X(EMUKG_METRIC_DOT, EMUKG_MUT_EMU) X(EMUKG_METRIC_DOT, EMUKG_MUT_MIXUP)        \
    X(EMUKG_METRIC_COMPLEX_L1, EMUKG_MUT_NONE) X(EMUKG_METRIC_COMPLEX_L1, EMUKG_MUT_EMU)                              \
    X(EMUKG_METRIC_COMPLEX_L1, EMUKG_MUT_MIXUP)

/* keep masks stored per candidate: one 16-bit mask per chunk (COMPLEX_L1: two, the real and the imaginary part) */
static inline int64_t keep_masks(int kind, int64_t D) {
    const int64_t L = kind == EMUKG_METRIC_COMPLEX_L1 ? D / 2 : D;
    return (L + W - 1) / W * (kind == EMUKG_METRIC_COMPLEX_L1 ? 2 : 1);
}

#define FWD_BLOCK 4 /* at most this many candidates scored together: independent sums in flight, the query chunk
                       * loaded once */

/* The block for a kind and mutation: FWD_BLOCK with AVX-512's 32 vector registers; with AVX2's 16 (a 16-float
 * vector takes two) fewer, or the block's sums and the mask's hash spill (measured on an AVX-512 machine with
 * -march=haswell: L1/DOT 4, COMPLEX_L1 2, EMU 1 were the fastest). */
static inline __attribute__((always_inline)) int fwd_block(int kind, int mut) {
#if defined(__AVX512F__)
    (void)kind;
    (void)mut;
    return FWD_BLOCK;
#else
    return mut == EMUKG_MUT_EMU ? 1 : kind == EMUKG_METRIC_COMPLEX_L1 ? 2 : FWD_BLOCK;
#endif
}

/* Scores of rows [lo, hi) for a kind and mutation fixed at compile time (the switch in emukg_cand_fwd). */
static inline __attribute__((always_inline)) void fwd_rows(int kind, int mut, int64_t lo, int64_t hi, int64_t C,
                                                           int64_t D, const float *q, const float *E,
                                                           const int64_t *cand, float bias, uint32_t s0, uint32_t s1,
                                                           vu Tv, int64_t b0, const float *ratio, const uint32_t *tab,
                                                           float *out, uint16_t *keep_out) {
    const int64_t L = kind == EMUKG_METRIC_COMPLEX_L1 ? D / 2 : D;
    const int64_t nmask = keep_masks(kind, D);
    const int NB = fwd_block(kind, mut);
    const int64_t tail_at = L - W;
    const vi tail_lanes = LANES >= (vi){0} + (int32_t)(W - L % W);
    const vi all_lanes = (vi){0} - 1;
    for (int64_t b = lo; b < hi; b++) {
        const float *qb = q + b * D;
        const int64_t *cb = cand + b * C;
        const float *xp = E + cb[0] * D;
        for (int64_t j = 0; j < C; j += NB) {
            for (int64_t u = j + PF_DIST * NB; u < j + (PF_DIST + 1) * NB && u < C; u++) {
                const char *nx = (const char *)(E + cb[u] * D);
                for (int64_t o = 0; o < D * 4; o += 64) __builtin_prefetch(nx + o);
            }
            const int64_t nb = C - j < NB ? C - j : NB;
            const float *x[FWD_BLOCK];
            uint32_t key[FWD_BLOCK];
            float a[FWD_BLOCK];
            int first[FWD_BLOCK];
            for (int u = 0; u < NB; u++) {
                const int64_t jj = j + (u < nb ? u : 0); /* a short last block repeats its first candidate */
                x[u] = E + cb[jj] * D;
                first[u] = jj == 0;
                key[u] = (mut == EMUKG_MUT_EMU && jj != 0) ? row_key(b0 + b, C, jj, s0, s1) : 0;
                a[u] = mut == EMUKG_MUT_MIXUP ? ratio[b * C + jj] : 1.0f;
            }
            vf acc[FWD_BLOCK] = {{0}};
            for (int64_t k = 0, c = 0; k < L; k += W, c++) {
                int64_t i = k;
                vi lanes = all_lanes;
                if (k + W > L) { i = tail_at; lanes = tail_lanes; }
                const vf qv = ldf(qb + i);
                const vf qvi = kind == EMUKG_METRIC_COMPLEX_L1 ? ldf(qb + L + i) : qv;
                for (int u = 0; u < NB; u++) {
                    uint16_t bits = 0xFFFF, bits_i = 0xFFFF;
                    acc[u] += andm(chunk_term(kind, mut, x[u], xp, i, L, qv, qvi, first[u], key[u], tab, Tv, a[u], &bits,
                                              &bits_i), lanes);
                    if (mut == EMUKG_MUT_EMU && keep_out && u < nb) {
                        uint16_t *ko = keep_out + ((b * C + j + u) * nmask + c * (kind == EMUKG_METRIC_COMPLEX_L1 ? 2 : 1));
                        ko[0] = bits;
                        if (kind == EMUKG_METRIC_COMPLEX_L1) ko[1] = bits_i;
                    }
                }
            }
#if defined(__AVX512F__)
            if (NB == 4) { /* (with AVX2's two halves per vector the transpose measured slower than four chains) */
                float sums[4];
                hsum_serial4(acc, sums);
                for (int u = 0; u < nb; u++) out[b * C + j + u] = kind == EMUKG_METRIC_DOT ? bias + sums[u] : bias - sums[u];
                continue;
            }
#endif
            for (int u = 0; u < nb; u++) {
                const float sum = hsum_serial(acc[u]);
                out[b * C + j + u] = kind == EMUKG_METRIC_DOT ? bias + sum : bias - sum;
            }
        }
    }
}

/* Chunks of one row: L1/DOT walk [0, D); COMPLEX_L1 walks the complex coordinates [0, D/2) and pairs the real
 * part at i with the imaginary part at D/2 + i.  The last chunk overlaps the previous one under a lane mask.  Each
 * candidate's sum runs over its chunks in order, then over the 16 lanes in order (hsum_serial): the order of the
 * kernel before issue 20, so the scores are the same bits.  keep (mut = EMU only,
 * else ignored; may be NULL): receives each candidate's keep masks, B x C x keep_masks(kind, D) 16-bit masks, for
 * emukg_cand_bwd to read back.
 * Allocates 4 D bytes (the hash table); returns EMUKG_OK, or EMUKG_ENOMEM with nothing written. */
int emukg_cand_fwd(int64_t B, int64_t C, int64_t D, const float *q, const float *E, const int64_t *cand,
                   int kind, float bias, int mut, uint32_t s0, uint32_t s1, uint32_t T, int64_t b0,
                   const float *ratio, float *out, uint16_t *keep, int nthreads) {
    uint32_t *tab = (uint32_t *)malloc(sizeof(uint32_t) * (size_t)D);
    if (!tab) return EMUKG_ENOMEM;
    make_tab(tab, D, s0, s1);
    const vu Tv = (vu){0} + T;
    if (nthreads < 1) nthreads = 1;
#pragma omp parallel num_threads(nthreads)
    {
        int64_t lo, hi;
        thread_range(B, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
#define FWD_CASE(K, M) case (K) * 3 + (M): fwd_rows(K, M, lo, hi, C, D, q, E, cand, bias, s0, s1, Tv, b0, ratio, tab, out, keep); break;
        switch (kind * 3 + mut) { EACH_KIND_MUT(FWD_CASE) }
#undef FWD_CASE
    }
    free(tab);
    return EMUKG_OK;
}

/* add the gradient gxv of candidate chunk x'[i:i+W] to its two sources: the candidate row (gx) and the positive
 * (gpb), according to the mutation */
static inline __attribute__((always_inline)) void route(float *gx, float *gpb, int64_t i, vf gxv, int mut, int first, vi keep, vf av, vf bv) {
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

/* The backward of thread t's owned candidates (owner() by gradient row) of rows 0..B-1, candidate by candidate in
 * column order, for a kind and mutation fixed at compile time (the switch in emukg_cand_bwd: GCC then drops every
 * branch on them from the chunk loop).  mine: this thread's [gq rows | positive rows], B x padD each. */
static inline __attribute__((always_inline)) void bwd_owned(int kind, int mut, int t, int nt, int64_t B, int64_t C,
                                                            int64_t D, const float *q, const float *E,
                                                            const int64_t *cand, const int64_t *slot, uint32_t s0,
                                                            uint32_t s1, vu Tv, int64_t b0, const float *ratio,
                                                            const uint16_t *keep_in, const float *gout, float *gE,
                                                            const uint32_t *tab, float *mine, size_t padD,
                                                            int64_t *own, float *gdummy) {
    const int64_t L = kind == EMUKG_METRIC_COMPLEX_L1 ? D / 2 : D;
    const int64_t tail_at = L - W;
    const vi tail_lanes = LANES >= (vi){0} + (int32_t)(W - L % W);
    const vi all_lanes = (vi){0} - 1;
    const int64_t nmask = keep_masks(kind, D);
    for (int64_t b = 0; b < B; b++) {
        OWNED_ROW(b);
        for (int64_t m = 0; m < n; m++) {
            OWNED_CANDIDATE(m, nmask);
            for (int64_t k = 0, ch = 0; k < L; k += W, ch++) {
                int64_t i = k;
                vi lanes = all_lanes;
                if (k + W > L) { i = tail_at; lanes = tail_lanes; }
                vi keep;
                vf xv = kb ? memo_mutated(x, xp, i, kb[ch * (kind == EMUKG_METRIC_COMPLEX_L1 ? 2 : 1)], &keep)
                           : mutated(x, xp, i, mut, first, key, tab, Tv, a, &keep);
                vf qv = ldf(qb + i);
                if (kind == EMUKG_METRIC_COMPLEX_L1) {
                    vi keep_i;
                    vf xi = kb ? memo_mutated(x, xp, L + i, kb[ch * 2 + 1], &keep_i)
                               : mutated(x, xp, L + i, mut, first, key, tab, Tv, a, &keep_i);
                    vf zr = qv - xv, zi = ldf(qb + L + i) - xi;
                    vf mg = vsqrt(zr * zr + zi * zi);
                    vi nz = nonzero_mask(mg);
                    vf gm = andm(gv / mg, nz & lanes);  /* g / |z|, 0 where |z| = 0 */
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
                    vi nz = nonzero_mask(z);
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
    }
}

#if defined(__AVX512F__)
/* The backward of bwd_owned for the L1 and DOT kinds on rows of NCH <= 8 chunks (NCH fixed at compile time; wider
 * rows, as ComplEx's 200 floats, keep bwd_owned: walking the owned candidates once per group of 8 chunks measured
 * slower than its memory sums, 13.0 against 11.0 ms, DOT, D = 200): the query chunks, their gradient and the
 * positive's share live in registers for the whole batch row (3 x NCH of the 32 vector registers AVX-512 has), so per candidate only its own
 * row is read and its gradient row read and written; each register sum starts at zero and adds the owned
 * candidates in column order, as bwd_owned's partial-sum rows do, so the result is the same bits. */
static inline __attribute__((always_inline)) void bwd_owned_reg(int kind, int mut, int NCH, int t, int nt, int64_t B,
                                                                int64_t C, int64_t D, const float *q, const float *E,
                                                                const int64_t *cand, const int64_t *slot, uint32_t s0,
                                                                uint32_t s1, vu Tv, int64_t b0, const float *ratio,
                                                                const uint16_t *keep_in, const float *gout, float *gE,
                                                                const uint32_t *tab, float *mine, size_t padD,
                                                                int64_t *own, float *gdummy) {
    const int64_t L = D;
    const int64_t tail_at = L - W;
    const vi all_lanes = (vi){0} - 1;
    /* the last chunk overlaps the previous one under a lane mask, unless the row is a whole number of chunks */
    const vi tail_lanes = L % W ? LANES >= (vi){0} + (int32_t)(W - L % W) : all_lanes;
    for (int64_t b = 0; b < B; b++) {
        OWNED_ROW(b);
        vf qr[8], gqr[8], gpr[8];
#pragma GCC unroll 8
        for (int c = 0; c < NCH; c++) {
            qr[c] = ldf(qb + (c == NCH - 1 ? tail_at : c * W));
            gqr[c] = (vf){0};
            gpr[c] = (vf){0};
        }
        for (int64_t m = 0; m < n; m++) {
            OWNED_CANDIDATE(m, NCH);
#pragma GCC unroll 8
            for (int c = 0; c < NCH; c++) {
                const int64_t i = c == NCH - 1 ? tail_at : c * W;
                const vi lanes = c == NCH - 1 ? tail_lanes : all_lanes;
                vi keep;
                const vf xv = kb ? memo_mutated(x, xp, i, kb[c], &keep) : mutated(x, xp, i, mut, first, key, tab, Tv, a, &keep);
                vf gxv, gqv;
                if (kind == EMUKG_METRIC_L1) {
                    const vf z = qr[c] - xv;
                    const vi nz = nonzero_mask(z);
                    gxv = (vf)((((vu)gv) ^ ((vu)z & 0x80000000U)) & (vu)nz); /* g * sign(z) */
                    gqv = -gxv;
                } else {
                    gxv = gv * qr[c];
                    gqv = gv * xv;
                }
                gxv = andm(gxv, lanes);
                gqr[c] += andm(gqv, lanes);
                if (first) {
                    gpr[c] += gxv;
                } else if (mut == EMUKG_MUT_EMU) {
                    stf(gx + i, ldf(gx + i) + andm(gxv, keep));
                    gpr[c] += andm(gxv, ~keep);
                } else if (mut == EMUKG_MUT_MIXUP) {
                    stf(gx + i, ldf(gx + i) + av * gxv);
                    gpr[c] += bv * gxv;
                } else {
                    stf(gx + i, ldf(gx + i) + gxv);
                }
            }
        }
        /* the partial rows were zero: 0 + sum is the sum (the same bits as adding in memory, one by one) */
#pragma GCC unroll 8
        for (int c = 0; c < NCH; c++) {
            const int64_t i = c == NCH - 1 ? tail_at : c * W;
            stf(gqb + i, ldf(gqb + i) + gqr[c]);
            stf(gpb + i, ldf(gpb + i) + gpr[c]);
        }
    }
}
#endif

/* gq: B x D or NULL; gE: NG x D or NULL, ADDED TO (the caller zeroes it); slot: B x C rows of gE that receive the
 * candidates' gradients, or NULL for gE's rows = cand (then NG = N); keep_in (mut = EMU; may be NULL): the keep
 * masks emukg_cand_fwd stored for the same arguments, read instead of hashing the mask again (the same bits).  Allocates 4 D bytes (the hash table), two
 * B x padD partial sums per thread (padD = D rounded up to 16) and, per thread, C ids plus one row.
 * Returns EMUKG_OK, or EMUKG_ENOMEM (gq and gE then hold no meaningful values). */
int emukg_cand_bwd(int64_t B, int64_t C, int64_t D, int64_t NG, const float *q, const float *E,
                   const int64_t *cand, const int64_t *slot, int kind, int mut, uint32_t s0, uint32_t s1, uint32_t T,
                   int64_t b0, const float *ratio, const uint16_t *keep_in, const float *gout, float *gq, float *gE,
                   int nthreads) {
    (void)NG;
    if (B <= 0) return EMUKG_OK;
    const vu Tv = (vu){0} + T;
    const size_t padD = (size_t)((D + W - 1) / W * W);
    if (nthreads < 1) nthreads = 1;
    struct partials P;
    if (partials_alloc(&P, nthreads, B, C, 2 * padD, padD, D) != EMUKG_OK) return EMUKG_ENOMEM;
    make_tab(P.tab, D, s0, s1);
#pragma omp parallel num_threads(nthreads)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        float *mine = P.part + (size_t)t * P.per_thread;  /* [gq rows | positive rows], B x padD each */
        int64_t *own = P.own + (size_t)t * (size_t)C;
        float *gdummy = P.row + (size_t)t * P.row_floats;
        memset(mine, 0, sizeof(float) * P.per_thread);
#if defined(__AVX512F__)
#define REG_CASE(K, M, N) case ((K) * 3 + (M)) * 8 + (N) - 1: bwd_owned_reg(K, M, N, t, nt, B, C, D, q, E, cand, slot, s0, s1, Tv, b0, ratio, keep_in, gout, gE, P.tab, mine, padD, own, gdummy); break;
#define REG_CASES(K, M) REG_CASE(K, M, 1) REG_CASE(K, M, 2) REG_CASE(K, M, 3) REG_CASE(K, M, 4) REG_CASE(K, M, 5) REG_CASE(K, M, 6) REG_CASE(K, M, 7) REG_CASE(K, M, 8)
        const int64_t nch = (D + W - 1) / W;
        if (kind != EMUKG_METRIC_COMPLEX_L1 && nch <= 8) {
            switch ((kind * 3 + mut) * 8 + nch - 1) {
                REG_CASES(EMUKG_METRIC_L1, EMUKG_MUT_NONE) REG_CASES(EMUKG_METRIC_L1, EMUKG_MUT_EMU) REG_CASES(EMUKG_METRIC_L1, EMUKG_MUT_MIXUP)
                REG_CASES(EMUKG_METRIC_DOT, EMUKG_MUT_NONE) REG_CASES(EMUKG_METRIC_DOT, EMUKG_MUT_EMU) REG_CASES(EMUKG_METRIC_DOT, EMUKG_MUT_MIXUP)
            }
        } else
#undef REG_CASES
#undef REG_CASE
#endif
#define BWD_CASE(K, M) case (K) * 3 + (M): bwd_owned(K, M, t, nt, B, C, D, q, E, cand, slot, s0, s1, Tv, b0, ratio, keep_in, gout, gE, P.tab, mine, padD, own, gdummy); break;
        switch (kind * 3 + mut) { EACH_KIND_MUT(BWD_CASE) }
#undef BWD_CASE
#pragma omp barrier
        /* the query rows and the positives' shares: summed over the threads in thread order (rows split by b) */
        int64_t lo, hi;
        thread_range(B, t, nt, &lo, &hi);
        for (int64_t b = lo; b < hi; b++) {
            float *q0 = P.part + (size_t)b * padD, *p0 = P.part + ((size_t)B + (size_t)b) * padD;
            for (int u = 1; u < nt; u++) {
                const float *qu = P.part + (size_t)u * P.per_thread + (size_t)b * padD;
                const float *pu = qu + (size_t)B * padD;
                for (int64_t i = 0; i < D; i++) { q0[i] += qu[i]; p0[i] += pu[i]; }
            }
            if (gq) memcpy(gq + b * D, q0, sizeof(float) * (size_t)D);
        }
#pragma omp barrier
        if (gE) add_positive_shares(gE, slot, cand, B, C, D, P.part + (size_t)B * padD, padD, 1, D, 0, t, nt);
    }
    partials_free(&P);
    return EMUKG_OK;
}

/* The EMU keep mask of a (B, C, D) block as bytes (1 = keep the candidate's component; column 0 all ones), for
 * the batch rows b0 .. b0 + B - 1 (b0 > 0: one row chunk of a larger batch, as the chunked PyTorch path draws it).
 * Used by the PyTorch path on the CPU for models without a fused kernel, and by tests.  Allocates 4 D bytes;
 * returns EMUKG_OK or EMUKG_ENOMEM. */
int emukg_emu_mask(int64_t B, int64_t C, int64_t D, int64_t b0, uint32_t s0, uint32_t s1, uint32_t T, uint8_t *out,
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
            const uint32_t key = row_key(b0 + b, C, j, s0, s1);
            int64_t i = 0;
            for (; i + W <= D; i += W) {
                vi keep = keep_mask(h32v(ldu(tab + i) ^ key), Tv);
                v16b bytes = __builtin_convertvector(keep & 1, v16b);
                memcpy(o + i, &bytes, W);
            }
            for (; i < D; i++) o[i] = (uint8_t)((h32(key ^ tab[i]) >> 8) < T);
        }
    free(tab);
    return EMUKG_OK;
}

/* =============================================================================================================
 * Extended metrics (emukg_cand_ext_fwd / emukg_cand_ext_bwd): models whose score needs more than one query vector
 * per positive, or a transcendental function of the candidate.  A row is split into P parts of L = D / P floats
 * (P = 1 for SIN_L1, 2 for TRANSD_L1 and HAKE); x' is the mutated candidate row (EMU/Mixup as above, on all D
 * components, the hash indexed by the component's position in the row):
 *
 *   SIN_L1:    s = bias - wp * sum_i |sin(q_i - x'_i / scale)|                             q: B x D, no aux
 *              (pRotatE: q = phase(h) + phase(r) or phase(t) - phase(r), scale = range / pi; the modulus is
 *              applied by the caller)
 *   TRANSD_L1: s = bias - sum_i |q_i - y_i|,  y = u / max(||u||_2, 1e-12),  u = e' + (e' . p') a,
 *              x' = [e', p'] (L floats each), a = aux_b (the relation's projection vector)     q, aux: B x L
 *   HAKE:      s = bias - (wm * sqrt(sum_i (qm_i - a_i x'm_i)^2) + wp * sum_i |sin(qp_i - x'p_i / scale)|)
 *              x' = [x'm, x'p], q = [qm, qp] (B x D), a = aux_b (B x L)
 *
 * The backward pass returns gq (B x |q_b|), gaux (B x L) and the dense gE as above (per-thread accumulators,
 * fixed-order reduction).  Per thread, the query, aux, mutated candidate and gradient rows live in buffers of
 * P parts of ceil(L/16)*16 floats whose tail lanes are zero (zero lanes add nothing to any metric), so every
 * L >= 1 works without padding the tables.
 *
 * sin/cos: vsincos below, |z| <= 8192 by a Cody-Waite reduction modulo pi/2 (three-part pi/2 whose first two
 * parts have 11 significant bits, so k * part is exact for |k| < 2^13) and the Cephes single-precision minimax
 * polynomials on [-pi/4, pi/4]; other lanes (|z| > 8192, inf, NaN) call libm's sinf/cosf.  Accuracy: see
 * tests/test_fast_models.py (absolute error against double-precision sin/cos below 3e-7 on |z| <= 8192).
 */
#define TWO_OVER_PI 0.636619772f
#define PIO2_1 1.5703125f
#define PIO2_2 4.8375129699707031e-4f
#define PIO2_3 7.5497901264043321e-8f
#define SIN_LIMIT 8192.0f
#define NORM_EPS 1e-12f /* F.normalize's eps */

#define INLINE static inline __attribute__((always_inline))

INLINE vf vabsf(vf x) { return (vf)((vu)x & 0x7fffffffU); }


/* halves of a 16-lane mask, for any_lane below */
typedef int32_t vi8 __attribute__((vector_size(32)));
typedef int32_t vi4 __attribute__((vector_size(16)));

/* whether any lane of a mask is set */
INLINE int any_lane(vi m) {
    vi8 a, b;
    memcpy(&a, &m, sizeof a);
    memcpy(&b, (const char *)&m + sizeof a, sizeof b);
    a |= b;
    vi4 c, d;
    memcpy(&c, &a, sizeof c);
    memcpy(&d, (const char *)&a + sizeof c, sizeof d);
    c |= d;
    return (c[0] | c[1] | c[2] | c[3]) != 0;
}

/* sin(z) per lane; *cos_out (when not NULL) receives cos(z) */
INLINE vf vsincos(vf z, vf *cos_out) {
    /* |z| <= 8192 by the bits (monotonic for non-negative floats; inf and NaN compare above): an integer compare,
     * which GCC keeps in vector registers (it splits a float <= of 16 lanes into scalar branches on AVX2) */
    const vi ok = neg_mask((vi)((vu)z & 0x7fffffffU) - 0x46000001); /* 0x46000000 = 8192.0f */
    const vi big = ~ok;
    const vf zz = andm(z, ok);
    const vf magic = bcast(12582912.0f); /* 1.5 * 2^23: x + magic - magic rounds x to an integer */
    const vf kf = (zz * bcast(TWO_OVER_PI) + magic) - magic;
    const vf r = ((zz - kf * bcast(PIO2_1)) - kf * bcast(PIO2_2)) - kf * bcast(PIO2_3);
    const vf r2 = r * r;
    const vf ps = ((bcast(-1.9515295891e-4f) * r2 + bcast(8.3321608736e-3f)) * r2 - bcast(1.6666654611e-1f)) * r2 * r + r;
    const vf pc = ((bcast(2.443315711809948e-5f) * r2 - bcast(1.388731625493765e-3f)) * r2 + bcast(4.166664568298827e-2f))
                  * r2 * r2 - bcast(0.5f) * r2 + bcast(1.0f);
    const vi k = __builtin_convertvector(kf, vi);
    const vi odd = (vi){0} - (k & 1);
    vf s = (vf)((vu)sel(odd, pc, ps) ^ ((vu)(k & 2) << 30));
    if (cos_out) *cos_out = (vf)((vu)sel(odd, ps, pc) ^ ((vu)((k + 1) & 2) << 30));
    if (any_lane(big)) {
        for (int l = 0; l < W; l++) {
            if (!big[l]) continue;
            s[l] = sinf(z[l]);
            if (cos_out) (*cos_out)[l] = cosf(z[l]);
        }
    }
    return s;
}

/* sin and cos of n floats (tests measure vsincos's accuracy through this) */
void emukg_sincos(int64_t n, const float *z, float *s, float *c) {
    for (int64_t i = 0; i < n; i += W) {
        const int m = n - i < W ? (int)(n - i) : W;
        float zb[W] = {0};
        memcpy(zb, z + i, sizeof(float) * (size_t)m);
        vf cv, sv = vsincos(ldf(zb), &cv);
        memcpy(s + i, &sv, sizeof(float) * (size_t)m);
        memcpy(c + i, &cv, sizeof(float) * (size_t)m);
    }
}

static inline int ext_parts(int kind) { return kind == EMUKG_METRIC_SIN_L1 ? 1 : 2; }

/* width of q_b: L for TRANSD_L1, D otherwise */
static inline int64_t ext_qwidth(int kind, int64_t D) { return kind == EMUKG_METRIC_TRANSD_L1 ? D / 2 : D; }

/* P parts of L floats at src (stride L) -> dst (stride padL), zero tails */
static inline void pad_parts(float *dst, const float *src, int64_t L, int64_t padL, int P) {
    for (int p = 0; p < P; p++) {
        memcpy(dst + p * padL, src + p * L, sizeof(float) * (size_t)L);
        memset(dst + p * padL + L, 0, sizeof(float) * (size_t)(padL - L));
    }
}

/* the mutated row of candidate (b, j) into xb (P parts of padL floats; lanes L..padL-1 must already be zero and
 * stay so); keep masks into kb.  With L >= 16 the last partial chunk is the overlapping chunk [L-16, L) (its
 * overlap rewrites identical values); narrower rows are copied into zeroed lanes. */
INLINE void load_mutated(const float *x, const float *xp, int64_t L, int64_t padL, int P, int mut, int first,
                                uint32_t key, const uint32_t *tab, vu Tv, float a, float *xb, int32_t *kb) {
    for (int p = 0; p < P; p++) {
        for (int64_t k0 = 0; k0 < L; k0 += W) {
            const int64_t k = (k0 + W > L && L >= W) ? L - W : k0;
            const int64_t i = p * L + k;
            vf v;
            vi keep;
            if (k + W <= L) {
                v = mutated(x, xp, i, mut, first, key, tab, Tv, a, &keep);
            } else { /* a row narrower than 16: copied into zeroed lanes */
                const size_t m = sizeof(float) * (size_t)(L - k);
                float xs[W] = {0}, ps[W] = {0};
                uint32_t ts[W] = {0};
                memcpy(xs, x + i, m);
                memcpy(ps, xp + i, m);
                memcpy(ts, tab + i, m);
                v = mutated(xs, ps, 0, mut, first, key, ts, Tv, a, &keep);
            }
            stf(xb + p * padL + k, v);
            if (kb) memcpy(kb + p * padL + k, &keep, sizeof keep);
        }
    }
}

/* d|sin z|/dz = sign(sin z) cos z (0 where sin z = 0), as torch's abs backward */
INLINE vf dabs_sin(vf s, vf c) {
    const vi nz = nonzero_mask(s);
    return andm((vf)((vu)c ^ ((vu)s & 0x80000000U)), nz);
}

/* score of the mutated candidate xb against the padded query qb / aux ab; ub: L-float scratch (TRANSD_L1) */
INLINE float ext_score(int kind, int64_t padL, const float *qb, const float *ab, const float *xb, float *ub,
                              float bias, float scale, float wm, float wp) {
    const vf sv = bcast(scale);
    if (kind == EMUKG_METRIC_SIN_L1) {
        vf acc = {0};
        for (int64_t k = 0; k < padL; k += W) acc += vabsf(vsincos(ldf(qb + k) - ldf(xb + k) / sv, NULL));
        return bias - wp * hsum(acc);
    }
    if (kind == EMUKG_METRIC_TRANSD_L1) {
        vf dacc = {0}, nacc = {0}, acc = {0};
        for (int64_t k = 0; k < padL; k += W) dacc += ldf(xb + k) * ldf(xb + padL + k);
        const vf d = bcast(hsum(dacc));
        for (int64_t k = 0; k < padL; k += W) {
            vf u = ldf(xb + k) + d * ldf(ab + k);
            stf(ub + k, u);
            nacc += u * u;
        }
        const float nrm = __builtin_sqrtf(hsum(nacc));
        const vf den = bcast(nrm > NORM_EPS ? nrm : NORM_EPS);
        for (int64_t k = 0; k < padL; k += W) acc += vabsf(ldf(qb + k) - ldf(ub + k) / den);
        return bias - hsum(acc);
    }
    /* HAKE */
    vf macc = {0}, pacc = {0};
    for (int64_t k = 0; k < padL; k += W) {
        vf z = ldf(qb + k) - ldf(ab + k) * ldf(xb + k);
        macc += z * z;
        pacc += vabsf(vsincos(ldf(qb + padL + k) - ldf(xb + padL + k) / sv, NULL));
    }
    return bias - (wm * __builtin_sqrtf(hsum(macc)) + wp * hsum(pacc));
}

/* q: B x ext_qwidth, aux: B x L or NULL (SIN_L1), ratio: B x C (MIXUP) or NULL.  Allocates 4 D bytes plus, per
 * thread, 6 rows of 4 * padL bytes.  Returns EMUKG_OK, or EMUKG_ENOMEM (out then holds no meaningful values). */
int emukg_cand_ext_fwd(int64_t B, int64_t C, int64_t D, const float *q, const float *aux, const float *E,
                       const int64_t *cand, int kind, float bias, float scale, float wm, float wp, int mut,
                       uint32_t s0, uint32_t s1, uint32_t T, int64_t b0, const float *ratio, float *out,
                       int nthreads) {
    uint32_t *tab = (uint32_t *)malloc(sizeof(uint32_t) * (size_t)(D > 0 ? D : 1));
    if (!tab) return EMUKG_ENOMEM;
    make_tab(tab, D, s0, s1);
    const int P = ext_parts(kind);
    const int64_t L = D / P, padL = (L + W - 1) / W * W, QW = ext_qwidth(kind, D);
    const int PQ = (int)(QW / L);
    const vu Tv = (vu){0} + T;
    int failed = 0;
    if (nthreads < 1) nthreads = 1;
#pragma omp parallel num_threads(nthreads)
    {
        float *buf = (float *)aligned_alloc(64, sizeof(float) * (size_t)(6 * padL));
        if (!buf) {
#pragma omp atomic write
            failed = 1;
        }
        if (buf) memset(buf, 0, sizeof(float) * (size_t)(6 * padL)); /* zero tail lanes of xb (load_mutated) */
        float *qb = buf, *xb = buf + 2 * padL, *ab = buf + 4 * padL, *ub = buf + 5 * padL;
#pragma omp for schedule(static)
        for (int64_t b = 0; b < B; b++) {
            if (!buf) continue;
            pad_parts(qb, q + b * QW, L, padL, PQ);
            if (aux) pad_parts(ab, aux + b * L, L, padL, 1);
            const float *xp = E + cand[b * C] * D;
            for (int64_t j = 0; j < C; j++) {
                if (j + PF_DIST < C) {
                    const char *nx = (const char *)(E + cand[b * C + j + PF_DIST] * D);
                    for (int64_t o = 0; o < D * 4; o += 64) __builtin_prefetch(nx + o);
                }
                const int first = (j == 0);
                const uint32_t key = (mut == EMUKG_MUT_EMU && !first) ? row_key(b0 + b, C, j, s0, s1) : 0;
                const float a = (mut == EMUKG_MUT_MIXUP) ? ratio[b * C + j] : 1.0f;
                load_mutated(E + cand[b * C + j] * D, xp, L, padL, P, mut, first, key, tab, Tv, a, xb, NULL);
                out[b * C + j] = ext_score(kind, padL, qb, ab, xb, ub, bias, scale, wm, wp);
            }
        }
        free(buf);
    }
    free(tab);
    return failed ? EMUKG_ENOMEM : EMUKG_OK;
}

/* dst[0:n] += v[0:n] (n <= W) */
INLINE void add_part(float *dst, vf v, int64_t n) {
    if (n == W) { stf(dst, ldf(dst) + v); return; }
    for (int64_t l = 0; l < n; l++) dst[l] += v[l];
}

/* gq: B x ext_qwidth or NULL; gaux: B x L or NULL (must be NULL without aux); gE: NG x D or NULL, ADDED TO, with
 * slot as emukg_cand_bwd's.  Allocates 4 D bytes plus, per thread, B x 5 padL partial sums, C ids and 10 rows of
 * 4 * padL bytes.  Returns EMUKG_OK, or EMUKG_ENOMEM (gq, gaux and gE then hold no meaningful values). */
int emukg_cand_ext_bwd(int64_t B, int64_t C, int64_t D, int64_t NG, const float *q, const float *aux, const float *E,
                       const int64_t *cand, const int64_t *slot, int kind, float scale, float wm, float wp, int mut,
                       uint32_t s0, uint32_t s1, uint32_t T, int64_t b0, const float *ratio, const float *gout,
                       float *gq, float *gaux, float *gE, int nthreads) {
    (void)NG;
    if (B <= 0) return EMUKG_OK;
    const int P = ext_parts(kind);
    const int64_t L = D / P, padL = (L + W - 1) / W * W, QW = ext_qwidth(kind, D);
    const int PQ = (int)(QW / L);
    const vu Tv = (vu){0} + T;
    const vf sv = bcast(scale);
    const vi tail_lanes = LANES >= (vi){0} + (int32_t)(W - L % W);
    const size_t per_b = (size_t)(5 * padL);
    if (nthreads < 1) nthreads = 1;
    struct partials PT;
    if (partials_alloc(&PT, nthreads, B, C, per_b, (size_t)(10 * padL), D) != EMUKG_OK) return EMUKG_ENOMEM;
    make_tab(PT.tab, D, s0, s1);
    const uint32_t *tab = PT.tab;
#pragma omp parallel num_threads(nthreads)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        /* per thread: [gq rows | positive rows] (B x 2 padL each), then aux rows (B x padL) */
        float *mine = PT.part + (size_t)t * PT.per_thread;
        int64_t *own = PT.own + (size_t)t * (size_t)C;
        float *buf = PT.row + (size_t)t * PT.row_floats;
        memset(mine, 0, sizeof(float) * PT.per_thread);
        memset(buf, 0, sizeof(float) * PT.row_floats); /* zero tail lanes of xb (load_mutated) */
        float *qb = buf, *xb = buf + 2 * padL, *gxb = buf + 4 * padL, *ab = buf + 8 * padL;
        int32_t *kb = (int32_t *)(buf + 6 * padL);
        float *ub = gxb + padL; /* TRANSD_L1 keeps u in the second half of gxb until it is overwritten */
        for (int64_t b = 0; b < B; b++) {
            const int64_t *cb = cand + b * C;
            const int64_t n = owned_cols(cb, C, t, nt, own);
            if (n == 0) continue;
            float *gqb = mine + (size_t)b * 2 * padL, *gpb = mine + ((size_t)B + (size_t)b) * 2 * padL;
            float *gab = mine + (size_t)B * 4 * padL + (size_t)b * padL;
            pad_parts(qb, q + b * QW, L, padL, PQ);
            if (aux) pad_parts(ab, aux + b * L, L, padL, 1);
            const float *xp = E + cb[0] * D;
            for (int64_t m = 0; m < n; m++) {
                if (m + PF_DIST < n) prefetch_rows(E, gE, cb, slot, b, C, own[m + PF_DIST], D, 0, D * 4);
                const int64_t j = own[m];
                const int64_t c = cb[j];
                const int first = (j == 0);
                const uint32_t key = (mut == EMUKG_MUT_EMU && !first) ? row_key(b0 + b, C, j, s0, s1) : 0;
                const float a = (mut == EMUKG_MUT_MIXUP) ? ratio[b * C + j] : 1.0f;
                const float g = gout[b * C + j];
                load_mutated(E + c * D, xp, L, padL, P, mut, first, key, tab, Tv, a, xb, kb);
                /* gxb := ds/dx' (padded), gqb += ds/dq, gab += ds/daux */
                if (kind == EMUKG_METRIC_SIN_L1 || kind == EMUKG_METRIC_HAKE) {
                    const int64_t off = kind == EMUKG_METRIC_HAKE ? padL : 0;
                    const vf gw = bcast(-g * wp);
                    for (int64_t k = 0; k < padL; k += W) {
                        vf cs, sn = vsincos(ldf(qb + off + k) - ldf(xb + off + k) / sv, &cs);
                        vf gu = gw * dabs_sin(sn, cs); /* ds/du, u = q - x'/scale */
                        stf(gqb + off + k, ldf(gqb + off + k) + gu);
                        stf(gxb + off + k, (bcast(0.0f) - gu) / sv);
                    }
                }
                if (kind == EMUKG_METRIC_HAKE) {
                    vf macc = {0};
                    for (int64_t k = 0; k < padL; k += W) {
                        vf z = ldf(qb + k) - ldf(ab + k) * ldf(xb + k);
                        macc += z * z;
                    }
                    const float n = __builtin_sqrtf(hsum(macc));
                    const vf cz = bcast(n > 0.0f ? -g * wm / n : 0.0f); /* torch.norm's backward: 0 at norm 0 */
                    for (int64_t k = 0; k < padL; k += W) {
                        vf av = ldf(ab + k), xv = ldf(xb + k);
                        vf gz = cz * (ldf(qb + k) - av * xv); /* ds/dz, z = qm - a x'm */
                        stf(gqb + k, ldf(gqb + k) + gz);
                        stf(gab + k, ldf(gab + k) - xv * gz);
                        stf(gxb + k, bcast(0.0f) - av * gz);
                    }
                } else if (kind == EMUKG_METRIC_TRANSD_L1) {
                    const float *eb = xb, *pb = xb + padL;
                    vf dacc = {0}, nacc = {0};
                    for (int64_t k = 0; k < padL; k += W) dacc += ldf(eb + k) * ldf(pb + k);
                    const vf d = bcast(hsum(dacc));
                    for (int64_t k = 0; k < padL; k += W) {
                        vf u = ldf(eb + k) + d * ldf(ab + k);
                        stf(ub + k, u);
                        nacc += u * u;
                    }
                    const float nrm = __builtin_sqrtf(hsum(nacc));
                    const float denf = nrm > NORM_EPS ? nrm : NORM_EPS;
                    const vf den = bcast(denf), gv = bcast(g);
                    /* gy = ds/dy = g sign(q - y) into gxb[0:padL); gq -= gy; sum gy u */
                    vf guacc = {0};
                    for (int64_t k = 0; k < padL; k += W) {
                        vf u = ldf(ub + k);
                        vf z = ldf(qb + k) - u / den;
                        vi nz = nonzero_mask(z);
                        vf gy = (vf)((((vu)gv) ^ ((vu)z & 0x80000000U)) & (vu)nz);
                        stf(gqb + k, ldf(gqb + k) - gy);
                        stf(gxb + k, gy);
                        guacc += gy * u;
                    }
                    /* y = u / den, den = max(|u|, eps): gu = gy / den + gden [|u| >= eps] u / |u| (0 at |u| = 0),
                     * gden = -sum(gy u) / den^2 (torch's clamp_min passes the gradient where |u| >= eps) */
                    const float gden = -hsum(guacc) / (denf * denf);
                    const vf gn = bcast((nrm >= NORM_EPS && nrm > 0.0f) ? gden : 0.0f), nv = bcast(nrm > 0.0f ? nrm : 1.0f);
                    vf gdacc = {0};
                    for (int64_t k = 0; k < padL; k += W) {
                        vf gu = ldf(gxb + k) / den + gn * (ldf(ub + k) / nv);
                        stf(gxb + k, gu);
                        gdacc += gu * ldf(ab + k);
                        stf(gab + k, ldf(gab + k) + d * gu);
                    }
                    const vf gd = bcast(hsum(gdacc)); /* ds/d(e'.p') */
                    for (int64_t k = 0; k < padL; k += W) {
                        vf ev = ldf(eb + k), pv = ldf(pb + k);
                        stf(gxb + padL + k, gd * ev);           /* ds/dp' */
                        stf(gxb + k, ldf(gxb + k) + gd * pv);   /* ds/de' */
                    }
                }
                /* route ds/dx' to the candidate row and the positive (gxb is 0 in lanes L..padL-1) */
                float *gx = gE ? gE + (slot ? slot[b * C + j] : c) * D : NULL;
                const vf av = bcast(a), bv = bcast(1.0f) - bcast(a);
                for (int p = 0; p < P; p++) {
                    for (int64_t k0 = 0; k0 < L; k0 += W) {
                        const int over = k0 + W > L && L >= W; /* the overlapping last chunk: new lanes only */
                        const int64_t k = over ? L - W : k0;
                        const int64_t n = L - k < W ? L - k : W;
                        const int64_t o = p * padL + k;
                        vf gv = ldf(gxb + o);
                        if (over) gv = andm(gv, tail_lanes);
                        if (first) { stf(gpb + o, ldf(gpb + o) + gv); continue; }
                        if (mut == EMUKG_MUT_EMU) {
                            vi keep;
                            memcpy(&keep, kb + o, sizeof keep);
                            if (gx) add_part(gx + p * L + k, andm(gv, keep), n);
                            stf(gpb + o, ldf(gpb + o) + andm(gv, ~keep));
                        } else if (mut == EMUKG_MUT_MIXUP) {
                            if (gx) add_part(gx + p * L + k, av * gv, n);
                            stf(gpb + o, ldf(gpb + o) + bv * gv);
                        } else if (gx) {
                            add_part(gx + p * L + k, gv, n);
                        }
                    }
                }
            }
        }
#pragma omp barrier
        /* the query, aux and positive sums over the threads, in thread order (rows split by b) */
        int64_t lo, hi;
        thread_range(B, t, nt, &lo, &hi);
        for (int64_t b = lo; b < hi; b++) {
            float *q0 = PT.part + (size_t)b * 2 * padL, *p0 = PT.part + ((size_t)B + (size_t)b) * 2 * padL;
            float *a0 = PT.part + (size_t)B * 4 * padL + (size_t)b * padL;
            for (int u = 1; u < nt; u++) {
                const float *base = PT.part + (size_t)u * PT.per_thread;
                const float *qu = base + (size_t)b * 2 * padL, *pu = base + ((size_t)B + (size_t)b) * 2 * padL;
                const float *au = base + (size_t)B * 4 * padL + (size_t)b * padL;
                for (int64_t i = 0; i < 2 * padL; i++) { q0[i] += qu[i]; p0[i] += pu[i]; }
                for (int64_t i = 0; i < padL; i++) a0[i] += au[i];
            }
            if (gq)
                for (int p = 0; p < PQ; p++) memcpy(gq + b * QW + p * L, q0 + p * padL, sizeof(float) * (size_t)L);
            if (gaux) memcpy(gaux + b * L, a0, sizeof(float) * (size_t)L);
        }
#pragma omp barrier
        if (gE)
            add_positive_shares(gE, slot, cand, B, C, D, PT.part + (size_t)B * 2 * padL, (size_t)(2 * padL), P, L,
                                (size_t)padL, t, nt);
    }
    partials_free(&PT);
    return EMUKG_OK;
}
