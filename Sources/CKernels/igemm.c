// The integer GEMM of the int8 path: c[m, n] = a[m, k] · b[n, k]ᵀ with int8 inputs and exact int32 sums. Because
// integer sums do not round, every kernel (AVX-512 VNNI, AVX2, portable) gives the same integers, whatever the
// shape, the blocking or how a caller splits the rows.
//
// Kernels, chosen at run time:
// - AVX-512 VNNI on 256-bit registers (`vpdpbusd`: 4 unsigned × signed byte products added into each int32 lane):
//   activations are offset by 128 to unsigned bytes, and 128 · (the column sums of b) is subtracted at the store;
// - AVX2 (`vpmaddwd` on bytes widened to int16: 2 products per lane, never saturating);
// - portable C on the AVX2 layout.
// Blocking as in gemm.c: k in blocks of KC, b packed NB columns at a time into 16-column panels, a into 6-row panels.

#include "CKernels.h"
#include "packing.h"
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// The dequantization, in the fused store of the 512-bit kernel as in the functions at the end, is a product then a
// sum, never a fused multiply-add: every path gives the same bits.
#pragma clang fp contract(off)

#define MR 6
#define NR 16
#define KC 1024
#define NB 128

static _Thread_local void *packedA;
static _Thread_local size_t packedABytes;

enum { HasAVX2 = 1, HasAVX512 = 2, HasVNNI = 4, HasVNNI512 = 8, FeaturesRead = 16 };

/// The CPU's features, read once (a benign race: every thread computes the same value). Asking the CPU on every tile
/// cost about as much as dequantizing it.
static int cpuFeatures(void) {
    static int cached;
    int f = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (f) return f;
    __builtin_cpu_init();
    f = FeaturesRead;
    if (__builtin_cpu_supports("avx2")) f |= HasAVX2;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) f |= HasAVX512;
    if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl")) f |= HasVNNI;
    if ((f & HasVNNI) && (f & HasAVX512)) f |= HasVNNI512;
    __atomic_store_n(&cached, f, __ATOMIC_RELAXED);
    return f;
}

