// A BLIS-style SGEMM whose rounding does not depend on the shape of the call (see CKernels.h). Three micro-kernels
// perform the same IEEE operations on every element in the same order, so they give identical bits and the choice
// is only a matter of speed: AVX-512 (12 rows × 32 columns of C in registers), AVX2/FMA (6 × 16), and a portable
// fallback (6 × 16, one lane at a time) for machines without either.
//
// Blocking: for each k-block (KC), op(a) is read in row panels — in place by the AVX-512 kernel when op(a) = a, packed
// otherwise (streamed from L3) — and op(b) is packed a block of columns at a time into column panels that stay in L2
// while every A panel passes over them. A weight packed once at load (`cnclip_sgemm_pack`) holds those column panels
// already.

#include "CKernels.h"
#include "packing.h"
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KC 512
#define MR_MAX 12
#define NR_MAX 32

/// A micro-kernel's tile (rows × columns of C) and how many columns of op(b) one packed block holds.
typedef struct { long mr, nr, nb; } Tile;

static Tile tileOf(int kernel) {
    if (kernel == CNCLIP_SGEMM_AVX512) return (Tile){12, 32, 192};
    return (Tile){6, 16, 96};
}

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

// A copy of a constant number of bytes that the compiler must inline: with plain memcpy, clang folds the cases
// of `copyFloats` back into one call of the library's memcpy with a variable size (5% of a training step).
#if defined(__has_builtin) && __has_builtin(__builtin_memcpy_inline)
#define COPY_CONSTANT(dst, src, bytes) __builtin_memcpy_inline(dst, src, bytes)
#else
#define COPY_CONSTANT(dst, src, bytes) memcpy(dst, src, bytes)
#endif

/// Copies `count` floats, with the panel widths spelled as constants so that the copy compiles to vector moves
/// instead of a call to memcpy per row of a panel.
static inline void copyFloats(float *dst, const float *src, long count) {
    switch (count) {
    case 4: COPY_CONSTANT(dst, src, 4 * sizeof(float)); break;
    case 6: COPY_CONSTANT(dst, src, 6 * sizeof(float)); break;
    case 8: COPY_CONSTANT(dst, src, 8 * sizeof(float)); break;
    case 12: COPY_CONSTANT(dst, src, 12 * sizeof(float)); break;
    case 16: COPY_CONSTANT(dst, src, 16 * sizeof(float)); break;
    case 32: COPY_CONSTANT(dst, src, 32 * sizeof(float)); break;
    default: memcpy(dst, src, (size_t)count * sizeof(float));
    }
}

/// op(a)[i0 ..< i0+mc][k0 ..< k0+kc] → `mr`-row panels `[kc][mr]`, zero rows past mc.
static void packA(int transA, int avx, const float *a, long lda, long i0, long mc, long k0, long kc, long mr, float *ap) {
    for (long p = 0; p < mc; p += mr) {
        long rows = mc - p < mr ? mc - p : mr;
        long k = 0;
        if (!transA && avx && rows == mr) {
            // Eight values of k at a time, eight rows at a time (the last row repeated to fill eight), transposed in
            // registers.
            float block[64] __attribute__((aligned(32)));
            for (; k + 8 <= kc; k += 8)
                for (long g = 0; g < mr; g += 8) {
                    const float *rowPointers[8];
                    for (long r = 0; r < 8; r++) {
                        long row = g + r < mr ? g + r : mr - 1;
                        rowPointers[r] = a + (i0 + p + row) * lda + k0 + k;
                    }
                    transpose8(rowPointers, block, 8);
                    long count = mr - g < 8 ? mr - g : 8;
                    for (int j = 0; j < 8; j++) copyFloats(ap + (k + j) * mr + g, block + j * 8, count);
                }
        }
        if (transA && rows == mr)  // the values of each k are contiguous
            for (; k < kc; k++) copyFloats(ap + k * mr, a + (k0 + k) * lda + i0 + p, mr);
        for (; k < kc; k++) {
            float *dst = ap + k * mr;
            if (transA) { const float *src = a + (k0 + k) * lda + i0 + p; for (long r = 0; r < rows; r++) dst[r] = src[r]; }
            else for (long r = 0; r < rows; r++) dst[r] = a[(i0 + p + r) * lda + k0 + k];
            for (long r = rows; r < mr; r++) dst[r] = 0;
        }
        ap += kc * mr;
    }
}

