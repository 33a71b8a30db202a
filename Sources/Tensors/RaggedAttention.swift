// Attention over sequences of different lengths packed one after another along the rows of one matrix, so that a
// batch of short texts costs its real tokens rather than its longest text's length for every text. Each
// sequence's queries see only that sequence's keys; per element it is the padded kernel's arithmetic (the same
// GEMM calls at that sequence's size, the same key bias, the same softmax), so a sequence's rows are the padded
// kernel's bits whenever the padded keys were masked (their probabilities are then exact zeros).

import Essentials
import Foundation

/// Sequences of different lengths stored one after another along the rows of a `[totalRows, width]` matrix.
package struct RaggedBatch: Sendable, Equatable {
    /// Rows of each sequence, in order.
    package let lengths: [Int]
    /// `[count + 1]`: sequence i holds rows `offsets[i] ..< offsets[i + 1]`.
    package let offsets: [Int]

    /// Sequences of `lengths` rows (each ≥ 0), packed in that order.
    package init(lengths: [Int]) {
        precondition(lengths.allSatisfy { $0 >= 0 }, "RaggedBatch: a negative length in \(lengths)")
        self.lengths = lengths
        var offsets = [0]
        offsets.reserveCapacity(lengths.count + 1)
        for n in lengths { offsets.append(offsets.last! + n) }
        self.offsets = offsets
    }

    /// `count` sequences of one row each (one query per sequence, such as its first token).
    package init(singleRows count: Int) { self.init(lengths: Array(repeating: 1, count: count)) }

    /// Number of sequences.
    package var count: Int { lengths.count }

    /// Rows of all sequences together.
    package var totalRows: Int { offsets.last! }

    /// The rows of sequence `i`.
    package func rows(of i: Int) -> Range<Int> { offsets[i]..<offsets[i + 1] }

    /// Each sequence's first row, as indices into the packed rows (a sequence must not be empty).
    package var firstRows: [Int] { Array(offsets.dropLast()) }

    /// Each row's position within its sequence (`0 ..< lengths[i]` for sequence i), in packed order.
    package var positions: [Int] { lengths.flatMap { 0..<$0 } }
}

/// Multi-head attention, `softmax(q kᵀ / sqrt(d) + bias) v` per head, for each sequence of a ragged batch over its
/// own keys only.
/// - Parameters:
///   - q: `[queries.totalRows, qStride]` buffer whose first `heads * d` columns (from `qOffset`) are the queries.
///   - queries: the query rows of each sequence (its rows, or its first row alone).
///   - k, v: `[keys.totalRows, stride]` buffers likewise (they may be the same tensor).
///   - keys: the key rows of each sequence (as many sequences as `queries`).
///   - keyBias: optional `[keys.totalRows]` additive bias per key (BERT's `(1 - mask) * -10000`).
/// - Returns: `[queries.totalRows, heads * d]`.
package func multiHeadAttention(
    q: Tensor, qOffset: Int = 0, queries: RaggedBatch, k: Tensor, kOffset: Int = 0, v: Tensor, vOffset: Int = 0,
    keys: RaggedBatch, heads: Int, headDim d: Int, keyBias: Tensor? = nil
) -> Tensor {
    let qs = q.lastDim, ks = k.lastDim, vs = v.lastDim
    checkRaggedAttention(q: q, queries: queries, k: k, v: v, keys: keys, heads: heads, headDim: d, keyBias: keyBias)
    precondition(qOffset + heads * d <= qs && kOffset + heads * d <= ks && vOffset + heads * d <= vs, "attention: heads exceed width")
    let width = heads * d
    let out = Tensor.uninitialized([queries.totalRows, width])
    let scale = 1 / Float(d).squareRoot()
    // Items are (sequence, head) pairs, split by their q kᵀ size so that threads get equal work when lengths differ.
    let costs = (0..<(queries.count * heads)).map { 2 * queries.lengths[$0 / heads] * keys.lengths[$0 / heads] * d }
    parallelFor(weights: costs) { items in
        let most = items.map { queries.lengths[$0 / heads] * keys.lengths[$0 / heads] }.max() ?? 0
        let scores = UnsafeMutablePointer<Float>.allocate(capacity: max(1, most))
        defer { scores.deallocate() }
        for item in items {
            let s = item / heads, h = item % heads
            let lq = queries.lengths[s], lk = keys.lengths[s]
            guard lq > 0 else { continue }
            let qp = q.data + queries.offsets[s] * qs + qOffset + h * d
            let kp = k.data + keys.offsets[s] * ks + kOffset + h * d
            let vp = v.data + keys.offsets[s] * vs + vOffset + h * d
            let op = out.mutableData + queries.offsets[s] * width + h * d
            BLAS.sgemm(false, true, lq, lk, d, scale, qp, qs, kp, ks, 0, scores, lk)
            if let keyBias {
                let kb = keyBias.data + keys.offsets[s]
                for i in 0..<lq { for j in 0..<lk { scores[i * lk + j] += kb[j] } }
            }
            softmaxRowsInPlace(scores, rows: lq, cols: lk)
            BLAS.sgemm(false, false, lq, d, lk, 1, scores, lk, vp, vs, 0, op, width)
        }
    }
    return out
}

