// A BLIS-style SGEMM whose rounding does not depend on the shape of the call (see CKernels.h). An AVX2/FMA
// micro-kernel (6 rows × 16 columns of C in registers) with a portable fallback that performs the same IEEE
// operations in the same order, so results are identical on machines without AVX2.
//
// Blocking: for each k-block (KC), all of op(a) is packed into 6-row panels (streamed from L3), and op(b) is
// packed NB columns at a time into 16-column panels that stay in L2 while every A panel passes over them.

#include "CKernels.h"
#include "packing.h"
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MR 6
#define NR 16
#define KC 512
#define NB 96

static _Thread_local void *packedA, *packedB;
static _Thread_local size_t packedABytes, packedBBytes;

/// dst[k * dstride + c] = rows[c][k] for c, k < 8 (dst 32-byte aligned).
__attribute__((target("avx2,fma")))
static inline void transpose8(const float *const rows[8], float *dst, long dstride) {
    __m256 r0 = _mm256_loadu_ps(rows[0]), r1 = _mm256_loadu_ps(rows[1]), r2 = _mm256_loadu_ps(rows[2]),
           r3 = _mm256_loadu_ps(rows[3]), r4 = _mm256_loadu_ps(rows[4]), r5 = _mm256_loadu_ps(rows[5]),
           r6 = _mm256_loadu_ps(rows[6]), r7 = _mm256_loadu_ps(rows[7]);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
           t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
           t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE),
           s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE),
           s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE),
           s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_store_ps(dst + 0 * dstride, _mm256_permute2f128_ps(s0, s4, 0x20));
    _mm256_store_ps(dst + 1 * dstride, _mm256_permute2f128_ps(s1, s5, 0x20));
    _mm256_store_ps(dst + 2 * dstride, _mm256_permute2f128_ps(s2, s6, 0x20));
    _mm256_store_ps(dst + 3 * dstride, _mm256_permute2f128_ps(s3, s7, 0x20));
    _mm256_store_ps(dst + 4 * dstride, _mm256_permute2f128_ps(s0, s4, 0x31));
    _mm256_store_ps(dst + 5 * dstride, _mm256_permute2f128_ps(s1, s5, 0x31));
    _mm256_store_ps(dst + 6 * dstride, _mm256_permute2f128_ps(s2, s6, 0x31));
    _mm256_store_ps(dst + 7 * dstride, _mm256_permute2f128_ps(s3, s7, 0x31));
}

/// op(a)[i0 ..< i0+mc][k0 ..< k0+kc] → 6-row panels `[kc][6]`, zero rows past mc.
static void packA(int transA, int avx, const float *a, long lda, long i0, long mc, long k0, long kc, float *ap) {
    for (long p = 0; p < mc; p += MR) {
        long mr = mc - p < MR ? mc - p : MR;
        long k = 0;
        if (!transA && avx && mr == MR) {
            // Eight values of k at a time: the six rows (the last repeated to fill eight) transposed in registers.
            float block[64] __attribute__((aligned(32)));
            for (; k + 8 <= kc; k += 8) {
                const float *src = a + (i0 + p) * lda + k0 + k;
                const float *rows[8] = {src, src + lda, src + 2 * lda, src + 3 * lda, src + 4 * lda, src + 5 * lda,
                                        src + 5 * lda, src + 5 * lda};
                transpose8(rows, block, 8);
                for (int j = 0; j < 8; j++) memcpy(ap + (k + j) * MR, block + j * 8, MR * sizeof(float));
            }
        }
        if (transA && mr == MR)  // the six values of each k are contiguous
            for (; k < kc; k++) memcpy(ap + k * MR, a + (k0 + k) * lda + i0 + p, MR * sizeof(float));
        for (; k < kc; k++) {
            float *dst = ap + k * MR;
            if (transA) { const float *src = a + (k0 + k) * lda + i0 + p; for (long r = 0; r < mr; r++) dst[r] = src[r]; }
            else for (long r = 0; r < mr; r++) dst[r] = a[(i0 + p + r) * lda + k0 + k];
            for (long r = mr; r < MR; r++) dst[r] = 0;
        }
        ap += kc * MR;
    }
}

/// op(b)[k0 ..< k0+kc][j0 ..< j0+nc] → 16-column panels `[kc][16]`, zero columns past nc.
static void packB(int transB, int avx, const float *b, long ldb, long k0, long kc, long j0, long nc, float *bp) {
    for (long q = 0; q < nc; q += NR) {
        long nr = nc - q < NR ? nc - q : NR;
        long k = 0;
        if (transB && avx && nr == NR)
            for (; k + 8 <= kc; k += 8) {
                const float *src = b + (j0 + q) * ldb + k0 + k;
                const float *low[8], *high[8];
                for (int c = 0; c < 8; c++) { low[c] = src + c * ldb; high[c] = src + (c + 8) * ldb; }
                transpose8(low, bp + k * NR, NR);
                transpose8(high, bp + k * NR + 8, NR);
            }
        for (; k < kc; k++) {
            float *dst = bp + k * NR;
            if (transB) for (long c = 0; c < nr; c++) dst[c] = b[(j0 + q + c) * ldb + k0 + k];
            else memcpy(dst, b + (k0 + k) * ldb + j0 + q, (size_t)nr * sizeof(float));
            for (long c = nr; c < NR; c++) dst[c] = 0;
        }
        bp += kc * NR;
    }
}

