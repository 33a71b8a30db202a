// The fp32 inference path's linear layer: the weight packed once, at load, into the panels the GEMM kernel reads,
// instead of on every call. At batch 1 the weights do not stay in cache from one text to the next, and the packing
// (a transposition of every weight) was 61% of a short query's time (BENCHMARKS.md). A product on the packed weight
// performs the same operations as `BLAS.gemm` on the original, so every feature keeps its bits.

import CKernels
import Essentials

/// A linear layer's fp32 weight `[out, in]` held packed for the GEMM kernel (inference only).
package struct PackedWeight: Sendable {
    /// Output channels.
    package let rows: Int
    /// Input features.
    package let columns: Int
    /// The packed panels (`cnclip_sgemm_packed_count` floats, 64-byte aligned).
    let storage: TensorStorage
    /// The `CNCLIP_SGEMM_*` kernel `storage` is laid out for: the GEMM's kernel when the weight was packed.
    let kernel: Int32

    /// Packs a weight `[out, in]`.
    package init(packing weight: Tensor) {
        precondition(weight.rank == 2, "PackedWeight: weight \(weight.shape) is not a matrix")
        let kernel = cnclip_sgemm_kernel()
        precondition(kernel > 0, "PackedWeight: the forced GEMM kernel is not available on this CPU")
        rows = weight.shape[0]
        columns = weight.shape[1]
        self.kernel = kernel
        storage = TensorStorage(uninitializedCount: cnclip_sgemm_packed_count(rows, columns, kernel))
        cnclip_sgemm_pack(rows, columns, weight.data, columns, kernel, storage.pointer)
    }

    /// The weight `[rows, columns]` read back from the packed form (the same values).
    package func unpacked() -> Tensor {
        let w = Tensor.uninitialized([rows, columns])
        cnclip_sgemm_unpack(rows, columns, storage.pointer, kernel, w.mutableData, columns)
        return w
    }
}

/// `x @ weight.T + bias` on a packed weight: `x [..., in]`, `bias [out]` → `[..., out]`, the same bits as
/// `linear(_:weight:bias:)` on the unpacked weight.
package func linear(_ x: Tensor, weight: PackedWeight, bias: Tensor?) -> Tensor {
    precondition(weight.columns == x.lastDim, "linear: x \(x.shape) vs packed weight [\(weight.rows), \(weight.columns)]")
    let m = x.rowCount, k = x.lastDim, n = weight.rows
    if let bias { precondition(bias.count == n, "linear: bias \(bias.shape) for \(n) outputs") }
    let out = Tensor.uninitialized(Array(x.shape.dropLast()) + [n])
    guard m > 0 && n > 0 else { return out }
    let a = x.data, packed = UnsafePointer(weight.storage.pointer), y = out.mutableData, kernel = weight.kernel
    let biasData = bias?.data
    /// Output columns `lo ..< hi` of rows `rowLo ..< rowHi`.
    func product(rows rowLo: Int, _ rowHi: Int, columns lo: Int, _ hi: Int) {
        cnclip_sgemm_packed(rowHi - rowLo, lo, hi - lo, n, k, a + rowLo * k, k, packed, kernel, biasData, y + rowLo * n + lo, n)
    }
    let threads = ComputeThreads.count
    if threads <= 1 || m * n * max(k, 1) < 1 << 21 {
        withExtendedLifetime(weight.storage) { product(rows: 0, m, columns: 0, n) }
        return out
    }
    var tileRows = 0, tileColumns = 0
    cnclip_sgemm_kernel_tile(kernel, &tileRows, &tileColumns)  // the tile of the kernel the weight was packed for
    // As `BLAS.gemm`: split the longer side of the output, in whole tiles; a thread that takes rows walks every
    // panel of the weight, one that takes columns packs every row of x.
    if m >= 32 * threads && (m >= n || n < 16 * threads) {
        computePerform(iterations: threads) { t in
            let lo = (m * t / threads) / tileRows * tileRows
            let hi = t == threads - 1 ? m : (m * (t + 1) / threads) / tileRows * tileRows
            if hi > lo { product(rows: lo, hi, columns: 0, n) }
        }
    } else {
        computePerform(iterations: threads) { t in
            let lo = (n * t / threads) / tileColumns * tileColumns
            let hi = t == threads - 1 ? n : (n * (t + 1) / threads) / tileColumns * tileColumns
            if hi > lo { product(rows: 0, m, columns: lo, hi) }
        }
    }
    withExtendedLifetime(weight.storage) {}
    return out
}
