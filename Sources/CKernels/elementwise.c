// The elementwise kernels (see elementwise.h): an AVX-512 path (16 lanes), an AVX2/FMA path (two 8-lane halves
// of the same 16 lanes) and a portable path (one lane at a time, `fmaf` where the vectors fuse), chosen at run time.
// They agree bit for bit because each element goes through the same IEEE operations in every path: the vector
// comparisons, minimum and maximum are written as the C conditionals they compute (`a > b ? a : b`, NaN taking the
// second operand), the reductions follow the one lane layout and tree of elementwise.h, and nothing is contracted
// into a fused multiply-add behind our back.

#include "CKernels.h"
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#pragma clang fp contract(off)

#define AVX512 __attribute__((target("avx512f,avx512dq,fma")))
#define AVX2 __attribute__((target("avx2,fma")))

// e^x = 2^n · e^r with n = round(x / ln2) and r = x - n·ln2 (ln2 in two parts, each step one fused multiply-add, so
// r carries no rounding from the product). The clamp keeps n within [-150, 128], where 2^n is two normal powers of
// two: e^-104 already rounds to 0 and e^89 to inf.
#define EXP_LO -104.0f
#define EXP_HI 89.0f
#define LOG2E 1.44269504f
#define ROUNDER 12582912.0f  // 1.5 · 2^23: adding it rounds to an integer, left in the low mantissa bits
#define LN2_HI 0.69314575f
#define LN2_LO 1.4286068e-6f

// Taylor series of e^r to degree 7 (relative error < 1e-7 for |r| ≤ ln2/2), highest power first.
static const float expPoly[] = {1.0f / 5040, 1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f};
#define EXP_TERMS (int)(sizeof expPoly / sizeof expPoly[0])

// erf(x) = x·P(x²) for |x| < 0.75, 1 − e^(−x²)·Q((|x| − 2.375)/1.625) up to 4, 1 beyond (where erf rounds to 1 in
// fp32); both least-squares fits of the float64 function. Highest power first.
#define ERF_SMALL 0.75f
#define ERF_ONE 4.0f
#define ERF_CENTRE 2.375f
#define ERF_INV_HALF_WIDTH 0.6153846383094788f
static const float erfSmallPoly[] = {
    9.557676821714267e-05f, -0.0008370719733648002f, 0.005217602010816336f, -0.02686499059200287f,
    0.11283781379461288f,   -0.37612637877464294f,   1.128379225730896f};
static const float erfTailPoly[] = {
    9.452282938582357e-06f, -2.3764654542901553e-05f, 2.6597477699397132e-05f, -6.636181205976754e-05f,
    0.00020387955009937286f, -0.0004737969138659537f, 0.0010455424198880792f, -0.002313171746209264f,
    0.004977045115083456f,  -0.010346845723688602f,  0.020774297416210175f,   -0.040157318115234375f,
    0.07442604750394821f,   -0.13158783316612244f,   0.2205056995153427f};
#define ERF_SMALL_TERMS (int)(sizeof erfSmallPoly / sizeof erfSmallPoly[0])
#define ERF_TAIL_TERMS (int)(sizeof erfTailPoly / sizeof erfTailPoly[0])

#define SQRT2 1.4142135623730951f  // GELU divides by the float nearest sqrt(2), as BERT's `x / math.sqrt(2.0)`
#define QUICK_GELU_SLOPE -1.702f

// MARK: - Portable

static inline uint32_t bitsOf(float x) { uint32_t u; memcpy(&u, &x, sizeof u); return u; }
static inline float floatOf(uint32_t u) { float x; memcpy(&x, &u, sizeof x); return x; }

static inline float exp1(float x) {
    float c = EXP_LO > x ? EXP_LO : x;
    c = EXP_HI < c ? EXP_HI : c;
    float shifted = fmaf(c, LOG2E, ROUNDER);
    float n = shifted - ROUNDER;
    float r = fmaf(-n, LN2_HI, c);
    r = fmaf(-n, LN2_LO, r);
    float p = expPoly[0];
    for (int i = 1; i < EXP_TERMS; i++) p = fmaf(p, r, expPoly[i]);
    int32_t n32 = (int32_t)(bitsOf(shifted) - 0x4B400000u);
    int32_t half = n32 >> 1;  // arithmetic, as the vectors' shift
    float low = floatOf((uint32_t)(half + 127) << 23), high = floatOf((uint32_t)(n32 - half + 127) << 23);
    return (p * low) * high;  // exact, then one rounding into the subnormals or to inf
}

