// The one place that multiplies matrices: our own GEMM (`CKernels`), split across our threads, so another
// backend (Accelerate, a GPU) can replace it without touching the kernels above it.
//
// Why not a vendor BLAS: OpenBLAS rounds a row of the result differently depending on the row's position in
// its kernel's blocks and on the call's width, so a text's features changed in the last bits with its place
// in the batch, with padding and with the thread count. `cnclip_sgemm` computes every element with the same
// operations whatever the shape or split (see CKernels.h), at OpenBLAS's speed on large products and faster
// on small ones (BENCHMARKS.md).

import CKernels
import Dispatch
import Essentials

/// Matrix products on row-major fp32 buffers; every element's rounding is independent of the call's shape.
package enum BLAS {
    /// One product on the calling thread.
    static func sgemm(
        _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
        _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
        _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, bias: UnsafePointer<Float>? = nil
    ) {
        cnclip_sgemm(transA ? 1 : 0, transB ? 1 : 0, m, n, k, alpha, a, lda, b, ldb, beta, bias, c, ldc)
    }

    /// `c[m, n] = alpha * op(a) @ op(b) + beta * c + bias`, row-major, where `op(a)` is `[m, k]`, `op(b)` is
    /// `[k, n]` and `bias` (`[n]`, added to every row in the product's last rounding step) is optional.
    /// `lda`, `ldb`, `ldc` are row strides of the stored (untransposed) matrices. Large products are split
    /// over `ComputeThreads.count` threads; the result is the same bits for any split.
    package static func gemm(
        transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, bias: UnsafePointer<Float>? = nil, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        let threads = ComputeThreads.count
        // Small products stay on the calling thread (attention heads are split at a higher level).
        if threads <= 1 || m * n * max(k, 1) < 1 << 21 {
            sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias: bias)
            return
        }
        // Each thread packs all of the operand it does not split: split the longer side of C, so that the
        // duplicated packing is of the smaller operand (a batch-1 ViT's 197 rows against 2304 weight columns
        // would otherwise transpose the whole weight on every thread).
        var tileRows = 0, tileColumns = 0
        cnclip_sgemm_tile(&tileRows, &tileColumns)
        if m >= 32 * threads && (m >= n || n < 16 * threads) {
            // Split the rows of C (and of op(a)) in whole row panels of the kernel.
            computePerform(iterations: threads) { t in
                let lo = (m * t / threads) / tileRows * tileRows
                let hi = t == threads - 1 ? m : (m * (t + 1) / threads) / tileRows * tileRows
                guard hi > lo else { return }
                let ap = transA ? a + lo : a + lo * lda
                sgemm(transA, transB, hi - lo, n, k, alpha, ap, lda, b, ldb, beta, c + lo * ldc, ldc, bias: bias)
            }
        } else {
            // Split the columns of C (and of op(b)) in whole column panels of the kernel.
            computePerform(iterations: threads) { t in
                let lo = (n * t / threads) / tileColumns * tileColumns
                let hi = t == threads - 1 ? n : (n * (t + 1) / threads) / tileColumns * tileColumns
                guard hi > lo else { return }
                let bp = transB ? b + lo * ldb : b + lo
                sgemm(transA, transB, m, hi - lo, k, alpha, a, lda, bp, ldb, beta, c + lo, ldc, bias: bias.map { $0 + lo })
            }
        }
    }
}