/// Groups `0 ..< whole / 16 · 16` of a whole 6-row panel in the quads layout, sixteen at a time: each row's 64 bytes
/// offset to unsigned, then interleaved `[group][row][4]` by dword permutes. Returns the groups done.
__attribute__((target("avx512f")))
static long packQuadsAVX512(const int8_t *const rows[MR], long whole, uint8_t *dst) {
    // Output dword d of the 16 groups is row d % 6's dword d / 6: six output vectors, each drawn from row pairs
    // (0, 1), (2, 3), (4, 5) by one index vector and blended by row.
    __m512i index[MR];
    __mmask16 rows23[MR], rows45[MR];
    const __m512i one = _mm512_set1_epi32(1);
    for (int o = 0; o < MR; o++) {
        __m512i d = _mm512_add_epi32(_mm512_set1_epi32(16 * o), _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
        __m512i g = _mm512_srli_epi32(_mm512_mullo_epi32(d, _mm512_set1_epi32(43)), 8);  // d / 6 for d < 96
        __m512i r = _mm512_sub_epi32(d, _mm512_mullo_epi32(g, _mm512_set1_epi32(6)));
        index[o] = _mm512_add_epi32(g, _mm512_slli_epi32(_mm512_and_si512(r, one), 4));
        __m512i pair = _mm512_srli_epi32(r, 1);
        rows23[o] = _mm512_cmpeq_epi32_mask(pair, one);
        rows45[o] = _mm512_cmpeq_epi32_mask(pair, _mm512_set1_epi32(2));
    }
    const __m512i flip = _mm512_set1_epi32((int)0x80808080u);
    long q = 0;
    for (; q + 16 <= whole; q += 16) {
        __m512i r0 = _mm512_xor_si512(_mm512_loadu_si512(rows[0] + 4 * q), flip),
                r1 = _mm512_xor_si512(_mm512_loadu_si512(rows[1] + 4 * q), flip),
                r2 = _mm512_xor_si512(_mm512_loadu_si512(rows[2] + 4 * q), flip),
                r3 = _mm512_xor_si512(_mm512_loadu_si512(rows[3] + 4 * q), flip),
                r4 = _mm512_xor_si512(_mm512_loadu_si512(rows[4] + 4 * q), flip),
                r5 = _mm512_xor_si512(_mm512_loadu_si512(rows[5] + 4 * q), flip);
        for (int o = 0; o < MR; o++) {
            __m512i v = _mm512_permutex2var_epi32(r0, index[o], r1);
            v = _mm512_mask_blend_epi32(rows23[o], v, _mm512_permutex2var_epi32(r2, index[o], r3));
            v = _mm512_mask_blend_epi32(rows45[o], v, _mm512_permutex2var_epi32(r4, index[o], r5));
            _mm512_storeu_si512(dst + 64 * o, v);
        }
        dst += 64 * MR;
    }
    return q;
}

/// The layouts: G k-values per group (2 as int16 for AVX2/portable, 4 as bytes for VNNI).
typedef enum { LayoutPairs16, LayoutQuads8 } Layout;

/// a[i0 ..< i0+mc][k0 ..< k0+kc] → 6-row panels `[groups][6][G]`; k past kc and rows past mc are padded (zero for
/// pairs; 128, that is zero, for quads, whose bytes are a + 128).
static void packA(Layout layout, const int8_t *a, long lda, long mc, long k0, long kc, void *dst) {
    int g = layout == LayoutPairs16 ? 2 : 4;
    long groups = (kc + g - 1) / g, whole = kc / g;
    int16_t *p16 = dst;
    uint8_t *p8 = dst;
    for (long p = 0; p < mc; p += MR) {
        long q = 0;
        if (p + MR <= mc) {
            // Whole groups of a whole panel: word moves (for quads, v + 128 as a byte is v with its top bit flipped).
            const int8_t *rows[MR];
            for (int r = 0; r < MR; r++) rows[r] = a + (p + r) * lda + k0;
            if (layout == LayoutQuads8 && (cpuFeatures() & HasAVX512)) {
                q = packQuadsAVX512(rows, whole, p8);
                p8 += q * 4 * MR;
            }
            if (layout == LayoutQuads8)
                for (; q < whole; q++)
                    for (int r = 0; r < MR; r++) {
                        uint32_t v;
                        memcpy(&v, rows[r] + 4 * q, 4);
                        v ^= 0x80808080u;
                        memcpy(p8, &v, 4);
                        p8 += 4;
                    }
            else
                for (; q < whole; q++)
                    for (int r = 0; r < MR; r++) {
                        *p16++ = rows[r][2 * q];
                        *p16++ = rows[r][2 * q + 1];
                    }
        }
        for (; q < groups; q++)
            for (int r = 0; r < MR; r++)
                for (int t = 0; t < g; t++) {
                    long kk = q * g + t, row = p + r;
                    int v = row < mc && kk < kc ? a[row * lda + k0 + kk] : 0;
                    if (layout == LayoutPairs16) *p16++ = (int16_t)v;
                    else *p8++ = (uint8_t)(v + 128);
                }
    }
}

/// b[j0 ..< j0+nc][k0 ..< k0+kc] → 16-column panels `[groups][16][G]`, zero-padded; for quads also each column's
/// sum over the block (`sums`, 16 per panel).
static void packB(Layout layout, const int8_t *b, long ldb, long j0, long nc, long k0, long kc, void *dst, int32_t *sums) {
    int g = layout == LayoutPairs16 ? 2 : 4;
    long groups = (kc + g - 1) / g;
    int16_t *p16 = dst;
    int8_t *p8 = dst;
    for (long q0 = 0; q0 < nc; q0 += NR) {
        if (sums) memset(sums + q0, 0, NR * sizeof(int32_t));
        for (long q = 0; q < groups; q++)
            for (int x = 0; x < NR; x++)
                for (int t = 0; t < g; t++) {
                    long kk = q * g + t, col = q0 + x;
                    int v = col < nc && kk < kc ? b[(j0 + col) * ldb + k0 + kk] : 0;
                    if (layout == LayoutPairs16) *p16++ = (int16_t)v;
                    else { *p8++ = (int8_t)v; sums[q0 + x] += v; }
                }
    }
}

/// One 6 × 16 tile over `groups` pairs: `c` = (first ? 0 : c) + the tile's sums.
__attribute__((target("avx2")))
static void kernelAVX2(long groups, const int16_t *ap, const int16_t *bp, int32_t *c, long ldc, int first) {
    __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
            c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    const int32_t *a32 = (const int32_t *)ap;
    for (long q = 0; q < groups; q++) {
        __m256i b0 = _mm256_loadu_si256((const __m256i *)bp), b1 = _mm256_loadu_si256((const __m256i *)(bp + 16)), a;
#define ROW(r, x0, x1) a = _mm256_set1_epi32(a32[r]); \
        x0 = _mm256_add_epi32(x0, _mm256_madd_epi16(a, b0)); x1 = _mm256_add_epi32(x1, _mm256_madd_epi16(a, b1));
        ROW(0, c00, c01) ROW(1, c10, c11) ROW(2, c20, c21) ROW(3, c30, c31) ROW(4, c40, c41) ROW(5, c50, c51)
#undef ROW
        a32 += MR; bp += 2 * NR;
    }
#define OUT(r, x, v) { int32_t *p = c + (r) * ldc + (x); __m256i t = (v); \
        if (!first) t = _mm256_add_epi32(t, _mm256_loadu_si256((const __m256i *)p)); \
        _mm256_storeu_si256((__m256i *)p, t); }
    OUT(0, 0, c00) OUT(0, 8, c01) OUT(1, 0, c10) OUT(1, 8, c11) OUT(2, 0, c20) OUT(2, 8, c21)
    OUT(3, 0, c30) OUT(3, 8, c31) OUT(4, 0, c40) OUT(4, 8, c41) OUT(5, 0, c50) OUT(5, 8, c51)
#undef OUT
}