static inline float erf1(float x) {
    float a = floatOf(bitsOf(x) & 0x7fffffffu);
    float s = a * a;
    float p = erfSmallPoly[0];
    for (int i = 1; i < ERF_SMALL_TERMS; i++) p = fmaf(p, s, erfSmallPoly[i]);
    float small = a * p;
    float ac = ERF_SMALL > a ? ERF_SMALL : a;
    ac = ERF_ONE < ac ? ERF_ONE : ac;
    float t = (ac - ERF_CENTRE) * ERF_INV_HALF_WIDTH;
    float q = erfTailPoly[0];
    for (int i = 1; i < ERF_TAIL_TERMS; i++) q = fmaf(q, t, erfTailPoly[i]);
    float r = fmaf(-exp1(-(ac * ac)), q, 1.0f);
    if (a >= ERF_ONE) r = 1.0f;
    if (a < ERF_SMALL) r = small;
    return floatOf(bitsOf(r) | (bitsOf(x) & 0x80000000u));
}

static inline float gelu1(float x) { return (x * 0.5f) * (1.0f + erf1(x / SQRT2)); }

static inline float quickGelu1(float x) { return x / (1.0f + exp1(x * QUICK_GELU_SLOPE)); }

/// The tree of elementwise.h over 16 partial sums.
static float sumTree(const float p[16]) {
    float t8[8], t4[4], t2[2];
    for (int i = 0; i < 8; i++) t8[i] = p[i] + p[i + 8];
    for (int i = 0; i < 4; i++) t4[i] = t8[i] + t8[i + 4];
    for (int i = 0; i < 2; i++) t2[i] = t4[i] + t4[i + 2];
    return t2[0] + t2[1];
}

static float maxTree(const float p[16]) {
    float t8[8], t4[4], t2[2];
    for (int i = 0; i < 8; i++) t8[i] = p[i] > p[i + 8] ? p[i] : p[i + 8];
    for (int i = 0; i < 4; i++) t4[i] = t8[i] > t8[i + 4] ? t8[i] : t8[i + 4];
    for (int i = 0; i < 2; i++) t2[i] = t4[i] > t4[i + 2] ? t4[i] : t4[i + 2];
    return t2[0] > t2[1] ? t2[0] : t2[1];
}

static float sumPortable(const float *x, long n) {
    float acc[16] = {0};
    for (long j = 0; j < n; j++) acc[j & 15] = acc[j & 15] + x[j];
    return sumTree(acc);
}

static float sumOfSquaresPortable(const float *x, long n, float shift) {
    float acc[16] = {0};
    for (long j = 0; j < n; j++) { float c = x[j] - shift; acc[j & 15] = fmaf(c, c, acc[j & 15]); }
    return sumTree(acc);
}

static float maxPortable(const float *x, long n) {
    float acc[16];
    for (int l = 0; l < 16; l++) acc[l] = -INFINITY;
    for (long j = 0; j < n; j++) acc[j & 15] = acc[j & 15] > x[j] ? acc[j & 15] : x[j];
    return maxTree(acc);
}

static void softmaxRowPortable(float *x, long n) {
    float m = maxPortable(x, n), acc[16] = {0};
    for (long j = 0; j < n; j++) { float e = exp1(x[j] - m); x[j] = e; acc[j & 15] = acc[j & 15] + e; }
    float inv = 1.0f / sumTree(acc);
    for (long j = 0; j < n; j++) x[j] = x[j] * inv;
}

/// `1 / sqrt(variance + eps)` from a row's sum of centred squares: scalar code shared by every path.
static inline float inverseDeviation(float squares, long n, float eps) { return 1.0f / sqrtf(squares / (float)n + eps); }

static void layerNormRowPortable(const float *x, long n, const float *w, const float *b, float eps, float *y) {
    float mean = sumPortable(x, n) / (float)n, inv = inverseDeviation(sumOfSquaresPortable(x, n, mean), n, eps);
    for (long j = 0; j < n; j++) y[j] = fmaf((x[j] - mean) * inv, w[j], b[j]);
}

// MARK: - AVX2 (8 lanes; reductions keep the 16 partial sums as two halves)

AVX2 static inline __m256i tailMask8(long count) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(count < 8 ? count : 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

AVX2 static inline __m256 exp8(__m256 x) {
    __m256 c = _mm256_min_ps(_mm256_set1_ps(EXP_HI), _mm256_max_ps(_mm256_set1_ps(EXP_LO), x));
    __m256 shifted = _mm256_fmadd_ps(c, _mm256_set1_ps(LOG2E), _mm256_set1_ps(ROUNDER));
    __m256 n = _mm256_sub_ps(shifted, _mm256_set1_ps(ROUNDER));
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), c);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    __m256 p = _mm256_set1_ps(expPoly[0]);
    for (int i = 1; i < EXP_TERMS; i++) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(expPoly[i]));
    __m256i n32 = _mm256_sub_epi32(_mm256_castps_si256(shifted), _mm256_set1_epi32(0x4B400000));
    __m256i half = _mm256_srai_epi32(n32, 1), bias = _mm256_set1_epi32(127);
    __m256 low = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, bias), 23));
    __m256 high = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(n32, half), bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, low), high);
}

