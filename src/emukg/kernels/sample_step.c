/* Filtered negative sampling on the CPU: which candidates form no known triple with their row's kept pair.
 *
 * Row b's known answers are the sorted segment vals[start[b] : start[b] + count[b]] of a FilterIndex (the
 * CSR answers of the pair (h, r) for tail-batch or (r, t) for head-batch), so each candidate is checked
 * against its row's own (usually short) answer list instead of every training triple.
 */
#include <stdint.h>
#include <stdlib.h>

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