/// The same tile over `groups` quads of unsigned a + 128 and signed b, minus 128 · `sums`.
__attribute__((target("avx2,avx512vl,avx512vnni")))
static void kernelVNNI(long groups, const uint8_t *ap, const int8_t *bp, int32_t *c, long ldc, int first,
                       const int32_t *sums) {
    __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
            c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    const int32_t *a32 = (const int32_t *)ap;
    for (long q = 0; q < groups; q++) {
        __m256i b0 = _mm256_loadu_si256((const __m256i *)bp), b1 = _mm256_loadu_si256((const __m256i *)(bp + 32)), a;
#define ROW(r, x0, x1) a = _mm256_set1_epi32(a32[r]); \
        x0 = _mm256_dpbusd_epi32(x0, a, b0); x1 = _mm256_dpbusd_epi32(x1, a, b1);
        ROW(0, c00, c01) ROW(1, c10, c11) ROW(2, c20, c21) ROW(3, c30, c31) ROW(4, c40, c41) ROW(5, c50, c51)
#undef ROW
        a32 += MR; bp += 4 * NR;
    }
    const __m256i s0 = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)sums), 7),
                  s1 = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(sums + 8)), 7);
#define OUT(r, x, v, s) { int32_t *p = c + (r) * ldc + (x); __m256i t = _mm256_sub_epi32((v), (s)); \
        if (!first) t = _mm256_add_epi32(t, _mm256_loadu_si256((const __m256i *)p)); \
        _mm256_storeu_si256((__m256i *)p, t); }
    OUT(0, 0, c00, s0) OUT(0, 8, c01, s1) OUT(1, 0, c10, s0) OUT(1, 8, c11, s1) OUT(2, 0, c20, s0) OUT(2, 8, c21, s1)
    OUT(3, 0, c30, s0) OUT(3, 8, c31, s1) OUT(4, 0, c40, s0) OUT(4, 8, c41, s1) OUT(5, 0, c50, s0) OUT(5, 8, c51, s1)
#undef OUT
}

/// Where a dequantizing product writes: `y = c · (rowScales[i] · colScales[j]) + bias[j]` by tiles, as each tile's
/// integers are complete (NULL for a plain integer product).
typedef struct { const float *rowScales, *colScales, *bias; float *y; long ldy; } Dequantization;

