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
    cnclip_quantize_rows(x, rows, columns, columns, q, columns, scales)
}

/// `x @ weight.T + bias` on the int8 path: `x [..., in]`, `bias [out]` → `[..., out]`, each element
/// `Float(sum) · (rowScale · channelScale) + bias`.
package func linear(_ x: Tensor, weight: Int8Weight, bias: Tensor?) -> Tensor {
    let out = linearOutput(x, rows: weight.rows, columns: weight.columns, bias: bias, weight: "int8 weight")
    let m = x.rowCount, k = x.lastDim, n = weight.rows
    guard m > 0 && n > 0 else { return out }
    // Scratch from the tensor pool: a forward pass asks for the same sizes layer after layer, and fresh pages cost
    // faults. Every element is written before it is read. The integer sums need a buffer of their own only when the
    // depth spans several of the kernel's k-blocks; otherwise each tile is dequantized straight from the kernel.
    let quantized = TensorStorage(uninitializedCount: (m * k + 3) / 4)
    let products = k > Int(CNCLIP_IGEMM_BLOCK_DEPTH) ? TensorStorage(uninitializedCount: m * n) : nil
    let rowScales = TensorStorage(uninitializedCount: m)
    let q = UnsafeMutableRawPointer(quantized.pointer).bindMemory(to: Int8.self, capacity: max(m * k, 1))
    let c = products.map { UnsafeMutableRawPointer($0.pointer).bindMemory(to: Int32.self, capacity: m * n) }
    let sx = rowScales.pointer, y = out.mutableData, biasData = bias?.data
    let kernel = weight.kernel
    weight.packed.withUnsafeBytes { packed in
        let b = packed.baseAddress!
        weight.scales.withUnsafeBufferPointer { channelScales in
            let cs = channelScales.baseAddress!
            /// Output columns `lo ..< hi` of rows `rowLo ..< rowHi` (already quantized).
            func product(rows rowLo: Int, _ rowHi: Int, columns lo: Int, _ hi: Int) {
                cnclip_igemm_s8_dequantized(
                    rowHi - rowLo, lo, hi - lo, n, k, q + rowLo * k, k, b, kernel, sx + rowLo, cs, biasData,
                    y + rowLo * n + lo, n, c.map { $0 + rowLo * n + lo }, n)
            }
            let threads = ComputeThreads.count
            if threads <= 1 || m * n * k < 1 << 21 {
                cnclip_quantize_rows(x.data, m, k, k, q, k, sx)
                product(rows: 0, m, columns: 0, n)
            } else if m >= 32 * threads {
                // Rows in whole 6-row panels of the kernel, each thread quantizing and multiplying its own.
                computePerform(iterations: threads) { t in
                    let lo = (m * t / threads) / 6 * 6, hi = t == threads - 1 ? m : (m * (t + 1) / threads) / 6 * 6
                    guard hi > lo else { return }
                    cnclip_quantize_rows(x.data + lo * k, hi - lo, k, k, q + lo * k, k, sx + lo)
                    product(rows: lo, hi, columns: 0, n)
                }
            } else {
                // Few rows (a short batch of queries): output channels in whole 16-column panels.
                cnclip_quantize_rows(x.data, m, k, k, q, k, sx)
                computePerform(iterations: threads) { t in
                    let lo = (n * t / threads) & ~15, hi = t == threads - 1 ? n : (n * (t + 1) / threads) & ~15
                    if hi > lo { product(rows: 0, m, columns: lo, hi) }
                }
            }
        }
    }
    withExtendedLifetime((quantized, products, rowScales)) {}
    return out
}
