// The int8 path's linear layer: the weight quantized once per output channel, the activations per row at each call,
// an exact integer product (CKernels' cnclip_igemm_s8), then dequantization and the bias. Each row is quantized on
// its own and integer sums do not round, so a row's result never depends on the other rows of the batch, on padding
// or on the thread split: the engine's invariance holds for int8 as for fp32.
//
// Symmetric quantization as ONNX Runtime's dynamic QInt8 per-channel weights: value ≈ scale · q, q in -127...127,
// scale = max |value| / 127 (1 for an all-zero row), q rounded half to even.

import CKernels
import Essentials

/// A linear layer's weight `[out, in]` in int8, one scale per output channel (row).
package struct Int8Weight: Sendable {
    /// Output channels.
    package let rows: Int
    /// Input features.
    package let columns: Int
    /// `[rows]`: row r's values are `scales[r] · values[r, ...]`.
    package let scales: [Float]
    /// `values` packed once for `kernel`, the integer GEMM's kernel when the weight was made.
    let packed: [UInt8]
    /// The `CNCLIP_IGEMM_*` kernel `packed` is laid out for.
    let kernel: Int32

    /// Quantizes an fp32 weight `[out, in]`.
    package init(quantizing weight: Tensor) {
        precondition(weight.rank == 2, "Int8Weight: weight \(weight.shape) is not a matrix")
        let rows = weight.shape[0], columns = weight.shape[1]
        var values = [Int8](repeating: 0, count: rows * columns)
        var scales = [Float](repeating: 1, count: rows)
        values.withUnsafeMutableBufferPointer { q in
            scales.withUnsafeMutableBufferPointer { s in
                quantizeRows(weight.data, rows: rows, columns: columns, into: q.baseAddress!, scales: s.baseAddress!)
            }
        }
        self.init(rows: rows, columns: columns, values: values, scales: scales)
    }

    /// A weight read back from its parts (a quantized model file).
    package init(rows: Int, columns: Int, values: [Int8], scales: [Float]) {
        precondition(
            values.count == rows * columns && scales.count == rows,
            "Int8Weight: \(values.count) values, \(scales.count) scales for [\(rows), \(columns)]")
        self.rows = rows
        self.columns = columns
        self.scales = scales
        let kernel = cnclip_igemm_kernel()
        precondition(kernel > 0, "Int8Weight: the forced integer GEMM kernel is not available on this CPU")
        var packed = [UInt8](repeating: 0, count: cnclip_igemm_packed_size(rows, max(columns, 1), kernel))
        if columns > 0 { packed.withUnsafeMutableBytes { cnclip_igemm_pack(rows, columns, values, columns, kernel, $0.baseAddress!) } }
        self.packed = packed
        self.kernel = kernel
    }

    /// `[rows, columns]`, each in -127...127, read back from the packed form (which is all that is kept, so that
    /// a quantized model holds one byte per weight).
    package var values: [Int8] {
        var values = [Int8](repeating: 0, count: rows * columns)
        if !values.isEmpty {
            packed.withUnsafeBytes { p in
                values.withUnsafeMutableBufferPointer { cnclip_igemm_unpack(rows, columns, p.baseAddress!, kernel, $0.baseAddress!, columns) }
            }
        }
        return values
    }

    /// The fp32 weight these values stand for, `[rows, columns]`.
    package func dequantized() -> Tensor {
        let values = values
        return Tensor(shape: [rows, columns], scalars: (0..<(rows * columns)).map { scales[$0 / columns] * Float(values[$0]) })
    }
}

