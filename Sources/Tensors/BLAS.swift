// The one place that calls BLAS: a thin wrapper over cblas_sgemm so another backend (Accelerate, a GPU)
// can replace it without touching the kernels above it.

import COpenBLAS

/// Matrix products on row-major fp32 buffers.
public enum BLAS {
    /// Sets OpenBLAS's thread count.
    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }

    /// `c[m, n] = alpha * op(a) @ op(b) + beta * c`, row-major, where `op(a)` is `[m, k]` and `op(b)` is `[k, n]`.
    /// `lda`, `ldb`, `ldc` are row strides of the stored (untransposed) matrices.
    @inlinable
    public static func gemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                            alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int,
                            beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if m == 0 || n == 0 { return }
        if k == 0 {
            // BLAS leaves C untouched for k == 0 only when beta == 1; make the result well defined.
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
            return
        }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }
}