/// op(b)[k0 ..< k0+kc][j0 ..< j0+nc] → `nr`-column panels `[kc][nr]`, zero columns past nc.
static void packB(int transB, int avx, const float *b, long ldb, long k0, long kc, long j0, long nc, long nr, float *bp) {
    for (long q = 0; q < nc; q += nr) {
        long cols = nc - q < nr ? nc - q : nr;
        long k = 0;
        if (transB && avx && cols == nr)
            for (; k + 8 <= kc; k += 8)
                for (long g = 0; g < nr; g += 8) {
                    const float *src = b + (j0 + q + g) * ldb + k0 + k;
                    const float *rowPointers[8];
                    for (int c = 0; c < 8; c++) rowPointers[c] = src + c * ldb;
                    transpose8(rowPointers, bp + k * nr + g, nr);
                }
        for (; k < kc; k++) {
            float *dst = bp + k * nr;
            if (transB) for (long c = 0; c < cols; c++) dst[c] = b[(j0 + q + c) * ldb + k0 + k];
            else copyFloats(dst, b + (k0 + k) * ldb + j0 + q, cols);
            for (long c = cols; c < nr; c++) dst[c] = 0;
        }
        bp += kc * nr;
    }
}

/// One tile of `R` (≤ 12) rows × 32 columns: sums over the k-block, then `c = alpha*sum + beta*c + bias` (first block;
/// `bias` the tile's 32 column values or NULL) or `c += alpha*sum`. A is a packed panel `[kc][12]`, or with `inPlace`
/// the rows of op(a) themselves (`a` row 0's first value of the k-block, rows `lda` apart): read where they lie, they
/// need no packing (3–6% of a product). Every element's operations are the same whatever R, so a short last row
/// panel (a 14-token query is 12 + 2 rows) computes only its rows and gives the same bits.
__attribute__((target("avx512f"), always_inline))
static inline void kernelAVX512Body(const int R, long kc, const float *a, long lda, const int inPlace, const float *bp, float *c,
                                    long ldc, int first, float alpha, float beta, const float *bias) {
    // Four row bases, each with offsets 0, lda and 2·lda: x86 addressing reaches those without more registers.
    const float *r0 = a, *r3 = R > 3 ? a + 3 * lda : a, *r6 = R > 6 ? a + 6 * lda : a, *r9 = R > 9 ? a + 9 * lda : a;
#define AT(r) (inPlace ? ((r) < 3 ? r0 : (r) < 6 ? r3 : (r) < 9 ? r6 : r9)[k + (r) % 3 * lda] : a[k * 12 + (r)])
    // Named accumulators, not an array: clang keeps an array of vectors in memory.
#define ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define DECLARE(r) __m512 c##r##0 = _mm512_setzero_ps(), c##r##1 = _mm512_setzero_ps();
#define STEP(r) if ((r) < R) { __m512 av = _mm512_set1_ps(AT(r)); c##r##0 = _mm512_fmadd_ps(av, b0, c##r##0); \
        c##r##1 = _mm512_fmadd_ps(av, b1, c##r##1); }
    ROWS(DECLARE)
    for (long k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
        ROWS(STEP)
        bp += 32;
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#define OUT(r, x, v) { float *p = c + (r) * ldc + (x); __m512 t = alpha == 1 ? (v) : _mm512_mul_ps(va, (v)); \
        if (!first) t = _mm512_add_ps(_mm512_loadu_ps(p), t); \
        else { if (beta != 0) t = _mm512_fmadd_ps(vb, _mm512_loadu_ps(p), t); \
               if (bias) t = _mm512_add_ps(t, _mm512_loadu_ps(bias + (x))); } \
        _mm512_storeu_ps(p, t); }
#define STORE(r) if ((r) < R) { OUT(r, 0, c##r##0) OUT(r, 16, c##r##1) }
    ROWS(STORE)
#undef STORE
#undef OUT
#undef STEP
#undef DECLARE
#undef ROWS
#undef AT
}

