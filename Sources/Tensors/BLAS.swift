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
        var tileRows = 0, tileColumns = 0
        cnclip_sgemm_tile(&tileRows, &tileColumns)
        forEachPart(m: m, n: n, k: k, tileRows: tileRows, tileColumns: tileColumns) { rows, columns in
            let ap = transA ? a + rows.lowerBound : a + rows.lowerBound * lda
            let bp = transB ? b + columns.lowerBound * ldb : b + columns.lowerBound
            sgemm(
                transA, transB, rows.count, columns.count, k, alpha, ap, lda, bp, ldb, beta,
                c + rows.lowerBound * ldc + columns.lowerBound, ldc, bias: bias.map { $0 + columns.lowerBound })
        }
    }

    /// Runs `part(rows, columns)` over the pieces of a product's output `[m, n]` (depth `k`) split across
    /// `ComputeThreads.count` threads, each piece whole tiles of the kernel (`tileRows` × `tileColumns`): small
    /// products stay in one piece on the calling thread (attention heads are split at a higher level); otherwise the
    /// longer side of C is split. Each thread packs all of the operand it does not split, so the duplicated packing is
    /// then of the smaller operand (a batch-1 ViT's 197 rows against 2304 weight columns would otherwise transpose the
    /// whole weight on every thread).
    package static func forEachPart(
        m: Int, n: Int, k: Int, tileRows: Int, tileColumns: Int, _ part: (_ rows: Range<Int>, _ columns: Range<Int>) -> Void
    ) {
        if m == 0 || n == 0 { return }
        let threads = ComputeThreads.count
        if threads <= 1 || m * n * max(k, 1) < 1 << 21 {
            part(0..<m, 0..<n)
        } else if m >= 32 * threads && (m >= n || n < 16 * threads) {
            computePerform(iterations: threads) { t in
                let lo = (m * t / threads) / tileRows * tileRows
                let hi = t == threads - 1 ? m : (m * (t + 1) / threads) / tileRows * tileRows
                if hi > lo { part(lo..<hi, 0..<n) }
            }
        } else {
            computePerform(iterations: threads) { t in
                let lo = (n * t / threads) / tileColumns * tileColumns
                let hi = t == threads - 1 ? n : (n * (t + 1) / threads) / tileColumns * tileColumns
                if hi > lo { part(0..<m, lo..<hi) }
            }
        }
    }
}