/// `kernelVNNI` on 512-bit registers over two adjacent 16-column panels (`bp`, then `bp + panelBytes`): a 6 × 32 tile
/// of full rows and columns. Where the CPU runs 512-bit dot products on two ports, this doubles the products per cycle.
/// With `dq` (a whole product in one k-block) the tile's first `rows` rows are dequantized from the registers into
/// `dq`'s rows `r0 ...` and columns `q ...` of the product's columns from `j0` (`c` unused), with the operations of
/// `cnclip_dequantize_rows`; the panel's padding rows (a short last panel) are computed and dropped.
__attribute__((target("avx512f,avx512bw,avx512vnni")))
static void kernelVNNI512(long groups, const uint8_t *ap, const int8_t *bp, long panelBytes, int32_t *c, long ldc, int first,
                          const int32_t *sums, const Dequantization *dq, long rows, long r0, long q, long j0) {
    __m512i c00 = _mm512_setzero_si512(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
            c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    const int32_t *a32 = (const int32_t *)ap;
    const int8_t *bq = bp + panelBytes;
    for (long q = 0; q < groups; q++) {
        __m512i b0 = _mm512_loadu_si512(bp), b1 = _mm512_loadu_si512(bq), a;
#define ROW(r, x0, x1) a = _mm512_set1_epi32(a32[r]); \
        x0 = _mm512_dpbusd_epi32(x0, a, b0); x1 = _mm512_dpbusd_epi32(x1, a, b1);
        ROW(0, c00, c01) ROW(1, c10, c11) ROW(2, c20, c21) ROW(3, c30, c31) ROW(4, c40, c41) ROW(5, c50, c51)
#undef ROW
        a32 += MR; bp += 4 * NR; bq += 4 * NR;
    }
    const __m512i s0 = _mm512_slli_epi32(_mm512_loadu_si512(sums), 7), s1 = _mm512_slli_epi32(_mm512_loadu_si512(sums + 16), 7);
    if (dq) {
        const float *rs = dq->rowScales + r0, *bias = dq->bias ? dq->bias + q : NULL;
        const __m512 cs0 = _mm512_loadu_ps(dq->colScales + q), cs1 = _mm512_loadu_ps(dq->colScales + q + 16);
        const __m512 b0 = bias ? _mm512_loadu_ps(bias) : cs0, b1 = bias ? _mm512_loadu_ps(bias + 16) : cs1;
        float *y = dq->y + r0 * dq->ldy + (q - j0);
#define DQ(r, x, v, s, cs, b) if ((r) < rows) { __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32((v), (s))), \
        _mm512_mul_ps(_mm512_set1_ps(rs[r]), (cs))); \
        if (bias) t = _mm512_add_ps(t, (b)); \
        _mm512_storeu_ps(y + (r) * dq->ldy + (x), t); }
        DQ(0, 0, c00, s0, cs0, b0) DQ(0, 16, c01, s1, cs1, b1) DQ(1, 0, c10, s0, cs0, b0) DQ(1, 16, c11, s1, cs1, b1)
        DQ(2, 0, c20, s0, cs0, b0) DQ(2, 16, c21, s1, cs1, b1) DQ(3, 0, c30, s0, cs0, b0) DQ(3, 16, c31, s1, cs1, b1)
        DQ(4, 0, c40, s0, cs0, b0) DQ(4, 16, c41, s1, cs1, b1) DQ(5, 0, c50, s0, cs0, b0) DQ(5, 16, c51, s1, cs1, b1)
#undef DQ
        return;
    }
#define OUT(r, x, v, s) { int32_t *p = c + (r) * ldc + (x); __m512i t = _mm512_sub_epi32((v), (s)); \
        if (!first) t = _mm512_add_epi32(t, _mm512_loadu_si512(p)); \
        _mm512_storeu_si512(p, t); }
    OUT(0, 0, c00, s0) OUT(0, 16, c01, s1) OUT(1, 0, c10, s0) OUT(1, 16, c11, s1) OUT(2, 0, c20, s0) OUT(2, 16, c21, s1)
    OUT(3, 0, c30, s0) OUT(3, 16, c31, s1) OUT(4, 0, c40, s0) OUT(4, 16, c41, s1) OUT(5, 0, c50, s0) OUT(5, 16, c51, s1)
#undef OUT
}

/// `kernelAVX2` one lane at a time.
static void kernelPortable(long groups, const int16_t *ap, const int16_t *bp, int32_t *c, long ldc, int first) {
    int32_t acc[MR][NR] = {{0}};
    for (long q = 0; q < groups; q++) {
        for (int r = 0; r < MR; r++)
            for (int x = 0; x < NR; x++) acc[r][x] += ap[2 * r] * bp[2 * x] + ap[2 * r + 1] * bp[2 * x + 1];
        ap += 2 * MR; bp += 2 * NR;
    }
    for (int r = 0; r < MR; r++)
        for (int x = 0; x < NR; x++) c[r * ldc + x] = first ? acc[r][x] : c[r * ldc + x] + acc[r][x];
}

static int forcedKernel;  // 0: by the CPU

void cnclip_igemm_use_kernel(int kernel) { __atomic_store_n(&forcedKernel, kernel, __ATOMIC_SEQ_CST); }

int cnclip_igemm_kernel(void) {
    int forced = __atomic_load_n(&forcedKernel, __ATOMIC_SEQ_CST), f = cpuFeatures();
    int vnni = f & HasVNNI, vnni512 = f & HasVNNI512, avx2 = f & HasAVX2;
    if (forced == CNCLIP_IGEMM_VNNI512 && vnni512) return CNCLIP_IGEMM_VNNI512;
    if (forced == CNCLIP_IGEMM_VNNI && vnni) return CNCLIP_IGEMM_VNNI;
    if (forced == CNCLIP_IGEMM_AVX2 && avx2) return CNCLIP_IGEMM_AVX2;
    if (forced == CNCLIP_IGEMM_PORTABLE) return CNCLIP_IGEMM_PORTABLE;
    if (forced != 0) return -1;
    return vnni512 ? CNCLIP_IGEMM_VNNI512 : vnni ? CNCLIP_IGEMM_VNNI : avx2 ? CNCLIP_IGEMM_AVX2 : CNCLIP_IGEMM_PORTABLE;
}