/// The 12 × 32 tile on a packed A panel `[kc][12]`.
__attribute__((target("avx512f")))
static void kernelAVX512(long kc, const float *ap, const float *bp, float *c, long ldc, int first, float alpha, float beta,
                         const float *bias) {
    kernelAVX512Body(12, kc, ap, 0, 0, bp, c, ldc, first, alpha, beta, bias);
}

/// A tile of `rows` (1...12) rows of op(a) in place, `lda` apart, × 32 columns.
__attribute__((target("avx512f")))
static void kernelAVX512InPlace(long rows, long kc, const float *a, long lda, const float *bp, float *c, long ldc, int first,
                                float alpha, float beta, const float *bias) {
    switch (rows) {
#define CASE(R) case R: kernelAVX512Body(R, kc, a, lda, 1, bp, c, ldc, first, alpha, beta, bias); break;
    CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8) CASE(9) CASE(10) CASE(11) CASE(12)
#undef CASE
    default: abort();
    }
}

/// The same operations on a 6 × 16 tile with 256-bit vectors.
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
        ap += 6; bp += 16;
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

/// The same operations on a 6 × 16 tile, one lane at a time.
static void kernelPortable(long kc, const float *ap, const float *bp, float *c, long ldc, int first, float alpha, float beta,
                           const float *bias) {
    float acc[6][16] = {{0}};
    for (long k = 0; k < kc; k++) {
        for (int r = 0; r < 6; r++) for (int x = 0; x < 16; x++) acc[r][x] = fmaf(ap[r], bp[x], acc[r][x]);
        ap += 6; bp += 16;
    }
    for (int r = 0; r < 6; r++)
        for (int x = 0; x < 16; x++) {
            float *p = c + r * ldc + x;
            float t = alpha == 1 ? acc[r][x] : alpha * acc[r][x];
            if (!first) t = *p + t;
            else { if (beta != 0) t = fmaf(beta, *p, t); if (bias) t = t + bias[x]; }
            *p = t;
        }
}

static int forcedKernel;

void cnclip_sgemm_use_kernel(int kernel) { __atomic_store_n(&forcedKernel, kernel, __ATOMIC_SEQ_CST); }

static int supported(int kernel) {
    __builtin_cpu_init();
    switch (kernel) {
    case CNCLIP_SGEMM_PORTABLE: return 1;
    case CNCLIP_SGEMM_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CNCLIP_SGEMM_AVX512: return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2");
    default: return 0;
    }
}

int cnclip_sgemm_kernel(void) {
    int forced = __atomic_load_n(&forcedKernel, __ATOMIC_SEQ_CST);
    if (forced) return supported(forced) ? forced : -1;
    static int best;  // the CPU does not change: decided once (a benign race, every thread computes the same value)
    if (!best) best = supported(CNCLIP_SGEMM_AVX512) ? CNCLIP_SGEMM_AVX512 : supported(CNCLIP_SGEMM_AVX2) ? CNCLIP_SGEMM_AVX2 : CNCLIP_SGEMM_PORTABLE;
    return best;
}

void cnclip_sgemm_kernel_tile(int kernel, long *rows, long *columns) {
    Tile tile = tileOf(kernel > 0 ? kernel : CNCLIP_SGEMM_PORTABLE);
    *rows = tile.mr;
    *columns = tile.nr;
}

void cnclip_sgemm_tile(long *rows, long *columns) { cnclip_sgemm_kernel_tile(cnclip_sgemm_kernel(), rows, columns); }

/// Where a product's A comes from for one k-block: packed row panels `[kc][mr]` (`panels`), or, for the AVX-512
/// kernel on op(a) = a, the rows in place (`rows`, row 0's first value of the k-block, `lda` apart).
typedef struct { const float *panels, *rows; long lda; } ASource;