AVX2 static inline __m256 erf8(__m256 x) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 a = _mm256_andnot_ps(sign, x), s = _mm256_mul_ps(a, a);
    __m256 p = _mm256_set1_ps(erfSmallPoly[0]);
    for (int i = 1; i < ERF_SMALL_TERMS; i++) p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(erfSmallPoly[i]));
    __m256 small = _mm256_mul_ps(a, p);
    __m256 ac = _mm256_min_ps(_mm256_set1_ps(ERF_ONE), _mm256_max_ps(_mm256_set1_ps(ERF_SMALL), a));
    __m256 t = _mm256_mul_ps(_mm256_sub_ps(ac, _mm256_set1_ps(ERF_CENTRE)), _mm256_set1_ps(ERF_INV_HALF_WIDTH));
    __m256 q = _mm256_set1_ps(erfTailPoly[0]);
    for (int i = 1; i < ERF_TAIL_TERMS; i++) q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(erfTailPoly[i]));
    __m256 r = _mm256_fnmadd_ps(exp8(_mm256_xor_ps(_mm256_mul_ps(ac, ac), sign)), q, _mm256_set1_ps(1.0f));
    r = _mm256_blendv_ps(r, _mm256_set1_ps(1.0f), _mm256_cmp_ps(a, _mm256_set1_ps(ERF_ONE), _CMP_GE_OQ));
    r = _mm256_blendv_ps(r, small, _mm256_cmp_ps(a, _mm256_set1_ps(ERF_SMALL), _CMP_LT_OQ));
    return _mm256_or_ps(r, _mm256_and_ps(x, sign));
}