/// The packed form of b for one kernel: for each k-block, its 16-column panels one after another, then (for quads)
/// each column's sum in each k-block.
typedef struct {
    Layout layout;
    int g;              // k values per group
    size_t element;     // bytes per packed value
    long panels;        // 16-column panels
} Packing;

static Packing packing(long n, int kernel) {
    int quads = kernel == CNCLIP_IGEMM_VNNI || kernel == CNCLIP_IGEMM_VNNI512;  // the same layout for both widths
    Packing p = {quads ? LayoutQuads8 : LayoutPairs16, quads ? 4 : 2, quads ? 1 : sizeof(int16_t), (n + NR - 1) / NR};
    return p;
}

/// Bytes of the panels of k-blocks before `k0` (every block but the last is KC long).
static size_t blockOffset(Packing p, long k0) {
    long groups = KC / p.g;
    return (size_t)(k0 / KC) * (size_t)groups * (size_t)p.g * NR * p.element * (size_t)p.panels;
}

size_t cnclip_igemm_packed_size(long n, long k, int kernel) {
    Packing p = packing(n, kernel);
    size_t panels = blockOffset(p, (k + KC - 1) / KC * KC);  // as if the last block were full: a little slack
    size_t sums = p.layout == LayoutQuads8 ? (size_t)((k + KC - 1) / KC) * (size_t)p.panels * NR * sizeof(int32_t) : 0;
    return panels + sums + 64;
}

void cnclip_igemm_pack(long n, long k, const int8_t *b, long ldb, int kernel, void *packed) {
    Packing p = packing(n, kernel);
    int32_t *sums = (int32_t *)((char *)packed + blockOffset(p, (k + KC - 1) / KC * KC));
    for (long k0 = 0; k0 < k; k0 += KC) {
        long kc = k - k0 < KC ? k - k0 : KC;
        packB(p.layout, b, ldb, 0, n, k0, kc, (char *)packed + blockOffset(p, k0),
              p.layout == LayoutQuads8 ? sums + (k0 / KC) * p.panels * NR : NULL);
    }
}

void cnclip_igemm_unpack(long n, long k, const void *packed, int kernel, int8_t *b, long ldb) {
    Packing p = packing(n, kernel);
    for (long k0 = 0; k0 < k; k0 += KC) {
        long kc = k - k0 < KC ? k - k0 : KC, groups = (kc + p.g - 1) / p.g;
        const char *block = (const char *)packed + blockOffset(p, k0);
        for (long q0 = 0; q0 < n; q0 += NR) {
            const char *panel = block + (size_t)(q0 / NR) * (size_t)groups * (size_t)p.g * NR * p.element;
            for (long q = 0; q < groups; q++)
                for (int x = 0; x < NR; x++)
                    for (int t = 0; t < p.g; t++) {
                        long kk = q * p.g + t, col = q0 + x, at = (q * NR + x) * p.g + t;
                        if (col >= n || kk >= kc) continue;
                        b[col * ldb + k0 + kk] = p.layout == LayoutPairs16 ? (int8_t)((const int16_t *)panel)[at]
                                                                          : ((const int8_t *)panel)[at];
                    }
        }
    }
}

/// Dequantizes rows `[rows, cols]` of products (see `cnclip_dequantize_rows`; defined with the other float code below)
/// with vectors of `width` (`vectorWidth()`).
static void dequantize(int width, const int32_t *c, long rows, long cols, long ldc, const float *rowScales,
                       const float *colScales, const float *bias, float *y, long ldy);

/// The vectors quantization and dequantization use: 0 none, 1 AVX2, 2 AVX-512 (the same bits). A forced kernel
/// picks the width it would run beside, so that the tests reach each form.
static int vectorWidth(void);

