#ifndef CKERNELS_H
#define CKERNELS_H

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

/// Makes `cnclip_sgemm` use its portable kernel (1) even where AVX2/FMA exist, or choose by the CPU again (0):
/// for the test that both give the same bits.
void cnclip_gemm_use_portable(int on);

#endif