AVX2 static inline __m256 gelu8(__m256 x) {
    __m256 e = erf8(_mm256_div_ps(x, _mm256_set1_ps(SQRT2)));
    return _mm256_mul_ps(_mm256_mul_ps(x, _mm256_set1_ps(0.5f)), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

AVX2 static inline __m256 quickGelu8(__m256 x) {
    __m256 e = exp8(_mm256_mul_ps(x, _mm256_set1_ps(QUICK_GELU_SLOPE)));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

/// The tree of elementwise.h from its first level, `t8[i] = p[i] + p[i + 8]`.
AVX2 static inline float sumTree8(__m256 t8) {
    __m128 t4 = _mm_add_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps(t8, 1));
    __m128 t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
    return _mm_cvtss_f32(_mm_add_ss(t2, _mm_movehdup_ps(t2)));
}

AVX2 static inline float maxTree8(__m256 t8) {
    __m128 t4 = _mm_max_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps(t8, 1));
    __m128 t2 = _mm_max_ps(t4, _mm_movehl_ps(t4, t4));
    return _mm_cvtss_f32(_mm_max_ss(t2, _mm_movehdup_ps(t2)));
}

// The last, partial block of 16 elements as two halves (zeros past n) with the masks of the elements that exist.
#define AVX2_BLOCK(x, j, n, lo, hi, mlo, mhi)                                                                  \
    __m256i mlo = tailMask8((n) - (j)), mhi = tailMask8((n) - (j) - 8);                                        \
    __m256 lo = _mm256_maskload_ps((x) + (j), mlo), hi = _mm256_maskload_ps((x) + (j) + 8, mhi)

AVX2 static float sumAVX2(const float *x, long n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    long j = 0;
    for (; j + 16 <= n; j += 16) {
        acc0 = _mm256_add_ps(acc0, _mm256_loadu_ps(x + j));
        acc1 = _mm256_add_ps(acc1, _mm256_loadu_ps(x + j + 8));
    }
    if (j < n) {
        AVX2_BLOCK(x, j, n, lo, hi, mlo, mhi);
        acc0 = _mm256_blendv_ps(acc0, _mm256_add_ps(acc0, lo), _mm256_castsi256_ps(mlo));
        acc1 = _mm256_blendv_ps(acc1, _mm256_add_ps(acc1, hi), _mm256_castsi256_ps(mhi));
    }
    return sumTree8(_mm256_add_ps(acc0, acc1));
}

AVX2 static float sumOfSquaresAVX2(const float *x, long n, float shift) {
    const __m256 s = _mm256_set1_ps(shift);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    long j = 0;
    for (; j + 16 <= n; j += 16) {
        __m256 c0 = _mm256_sub_ps(_mm256_loadu_ps(x + j), s), c1 = _mm256_sub_ps(_mm256_loadu_ps(x + j + 8), s);
        acc0 = _mm256_fmadd_ps(c0, c0, acc0);
        acc1 = _mm256_fmadd_ps(c1, c1, acc1);
    }
    if (j < n) {
        AVX2_BLOCK(x, j, n, lo, hi, mlo, mhi);
        __m256 c0 = _mm256_sub_ps(lo, s), c1 = _mm256_sub_ps(hi, s);
        acc0 = _mm256_blendv_ps(acc0, _mm256_fmadd_ps(c0, c0, acc0), _mm256_castsi256_ps(mlo));
        acc1 = _mm256_blendv_ps(acc1, _mm256_fmadd_ps(c1, c1, acc1), _mm256_castsi256_ps(mhi));
    }
    return sumTree8(_mm256_add_ps(acc0, acc1));
}

AVX2 static float maxAVX2(const float *x, long n) {
    __m256 acc0 = _mm256_set1_ps(-INFINITY), acc1 = acc0;
    long j = 0;
    for (; j + 16 <= n; j += 16) {
        acc0 = _mm256_max_ps(acc0, _mm256_loadu_ps(x + j));
        acc1 = _mm256_max_ps(acc1, _mm256_loadu_ps(x + j + 8));
    }
    if (j < n) {
        AVX2_BLOCK(x, j, n, lo, hi, mlo, mhi);
        acc0 = _mm256_blendv_ps(acc0, _mm256_max_ps(acc0, lo), _mm256_castsi256_ps(mlo));
        acc1 = _mm256_blendv_ps(acc1, _mm256_max_ps(acc1, hi), _mm256_castsi256_ps(mhi));
    }
    return maxTree8(_mm256_max_ps(acc0, acc1));
}

AVX2 static void softmaxRowAVX2(float *x, long n) {
    const __m256 m = _mm256_set1_ps(maxAVX2(x, n));
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    long j = 0;
    for (; j + 16 <= n; j += 16) {
        __m256 e0 = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j), m)), e1 = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j + 8), m));
        _mm256_storeu_ps(x + j, e0);
        _mm256_storeu_ps(x + j + 8, e1);
        acc0 = _mm256_add_ps(acc0, e0);
        acc1 = _mm256_add_ps(acc1, e1);
    }
    if (j < n) {
        AVX2_BLOCK(x, j, n, lo, hi, mlo, mhi);
        __m256 e0 = exp8(_mm256_sub_ps(lo, m)), e1 = exp8(_mm256_sub_ps(hi, m));
        _mm256_maskstore_ps(x + j, mlo, e0);
        _mm256_maskstore_ps(x + j + 8, mhi, e1);
        acc0 = _mm256_blendv_ps(acc0, _mm256_add_ps(acc0, e0), _mm256_castsi256_ps(mlo));
        acc1 = _mm256_blendv_ps(acc1, _mm256_add_ps(acc1, e1), _mm256_castsi256_ps(mhi));
    }
    const __m256 inv = _mm256_set1_ps(1.0f / sumTree8(_mm256_add_ps(acc0, acc1)));
    for (j = 0; j + 8 <= n; j += 8) _mm256_storeu_ps(x + j, _mm256_mul_ps(_mm256_loadu_ps(x + j), inv));
    if (j < n) {
        __m256i mask = tailMask8(n - j);
        _mm256_maskstore_ps(x + j, mask, _mm256_mul_ps(_mm256_maskload_ps(x + j, mask), inv));
    }
}

AVX2 static void layerNormRowAVX2(const float *x, long n, const float *w, const float *b, float eps, float *y) {
    float mean = sumAVX2(x, n) / (float)n, inv = inverseDeviation(sumOfSquaresAVX2(x, n, mean), n, eps);
    const __m256 m = _mm256_set1_ps(mean), s = _mm256_set1_ps(inv);
    long j = 0;
#define NORM8(xv, wv, bv) _mm256_fmadd_ps(_mm256_mul_ps(_mm256_sub_ps(xv, m), s), wv, bv)
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(y + j, NORM8(_mm256_loadu_ps(x + j), _mm256_loadu_ps(w + j), _mm256_loadu_ps(b + j)));
    if (j < n) {
        __m256i k = tailMask8(n - j);
        _mm256_maskstore_ps(y + j, k, NORM8(_mm256_maskload_ps(x + j, k), _mm256_maskload_ps(w + j, k), _mm256_maskload_ps(b + j, k)));
    }
#undef NORM8
}

// MARK: - AVX-512

AVX512 static inline __mmask16 tailMask16(long count) { return (__mmask16)(count >= 16 ? 0xFFFF : (1u << count) - 1); }