/// `cnclip_igemm_s8_packed`, or its dequantized form when `dq` is not NULL: then a product of a single k-block never
/// leaves the registers (whole 6 × 32 tiles of the 512-bit kernel) or its tile buffer, and one of several k-blocks is
/// summed in `c` and dequantized tile by tile in the last block.
static void product(long m, long j0, long nc, long n, long k, const int8_t *a, long lda, const void *packed, int kernel,
                    int32_t *c, long ldc, const Dequantization *dq) {
    Packing p = packing(n, kernel);
    long kcMax = k < KC ? k : KC, kcPadded = (kcMax + 3) / 4 * 4;
    void *ap = cnclip_reserve(&packedA, &packedABytes, p.element * (size_t)kcPadded * (size_t)((m + MR - 1) / MR * MR));
    const int32_t *allSums = (const int32_t *)((const char *)packed + blockOffset(p, (k + KC - 1) / KC * KC));
    int single = k <= KC, width = dq ? vectorWidth() : 0;
    for (long k0 = 0; k0 < k; k0 += KC) {
        long kc = k - k0 < KC ? k - k0 : KC;
        long groups = (kc + p.g - 1) / p.g, panelA = groups * p.g * MR, panelB = groups * p.g * NR;
        int first = k0 == 0, last = k0 + KC >= k;
        const char *block = (const char *)packed + blockOffset(p, k0);
        const int32_t *sums = allSums + (k0 / KC) * p.panels * NR;
        packA(p.layout, a, lda, m, k0, kc, ap);
        // Columns NB at a time, so that their panels stay in L2 while every row panel passes over them.
        for (long jb = j0; jb < j0 + nc; jb += NB) {
            long jbEnd = jb + NB < j0 + nc ? jb + NB : j0 + nc;
            for (long r0 = 0; r0 < m; r0 += MR) {
                long mr = m - r0 < MR ? m - r0 : MR;
                for (long q = jb; q < jbEnd; q += NR) {
                    const void *bt = block + (size_t)(q / NR) * (size_t)panelB * p.element;
                    const uint8_t *at8 = (const uint8_t *)ap + r0 / MR * panelA;
                    int32_t tile[MR * 2 * NR] __attribute__((aligned(64)));
                    // The 512-bit kernel on a short last panel too (its rows are padded): the 256-bit one there cost
                    // a tenth of a 52-token text's time.
                    int wide = kernel == CNCLIP_IGEMM_VNNI512 && q + 2 * NR <= jbEnd;
                    if (wide && dq && single) {  // dequantized from the registers
                        kernelVNNI512(groups, at8, bt, panelB, NULL, 0, 1, sums + q, dq, mr, r0, q, j0);
                        q += NR;
                        continue;
                    }
                    long nr = wide ? 2 * NR : jbEnd - q < NR ? jbEnd - q : NR;
                    // The kernel writes whole tiles: into c where c holds the sums (several k-blocks, or no
                    // dequantization) and the tile is whole, else into the buffer.
                    int inC = (!dq || !single) && mr == MR && nr >= NR;
                    int32_t *ct = inC ? c + r0 * ldc + (q - j0) : tile;
                    long ldt = inC ? ldc : 2 * NR;
                    if (!inC && !first)
                        for (long r = 0; r < mr; r++)
                            memcpy(tile + r * ldt, c + (r0 + r) * ldc + (q - j0), (size_t)nr * sizeof(int32_t));
                    if (wide)
                        kernelVNNI512(groups, at8, bt, panelB, ct, ldt, first, sums + q, NULL, 0, 0, 0, 0);
                    else if (p.layout == LayoutQuads8)
                        kernelVNNI(groups, at8, bt, ct, ldt, first, sums + q);
                    else if (kernel == CNCLIP_IGEMM_AVX2)
                        kernelAVX2(groups, (const int16_t *)ap + r0 / MR * panelA, bt, ct, ldt, first);
                    else
                        kernelPortable(groups, (const int16_t *)ap + r0 / MR * panelA, bt, ct, ldt, first);
                    if (dq && last)
                        dequantize(width, ct, mr, nr, ldt, dq->rowScales + r0, dq->colScales + q, dq->bias ? dq->bias + q : NULL,
                                   dq->y + r0 * dq->ldy + (q - j0), dq->ldy);
                    else if (!inC)
                        for (long r = 0; r < mr; r++)
                            memcpy(c + (r0 + r) * ldc + (q - j0), tile + r * ldt, (size_t)nr * sizeof(int32_t));
                    if (wide) q += NR;  // two panels done
                }
            }
        }
    }
}

void cnclip_igemm_s8_packed(long m, long j0, long nc, long n, long k, const int8_t *a, long lda, const void *packed, int kernel,
                            int32_t *c, long ldc) {
    if (m <= 0 || nc <= 0) return;
    if (k <= 0) {
        for (long i = 0; i < m; i++) memset(c + i * ldc, 0, (size_t)nc * sizeof(int32_t));
        return;
    }
    product(m, j0, nc, n, k, a, lda, packed, kernel, c, ldc, NULL);
}