/// Gradients of the ragged `multiHeadAttention` w.r.t. its q, k and v buffers (same shapes and offsets as the
/// forward), added into `dq`, `dk`, `dv` (zeroed by the caller; any may alias another when the inputs were one
/// tensor, since each (sequence, head) writes only its own rows and columns). A nil destination is not computed.
/// The probabilities are recomputed, as the padded kernel's backward does.
package func multiHeadAttentionBackward(
    q: Tensor, qOffset: Int, queries: RaggedBatch, k: Tensor, kOffset: Int, v: Tensor, vOffset: Int,
    keys: RaggedBatch, heads: Int, headDim d: Int, keyBias: Tensor?, gradient g: Tensor,
    dq: UnsafeMutablePointer<Float>?, dk: UnsafeMutablePointer<Float>?, dv: UnsafeMutablePointer<Float>?
) {
    checkRaggedAttention(q: q, queries: queries, k: k, v: v, keys: keys, heads: heads, headDim: d, keyBias: keyBias)
    let qs = q.lastDim, ks = k.lastDim, vs = v.lastDim, width = heads * d
    precondition(g.count == queries.totalRows * width, "attention backward: gradient \(g.shape)")
    let scale = 1 / Float(d).squareRoot()
    let costs = (0..<(queries.count * heads)).map { 6 * queries.lengths[$0 / heads] * keys.lengths[$0 / heads] * d }
    parallelFor(weights: costs) { items in
        let most = max(1, items.map { queries.lengths[$0 / heads] * keys.lengths[$0 / heads] }.max() ?? 0)
        let p = UnsafeMutablePointer<Float>.allocate(capacity: most), dp = UnsafeMutablePointer<Float>.allocate(capacity: most)
        defer { p.deallocate(); dp.deallocate() }
        for item in items {
            let s = item / heads, h = item % heads
            let lq = queries.lengths[s], lk = keys.lengths[s]
            guard lq > 0 else { continue }
            let qRow = queries.offsets[s], kRow = keys.offsets[s]
            let qp = q.data + qRow * qs + qOffset + h * d
            let kp = k.data + kRow * ks + kOffset + h * d
            let vp = v.data + kRow * vs + vOffset + h * d
            let gp = g.data + qRow * width + h * d
            BLAS.sgemm(false, true, lq, lk, d, scale, qp, qs, kp, ks, 0, p, lk)
            if let keyBias {
                let kb = keyBias.data + kRow
                for i in 0..<lq { for j in 0..<lk { p[i * lk + j] += kb[j] } }
            }
            softmaxRowsInPlace(p, rows: lq, cols: lk)
            // dV += Pᵀ dO
            if let dv { BLAS.sgemm(true, false, lk, d, lq, 1, p, lk, gp, width, 1, dv + kRow * vs + vOffset + h * d, vs) }
            guard dq != nil || dk != nil else { continue }
            // dS = P ∘ (dP − rowsum(dP ∘ P)) with dP = dO Vᵀ; the key bias is a constant.
            BLAS.sgemm(false, true, lq, lk, d, 1, gp, width, vp, vs, 0, dp, lk)
            for i in 0..<lq {
                let pr = p + i * lk, dr = dp + i * lk
                var dot: Float = 0
                for j in 0..<lk { dot += pr[j] * dr[j] }
                for j in 0..<lk { dr[j] = pr[j] * (dr[j] - dot) }
            }
            // S = scale · Q Kᵀ: dQ += scale · dS K, dK += scale · dSᵀ Q.
            if let dq { BLAS.sgemm(false, false, lq, d, lk, scale, dp, lk, kp, ks, 1, dq + qRow * qs + qOffset + h * d, qs) }
            if let dk { BLAS.sgemm(true, false, lk, d, lq, scale, dp, lk, qp, qs, 1, dk + kRow * ks + kOffset + h * d, ks) }
        }
    }
}

