// Our GEMM (Sources/CKernels/gemm.c) against OpenBLAS's cblas_sgemm, one thread each, on the products the
// models make (rows × columns × depth, weights transposed as nn.Linear stores them): GFLOP/s as the best of 5, for
// our AVX2 kernel and, where the CPU has it, our AVX-512 one (the one cnclip then uses), packing the weight on every
// call (training, and any product of two activations) and packed once as a model loaded for inference holds it.
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "CKernels.h"

extern void openblas_set_num_threads(int);

static float *randomMatrix(long n) {
    float *x = malloc(sizeof(float) * n);
    for (long i = 0; i < n; i++) x[i] = rand() / (float)RAND_MAX - 0.5f;
    return x;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
    openblas_set_num_threads(1);
    const struct { long m, n, k; const char *what; } shapes[] = {
        {788, 2304, 768, "ViT-B-16 batch 8, qkv (one thread's rows)"},
        {788, 3072, 768, "ViT-B-16 batch 8, mlp up"},
        {788, 768, 3072, "ViT-B-16 batch 8, mlp down"},
        {197, 1152, 768, "ViT-B-16 batch 1, qkv (one thread's columns)"},
        {832, 768, 768, "BERT batch 32 × 52 tokens, one projection (one thread's rows)"},
        {22, 1536, 768, "BERT one 20-character query, mlp up (one thread's columns)"},
        {197, 197, 64, "ViT-B-16 attention scores of one head"},
    };
    int has512 = (cnclip_sgemm_use_kernel(CNCLIP_SGEMM_AVX512), cnclip_sgemm_kernel() > 0);
    cnclip_sgemm_use_kernel(0);
    printf("| product (m × n × k) | what | OpenBLAS GFLOP/s | ours AVX2 GFLOP/s | ours AVX-512 GFLOP/s | ours, weight packed at load | ours ÷ OpenBLAS |\n"
           "| --- | --- | ---: | ---: | ---: | ---: | ---: |\n");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        long m = shapes[s].m, n = shapes[s].n, k = shapes[s].k;
        float *a = randomMatrix(m * k), *b = randomMatrix(k * n), *c = malloc(sizeof(float) * m * n);
        int best512 = has512 ? CNCLIP_SGEMM_AVX512 : CNCLIP_SGEMM_AVX2;
        size_t packedBytes = (cnclip_sgemm_packed_count(n, k, best512) * sizeof(float) + 63) / 64 * 64;
        float *packed = aligned_alloc(64, packedBytes);
        cnclip_sgemm_pack(n, k, b, k, best512, packed);
        int reps = (int)(2e9 / (2.0 * m * n * k)) + 1;
        double best[4] = {1e9, 1e9, 1e9, 1e9};
        for (int round = 0; round < 5; round++)
            for (int engine = 0; engine < 4; engine++) {
                if (engine == 2 && !has512) continue;
                cnclip_sgemm_use_kernel(engine == 1 ? CNCLIP_SGEMM_AVX2 : best512);
                double t = now();
                for (int r = 0; r < reps; r++) {
                    if (engine == 0) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1, a, k, b, k, 0, c, n);
                    else if (engine == 3) cnclip_sgemm_packed(m, 0, n, n, k, a, k, packed, best512, NULL, c, n);
                    else cnclip_sgemm(0, 1, m, n, k, 1, a, k, b, k, 0, NULL, c, n);
                }
                t = now() - t;
                if (t < best[engine]) best[engine] = t;
            }
        cnclip_sgemm_use_kernel(0);
        double flop = 2.0 * m * n * k * reps, ours = has512 ? best[2] : best[1];
        char wide[32] = "—";
        if (has512) snprintf(wide, sizeof wide, "%.1f", flop / best[2] / 1e9);
        printf("| %ld × %ld × %ld | %s | %.1f | %.1f | %s | %.1f | %.2f× |\n", m, n, k, shapes[s].what, flop / best[0] / 1e9,
               flop / best[1] / 1e9, wide, flop / best[3] / 1e9, best[0] / ours);
        free(a); free(b); free(c); free(packed);
    }
    return 0;
}