/// Quantizes each row of `x [rows, columns]` on its own: `scales[r] = max |x[r, ...]| / 127` (1 for an all-zero row)
/// and `q = x / scale` rounded half to even, in -127...127.
package func quantizeRows(
    _ x: UnsafePointer<Float>, rows: Int, columns: Int, into q: UnsafeMutablePointer<Int8>, scales: UnsafeMutablePointer<Float>
) {
    for r in 0..<rows {
        let row = x + r * columns, out = q + r * columns
        var peak: Float = 0
        for j in 0..<columns { peak = max(peak, abs(row[j])) }
        let scale = peak > 0 ? peak / 127 : 1
        scales[r] = scale
        for j in 0..<columns { out[j] = Int8(max(-127, min(127, (row[j] / scale).rounded(.toNearestOrEven)))) }
    }
}

/// `x @ weight.T + bias` on the int8 path: `x [..., in]`, `bias [out]` → `[..., out]`, each element
/// `Float(sum) · (rowScale · channelScale) + bias`.
package func linear(_ x: Tensor, weight: Int8Weight, bias: Tensor?) -> Tensor {
    precondition(weight.columns == x.lastDim, "linear: x \(x.shape) vs int8 weight [\(weight.rows), \(weight.columns)]")
    let m = x.rowCount, k = x.lastDim, n = weight.rows
    if let bias { precondition(bias.count == n, "linear: bias \(bias.shape) for \(n) outputs") }
    let out = Tensor.uninitialized(Array(x.shape.dropLast()) + [n])
    guard m > 0 && n > 0 else { return out }
    var qx = [Int8](repeating: 0, count: m * k), sx = [Float](repeating: 1, count: m)
    var sums = [Int32](repeating: 0, count: m * n)
    qx.withUnsafeMutableBufferPointer { q in
        sx.withUnsafeMutableBufferPointer { s in
            parallelFor(m, cost: 4 * k) { rows in
                quantizeRows(
                    x.data + rows.lowerBound * k, rows: rows.count, columns: k, into: q.baseAddress! + rows.lowerBound * k,
                    scales: s.baseAddress! + rows.lowerBound)
            }
        }
    }
    qx.withUnsafeBufferPointer { a in
        weight.packed.withUnsafeBytes { packed in
            sums.withUnsafeMutableBufferPointer { c in
                let (a, b, c, kernel) = (a.baseAddress!, packed.baseAddress!, c.baseAddress!, weight.kernel)
                let threads = ComputeThreads.count
                if threads <= 1 || m * n * k < 1 << 21 {
                    cnclip_igemm_s8_packed(m, 0, n, n, k, a, k, b, kernel, c, n)
                } else if m >= 32 * threads {
                    // Rows in whole 6-row panels of the kernel, as the fp32 GEMM splits them.
                    concurrentPerform(iterations: threads) { t in
                        let lo = (m * t / threads) / 6 * 6, hi = t == threads - 1 ? m : (m * (t + 1) / threads) / 6 * 6
                        if hi > lo { cnclip_igemm_s8_packed(hi - lo, 0, n, n, k, a + lo * k, k, b, kernel, c + lo * n, n) }
                    }
                } else {
                    // Few rows (a short batch of queries): output channels in whole 16-column panels.
                    concurrentPerform(iterations: threads) { t in
                        let lo = (n * t / threads) & ~15, hi = t == threads - 1 ? n : (n * (t + 1) / threads) & ~15
                        if hi > lo { cnclip_igemm_s8_packed(m, lo, hi - lo, n, k, a, k, b, kernel, c + lo, n) }
                    }
                }
            }
        }
    }
    let y = out.mutableData, biasData = bias?.data
    sums.withUnsafeBufferPointer { c in
        sx.withUnsafeBufferPointer { rowScales in
            weight.scales.withUnsafeBufferPointer { channelScales in
                parallelFor(m, cost: n) { rows in
                    for i in rows {
                        let rowScale = rowScales[i], sum = c.baseAddress! + i * n, row = y + i * n
                        if let biasData {
                            for j in 0..<n { row[j] = Float(sum[j]) * (rowScale * channelScales[j]) + biasData[j] }
                        } else {
                            for j in 0..<n { row[j] = Float(sum[j]) * (rowScale * channelScales[j]) }
                        }
                    }
                }
            }
        }
    }
    return out
}