/// A (all m rows for one k-block) against the column panels `bp` (nc columns, consecutive `[kc][nr]` panels):
/// `c[m, nc]`. A tile past the last column, or past the last row of packed A, is computed whole in a buffer and its
/// valid part copied out.
static void multiplyPanels(int kernel, Tile tile, long m, long nc, long kc, ASource a, const float *bp, int first,
                           float alpha, float beta, const float *bias, float *c, long ldc) {
    long mr = tile.mr, nr = tile.nr;
    for (long p = 0; p < m; p += mr) {
        long rows = m - p < mr ? m - p : mr;
        for (long q = 0; q < nc; q += nr) {
            long cols = nc - q < nr ? nc - q : nr;
            float *ct = c + p * ldc + q, *out = ct;
            const float *bt = bp + q * kc;
            const float *tileBias = bias ? bias + q : NULL;
            float edge[MR_MAX * NR_MAX] __attribute__((aligned(64))), edgeBias[NR_MAX] = {0};
            long ldo = ldc;
            int isEdge = cols < nr || (rows < mr && !a.rows);
            if (isEdge) {
                out = edge;
                ldo = nr;
                memset(edge, 0, sizeof edge);
                if (!first || beta != 0)
                    for (long r = 0; r < rows; r++) memcpy(edge + r * nr, ct + r * ldc, (size_t)cols * sizeof(float));
                if (tileBias) { memcpy(edgeBias, tileBias, (size_t)cols * sizeof(float)); tileBias = edgeBias; }
            }
            if (a.rows) {
                kernelAVX512InPlace(rows, kc, a.rows + p * a.lda, a.lda, bt, out, ldo, first, alpha, beta, tileBias);
            } else {
                const float *at = a.panels + p * kc;
                if (kernel == CNCLIP_SGEMM_AVX512) kernelAVX512(kc, at, bt, out, ldo, first, alpha, beta, tileBias);
                else if (kernel == CNCLIP_SGEMM_AVX2) kernelAVX2(kc, at, bt, out, ldo, first, alpha, beta, tileBias);
                else kernelPortable(kc, at, bt, out, ldo, first, alpha, beta, tileBias);
            }
            if (isEdge)
                for (long r = 0; r < rows; r++) memcpy(ct + r * ldc, edge + r * nr, (size_t)cols * sizeof(float));
        }
    }
}

/// A for one k-block (`a` at op(a)'s row 0, `k0`): in place for the AVX-512 kernel when op(a) = a, otherwise packed
/// into the thread's buffer (reserved only then).
static ASource sourceOfA(int kernel, int transA, const float *a, long lda, long m, long k0, long kc, long mr) {
    if (kernel == CNCLIP_SGEMM_AVX512 && !transA) return (ASource){NULL, a + k0, lda};
    float *ap = cnclip_reserve(&packedA, &packedABytes, sizeof(float) * (size_t)kc * (size_t)((m + mr - 1) / mr * mr));
    packA(transA, kernel != CNCLIP_SGEMM_PORTABLE, a, lda, 0, m, k0, kc, mr, ap);
    return (ASource){ap, NULL, 0};
}

/// c = beta * c + bias for a product without terms (k = 0; beta == 0 ignores whatever c held).
static void noProducts(long m, long n, float beta, const float *bias, float *c, long ldc) {
    for (long i = 0; i < m; i++)
        for (long j = 0; j < n; j++) {
            float t = beta == 0 ? 0 : beta * c[i * ldc + j];
            c[i * ldc + j] = bias ? t + bias[j] : t;
        }
}

