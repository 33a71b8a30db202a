#ifndef CKERNELS_H
#define CKERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "elementwise.h"
#include "feature_numbers.h"

/// Row-major single-precision GEMM on the calling thread, `c[m, n] = alpha * op(a) @ op(b) + beta * c + bias`,
/// where `op(a)` is `[m, k]`, `op(b)` is `[k, n]` and `bias` (`[n]`, added to every row) may be NULL; `lda`, `ldb`,
/// `ldc` are the row strides of the stored matrices.
///
/// Every element of `c` goes through the same operations whatever `m`, `n`, its position or how a caller splits
/// the product: for each block of 512 values of k (boundaries at multiples of 512 from 0), a sum of products
/// by fused multiply-adds in k order starting from 0; then for the first block `t = alpha * sum` (exact when
/// alpha is 1), `t = fma(beta, c, t)` when beta ≠ 0, `t + bias[j]` when there is a bias; for later blocks
/// `c + alpha * sum`. So one row's result never depends on the other rows (batch composition, padding rows,
/// thread count).
void cnclip_sgemm(int transA, int transB, long m, long n, long k, float alpha, const float *a, long lda,
                  const float *b, long ldb, float beta, const float *bias, float *c, long ldc);

/// The micro-kernels of `cnclip_sgemm`; every one gives the same bits.
enum { CNCLIP_SGEMM_PORTABLE = 1, CNCLIP_SGEMM_AVX2 = 2, CNCLIP_SGEMM_AVX512 = 3 };

/// The kernel `cnclip_sgemm` uses now: the best this CPU has (AVX-512, then AVX2/FMA, then portable), or the one
/// forced by `cnclip_sgemm_use_kernel`; -1 when the forced one is not available here.
int cnclip_sgemm_kernel(void);

/// Forces a kernel (`CNCLIP_SGEMM_*`), or 0 to choose by the CPU again: for the tests that every kernel gives the
/// same bits and for benchmarks.
void cnclip_sgemm_use_kernel(int kernel);

/// The current kernel's tile, rows × columns of C: callers that split a product over threads cut at these multiples.
void cnclip_sgemm_tile(long *rows, long *columns);

/// The tile of `kernel` (`CNCLIP_SGEMM_*`), rows × columns of C.
void cnclip_sgemm_kernel_tile(int kernel, long *rows, long *columns);

/// Floats that `cnclip_sgemm_pack` writes for a weight `w [n, k]` and `kernel`.
size_t cnclip_sgemm_packed_count(long n, long k, int kernel);

/// Packs a linear layer's weight `w [n, k]` (one row per output channel) once for `kernel` (one this CPU has) into
/// `packed` (`cnclip_sgemm_packed_count` floats, 64-byte aligned): the panels of `op(b) = wᵀ` that `cnclip_sgemm`
/// would otherwise build on every call.
void cnclip_sgemm_pack(long n, long k, const float *w, long ldw, int kernel, float *packed);

/// The weight `w [n, k]` back from its packed form (the inverse of `cnclip_sgemm_pack`, exact).
void cnclip_sgemm_unpack(long n, long k, const float *packed, int kernel, float *w, long ldw);

/// `c[m, nc] = a[m, k] @ w[j0 ..< j0 + nc]ᵀ + bias[j0 ..< j0 + nc]` on a packed `w [n, k]` (`j0` a multiple of the
/// kernel's tile columns, `bias` indexed by output channel and may be NULL), on the calling thread: the same
/// operations as `cnclip_sgemm(0, 1, ...)` with alpha 1 and beta 0, so the same bits. `kernel` is the one the weight
/// was packed for.
void cnclip_sgemm_packed(long m, long j0, long nc, long n, long k, const float *a, long lda, const float *packed, int kernel,
                         const float *bias, float *c, long ldc);

/// Runs `fn(context, i)` for every `i` in `0 ..< iterations` on the kernels' compute threads (one fewer than the
/// processors, spinning briefly between jobs) and the calling thread, and returns 1 when all have run; returns 0 at
/// once, running nothing, when the threads are taken by another job (another caller, or a call from inside an
/// iteration), there are none, or `iterations` is below 2.
int cnclip_parallel(long iterations, void (*fn)(void *context, long index), void *context);

