// The fp32 inference path's linear layer: the weight packed once, at load, into the panels the GEMM kernel reads,
// instead of on every call. At batch 1 the weights do not stay in cache from one text to the next, and the packing
// (a transposition of every weight) was 61% of a short query's time (BENCHMARKS.md). A product on the packed weight
// performs the same operations as `BLAS.gemm` on the original, so every feature keeps its bits.

import CKernels

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
    let out = linearOutput(x, rows: weight.rows, columns: weight.columns, bias: bias, weight: "packed weight")
    let m = x.rowCount, k = x.lastDim, n = weight.rows, kernel = weight.kernel
    let a = x.data, packed = UnsafePointer(weight.storage.pointer), y = out.mutableData, biasData = bias?.data
    var tileRows = 0, tileColumns = 0
    cnclip_sgemm_kernel_tile(kernel, &tileRows, &tileColumns)  // the tile of the kernel the weight was packed for
    BLAS.forEachPart(m: m, n: n, k: k, tileRows: tileRows, tileColumns: tileColumns) { rows, columns in
        cnclip_sgemm_packed(
            rows.count, columns.lowerBound, columns.count, n, k, a + rows.lowerBound * k, k, packed, kernel, biasData,
            y + rows.lowerBound * n + columns.lowerBound, n)
    }
    withExtendedLifetime(weight.storage) {}
    return out
}
