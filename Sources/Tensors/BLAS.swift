// The one place that calls BLAS: a thin wrapper over cblas_sgemm so another backend (Accelerate, a GPU)
// can replace it without touching the kernels above it.

import COpenBLAS
import Dispatch

/// Matrix products on row-major fp32 buffers.
///
/// OpenBLAS runs single-threaded and we split each large product across our own threads: one pool for every
/// kernel, so BLAS's worker threads never spin (sched_yield) against our elementwise work between calls.
public enum BLAS {
    private static let singleThreaded: Void = { openblas_set_num_threads(1) }()

    /// Sets the thread count used to split products (OpenBLAS itself stays single-threaded).
    public static func setThreads(_ n: Int) { _ = singleThreaded }

    /// One BLAS call on the calling thread.
    static func sgemm(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
                      _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                      _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }

    /// `c[m, n] = alpha * op(a) @ op(b) + beta * c`, row-major, where `op(a)` is `[m, k]` and `op(b)` is `[k, n]`.
    /// `lda`, `ldb`, `ldc` are row strides of the stored (untransposed) matrices.
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
        _ = singleThreaded
        let threads = ComputeThreads.count
        // Small products stay on the calling thread (attention heads are split at a higher level).
        if threads <= 1 || m * n * k < 1 << 21 {
            sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
            return
        }
        if m >= 32 * threads {
            // Split the rows of C (and of op(a)).
            DispatchQueue.concurrentPerform(iterations: threads) { t in
                let lo = m * t / threads, hi = m * (t + 1) / threads
                let ap = transA ? a + lo : a + lo * lda
                sgemm(transA, transB, hi - lo, n, k, alpha, ap, lda, b, ldb, beta, c + lo * ldc, ldc)
            }
        } else {
            // Split the columns of C (and of op(b)), in multiples of 16 to keep the kernel's panels whole.
            DispatchQueue.concurrentPerform(iterations: threads) { t in
                let lo = (n * t / threads) & ~15, hi = t == threads - 1 ? n : (n * (t + 1) / threads) & ~15
                guard hi > lo else { return }
                let bp = transB ? b + lo * ldb : b + lo
                sgemm(transA, transB, m, hi - lo, k, alpha, a, lda, bp, ldb, beta, c + lo, ldc)
            }
        }
    }
}