void cnclip_igemm_s8_dequantized(long m, long j0, long nc, long n, long k, const int8_t *a, long lda, const void *packed,
                                 int kernel, const float *rowScales, const float *colScales, const float *bias, float *y, long ldy,
                                 int32_t *scratch, long ldScratch) {
    if (m <= 0 || nc <= 0) return;
    Dequantization dq = {rowScales, colScales, bias, y, ldy};
    if (k <= 0) {
        int32_t zeros[2 * NR] = {0};
        for (long i = 0; i < m; i++)
            for (long q = j0; q < j0 + nc; q += 2 * NR)
                dequantize(vectorWidth(), zeros, 1, j0 + nc - q < 2 * NR ? j0 + nc - q : 2 * NR, 0, rowScales + i, colScales + q,
                           bias ? bias + q : NULL, y + i * ldy + (q - j0), ldy);
        return;
    }
    product(m, j0, nc, n, k, a, lda, packed, kernel, scratch, ldScratch, &dq);
}

static _Thread_local void *scratchB;
static _Thread_local size_t scratchBBytes;

void cnclip_igemm_s8(long m, long n, long k, const int8_t *a, long lda, const int8_t *b, long ldb, int32_t *c, long ldc) {
    if (m <= 0 || n <= 0) return;
    int kernel = cnclip_igemm_kernel();
    if (kernel < 0) abort();  // a forced kernel this CPU lacks: tests check `cnclip_igemm_kernel` first
    void *packed = cnclip_reserve(&scratchB, &scratchBBytes, cnclip_igemm_packed_size(n, k > 0 ? k : 1, kernel));
    if (k > 0) cnclip_igemm_pack(n, k, b, ldb, kernel, packed);
    cnclip_igemm_s8_packed(m, 0, n, n, k, a, lda, packed, kernel, c, ldc);
}

// Quantizing activations and dequantizing products: the int8 path's elementwise work around the integer GEMM. The
// vector and scalar forms give the same bits: IEEE division, rounding half to even (the default rounding mode, as
// `rint` and `cvtps2dq` use), and no fused multiply-add in the dequantization (`(float)c · (rowScale · colScale) + bias`;
// the pragma at the top of the file).

static int vectorWidth(void) {
    int f = cpuFeatures(), forced = __atomic_load_n(&forcedKernel, __ATOMIC_SEQ_CST);
    if (forced == CNCLIP_IGEMM_PORTABLE || !(f & HasAVX2)) return 0;
    if (forced == CNCLIP_IGEMM_AVX2 || forced == CNCLIP_IGEMM_VNNI || !(f & HasAVX512)) return 1;
    return 2;
}

static float quantizeScale(float peak) { return peak > 0 ? peak / 127.0f : 1.0f; }

static int8_t quantizeOne(float v, float scale) {
    float r = rintf(v / scale);
    return (int8_t)(r > 127.0f ? 127.0f : r < -127.0f ? -127.0f : r);
}

__attribute__((target("avx2")))
static void quantizeRowAVX2(const float *x, long n, int8_t *q, float *scale) {
    const __m256 signless = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 peak8 = _mm256_setzero_ps();
    long j = 0;
    for (; j + 8 <= n; j += 8) peak8 = _mm256_max_ps(peak8, _mm256_and_ps(_mm256_loadu_ps(x + j), signless));
    float lanes[8], peak = 0;
    _mm256_storeu_ps(lanes, peak8);
    for (int t = 0; t < 8; t++) peak = lanes[t] > peak ? lanes[t] : peak;
    for (; j < n; j++) { float a = fabsf(x[j]); peak = a > peak ? a : peak; }
    float s = quantizeScale(peak);
    *scale = s;
    const __m256 s8 = _mm256_set1_ps(s);
    const __m256i hi = _mm256_set1_epi32(127), lo = _mm256_set1_epi32(-127), order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
#define QUANT(p) _mm256_max_epi32(lo, _mm256_min_epi32(hi, _mm256_cvtps_epi32(_mm256_div_ps(_mm256_loadu_ps(p), s8))))
    for (j = 0; j + 32 <= n; j += 32) {
        __m256i a = QUANT(x + j), b = QUANT(x + j + 8), c = QUANT(x + j + 16), d = QUANT(x + j + 24);
        __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
        _mm256_storeu_si256((__m256i *)(q + j), _mm256_permutevar8x32_epi32(bytes, order));
    }
#undef QUANT
    for (; j < n; j++) q[j] = quantizeOne(x[j], s);
}