/// The kernels of `cnclip_igemm_s8`.
enum { CNCLIP_IGEMM_PORTABLE = 1, CNCLIP_IGEMM_AVX2 = 2, CNCLIP_IGEMM_VNNI = 3, CNCLIP_IGEMM_VNNI512 = 4 };

/// Row-major integer GEMM on the calling thread, `c[m, n] = a[m, k] · b[n, k]ᵀ` (int8 inputs, int32 sums, exact, so
/// every kernel and every split of the rows gives the same integers); `lda`, `ldb`, `ldc` are row strides. `b` holds
/// one row per output channel, as a linear layer's weight. Sums must fit int32 (|k| < 2^31 / 127²).
void cnclip_igemm_s8(long m, long n, long k, const int8_t *a, long lda, const int8_t *b, long ldb, int32_t *c, long ldc);

/// Bytes that `cnclip_igemm_pack` writes for `b [n, k]` and `kernel`.
size_t cnclip_igemm_packed_size(long n, long k, int kernel);

/// Packs `b [n, k]` (a weight, once) for `kernel` into `packed` (`cnclip_igemm_packed_size` bytes, any alignment;
/// 64 bytes is best).
void cnclip_igemm_pack(long n, long k, const int8_t *b, long ldb, int kernel, void *packed);

/// The weight `b [n, k]` back from its packed form (the inverse of `cnclip_igemm_pack`).
void cnclip_igemm_unpack(long n, long k, const void *packed, int kernel, int8_t *b, long ldb);

/// `cnclip_igemm_s8` on a packed `b [n, k]`, for its columns `j0 ..< j0 + nc` (`j0` a multiple of 16): `c[m, nc]`.
/// `kernel` is the one the weight was packed for; the integers are the same for every kernel.
void cnclip_igemm_s8_packed(long m, long j0, long nc, long n, long k, const int8_t *a, long lda, const void *packed, int kernel,
                            int32_t *c, long ldc);

/// `cnclip_igemm_s8_packed` dequantized as `cnclip_dequantize_rows` does, tile by tile while each tile is in cache:
/// `y[m, nc] = c · (rowScales[i] · colScales[j0 + j]) + bias[j0 + j]` (`bias` may be NULL; `colScales` and `bias` are
/// indexed by output channel, `y` from column j0). `scratch [m, nc]` (row stride `ldScratch`) holds the integer sums
/// when `k` spans several of the kernel's k-blocks (k > 1024); it may be NULL otherwise.
void cnclip_igemm_s8_dequantized(long m, long j0, long nc, long n, long k, const int8_t *a, long lda, const void *packed,
                                 int kernel, const float *rowScales, const float *colScales, const float *bias, float *y, long ldy,
                                 int32_t *scratch, long ldScratch);

/// The depth beyond which `cnclip_igemm_s8_dequantized` needs its scratch.
#define CNCLIP_IGEMM_BLOCK_DEPTH 1024

/// Quantizes each row of `x [rows, cols]` on its own: `scales[i] = max |x[i, ...]| / 127` (1 for an all-zero row),
/// `q[i, j] = x[i, j] / scales[i]` rounded half to even, in -127...127. Vector and scalar forms give the same bytes.
void cnclip_quantize_rows(const float *x, long rows, long cols, long ldx, int8_t *q, long ldq, float *scales);

/// `y[i, j] = (float)c[i, j] · (rowScales[i] · colScales[j]) (+ bias[j] when bias is not NULL)`, without fused
/// multiply-adds, so that vector and scalar forms give the same bits.
void cnclip_dequantize_rows(const int32_t *c, long rows, long cols, long ldc, const float *rowScales, const float *colScales,
                            const float *bias, float *y, long ldy);

/// The kernel `cnclip_igemm_s8` uses now: the best this CPU has (VNNI, then AVX2, then portable), or the one forced
/// by `cnclip_igemm_use_kernel`; -1 when the forced one is not available here.
int cnclip_igemm_kernel(void);

/// Forces a kernel (`CNCLIP_IGEMM_*`), or 0 to choose by the CPU again: for the tests that every kernel gives the
/// same integers.
void cnclip_igemm_use_kernel(int kernel);

#endif
