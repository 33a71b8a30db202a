// Forward kernels for the primitives the models use. Each allocates its output; none mutates its inputs.
// Backward rules (training) attach to these same primitives.

import CKernels
import Foundation

// MARK: - Shape helpers

extension Tensor {
    /// Size of the last dimension (1 for a scalar).
    @inlinable package var lastDim: Int { shape.last ?? 1 }
    /// Number of rows when the tensor is viewed as `[rows, lastDim]`.
    @inlinable package var rowCount: Int { lastDim == 0 ? 0 : count / lastDim }
}

// MARK: - Matrix products

/// `x @ weight.T + bias`: `x [..., in]`, `weight [out, in]`, `bias [out]` → `[..., out]` (PyTorch's `nn.Linear`).
package func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
    precondition(weight.rank == 2, "linear: weight \(weight.shape) is not a matrix")
    let out = linearOutput(x, rows: weight.shape[0], columns: weight.shape[1], bias: bias, weight: "weight")
    let m = x.rowCount, k = x.lastDim, n = weight.shape[0]
    // The bias joins in the product's store (bias + sum, rounded once, as addmm's beta·bias + sum).
    BLAS.gemm(
        transB: true, m: m, n: n, k: k, a: x.data, lda: k, b: weight.data, ldb: k,
        bias: bias?.data, c: out.mutableData, ldc: n)
    return out
}

/// The uninitialised output `[..., rows]` of `x [..., columns]` through a linear layer whose weight (`what`, for the
/// message) is `[rows, columns]`, once `x`'s and `bias`'s shapes are checked against it.
func linearOutput(_ x: Tensor, rows: Int, columns: Int, bias: Tensor?, weight what: String) -> Tensor {
    precondition(columns == x.lastDim, "linear: x \(x.shape) vs \(what) [\(rows), \(columns)]")
    if let bias { precondition(bias.count == rows, "linear: bias \(bias.shape) for \(rows) outputs") }
    return Tensor.uninitialized(Array(x.shape.dropLast()) + [rows])
}

/// `a @ b`: `a [..., m, k]` (leading dimensions flattened into rows), `b [k, n]` → `[..., n]`.
package func matmul(_ a: Tensor, _ b: Tensor) -> Tensor {
    precondition(b.rank == 2 && b.shape[0] == a.lastDim, "matmul: \(a.shape) @ \(b.shape)")
    let m = a.rowCount, k = a.lastDim, n = b.shape[1]
    let out = Tensor.uninitialized(Array(a.shape.dropLast()) + [n])
    BLAS.gemm(m: m, n: n, k: k, a: a.data, lda: k, b: b.data, ldb: n, c: out.mutableData, ldc: n)
    return out
}

/// `a @ b.T`: `a [m, k]`, `b [n, k]` → `[m, n]`.
package func matmulTransposed(_ a: Tensor, _ b: Tensor) -> Tensor {
    precondition(a.rank == 2 && b.rank == 2 && a.shape[1] == b.shape[1], "matmulTransposed: \(a.shape) @ \(b.shape).T")
    let m = a.shape[0], k = a.shape[1], n = b.shape[0]
    let out = Tensor.uninitialized([m, n])
    BLAS.gemm(transB: true, m: m, n: n, k: k, a: a.data, lda: k, b: b.data, ldb: k, c: out.mutableData, ldc: n)
    return out
}

/// The transpose of a matrix: `[m, n]` → `[n, m]`.
package func transposed(_ x: Tensor) -> Tensor {
    precondition(x.rank == 2, "transposed: rank \(x.rank)")
    let m = x.shape[0], n = x.shape[1]
    let out = Tensor.uninitialized([n, m])
    let s = x.data, d = out.mutableData
    for i in 0..<m { for j in 0..<n { d[j * m + i] = s[i * n + j] } }
    return out
}

// MARK: - Elementwise

/// Applies `f` to every element.
@inlinable
package func map(_ x: Tensor, _ f: (Float) -> Float) -> Tensor {
    let out = Tensor.uninitialized(x.shape)
    let s = x.data, d = out.mutableData
    for i in 0..<x.count { d[i] = f(s[i]) }
    return out
}

/// `a + b` for tensors of one shape, or `b` broadcast over the leading dimensions of `a` (`b` of shape `a.shape.suffix`).
package func add(_ a: Tensor, _ b: Tensor) -> Tensor {
    precondition(
        b.count > 0 && a.count % b.count == 0 && Array(a.shape.suffix(b.rank)) == b.shape,
        "add: \(a.shape) + \(b.shape)")
    let out = Tensor.uninitialized(a.shape)
    let n = b.count, x = a.data, y = b.data, d = out.mutableData
    parallelFor(a.count / n, cost: n) { rows in
        cnclip_add_rows(x + rows.lowerBound * n, y, d + rows.lowerBound * n, rows.count, n)
    }
    return out
}

/// `x * s`.
package func scaled(_ x: Tensor, by s: Float) -> Tensor { map(x) { $0 * s } }

/// ReLU: `max(x, 0)`.
package func relu(_ x: Tensor) -> Tensor { map(x) { $0 > 0 ? $0 : 0 } }

