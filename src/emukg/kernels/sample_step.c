/* Filtered negative sampling on the CPU: which candidates form no known triple with their row's kept pair.
 *
 * Row b's known answers are the sorted segment vals[start[b] : start[b] + count[b]] of a FilterIndex (the
 * CSR answers of the pair (h, r) for tail-batch or (r, t) for head-batch).  valid[b, k] = 1 iff cand[b, k]
 * is not in that segment: a binary search in the row's own (usually short) answer list instead of a search
 * over every training triple.
 */
#include <stdint.h>

void emukg_filter_valid(int64_t B, int64_t K, const int64_t *start, const int64_t *count, const int64_t *vals,
                        const int64_t *cand, uint8_t *valid, int nthreads) {
    if (nthreads < 1) nthreads = 1;
#pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int64_t b = 0; b < B; b++) {
        const int64_t *seg = vals + start[b];
        const int64_t n = count[b];
        for (int64_t k = 0; k < K; k++) {
            const int64_t c = cand[b * K + k];
            int64_t lo = 0, hi = n;
            while (lo < hi) {
                const int64_t mid = lo + (hi - lo) / 2;
                if (seg[mid] < c) lo = mid + 1;
                else hi = mid;
            }
            valid[b * K + k] = (uint8_t)!(lo < n && seg[lo] == c);
        }
    }
}