/// `quantizeRowAVX2` with 512-bit vectors, the tail under a mask.
__attribute__((target("avx512f")))
static void quantizeRowAVX512(const float *x, long n, int8_t *q, float *scale) {
    __m512 peak16 = _mm512_setzero_ps();
    long j = 0;
    for (; j + 16 <= n; j += 16) peak16 = _mm512_max_ps(peak16, _mm512_abs_ps(_mm512_loadu_ps(x + j)));
    if (j < n) peak16 = _mm512_max_ps(peak16, _mm512_abs_ps(_mm512_maskz_loadu_ps((__mmask16)((1u << (n - j)) - 1), x + j)));
    float s = quantizeScale(_mm512_reduce_max_ps(peak16));
    *scale = s;
    const __m512 s16 = _mm512_set1_ps(s);
    const __m512i hi = _mm512_set1_epi32(127), lo = _mm512_set1_epi32(-127);
    for (j = 0; j < n; j += 16) {
        __mmask16 m = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1);
        __m512i v = _mm512_cvtps_epi32(_mm512_div_ps(_mm512_maskz_loadu_ps(m, x + j), s16));
        _mm512_mask_cvtsepi32_storeu_epi8(q + j, m, _mm512_max_epi32(lo, _mm512_min_epi32(hi, v)));
    }
}

void cnclip_quantize_rows(const float *x, long rows, long cols, long ldx, int8_t *q, long ldq, float *scales) {
    int width = vectorWidth();
    for (long i = 0; i < rows; i++) {
        const float *row = x + i * ldx;
        if (width == 2) { quantizeRowAVX512(row, cols, q + i * ldq, scales + i); continue; }
        if (width == 1) { quantizeRowAVX2(row, cols, q + i * ldq, scales + i); continue; }
        float peak = 0;
        for (long j = 0; j < cols; j++) { float a = fabsf(row[j]); peak = a > peak ? a : peak; }
        float s = quantizeScale(peak);
        scales[i] = s;
        for (long j = 0; j < cols; j++) q[i * ldq + j] = quantizeOne(row[j], s);
    }
}

__attribute__((target("avx2")))
static void dequantizeRowAVX2(const int32_t *c, long n, float rowScale, const float *colScales, const float *bias, float *y) {
    const __m256 r8 = _mm256_set1_ps(rowScale);
    long j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(c + j))),
                                 _mm256_mul_ps(r8, _mm256_loadu_ps(colScales + j)));
        if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + j));
        _mm256_storeu_ps(y + j, v);
    }
    for (; j < n; j++) {
        float v = (float)c[j] * (rowScale * colScales[j]);
        y[j] = bias ? v + bias[j] : v;
    }
}

/// `dequantizeRowAVX2` with 512-bit vectors, the tail under a mask.
__attribute__((target("avx512f")))
static void dequantizeRowAVX512(const int32_t *c, long n, float rowScale, const float *colScales, const float *bias, float *y) {
    const __m512 r16 = _mm512_set1_ps(rowScale);
    for (long j = 0; j < n; j += 16) {
        __mmask16 m = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1);
        __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(m, c + j)),
                                 _mm512_mul_ps(r16, _mm512_maskz_loadu_ps(m, colScales + j)));
        if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias + j));
        _mm512_mask_storeu_ps(y + j, m, v);
    }
}

static void dequantize(int width, const int32_t *c, long rows, long cols, long ldc, const float *rowScales,
                       const float *colScales, const float *bias, float *y, long ldy) {
    for (long i = 0; i < rows; i++) {
        if (width == 2) {
            dequantizeRowAVX512(c + i * ldc, cols, rowScales[i], colScales, bias, y + i * ldy);
            continue;
        }
        if (width == 1) { dequantizeRowAVX2(c + i * ldc, cols, rowScales[i], colScales, bias, y + i * ldy); continue; }
        for (long j = 0; j < cols; j++) {
            float v = (float)c[i * ldc + j] * (rowScales[i] * colScales[j]);
            y[i * ldy + j] = bias ? v + bias[j] : v;
        }
    }
}

void cnclip_dequantize_rows(const int32_t *c, long rows, long cols, long ldc, const float *rowScales, const float *colScales,
                            const float *bias, float *y, long ldy) {
    dequantize(vectorWidth(), c, rows, cols, ldc, rowScales, colScales, bias, y, ldy);
}