/// One 6 × 16 tile: sums over the k-block, then `c = alpha*sum + beta*c + bias` (first block; `bias` the tile's 16
/// column values or NULL) or `c += alpha*sum`.
__attribute__((target("avx2,fma")))
static void kernelAVX2(long kc, const float *ap, const float *bp, float *c, long ldc, int first, float alpha, float beta,
                       const float *bias) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
           c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (long k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8), a;
        a = _mm256_broadcast_ss(ap + 0); c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
        a = _mm256_broadcast_ss(ap + 1); c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
        a = _mm256_broadcast_ss(ap + 2); c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21);
        a = _mm256_broadcast_ss(ap + 3); c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31);
        a = _mm256_broadcast_ss(ap + 4); c40 = _mm256_fmadd_ps(a, b0, c40); c41 = _mm256_fmadd_ps(a, b1, c41);
        a = _mm256_broadcast_ss(ap + 5); c50 = _mm256_fmadd_ps(a, b0, c50); c51 = _mm256_fmadd_ps(a, b1, c51);
        ap += MR; bp += NR;
    }
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#define OUT(r, x, v) { float *p = c + (r) * ldc + (x); __m256 t = alpha == 1 ? (v) : _mm256_mul_ps(va, (v)); \
        if (!first) t = _mm256_add_ps(_mm256_loadu_ps(p), t); \
        else { if (beta != 0) t = _mm256_fmadd_ps(vb, _mm256_loadu_ps(p), t); \
               if (bias) t = _mm256_add_ps(t, _mm256_loadu_ps(bias + (x))); } \
        _mm256_storeu_ps(p, t); }
    OUT(0, 0, c00) OUT(0, 8, c01) OUT(1, 0, c10) OUT(1, 8, c11) OUT(2, 0, c20) OUT(2, 8, c21)
    OUT(3, 0, c30) OUT(3, 8, c31) OUT(4, 0, c40) OUT(4, 8, c41) OUT(5, 0, c50) OUT(5, 8, c51)
#undef OUT
}

/// The same operations as `kernelAVX2`, one lane at a time.
static void kernelPortable(long kc, const float *ap, const float *bp, float *c, long ldc, int first, float alpha, float beta,
                           const float *bias) {
    float acc[MR][NR] = {{0}};
    for (long k = 0; k < kc; k++) {
        for (int r = 0; r < MR; r++) for (int x = 0; x < NR; x++) acc[r][x] = fmaf(ap[r], bp[x], acc[r][x]);
        ap += MR; bp += NR;
    }
    for (int r = 0; r < MR; r++)
        for (int x = 0; x < NR; x++) {
            float *p = c + r * ldc + x;
            float t = alpha == 1 ? acc[r][x] : alpha * acc[r][x];
            if (!first) t = *p + t;
            else { if (beta != 0) t = fmaf(beta, *p, t); if (bias) t = t + bias[x]; }
            *p = t;
        }
}

static int forcePortable;

void cnclip_gemm_use_portable(int on) { __atomic_store_n(&forcePortable, on, __ATOMIC_SEQ_CST); }

void cnclip_sgemm(int transA, int transB, long m, long n, long k, float alpha,
                  const float *a, long lda, const float *b, long ldb, float beta, const float *bias, float *c, long ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {  // no products: c = beta * c + bias (beta == 0 ignores whatever c held)
        for (long i = 0; i < m; i++)
            for (long j = 0; j < n; j++) {
                float t = beta == 0 ? 0 : beta * c[i * ldc + j];
                c[i * ldc + j] = bias ? t + bias[j] : t;
            }
        return;
    }
    __builtin_cpu_init();
    int avx = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && !__atomic_load_n(&forcePortable, __ATOMIC_SEQ_CST);
    long kcMax = k < KC ? k : KC;
    float *ap = cnclip_reserve(&packedA, &packedABytes, sizeof(float) * (size_t)kcMax * (size_t)((m + MR - 1) / MR * MR));
    float *bp = cnclip_reserve(&packedB, &packedBBytes, sizeof(float) * (size_t)kcMax * NB);
    for (long k0 = 0; k0 < k; k0 += KC) {
        long kc = k - k0 < KC ? k - k0 : KC;
        int first = k0 == 0;
        packA(transA, avx, a, lda, 0, m, k0, kc, ap);
        for (long j0 = 0; j0 < n; j0 += NB) {
            long nc = n - j0 < NB ? n - j0 : NB;
            packB(transB, avx, b, ldb, k0, kc, j0, nc, bp);
            for (long p = 0; p < m; p += MR) {
                long mr = m - p < MR ? m - p : MR;
                for (long q = 0; q < nc; q += NR) {
                    long nr = nc - q < NR ? nc - q : NR;
                    float *ct = c + p * ldc + j0 + q;
                    const float *at = ap + p * kc, *bt = bp + q * kc;
                    const float *tileBias = bias ? bias + j0 + q : NULL;
                    if (mr == MR && nr == NR) {
                        if (avx) kernelAVX2(kc, at, bt, ct, ldc, first, alpha, beta, tileBias);
                        else kernelPortable(kc, at, bt, ct, ldc, first, alpha, beta, tileBias);
                        continue;
                    }
                    // An edge tile: the same operations on a full tile in a buffer, then the valid part copied out.
                    float tile[MR * NR] __attribute__((aligned(32))), edgeBias[NR] = {0};
                    memset(tile, 0, sizeof tile);
                    if (!first || beta != 0)
                        for (long r = 0; r < mr; r++) memcpy(tile + r * NR, ct + r * ldc, (size_t)nr * sizeof(float));
                    if (tileBias) { memcpy(edgeBias, tileBias, (size_t)nr * sizeof(float)); tileBias = edgeBias; }
                    if (avx) kernelAVX2(kc, at, bt, tile, NR, first, alpha, beta, tileBias);
                    else kernelPortable(kc, at, bt, tile, NR, first, alpha, beta, tileBias);
                    for (long r = 0; r < mr; r++) memcpy(ct + r * ldc, tile + r * NR, (size_t)nr * sizeof(float));
                }
            }
        }
    }
}