/// The shape checks both ragged kernels share.
private func checkRaggedAttention(
    q: Tensor, queries: RaggedBatch, k: Tensor, v: Tensor, keys: RaggedBatch, heads: Int, headDim d: Int, keyBias: Tensor?
) {
    precondition(
        queries.count == keys.count && q.rowCount == queries.totalRows && k.rowCount == keys.totalRows
            && v.rowCount == keys.totalRows,
        "attention: q \(q.shape) k \(k.shape) v \(v.shape) for \(queries.totalRows) query and \(keys.totalRows) key rows")
    precondition(
        zip(queries.lengths, keys.lengths).allSatisfy { $0 == 0 || $1 > 0 }, "attention: a sequence has queries but no keys")
    precondition(heads > 0 && d > 0, "attention: \(heads) heads of \(d)")
    if let keyBias { precondition(keyBias.count == keys.totalRows, "attention: key bias \(keyBias.shape) for \(keys.totalRows) keys") }
}

/// Runs `body(range)` over `0 ..< weights.count` split into contiguous chunks of about equal total weight (one per
/// thread when the work is large enough, else one on the calling thread), so that items of very different sizes
/// (a long text's heads and a short one's) still keep every thread busy.
func parallelFor(weights: [Int], _ body: (Range<Int>) -> Void) {
    let count = weights.count, total = weights.reduce(0, +)
    let threads = ComputeThreads.count
    let chunks = (threads <= 1 || count <= 1 || total < 32_768) ? 1 : min(count, threads)
    if chunks == 1 { body(0..<count); return }
    // Item i joins the chunk its weight's midpoint falls in; starts[c] is chunk c's first item.
    var starts = [Int](repeating: count, count: chunks + 1)
    starts[0] = 0
    var chunk = 0, before = 0
    for (i, w) in weights.enumerated() {
        let target = min(chunks - 1, (2 * before + w) * chunks / (2 * total))
        while chunk < target { chunk += 1; starts[chunk] = i }
        before += w
    }
    computePerform(iterations: chunks) { c in
        if starts[c] < starts[c + 1] { body(starts[c]..<starts[c + 1]) }
    }
}

/// Ragged multi-head attention on variables, as the ragged `multiHeadAttention` on tensors →
/// `[queries.totalRows, heads·d]`. q, k and v may be the same variable; the key bias is a constant. No dropout:
/// packed sequences are an inference layout (training keeps the padded one, whose dropout draws are the reference's).
package func multiHeadAttention(
    q: Variable, qOffset: Int = 0, queries: RaggedBatch, k: Variable, kOffset: Int = 0, v: Variable, vOffset: Int = 0,
    keys: RaggedBatch, heads: Int, headDim d: Int, keyBias: Tensor? = nil
) -> Variable {
    let out = multiHeadAttention(
        q: q.value, qOffset: qOffset, queries: queries, k: k.value, kOffset: kOffset, v: v.value, vOffset: vOffset,
        keys: keys, heads: heads, headDim: d, keyBias: keyBias)
    return Variable.record(out, inputs: [q, k, v]) { g in
        let (buffers, dst) = attentionGradientBuffers(q, k, v)
        multiHeadAttentionBackward(
            q: q.value, qOffset: qOffset, queries: queries, k: k.value, kOffset: kOffset, v: v.value, vOffset: vOffset,
            keys: keys, heads: heads, headDim: d, keyBias: keyBias, gradient: g, dq: dst(0), dk: dst(1), dv: dst(2))
        return buffers
    }
}