AVX512 static inline __m512 exp16(__m512 x) {
    __m512 c = _mm512_min_ps(_mm512_set1_ps(EXP_HI), _mm512_max_ps(_mm512_set1_ps(EXP_LO), x));
    __m512 shifted = _mm512_fmadd_ps(c, _mm512_set1_ps(LOG2E), _mm512_set1_ps(ROUNDER));
    __m512 n = _mm512_sub_ps(shifted, _mm512_set1_ps(ROUNDER));
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), c);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    __m512 p = _mm512_set1_ps(expPoly[0]);
    for (int i = 1; i < EXP_TERMS; i++) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(expPoly[i]));
    __m512i n32 = _mm512_sub_epi32(_mm512_castps_si512(shifted), _mm512_set1_epi32(0x4B400000));
    __m512i half = _mm512_srai_epi32(n32, 1), bias = _mm512_set1_epi32(127);
    __m512 low = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(half, bias), 23));
    __m512 high = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_sub_epi32(n32, half), bias), 23));
    return _mm512_mul_ps(_mm512_mul_ps(p, low), high);
}

AVX512 static inline __m512 erf16(__m512 x) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    __m512 a = _mm512_andnot_ps(sign, x), s = _mm512_mul_ps(a, a);
    __m512 p = _mm512_set1_ps(erfSmallPoly[0]);
    for (int i = 1; i < ERF_SMALL_TERMS; i++) p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(erfSmallPoly[i]));
    __m512 small = _mm512_mul_ps(a, p);
    __m512 ac = _mm512_min_ps(_mm512_set1_ps(ERF_ONE), _mm512_max_ps(_mm512_set1_ps(ERF_SMALL), a));
    __m512 t = _mm512_mul_ps(_mm512_sub_ps(ac, _mm512_set1_ps(ERF_CENTRE)), _mm512_set1_ps(ERF_INV_HALF_WIDTH));
    __m512 q = _mm512_set1_ps(erfTailPoly[0]);
    for (int i = 1; i < ERF_TAIL_TERMS; i++) q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(erfTailPoly[i]));
    __m512 r = _mm512_fnmadd_ps(exp16(_mm512_xor_ps(_mm512_mul_ps(ac, ac), sign)), q, _mm512_set1_ps(1.0f));
    r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, _mm512_set1_ps(ERF_ONE), _CMP_GE_OQ), r, _mm512_set1_ps(1.0f));
    r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, _mm512_set1_ps(ERF_SMALL), _CMP_LT_OQ), r, small);
    return _mm512_or_ps(r, _mm512_and_ps(x, sign));
}

AVX512 static inline __m512 gelu16(__m512 x) {
    __m512 e = erf16(_mm512_div_ps(x, _mm512_set1_ps(SQRT2)));
    return _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.5f)), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

AVX512 static inline __m512 quickGelu16(__m512 x) {
    __m512 e = exp16(_mm512_mul_ps(x, _mm512_set1_ps(QUICK_GELU_SLOPE)));
    return _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

AVX512 static inline __m256 lowHalf(__m512 p) { return _mm512_castps512_ps256(p); }

AVX512 static inline __m256 highHalf(__m512 p) { return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(p), 1)); }

AVX512 static float sumAVX512(const float *x, long n) {
    __m512 acc = _mm512_setzero_ps();
    long j = 0;
    for (; j + 16 <= n; j += 16) acc = _mm512_add_ps(acc, _mm512_loadu_ps(x + j));
    if (j < n) {
        __mmask16 k = tailMask16(n - j);
        acc = _mm512_mask_add_ps(acc, k, acc, _mm512_maskz_loadu_ps(k, x + j));
    }
    return sumTree8(_mm256_add_ps(lowHalf(acc), highHalf(acc)));
}

AVX512 static float sumOfSquaresAVX512(const float *x, long n, float shift) {
    const __m512 s = _mm512_set1_ps(shift);
    __m512 acc = _mm512_setzero_ps();
    long j = 0;
    for (; j + 16 <= n; j += 16) { __m512 c = _mm512_sub_ps(_mm512_loadu_ps(x + j), s); acc = _mm512_fmadd_ps(c, c, acc); }
    if (j < n) {
        __mmask16 k = tailMask16(n - j);
        __m512 c = _mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + j), s);
        acc = _mm512_mask3_fmadd_ps(c, c, acc, k);
    }
    return sumTree8(_mm256_add_ps(lowHalf(acc), highHalf(acc)));
}

