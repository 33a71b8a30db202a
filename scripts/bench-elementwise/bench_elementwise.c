// Times CKernels' elementwise kernels (Sources/CKernels/elementwise.c) on the models' shapes, one thread, on every
// path this CPU has. Each figure is the best of 5 rounds, the paths alternating within a round.

#include "CKernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static float *randomBuffer(long n, float lo, float hi, unsigned *seed) {
    float *p = malloc(sizeof(float) * (size_t)n);
    for (long i = 0; i < n; i++) p[i] = lo + (hi - lo) * (float)rand_r(seed) / (float)RAND_MAX;
    return p;
}

enum { KERNELS = 5, PATHS = 3, ROUNDS = 5 };
static const char *names[KERNELS] = {
    "GELU [1576, 3072]", "QuickGELU [1576, 3072]", "layer norm [1576, 768]", "softmax [12·197, 197]", "add [1576, 768] + [768]"};

int main(void) {
    unsigned seed = 7;
    const long rows = 1576, wide = 3072, width = 768, sRows = 12 * 197, sCols = 197;
    float *xg = randomBuffer(rows * wide, -5, 5, &seed), *yg = randomBuffer(rows * wide, 0, 1, &seed);
    float *xl = randomBuffer(rows * width, -3, 3, &seed), *yl = randomBuffer(rows * width, 0, 1, &seed);
    float *w = randomBuffer(width, -1, 1, &seed), *b = randomBuffer(width, -1, 1, &seed);
    float *xs = randomBuffer(sRows * sCols, -8, 8, &seed), *ys = randomBuffer(sRows * sCols, 0, 1, &seed);
    double best[KERNELS][PATHS];
    for (int k = 0; k < KERNELS; k++) for (int p = 0; p < PATHS; p++) best[k][p] = -1;
    for (int round = 0; round < ROUNDS; round++)
        for (int p = 0; p < PATHS; p++) {
            if (cnclip_elementwise_use_path(p + 1) != p + 1) continue;
            for (int k = 0; k < KERNELS; k++) {
                if (k == 3) memcpy(ys, xs, sizeof(float) * (size_t)(sRows * sCols));
                double t = now();
                switch (k) {
                case 0: cnclip_gelu(xg, yg, rows * wide); break;
                case 1: cnclip_quick_gelu(xg, yg, rows * wide); break;
                case 2: cnclip_layer_norm_rows(xl, rows, width, w, b, 1e-5f, yl); break;
                case 3: cnclip_softmax_rows(ys, sRows, sCols); break;
                case 4: cnclip_add_rows(xl, w, yl, rows, width); break;
                }
                t = now() - t;
                if (best[k][p] < 0 || t < best[k][p]) best[k][p] = t;
            }
        }
    cnclip_elementwise_use_path(0);
    printf("| kernel (ms, one thread) | portable | AVX2/FMA | AVX-512 |\n|---|---:|---:|---:|\n");
    for (int k = 0; k < KERNELS; k++) {
        printf("| %s |", names[k]);
        for (int p = 0; p < PATHS; p++) {
            if (best[k][p] < 0) printf(" — |");
            else printf(" %.2f |", best[k][p] * 1e3);
        }
        printf("\n");
    }
    return 0;
}
