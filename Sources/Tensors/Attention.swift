// Multi-head scaled dot-product attention that reads each head straight out of the projection outputs
// (BLAS row strides), so no permuted copies of q, k and v are made.

import CKernels
import Foundation

/// Multi-head attention, `softmax(q kᵀ / sqrt(d) + bias) v` per head.
/// - Parameters:
///   - q: `[batch, lq, qStride]` buffer whose first `heads * d` columns (from `qOffset`) are the queries.
///   - k, v: `[batch, lk, stride]` buffers likewise (they may be the same packed `[.., 3·width]` tensor).
///   - keyBias: optional `[batch, lk]` additive bias per key (BERT's `(1 - mask) * -10000`).
///   - dropout: optional dropout of the attention probabilities (training), applied after the softmax.
/// - Returns: `[batch, lq, heads * d]`.
package func multiHeadAttention(
    q: Tensor, qOffset: Int = 0, k: Tensor, kOffset: Int = 0, v: Tensor, vOffset: Int = 0,
    batch: Int, lq: Int, lk: Int, heads: Int, headDim d: Int,
    keyBias: Tensor? = nil, dropout: AttentionDropout? = nil
) -> Tensor {
    let qs = q.lastDim, ks = k.lastDim, vs = v.lastDim
    precondition(
        q.count == batch * lq * qs && k.count == batch * lk * ks && v.count == batch * lk * vs,
        "attention: q \(q.shape) k \(k.shape) v \(v.shape) for batch \(batch), lq \(lq), lk \(lk)")
    precondition(qOffset + heads * d <= qs && kOffset + heads * d <= ks && vOffset + heads * d <= vs, "attention: heads exceed width")
    if let keyBias { precondition(keyBias.count == batch * lk, "attention: key bias \(keyBias.shape)") }
    let width = heads * d
    let out = Tensor.uninitialized([batch, lq, width])
    let scale = 1 / Float(d).squareRoot()
    // Heads are independent: split them across threads, each with its own scores buffer and single-threaded GEMMs.
    parallelFor(batch * heads, cost: 2 * lq * lk * d) { items in
        let scores = UnsafeMutablePointer<Float>.allocate(capacity: max(1, lq * lk))
        defer { scores.deallocate() }
        for item in items {
            let b = item / heads, h = item % heads
            let qp = q.data + b * lq * qs + qOffset + h * d
            let kp = k.data + b * lk * ks + kOffset + h * d
            let vp = v.data + b * lk * vs + vOffset + h * d
            BLAS.sgemm(false, true, lq, lk, d, scale, qp, qs, kp, ks, 0, scores, lk)
            if let keyBias { cnclip_add_rows(scores, keyBias.data + b * lk, scores, lq, lk) }
            softmaxRowsInPlace(scores, rows: lq, cols: lk)
            dropout?.apply(to: scores, count: lq * lk, item: item)
            BLAS.sgemm(false, false, lq, d, lk, 1, scores, lk, vp, vs, 0, out.mutableData + b * lq * width + h * d, width)
        }
    }
    return out
}
