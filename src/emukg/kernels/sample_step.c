/* Filtered negative sampling on the CPU: which candidates form no known triple with their row's kept pair.
 *
 * Row b's known answers are the sorted segment vals[start[b] : start[b] + count[b]] of a FilterIndex (the
 * CSR answers of the pair (h, r) for tail-batch or (r, t) for head-batch), so each candidate is checked
 * against its row's own (usually short) answer list instead of every training triple.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "emukg_kernels.h"

/* Filter and compact in one pass (the inner step of sampling.filter_and_refill).
 *
 * For each i < R, row b = rows[i] of the output: scan its K candidates cand[i, :] in draw order; a candidate
 * not among the row's known answers (vals[start[b] : start[b] + count[b]]) is counted in found[i] and, while
 * the row holds fewer than n, appended: out[b, filled[b]++] = candidate.  Rows are independent, so threads
 * split them.  Short answer lists are scanned linearly; longer ones are marked in a per-thread bitmap over the
 * N entities (set before, cleared after the row), so each test is one L1 access instead of a binary search.
 *
 * Memory: one bitmap of 8 ceil(N/64) bytes per thread.  Returns EMUKG_OK, or EMUKG_ENOMEM when a bitmap cannot be
 * allocated (nothing is then appended).  Ids must lie in [0, N) (the Python wrapper checks); answer ids outside
 * are ignored by the bitmap instead of written out of bounds.
 */
#define LINEAR_MAX 8

int emukg_filter_fill(int64_t R, int64_t K, int64_t n, int64_t N, const int64_t *rows, const int64_t *start,
                      const int64_t *count, const int64_t *vals, const int64_t *cand, int64_t *out, int64_t *filled,
                      int64_t *found, int nthreads) {
    if (nthreads < 1) nthreads = 1;
    if (R < 64) nthreads = 1;
    const int64_t words = (N + 63) / 64;
    int failed = 0;
#pragma omp parallel num_threads(nthreads) reduction(|| : failed)
    {
        uint64_t *bits = (uint64_t *)calloc((size_t)words, sizeof(uint64_t));
        if (!bits) failed = 1;
#pragma omp for schedule(static)
        for (int64_t i = 0; i < R; i++) {
            if (!bits) continue;
            const int64_t b = rows[i];
            const int64_t *seg = vals + start[b];
            const int64_t m = count[b];
            const int64_t *c = cand + i * K;
            int64_t f = filled[b], hits = 0;
            int64_t *o = out + b * n;
            if (m <= LINEAR_MAX) {
                for (int64_t k = 0; k < K; k++) {
                    const int64_t e = c[k];
                    int known = 0;
                    for (int64_t j = 0; j < m; j++) known |= (seg[j] == e);
                    if (!known) {
                        hits++;
                        if (f < n) o[f++] = e;
                    }
                }
            } else {
                for (int64_t j = 0; j < m; j++)
                    if ((uint64_t)seg[j] < (uint64_t)N) bits[seg[j] >> 6] |= (uint64_t)1 << (seg[j] & 63);
                for (int64_t k = 0; k < K; k++) {
                    const int64_t e = c[k];
                    if (!((bits[e >> 6] >> (e & 63)) & 1)) {
                        hits++;
                        if (f < n) o[f++] = e;
                    }
                }
                for (int64_t j = 0; j < m; j++)
                    if ((uint64_t)seg[j] < (uint64_t)N) bits[seg[j] >> 6] = 0;
            }
            filled[b] = f;
            found[i] = hits;
        }
        free(bits);
    }
    return failed ? EMUKG_ENOMEM : EMUKG_OK;
}

/* ---------------------------------------------------------------------------------------------------------------
 * torch.randint(base, base + range, (n,)) of a CPU torch.Generator, bit for bit, for range < 2^32.
 *
 * ATen's CPU generator is MT19937 (ATen/core/MT19937RNGEngine.h): a call decrements `left`; at zero the state is
 * twisted (left = 624, next = 0); the output is the tempered word state[next++].  randint's CPU kernel draws one
 * 32-bit output per element, in the tensor's memory order, and stores (V % range) + base.  This does the same in
 * bulk: the words up to the next twist are tempered and reduced in one vectorised loop (the remainder through a
 * double: q = trunc(V * (1 / range)) is V / range or one less — the product's error is below 2^-20 / range — and
 * one correction step makes it exact), so 256,000 draws take a small part of ATen's time (a 64-bit division per
 * element there).  state: the 624 words, left and next as the generator's state holds them (the Python wrapper
 * reads and writes them back with get_state / set_state). */
#define MT_N 624
#define MT_M 397

static inline uint32_t mt_twist(uint32_t u, uint32_t v) {
    return (((u & 0x80000000U) | (v & 0x7fffffffU)) >> 1) ^ ((v & 1U) ? 0x9908b0dfU : 0U);
}

static void mt_next_state(uint32_t *restrict s) {
    for (int i = 0; i < MT_N - MT_M; i++) s[i] = s[i + MT_M] ^ mt_twist(s[i], s[i + 1]);
    for (int i = MT_N - MT_M; i < MT_N - 1; i++) s[i] = s[i + MT_M - MT_N] ^ mt_twist(s[i], s[i + 1]);
    s[MT_N - 1] = s[MT_M - 1] ^ mt_twist(s[MT_N - 1], s[0]);
}

static void mt_reduce(int64_t k, const uint32_t *restrict w, uint32_t range, double inv, int64_t base,
                      int64_t *restrict out) {
    for (int64_t i = 0; i < k; i++) {
        uint32_t y = w[i];
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c5680U;
        y ^= (y << 15) & 0xefc60000U;
        y ^= y >> 18;
        const uint32_t q = (uint32_t)((double)y * inv);
        uint32_t r = y - q * range;
        r -= r >= range ? range : 0U;
        out[i] = (int64_t)r + base;
    }
}

/* state: a CPU generator's get_state() bytes (CPUGeneratorImplState: seed u64, left i32, seeded i32, next u64, the
 * 624 words as u64), read and updated in place; the caller has checked 1 <= left, next + left - 1 <= 624 and
 * 1 <= range < 2^32, and hands the bytes back with set_state. */
int emukg_mt_randint(int64_t n, uint8_t *state, int64_t range, int64_t base, int64_t *out) {
    uint32_t s[MT_N];
    int32_t left32;
    int64_t nx;
    uint64_t w[MT_N];
    memcpy(&left32, state + 8, sizeof left32);
    memcpy(&nx, state + 16, sizeof nx);
    memcpy(w, state + 24, sizeof w);
    for (int i = 0; i < MT_N; i++) s[i] = (uint32_t)w[i];
    const double inv = 1.0 / (double)range;
    int64_t L = left32, X = nx;
    while (n > 0) {
        if (L == 1) { /* the call that brings left to 0 twists; it then takes word 0 with left = 624 */
            mt_next_state(s);
            L = MT_N + 1;
            X = 0;
        }
        const int64_t k = n < L - 1 ? n : L - 1;
        mt_reduce(k, s + X, (uint32_t)range, inv, base, out);
        out += k;
        n -= k;
        L -= k;
        X += k;
    }
    for (int i = 0; i < MT_N; i++) w[i] = s[i];
    left32 = (int32_t)L;
    memcpy(state + 8, &left32, sizeof left32);
    memcpy(state + 16, &X, sizeof X);
    memcpy(state + 24, w, sizeof w);
    return EMUKG_OK;
}
