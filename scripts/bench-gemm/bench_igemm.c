// The int8 path's integer GEMM (Sources/CKernels/igemm.c), each kernel this CPU has, against our fp32 GEMM on the
// same products, one thread, weights packed beforehand as a loaded model holds them: GOP/s (a multiply-add counts 2) as the best of 5 alternating rounds.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "CKernels.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
    const struct { long m, n, k; const char *what; } shapes[] = {
        {788, 2304, 768, "ViT-B-16 batch 8, qkv (one thread's rows)"},
        {788, 3072, 768, "ViT-B-16 batch 8, mlp up"},
        {788, 768, 3072, "ViT-B-16 batch 8, mlp down"},
        {197, 1152, 768, "ViT-B-16 batch 1, qkv (one thread's columns)"},
        {832, 768, 768, "BERT batch 32 × 52 tokens, one projection"},
        {22, 1536, 768, "BERT one 20-character query, mlp up"},
    };
    const int kernels[] = {CNCLIP_IGEMM_PORTABLE, CNCLIP_IGEMM_AVX2, CNCLIP_IGEMM_VNNI, CNCLIP_IGEMM_VNNI512};
    printf("| product (m × n × k) | what | fp32 GFLOP/s | int8 portable | int8 AVX2 | int8 VNNI (256-bit) | int8 VNNI (512-bit) | best int8 / fp32 |\n");
    printf("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        long m = shapes[s].m, n = shapes[s].n, k = shapes[s].k;
        float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * n * k), *c = malloc(sizeof(float) * m * n);
        int8_t *qa = malloc(m * k), *qb = malloc(n * k);
        int32_t *qc = malloc(sizeof(int32_t) * m * n);
        for (long i = 0; i < m * k; i++) { qa[i] = (int8_t)(rand() % 255 - 127); a[i] = qa[i] / 127.0f; }
        for (long i = 0; i < n * k; i++) { qb[i] = (int8_t)(rand() % 255 - 127); b[i] = qb[i] / 127.0f; }
        int reps = (int)(2e9 / (2.0 * m * n * k)) + 1;
        double best[5] = {1e9, 1e9, 1e9, 1e9, 1e9};
        for (int round = 0; round < 5; round++)
            for (int engine = 0; engine < 5; engine++) {
                void *packed = NULL;
                int kernel = 0;
                if (engine == 0) {  // the fp32 weight packed once too, as fp32 inference holds it
                    kernel = cnclip_sgemm_kernel();
                    packed = aligned_alloc(64, (cnclip_sgemm_packed_count(n, k, kernel) * sizeof(float) + 63) / 64 * 64);
                    cnclip_sgemm_pack(n, k, b, k, kernel, packed);
                } else {
                    kernel = kernels[engine - 1];
                    cnclip_igemm_use_kernel(kernel);
                    if (cnclip_igemm_kernel() != kernel) continue;
                    // Weights are packed once, when a model is loaded.
                    packed = aligned_alloc(64, (cnclip_igemm_packed_size(n, k, kernel) + 63) / 64 * 64);
                    cnclip_igemm_pack(n, k, qb, k, kernel, packed);
                }
                double t = now();
                for (int r = 0; r < reps; r++) {
                    if (engine == 0) cnclip_sgemm_packed(m, 0, n, n, k, a, k, packed, kernel, NULL, c, n);
                    else cnclip_igemm_s8_packed(m, 0, n, n, k, qa, k, packed, kernel, qc, n);
                }
                t = now() - t;
                free(packed);
                if (t < best[engine]) best[engine] = t;
            }
        double op = 2.0 * m * n * k * reps;
        printf("| %ld × %ld × %ld | %s |", m, n, k, shapes[s].what);
        double fastest = 1e9;
        for (int e = 0; e < 5; e++) {
            printf(best[e] < 1e9 ? " %.1f |" : " — |", op / best[e] / 1e9);
            if (e > 0 && best[e] < fastest) fastest = best[e];
        }
        printf(" %.2f× |\n", best[0] / fastest);
        free(a); free(b); free(c); free(qa); free(qb); free(qc);
    }
    return 0;
}