/// Exact GELU, `x * 0.5 * (1 + erf(x / sqrt(2)))` in that order, as BERT's `gelu` (CKernels' vector erf).
package func gelu(_ x: Tensor) -> Tensor {
    let out = Tensor.uninitialized(x.shape)
    let s = x.data, d = out.mutableData
    parallelFor(x.count, cost: 16) { r in cnclip_gelu(s + r.lowerBound, d + r.lowerBound, r.count) }
    return out
}

/// QuickGELU, `x * sigmoid(1.702 * x)`, as CLIP's vision tower.
package func quickGelu(_ x: Tensor) -> Tensor {
    let out = Tensor.uninitialized(x.shape)
    let s = x.data, d = out.mutableData
    parallelFor(x.count, cost: 16) { r in cnclip_quick_gelu(s + r.lowerBound, d + r.lowerBound, r.count) }
    return out
}

// MARK: - Normalisation

/// Layer normalisation over the last dimension: `x [..., n]`, `weight [n]`, `bias [n]`.
package func layerNorm(_ x: Tensor, weight: Tensor, bias: Tensor, eps: Float) -> Tensor {
    let n = x.lastDim
    precondition(weight.count == n && bias.count == n, "layerNorm: \(x.shape) with weight \(weight.shape)")
    let out = Tensor.uninitialized(x.shape)
    let s = x.data, d = out.mutableData, w = weight.data, b = bias.data
    // Two passes per row (mean, then centred squares), as PyTorch does, for the same rounding behaviour.
    parallelFor(x.rowCount, cost: 4 * n) { rows in
        cnclip_layer_norm_rows(s + rows.lowerBound * n, rows.count, n, w, b, eps, d + rows.lowerBound * n)
    }
    return out
}

/// Each row divided by its L2 norm: `x [..., n]`.
package func l2Normalized(_ x: Tensor) -> Tensor {
    let out = Tensor.uninitialized(x.shape)
    cnclip_l2_normalize_rows(x.data, x.rowCount, x.lastDim, out.mutableData)
    return out
}

/// Softmax over the last dimension.
package func softmax(_ x: Tensor) -> Tensor {
    let out = x.copy()
    softmaxRowsInPlace(out.mutableData, rows: x.rowCount, cols: x.lastDim)
    return out
}

/// Softmax of each row of a `[rows, cols]` buffer, in place; a row's bits do not change when keys masked to
/// probability 0 are appended (CKernels' fixed summation order).
package func softmaxRowsInPlace(_ p: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
    cnclip_softmax_rows(p, rows, cols)
}

// MARK: - Reductions

/// Sum of `count` floats in CKernels' fixed order (element j in partial sum j % 16), so appending zeros never
/// changes it and forward and backward kernels recompute the same statistics.
package func sum(_ p: UnsafePointer<Float>, count: Int) -> Float { cnclip_sum(p, count) }

/// Sum of `(p[i] - shift)²` over `count` floats, in the order of `sum`.
package func sumOfSquares(_ p: UnsafePointer<Float>, count: Int, minus shift: Float) -> Float {
    cnclip_sum_of_squares(p, count, shift)
}

/// Largest of `count` floats (-infinity for none).
package func maximum(_ p: UnsafePointer<Float>, count: Int) -> Float { cnclip_max(p, count) }

// MARK: - Lookup and concatenation

/// Rows of `table [vocab, width]` picked by `ids` → `[ids.count, width]`; an id out of range is a precondition failure.
package func embedding(_ table: Tensor, ids: [Int32]) -> Tensor {
    let w = table.lastDim, v = table.shape[0]
    let out = Tensor.uninitialized([ids.count, w])
    for (i, id) in ids.enumerated() {
        precondition(id >= 0 && Int(id) < v, "embedding: id \(id) outside vocabulary of \(v)")
        (out.mutableData + i * w).update(from: table.data + Int(id) * w, count: w)
    }
    return out
}

/// The first position of each sequence: `[batch, seq, width]` → `[batch, 1, width]`.
package func firstRows(_ x: Tensor) -> Tensor {
    precondition(x.rank == 3, "firstRows: \(x.shape)")
    let (b, l, w) = (x.shape[0], x.shape[1], x.shape[2])
    if l == 1 { return x }
    let out = Tensor.uninitialized([b, 1, w])
    for i in 0..<b { (out.mutableData + i * w).update(from: x.data + i * l * w, count: w) }
    return out
}

/// Concatenation along the first dimension.
package func concatenateRows(_ parts: [Tensor]) -> Tensor {
    precondition(!parts.isEmpty, "concatenateRows: nothing to join")
    let inner = Array(parts[0].shape.dropFirst())
    for p in parts { precondition(Array(p.shape.dropFirst()) == inner, "concatenateRows: \(p.shape) vs \(inner)") }
    let out = Tensor.uninitialized([parts.reduce(0) { $0 + $1.shape[0] }] + inner)
    var at = out.mutableData
    for p in parts { at.update(from: p.data, count: p.count); at += p.count }
    return out
}