AVX512 static float maxAVX512(const float *x, long n) {
    __m512 acc = _mm512_set1_ps(-INFINITY);
    long j = 0;
    for (; j + 16 <= n; j += 16) acc = _mm512_max_ps(acc, _mm512_loadu_ps(x + j));
    if (j < n) {
        __mmask16 k = tailMask16(n - j);
        acc = _mm512_mask_max_ps(acc, k, acc, _mm512_maskz_loadu_ps(k, x + j));
    }
    return maxTree8(_mm256_max_ps(lowHalf(acc), highHalf(acc)));
}

AVX512 static void softmaxRowAVX512(float *x, long n) {
    const __m512 m = _mm512_set1_ps(maxAVX512(x, n));
    __m512 acc = _mm512_setzero_ps();
    long j = 0;
    for (; j + 16 <= n; j += 16) {
        __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + j), m));
        _mm512_storeu_ps(x + j, e);
        acc = _mm512_add_ps(acc, e);
    }
    __mmask16 k = tailMask16(n - j);
    if (j < n) {
        __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + j), m));
        _mm512_mask_storeu_ps(x + j, k, e);
        acc = _mm512_mask_add_ps(acc, k, acc, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / sumTree8(_mm256_add_ps(lowHalf(acc), highHalf(acc))));
    for (j = 0; j + 16 <= n; j += 16) _mm512_storeu_ps(x + j, _mm512_mul_ps(_mm512_loadu_ps(x + j), inv));
    if (j < n) _mm512_mask_storeu_ps(x + j, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + j), inv));
}

AVX512 static void layerNormRowAVX512(const float *x, long n, const float *w, const float *b, float eps, float *y) {
    float mean = sumAVX512(x, n) / (float)n, inv = inverseDeviation(sumOfSquaresAVX512(x, n, mean), n, eps);
    const __m512 m = _mm512_set1_ps(mean), s = _mm512_set1_ps(inv);
    long j = 0;
#define NORM16(xv, wv, bv) _mm512_fmadd_ps(_mm512_mul_ps(_mm512_sub_ps(xv, m), s), wv, bv)
    for (; j + 16 <= n; j += 16) _mm512_storeu_ps(y + j, NORM16(_mm512_loadu_ps(x + j), _mm512_loadu_ps(w + j), _mm512_loadu_ps(b + j)));
    if (j < n) {
        __mmask16 k = tailMask16(n - j);
        _mm512_mask_storeu_ps(y + j, k, NORM16(_mm512_maskz_loadu_ps(k, x + j), _mm512_maskz_loadu_ps(k, w + j), _mm512_maskz_loadu_ps(k, b + j)));
    }
#undef NORM16
}

// MARK: - Choosing the path

static int forcedPath;  // 0: by the CPU

static int bestPath(void) {
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return CNCLIP_ELEMENTWISE_PORTABLE;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) return CNCLIP_ELEMENTWISE_AVX512;
    return CNCLIP_ELEMENTWISE_AVX2;
}

int cnclip_elementwise_path(void) {
    int forced = __atomic_load_n(&forcedPath, __ATOMIC_SEQ_CST);
    return forced != 0 ? forced : bestPath();
}

int cnclip_elementwise_use_path(int path) {
    if (path >= 0 && path <= bestPath()) __atomic_store_n(&forcedPath, path, __ATOMIC_SEQ_CST);
    return cnclip_elementwise_path();
}

// MARK: - Entry points

// An elementwise function over n floats: full vectors, then one masked vector for the tail.
#define ELEMENTWISE(name, f16, f8, f1)                                                                         \
    AVX512 static void name##AVX512(const float *x, float *y, long n) {                                      \
        long i = 0;                                                                                           \
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, f16(_mm512_loadu_ps(x + i)));                    \
        if (i < n) {                                                                                          \
            __mmask16 k = tailMask16(n - i);                                                                  \
            _mm512_mask_storeu_ps(y + i, k, f16(_mm512_maskz_loadu_ps(k, x + i)));                            \
        }                                                                                                     \
    }                                                                                                         \
    AVX2 static void name##AVX2(const float *x, float *y, long n) {                                          \
        long i = 0;                                                                                           \
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, f8(_mm256_loadu_ps(x + i)));                       \
        if (i < n) {                                                                                          \
            __m256i k = tailMask8(n - i);                                                                     \
            _mm256_maskstore_ps(y + i, k, f8(_mm256_maskload_ps(x + i, k)));                                  \
        }                                                                                                     \
    }                                                                                                         \
    void cnclip_##name(const float *x, float *y, long n) {                                                   \
        switch (cnclip_elementwise_path()) {                                                                  \
        case CNCLIP_ELEMENTWISE_AVX512: name##AVX512(x, y, n); break;                                         \
        case CNCLIP_ELEMENTWISE_AVX2: name##AVX2(x, y, n); break;                                             \
        default: for (long i = 0; i < n; i++) y[i] = f1(x[i]);                                                \
        }                                                                                                     \
    }

