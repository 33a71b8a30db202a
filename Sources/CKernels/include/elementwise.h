#ifndef CKERNELS_ELEMENTWISE_H
#define CKERNELS_ELEMENTWISE_H

// The activations, softmax and normalisations around the matrix products. Every function works on the calling
// thread (callers split rows or elements over threads) and gives the same bits on every path: the vector paths and
// the portable one perform the same IEEE operations (fused multiply-adds exactly where named) in the same order.
//
// Reductions over a row use 16 partial sums: element j goes to partial sum j % 16 (in order), then the partial sums
// combine as p[i] + p[i + 8], then + [i + 4], + [i + 2], + [i + 1]. So a row's sum never depends on where it sits or
// on other rows, and appending zeros (keys masked to probability 0) never changes it.

/// The paths the kernels can take.
enum { CNCLIP_ELEMENTWISE_PORTABLE = 1, CNCLIP_ELEMENTWISE_AVX2 = 2, CNCLIP_ELEMENTWISE_AVX512 = 3 };

/// `y[i] = e^x[i]` for `n` floats (`y` may equal `x`): within 1e-7 relative of the exact value for normal results
/// (9.1e-8 measured over [-103, 88.7] in steps of 1/512), through the subnormals to 0 below and to +inf above, as `expf`.
void cnclip_exp(const float *x, float *y, long n);

/// `y[i] = erf(x[i])` for `n` floats (`y` may equal `x`), within 1e-7 of the exact value (9.5e-8 measured over
/// [-6, 6] in steps of 1/4096; glibc's scalar `erff` is within 6e-8).
void cnclip_erf(const float *x, float *y, long n);

/// Exact GELU, `y = x * 0.5 * (1 + erf(x / sqrt(2)))` in that order (BERT's `gelu`), for `n` floats (`y` may equal `x`).
void cnclip_gelu(const float *x, float *y, long n);

/// QuickGELU, `y = x / (1 + e^(-1.702 x))` (CLIP's vision tower), for `n` floats (`y` may equal `x`).
void cnclip_quick_gelu(const float *x, float *y, long n);

/// `y[i, j] = x[i, j] + b[j]` for `rows` rows of `n` floats (`y` may equal `x`): a residual or a broadcast bias.
void cnclip_add_rows(const float *x, const float *b, float *y, long rows, long n);

/// The sum of `n` floats in the order described above.
float cnclip_sum(const float *x, long n);

/// The sum of `(x[j] - shift)²` over `n` floats (each square added by a fused multiply-add), in the same order.
float cnclip_sum_of_squares(const float *x, long n, float shift);

/// The largest of `n` floats (-infinity for none).
float cnclip_max(const float *x, long n);

/// Softmax of each row of `x [rows, cols]`, in place: `e^(x - max)` scaled by the reciprocal of its sum.
void cnclip_softmax_rows(float *x, long rows, long cols);

/// Layer normalisation of each row of `x [rows, n]` into `y` (`y` may equal `x`): `mean = sum(x) / n`, `variance =
/// sum((x - mean)²) / n` (two passes, as PyTorch), `y = fma((x - mean) * (1 / sqrt(variance + eps)), w, b)`.
void cnclip_layer_norm_rows(const float *x, long rows, long n, const float *w, const float *b, float eps, float *y);

/// Each row of `x [rows, n]` divided by its L2 norm, `sqrt(sum(x²))`, into `y` (`y` may equal `x`).
void cnclip_l2_normalize_rows(const float *x, long rows, long n, float *y);

/// One AdamW step over `n` parameters in place, each element as PyTorch's single-tensor AdamW updates it, in this
/// order and with nothing fused: `w *= decay` (only when `decayWeights`), `m += oneMinusBeta1 * (g - m)`,
/// `v = v * beta2 + oneMinusBeta2 * (g * g)`, `w += -stepSize * (m / (sqrt(v) / biasCorrection2Sqrt + eps))`.
void cnclip_adamw(float *w, const float *g, float *m, float *v, long n, float decay, int decayWeights, float oneMinusBeta1,
                  float beta2, float oneMinusBeta2, float biasCorrection2Sqrt, float eps, float stepSize);

/// The path the kernels take now: the best this CPU has (AVX-512, then AVX2 with FMA, then portable), or the one
/// forced by `cnclip_elementwise_use_path`.
int cnclip_elementwise_path(void);

/// Forces a path (`CNCLIP_ELEMENTWISE_*`), or 0 to choose by the CPU again, and returns the path taken from now on:
/// a path this CPU lacks is ignored. For the tests that every path gives the same bits.
int cnclip_elementwise_use_path(int path);

#endif
