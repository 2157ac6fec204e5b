/* Times emukg's training kernels (src/emukg/kernels/candidates.c) compiled for any target, outside Python, and
 * prints checksums of their outputs, so that two builds (-march=native against -march=haswell, say) can be
 * compared for speed and for identical results:
 *
 *   gcc -O3 -march=haswell -ffp-contract=off -fopenmp -std=gnu11 benchmarks/kernel_harness.c \
 *       src/emukg/kernels/candidates.c -o /tmp/harness -lm
 *   /tmp/harness THREADS MUT KIND [D [N]]        MUT 0 none, 1 EMU; KIND 0 L1, 1 DOT, 2 COMPLEX_L1
 *
 * B = 1000 queries, C = 257 candidates per query, N = 14,541 entities (FB15k-237) unless given; random tables from
 * a fixed seed; the EMU forward keeps the mask's bits for the backward, as a training step does.  Reports the
 * minimum of 40 calls of each.  The checksums weigh every output element by its position, so a difference in any
 * bit of any score or gradient shows (up to the printed digits).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int emukg_cand_fwd(int64_t B, int64_t C, int64_t D, const float *q, const float *E, const int64_t *cand, int kind,
                   float bias, int mut, uint32_t s0, uint32_t s1, uint32_t T, int64_t b0, const float *ratio,
                   float *out, uint16_t *keep, int nthreads);
int emukg_cand_bwd(int64_t B, int64_t C, int64_t D, int64_t NG, const float *q, const float *E, const int64_t *cand,
                   const int64_t *slot, int kind, int mut, uint32_t s0, uint32_t s1, uint32_t T, int64_t b0,
                   const float *ratio, const uint16_t *keep_in, const float *gout, float *gq, float *gE,
                   int nthreads);

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static float uniform(void) { return rand() / (float)RAND_MAX - 0.5f; }

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s THREADS MUT KIND [D [N]]\n", argv[0]);
        return 2;
    }
    const int nt = atoi(argv[1]), mut = atoi(argv[2]), kind = atoi(argv[3]);
    const int64_t D = argc > 4 ? atoll(argv[4]) : 100, N = argc > 5 ? atoll(argv[5]) : 14541, B = 1000, C = 257;
    const int64_t L = kind == 2 ? D / 2 : D, nmask = (L + 15) / 16 * (kind == 2 ? 2 : 1);
    float *E = malloc(4 * N * D), *q = malloc(4 * B * D), *g = malloc(4 * B * C), *G = calloc(N * D, 4);
    float *gq = malloc(4 * B * D), *out = malloc(4 * B * C);
    int64_t *cand = malloc(8 * B * C);
    uint16_t *keep = mut == 1 ? malloc(2 * B * C * nmask) : NULL;
    srand(1);
    for (int64_t i = 0; i < N * D; i++) E[i] = uniform();
    for (int64_t i = 0; i < B * D; i++) q[i] = uniform();
    for (int64_t i = 0; i < B * C; i++) {
        cand[i] = rand() % N;
        g[i] = uniform();
    }
    double bf = 1e9, bb = 1e9;
    for (int r = 0; r < 40; r++) {
        memset(G, 0, 4 * N * D);
        const double t0 = now();
        emukg_cand_fwd(B, C, D, q, E, cand, kind, 1.0f, mut, 1, 2, 1 << 23, 0, NULL, out, keep, nt);
        const double t1 = now();
        emukg_cand_bwd(B, C, D, N, q, E, cand, NULL, kind, mut, 1, 2, 1 << 23, 0, NULL, keep, g, gq, G, nt);
        const double t2 = now();
        if (t1 - t0 < bf) bf = t1 - t0;
        if (t2 - t1 < bb) bb = t2 - t1;
    }
    double cs = 0, cg = 0, cq = 0;
    for (int64_t i = 0; i < B * C; i++) cs += out[i] * (1 + i % 7);
    for (int64_t i = 0; i < N * D; i++) cg += G[i] * (1 + i % 5);
    for (int64_t i = 0; i < B * D; i++) cq += gq[i] * (1 + i % 3);
    printf("threads %d mut %d kind %d D %lld: forward %.2f ms, backward %.2f ms (min of 40); checksums %.9g %.9g %.9g\n",
           nt, mut, kind, (long long)D, bf * 1e3, bb * 1e3, cs, cg, cq);
    return 0;
}