void cnclip_sgemm(int transA, int transB, long m, long n, long k, float alpha,
                  const float *a, long lda, const float *b, long ldb, float beta, const float *bias, float *c, long ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) { noProducts(m, n, beta, bias, c, ldc); return; }
    int kernel = cnclip_sgemm_kernel();
    if (kernel < 0) abort();  // a forced kernel this CPU lacks: the caller checks cnclip_sgemm_kernel first
    int avx = kernel != CNCLIP_SGEMM_PORTABLE;
    Tile tile = tileOf(kernel);
    long mr = tile.mr, nr = tile.nr, nb = tile.nb;
    long kcMax = k < KC ? k : KC;
    float *bp = cnclip_reserve(&packedB, &packedBBytes, sizeof(float) * (size_t)kcMax * (size_t)nb);
    for (long k0 = 0; k0 < k; k0 += KC) {
        long kc = k - k0 < KC ? k - k0 : KC;
        ASource as = sourceOfA(kernel, transA, a, lda, m, k0, kc, mr);
        for (long j0 = 0; j0 < n; j0 += nb) {
            long nc = n - j0 < nb ? n - j0 : nb;
            packB(transB, avx, b, ldb, k0, kc, j0, nc, nr, bp);
            multiplyPanels(kernel, tile, m, nc, kc, as, bp, k0 == 0, alpha, beta, bias ? bias + j0 : NULL, c + j0, ldc);
        }
    }
}

// A weight packed once. For each k-block (k0 = 0, 512, …), the panels of all n columns, each `[kc][nr]` with zero
// columns past n: the panels `cnclip_sgemm` would pack on every call, so a product on them is the same operations.

/// Columns of the packed form: n rounded up to the kernel's panel width.
static long paddedColumns(long n, int kernel) {
    long nr = tileOf(kernel).nr;
    return (n + nr - 1) / nr * nr;
}

size_t cnclip_sgemm_packed_count(long n, long k, int kernel) { return (size_t)paddedColumns(n, kernel) * (size_t)k; }

void cnclip_sgemm_pack(long n, long k, const float *w, long ldw, int kernel, float *packed) {
    long np = paddedColumns(n, kernel), nr = tileOf(kernel).nr;
    int avx = kernel != CNCLIP_SGEMM_PORTABLE;
    for (long k0 = 0; k0 < k; k0 += KC) {
        long kc = k - k0 < KC ? k - k0 : KC;
        packB(1, avx, w, ldw, k0, kc, 0, n, nr, packed + k0 * np);
    }
}

void cnclip_sgemm_unpack(long n, long k, const float *packed, int kernel, float *w, long ldw) {
    long np = paddedColumns(n, kernel), nr = tileOf(kernel).nr;
    for (long k0 = 0; k0 < k; k0 += KC) {
        long kc = k - k0 < KC ? k - k0 : KC;
        for (long j = 0; j < n; j++) {
            const float *panel = packed + k0 * np + j / nr * kc * nr + j % nr;
            for (long kk = 0; kk < kc; kk++) w[j * ldw + k0 + kk] = panel[kk * nr];
        }
    }
}

void cnclip_sgemm_packed(long m, long j0, long nc, long n, long k, const float *a, long lda, const float *packed, int kernel,
                         const float *bias, float *c, long ldc) {
    if (m <= 0 || nc <= 0) return;
    if (k <= 0) { noProducts(m, nc, 0, bias ? bias + j0 : NULL, c, ldc); return; }
    Tile tile = tileOf(kernel);
    long mr = tile.mr, nb = tile.nb, np = paddedColumns(n, kernel);
    for (long k0 = 0; k0 < k; k0 += KC) {
        long kc = k - k0 < KC ? k - k0 : KC;
        ASource as = sourceOfA(kernel, 0, a, lda, m, k0, kc, mr);
        // Blocks of nb columns, as cnclip_sgemm's, so that a block's panels stay in L2 while every row panel passes.
        for (long q0 = 0; q0 < nc; q0 += nb) {
            long cols = nc - q0 < nb ? nc - q0 : nb;
            const float *bp = packed + k0 * np + (j0 + q0) * kc;
            multiplyPanels(kernel, tile, m, cols, kc, as, bp, k0 == 0, 1, 0, bias ? bias + j0 + q0 : NULL, c + q0, ldc);
        }
    }
}