ELEMENTWISE(exp, exp16, exp8, exp1)
ELEMENTWISE(erf, erf16, erf8, erf1)
ELEMENTWISE(gelu, gelu16, gelu8, gelu1)
ELEMENTWISE(quick_gelu, quickGelu16, quickGelu8, quickGelu1)

AVX512 static void addRowAVX512(const float *x, const float *b, float *y, long n) {
    long j = 0;
    for (; j + 16 <= n; j += 16) _mm512_storeu_ps(y + j, _mm512_add_ps(_mm512_loadu_ps(x + j), _mm512_loadu_ps(b + j)));
    if (j < n) {
        __mmask16 k = tailMask16(n - j);
        _mm512_mask_storeu_ps(y + j, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, x + j), _mm512_maskz_loadu_ps(k, b + j)));
    }
}

AVX2 static void addRowAVX2(const float *x, const float *b, float *y, long n) {
    long j = 0;
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(y + j, _mm256_add_ps(_mm256_loadu_ps(x + j), _mm256_loadu_ps(b + j)));
    if (j < n) {
        __m256i k = tailMask8(n - j);
        _mm256_maskstore_ps(y + j, k, _mm256_add_ps(_mm256_maskload_ps(x + j, k), _mm256_maskload_ps(b + j, k)));
    }
}

void cnclip_add_rows(const float *x, const float *b, float *y, long rows, long n) {
    int path = cnclip_elementwise_path();
    for (long i = 0; i < rows; i++) {
        const float *xi = x + i * n;
        float *yi = y + i * n;
        switch (path) {
        case CNCLIP_ELEMENTWISE_AVX512: addRowAVX512(xi, b, yi, n); break;
        case CNCLIP_ELEMENTWISE_AVX2: addRowAVX2(xi, b, yi, n); break;
        default: for (long j = 0; j < n; j++) yi[j] = xi[j] + b[j];
        }
    }
}

float cnclip_sum(const float *x, long n) {
    switch (cnclip_elementwise_path()) {
    case CNCLIP_ELEMENTWISE_AVX512: return sumAVX512(x, n);
    case CNCLIP_ELEMENTWISE_AVX2: return sumAVX2(x, n);
    default: return sumPortable(x, n);
    }
}

float cnclip_sum_of_squares(const float *x, long n, float shift) {
    switch (cnclip_elementwise_path()) {
    case CNCLIP_ELEMENTWISE_AVX512: return sumOfSquaresAVX512(x, n, shift);
    case CNCLIP_ELEMENTWISE_AVX2: return sumOfSquaresAVX2(x, n, shift);
    default: return sumOfSquaresPortable(x, n, shift);
    }
}

float cnclip_max(const float *x, long n) {
    switch (cnclip_elementwise_path()) {
    case CNCLIP_ELEMENTWISE_AVX512: return maxAVX512(x, n);
    case CNCLIP_ELEMENTWISE_AVX2: return maxAVX2(x, n);
    default: return maxPortable(x, n);
    }
}

void cnclip_softmax_rows(float *x, long rows, long cols) {
    int path = cnclip_elementwise_path();
    for (long i = 0; i < rows; i++) {
        float *row = x + i * cols;
        switch (path) {
        case CNCLIP_ELEMENTWISE_AVX512: softmaxRowAVX512(row, cols); break;
        case CNCLIP_ELEMENTWISE_AVX2: softmaxRowAVX2(row, cols); break;
        default: softmaxRowPortable(row, cols);
        }
    }
}

void cnclip_layer_norm_rows(const float *x, long rows, long n, const float *w, const float *b, float eps, float *y) {
    int path = cnclip_elementwise_path();
    for (long i = 0; i < rows; i++) {
        const float *xi = x + i * n;
        float *yi = y + i * n;
        switch (path) {
        case CNCLIP_ELEMENTWISE_AVX512: layerNormRowAVX512(xi, n, w, b, eps, yi); break;
        case CNCLIP_ELEMENTWISE_AVX2: layerNormRowAVX2(xi, n, w, b, eps, yi); break;
        default: layerNormRowPortable(xi, n, w, b, eps, yi);
        }
    }
}

void cnclip_l2_normalize_rows(const float *x, long rows, long n, float *y) {
    for (long i = 0; i < rows; i++) {
        const float *xi = x + i * n;
        float *yi = y + i * n;
        float norm = sqrtf(cnclip_sum_of_squares(xi, n, 0.0f));
        for (long j = 0; j < n; j++) yi[j] = xi[j] / norm;
    }
}

// MARK: - AdamW

// One element's update in the order and operations of PyTorch's single-tensor AdamW (elementwise.h), on the
// constants each path defines as decayK, oneMinusBeta1K, beta2K, oneMinusBeta2K, biasCorrection2SqrtK, epsK and
// negStepSizeK, so that the three paths cannot drift apart.
#define ADAMW_STEP(W, G, M, V, MUL, ADD, SUB, DIV, SQRT)                                                         \
    do {                                                                                                        \
        if (decayWeights) W = MUL(W, decayK);                                                                   \
        M = ADD(M, MUL(oneMinusBeta1K, SUB(G, M)));                                                             \
        V = ADD(MUL(V, beta2K), MUL(oneMinusBeta2K, MUL(G, G)));                                                \
        W = ADD(W, MUL(negStepSizeK, DIV(M, ADD(DIV(SQRT(V), biasCorrection2SqrtK), epsK))));                   \
    } while (0)

#define ADAMW_PARAMETERS                                                                                        \
    float *w, const float *g, float *m, float *v, long n, float decay, int decayWeights, float oneMinusBeta1,   \
        float beta2, float oneMinusBeta2, float biasCorrection2Sqrt, float eps, float stepSize
#define ADAMW_ARGUMENTS w, g, m, v, n, decay, decayWeights, oneMinusBeta1, beta2, oneMinusBeta2, biasCorrection2Sqrt, eps, stepSize
#define ADAMW_CONSTANTS(SET)                                                                                    \
    const __typeof__(SET(0)) decayK = SET(decay), oneMinusBeta1K = SET(oneMinusBeta1), beta2K = SET(beta2),    \
                             oneMinusBeta2K = SET(oneMinusBeta2), biasCorrection2SqrtK = SET(biasCorrection2Sqrt), \
                             epsK = SET(eps), negStepSizeK = SET(-stepSize)

AVX512 static void adamwAVX512(ADAMW_PARAMETERS) {
    ADAMW_CONSTANTS(_mm512_set1_ps);
    for (long i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : tailMask16(n - i);
        __m512 W = _mm512_maskz_loadu_ps(k, w + i), G = _mm512_maskz_loadu_ps(k, g + i);
        __m512 M = _mm512_maskz_loadu_ps(k, m + i), V = _mm512_maskz_loadu_ps(k, v + i);
        ADAMW_STEP(W, G, M, V, _mm512_mul_ps, _mm512_add_ps, _mm512_sub_ps, _mm512_div_ps, _mm512_sqrt_ps);
        _mm512_mask_storeu_ps(w + i, k, W);
        _mm512_mask_storeu_ps(m + i, k, M);
        _mm512_mask_storeu_ps(v + i, k, V);
    }
}

AVX2 static void adamwAVX2(ADAMW_PARAMETERS) {
    ADAMW_CONSTANTS(_mm256_set1_ps);
    for (long i = 0; i < n; i += 8) {
        __m256i k = tailMask8(n - i < 8 ? n - i : 8);
        __m256 W = _mm256_maskload_ps(w + i, k), G = _mm256_maskload_ps(g + i, k);
        __m256 M = _mm256_maskload_ps(m + i, k), V = _mm256_maskload_ps(v + i, k);
        ADAMW_STEP(W, G, M, V, _mm256_mul_ps, _mm256_add_ps, _mm256_sub_ps, _mm256_div_ps, _mm256_sqrt_ps);
        _mm256_maskstore_ps(w + i, k, W);
        _mm256_maskstore_ps(m + i, k, M);
        _mm256_maskstore_ps(v + i, k, V);
    }
}

static inline float set1(float a) { return a; }
static inline float mul1(float a, float b) { return a * b; }
static inline float add1(float a, float b) { return a + b; }
static inline float sub1(float a, float b) { return a - b; }
static inline float div1(float a, float b) { return a / b; }

static void adamwPortable(ADAMW_PARAMETERS) {
    ADAMW_CONSTANTS(set1);
    for (long i = 0; i < n; i++) {
        float W = w[i], G = g[i], M = m[i], V = v[i];
        ADAMW_STEP(W, G, M, V, mul1, add1, sub1, div1, sqrtf);
        w[i] = W;
        m[i] = M;
        v[i] = V;
    }
}

void cnclip_adamw(ADAMW_PARAMETERS) {
    switch (cnclip_elementwise_path()) {
    case CNCLIP_ELEMENTWISE_AVX512: adamwAVX512(ADAMW_ARGUMENTS); break;
    case CNCLIP_ELEMENTWISE_AVX2: adamwAVX2(ADAMW_ARGUMENTS); break;
    default: adamwPortable(ADAMW_ARGUMENTS);
    }
}
