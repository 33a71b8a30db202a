// The primitives on `Variable`s: each runs the same forward kernel as the `Tensor` version and, only when an
// input requires a gradient, records one backward rule. Composite operations (a transformer block, the loss)
// are built from these and get their gradients from them.

import CKernels
import Foundation

// MARK: - Matrix products

/// `x @ weight.T + bias`: `x [..., in]`, `weight [out, in]`, `bias [out]` → `[..., out]`.
package func linear(_ x: Variable, weight: Variable, bias: Variable?) -> Variable {
    let xv = x.value, wv = weight.value
    return Variable.record(linear(xv, weight: wv, bias: bias?.value), inputs: [x, weight] + (bias.map { [$0] } ?? [])) { g in
        linearBackward(g, inputShape: xv.shape, weight: wv, wantX: x.requiresGrad, wantWeight: weight.requiresGrad, bias: bias) { xv }
    }
}

/// The gradients of `linear` for the output's gradient `g [..., out]`: dx (shaped `inputShape`) and dW, each only
/// when wanted, then dbias when there is a bias. `input` gives the layer's input; it is called only for dW.
private func linearBackward(
    _ g: Tensor, inputShape: [Int], weight wv: Tensor, wantX: Bool, wantWeight: Bool, bias: Variable?, input: () -> Tensor
) -> [Tensor?] {
    let m = g.rowCount, n = wv.shape[0], k = wv.shape[1]
    var dx: Tensor?, dw: Tensor?
    if wantX {
        // dx [m, k] = g [m, n] @ W [n, k]
        let t = Tensor.uninitialized(inputShape)
        BLAS.gemm(m: m, n: k, k: n, a: g.data, lda: n, b: wv.data, ldb: k, c: t.mutableData, ldc: k)
        dx = t
    }
    if wantWeight {
        // dW [n, k] = gᵀ [n, m] @ x [m, k]
        let xv = input()
        let t = Tensor.uninitialized(wv.shape)
        BLAS.gemm(transA: true, m: n, n: k, k: m, a: g.data, lda: n, b: xv.data, ldb: k, c: t.mutableData, ldc: k)
        dw = t
    }
    var grads: [Tensor?] = [dx, dw]
    if let bias { grads.append(bias.requiresGrad ? sumRows(g, width: n) : nil) }
    return grads
}

/// An elementwise activation that a following `linear` can recompute in its backward pass instead of keeping.
package enum Activation: Sendable {
    /// Exact GELU (BERT's).
    case gelu
    /// QuickGELU (CLIP's vision transformer).
    case quickGelu

    /// The activation of every element of `x`.
    package func callAsFunction(_ x: Tensor) -> Tensor {
        switch self {
        case .gelu: Tensors.gelu(x)
        case .quickGelu: Tensors.quickGelu(x)
        }
    }

    /// The gradient with respect to `x` given the gradient `g` of the activation's output (same shape).
    func backward(_ x: Tensor, gradient g: Tensor) -> Tensor {
        switch self {
        case .gelu: geluBackward(x, gradient: g)
        case .quickGelu: quickGeluBackward(x, gradient: g)
        }
    }
}

/// `activation(x) @ weight.T + bias`, the MLP's second layer, keeping only `x [..., in]`: the activation's output,
/// which the weight's gradient needs, is recomputed in the backward pass rather than held through the forward
/// pass (a `[rows, 4·width]` tensor per transformer block, a quarter of a block's saved activations). Values and
/// gradients are the bits of `linear(gelu(x), …)`: the same kernels on the same operands.
package func linear(_ x: Variable, activation: Activation, weight: Variable, bias: Variable?) -> Variable {
    let xv = x.value, wv = weight.value
    let out = linear(activation(xv), weight: wv, bias: bias?.value)
    return Variable.record(out, inputs: [x, weight] + (bias.map { [$0] } ?? [])) { g in
        var grads = linearBackward(
            g, inputShape: xv.shape, weight: wv, wantX: x.requiresGrad, wantWeight: weight.requiresGrad, bias: bias
        ) { activation(xv) }
        grads[0] = grads[0].map { activation.backward(xv, gradient: $0) }
        return grads
    }
}
/// `a @ b`: `a [..., m, k]` (leading dimensions flattened into rows), `b [k, n]` → `[..., n]`.
package func matmul(_ a: Variable, _ b: Variable) -> Variable {
    let av = a.value, bv = b.value
    return Variable.record(matmul(av, bv), inputs: [a, b]) { g in
        let m = av.rowCount, k = av.lastDim, n = bv.shape[1]
        var da: Tensor?, db: Tensor?
        if a.requiresGrad {
            let t = Tensor.uninitialized(av.shape)  // g [m, n] @ bᵀ [n, k]
            BLAS.gemm(transB: true, m: m, n: k, k: n, a: g.data, lda: n, b: bv.data, ldb: n, c: t.mutableData, ldc: k)
            da = t
        }
        if b.requiresGrad {
            let t = Tensor.uninitialized(bv.shape)  // aᵀ [k, m] @ g [m, n]
            BLAS.gemm(transA: true, m: k, n: n, k: m, a: av.data, lda: k, b: g.data, ldb: n, c: t.mutableData, ldc: n)
            db = t
        }
        return [da, db]
    }
}

/// `a @ b.T`: `a [m, k]`, `b [n, k]` → `[m, n]`.
package func matmulTransposed(_ a: Variable, _ b: Variable) -> Variable {
    let av = a.value, bv = b.value
    return Variable.record(matmulTransposed(av, bv), inputs: [a, b]) { g in
        let m = av.shape[0], k = av.shape[1], n = bv.shape[0]
        var da: Tensor?, db: Tensor?
        if a.requiresGrad {
            let t = Tensor.uninitialized(av.shape)  // g [m, n] @ b [n, k]
            BLAS.gemm(m: m, n: k, k: n, a: g.data, lda: n, b: bv.data, ldb: k, c: t.mutableData, ldc: k)
            da = t
        }
        if b.requiresGrad {
            let t = Tensor.uninitialized(bv.shape)  // gᵀ [n, m] @ a [m, k]
            BLAS.gemm(transA: true, m: n, n: k, k: m, a: g.data, lda: n, b: av.data, ldb: k, c: t.mutableData, ldc: k)
            db = t
        }
        return [da, db]
    }
}

// MARK: - Elementwise

/// `a + b` for one shape, or `b` broadcast over the leading dimensions of `a` (`b` of shape `a.shape.suffix`).
package func add(_ a: Variable, _ b: Variable) -> Variable {
    let bShape = b.value.shape, n = b.value.count
    return Variable.record(add(a.value, b.value), inputs: [a, b]) { g in
        // The broadcast operand's gradient sums over the dimensions it was repeated along.
        [a.requiresGrad ? g : nil, b.requiresGrad ? (g.count == n ? g : sumRows(g, width: n).reshaped(bShape)) : nil]
    }
}

/// `x * s` for a constant `s`.
package func scaled(_ x: Variable, by s: Float) -> Variable {
    Variable.record(scaled(x.value, by: s), inputs: [x]) { g in [scaled(g, by: s)] }
}

/// `x * s` for a one-element variable `s` (`logit_scale.exp() * logits`).
package func scaled(_ x: Variable, by s: Variable) -> Variable {
    precondition(s.value.count == 1, "scaled(by:): the factor must have one element, got \(s.shape)")
    let xv = x.value, sv = s.value.data[0]
    return Variable.record(scaled(xv, by: sv), inputs: [x, s]) { g in
        var ds: Tensor?
        if s.requiresGrad {
            var acc: Double = 0
            for i in 0..<xv.count { acc += Double(g.data[i]) * Double(xv.data[i]) }
            ds = Tensor(shape: s.shape, repeating: Float(acc))
        }
        return [x.requiresGrad ? scaled(g, by: sv) : nil, ds]
    }
}

/// `e^x` elementwise (PyTorch's `exp`, for `logit_scale.exp()`).
package func exp(_ x: Variable) -> Variable {
    let y = map(x.value) { Foundation.exp($0) }
    return Variable.record(y, inputs: [x]) { g in [multiplied(g, y)] }
}

/// ReLU: `max(x, 0)`; the gradient passes where the output is positive (PyTorch's convention: 0 at 0).
package func relu(_ x: Variable) -> Variable {
    let y = relu(x.value)
    return Variable.record(y, inputs: [x]) { g in
        let d = Tensor.uninitialized(g.shape)
        for i in 0..<g.count { d.mutableData[i] = y.data[i] > 0 ? g.data[i] : 0 }
        return [d]
    }
}

/// Elements per block of the activations' backward passes (their temporaries stay in L1).
private let geluBlock = 1024

/// Exact GELU (erf), as BERT's `gelu`.
package func gelu(_ x: Variable) -> Variable {
    let xv = x.value
    return Variable.record(gelu(xv), inputs: [x]) { g in [geluBackward(xv, gradient: g)] }
}

/// GELU's input gradient: `g · (Φ(x) + x·φ(x))` for input `x` and output gradient `g` (same shape).
func geluBackward(_ xv: Tensor, gradient g: Tensor) -> Tensor {
    let d = Tensor.uninitialized(g.shape)
    let s = xv.data, gp = g.data, dp = d.mutableData
    parallelFor(g.count, cost: 32) { r in
        // d/dx x·Φ(x) = Φ(x) + x·φ(x), with erf and exp by the vector kernels, a block at a time.
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * geluBlock) { buffer in
            let cdf = buffer.baseAddress!, pdf = cdf + geluBlock
            var lo = r.lowerBound
            while lo < r.upperBound {
                let n = min(geluBlock, r.upperBound - lo)
                for j in 0..<n {
                    let v = s[lo + j]
                    cdf[j] = v * 0.70710678118654752
                    pdf[j] = -0.5 * v * v
                }
                cnclip_erf(cdf, cdf, n)
                cnclip_exp(pdf, pdf, n)
                for j in 0..<n {
                    let v = s[lo + j]
                    dp[lo + j] = gp[lo + j] * (0.5 * (1 + cdf[j]) + v * (pdf[j] * 0.3989422804014327))
                }
                lo += n
            }
        }
    }
    return d
}

/// QuickGELU, `x * sigmoid(1.702 * x)`.
package func quickGelu(_ x: Variable) -> Variable {
    let xv = x.value
    return Variable.record(quickGelu(xv), inputs: [x]) { g in [quickGeluBackward(xv, gradient: g)] }
}

/// QuickGELU's input gradient: `g · (σ + 1.702·x·σ·(1 − σ))`, σ = sigmoid(1.702·x), for input `x` and output gradient `g`.
func quickGeluBackward(_ xv: Tensor, gradient g: Tensor) -> Tensor {
    let d = Tensor.uninitialized(g.shape)
    let s = xv.data, gp = g.data, dp = d.mutableData
    parallelFor(g.count, cost: 32) { r in
        // The sigmoid's exponential by the vector kernel, a block at a time.
        withUnsafeTemporaryAllocation(of: Float.self, capacity: geluBlock) { buffer in
            let e = buffer.baseAddress!
            var lo = r.lowerBound
            while lo < r.upperBound {
                let n = min(geluBlock, r.upperBound - lo)
                for j in 0..<n { e[j] = -1.702 * s[lo + j] }
                cnclip_exp(e, e, n)
                for j in 0..<n {
                    let v = s[lo + j], sig = 1 / (1 + e[j])
                    dp[lo + j] = gp[lo + j] * (sig + v * 1.702 * sig * (1 - sig))
                }
                lo += n
            }
        }
    }
    return d
}

/// Inverted dropout: zeroes each element with probability `p` and scales the rest by `1/(1-p)`, drawing
/// from `rng`; the identity (nothing drawn, nothing recorded) when `p == 0` or not `training`.
package func dropout<R: RandomNumberGenerator>(_ x: Variable, p: Float, training: Bool, using rng: inout R) -> Variable {
    precondition(p >= 0 && p < 1, "dropout: p = \(p) outside [0, 1)")
    guard training && p > 0 else { return x }
    let keep = 1 / (1 - p)
    let mask = Tensor.uninitialized(x.shape)
    // 24 random bits per element straight from `next()`: `Float.random(in:using:)` is generic code that is not
    // specialised across modules and took a fifth of a training step.
    let m = mask.mutableData
    for i in 0..<mask.count { m[i] = Float(rng.next() >> 40) * 0x1p-24 < p ? 0 : keep }
    return Variable.record(multiplied(x.value, mask), inputs: [x]) { g in [multiplied(g, mask)] }
}

// MARK: - Normalisation

/// Layer normalisation over the last dimension: `x [..., n]`, `weight [n]`, `bias [n]`.
package func layerNorm(_ x: Variable, weight: Variable, bias: Variable, eps: Float) -> Variable {
    let xv = x.value, wv = weight.value
    return Variable.record(layerNorm(xv, weight: wv, bias: bias.value, eps: eps), inputs: [x, weight, bias]) { g in
        let r = layerNormBackward(xv, weight: wv, eps: eps, gradient: g)
        return [r.x, r.weight, r.bias]
    }
}

/// Each row divided by its L2 norm: `x [..., n]`.
package func l2Normalized(_ x: Variable) -> Variable {
    let xv = x.value, y = l2Normalized(xv)
    return Variable.record(y, inputs: [x]) { g in
        // dx = (g − y·(g·y)) / ‖x‖
        let n = xv.lastDim
        let d = Tensor.uninitialized(xv.shape)
        for r in 0..<xv.rowCount {
            let xr = xv.data + r * n, yr = y.data + r * n, gr = g.data + r * n, dr = d.mutableData + r * n
            var ss: Float = 0, dot: Float = 0
            for j in 0..<n { ss += xr[j] * xr[j]; dot += gr[j] * yr[j] }
            let inv = 1 / ss.squareRoot()
            for j in 0..<n { dr[j] = (gr[j] - yr[j] * dot) * inv }
        }
        return [d]
    }
}

/// Softmax over the last dimension.
package func softmax(_ x: Variable) -> Variable {
    let y = softmax(x.value)
    return Variable.record(y, inputs: [x]) { g in
        // dx = y ∘ (g − Σ g∘y) per row
        let n = y.lastDim
        let d = Tensor.uninitialized(y.shape)
        for r in 0..<y.rowCount {
            let yr = y.data + r * n, gr = g.data + r * n, dr = d.mutableData + r * n
            var dot: Float = 0
            for j in 0..<n { dot += gr[j] * yr[j] }
            for j in 0..<n { dr[j] = yr[j] * (gr[j] - dot) }
        }
        return [d]
    }
}

/// Mean cross-entropy of `logits [n, classes]` against class indices `targets` (PyTorch's `cross_entropy`) → scalar `[]`.
package func crossEntropy(_ logits: Variable, targets: [Int]) -> Variable {
    let lv = logits.value
    precondition(lv.rank == 2 && targets.count == lv.shape[0], "crossEntropy: logits \(lv.shape) for \(targets.count) targets")
    let (n, c) = (lv.shape[0], lv.shape[1])
    let p = softmax(lv)
    var total: Double = 0
    for i in 0..<n {
        precondition(targets[i] >= 0 && targets[i] < c, "crossEntropy: target \(targets[i]) outside \(c) classes")
        let row = lv.data + i * c
        let m = maximum(row, count: c)
        var s: Float = 0
        for j in 0..<c { s += Foundation.exp(row[j] - m) }
        total += Double(m + Foundation.log(s) - row[targets[i]])
    }
    let loss = Tensor(shape: [], scalars: [Float(total / Double(n))])
    return Variable.record(loss, inputs: [logits]) { g in
        // d/dlogits = (softmax − onehot) / n
        let k = g.data[0] / Float(n)
        let d = Tensor.uninitialized(lv.shape)
        for i in 0..<n {
            for j in 0..<c { d.mutableData[i * c + j] = (p.data[i * c + j] - (j == targets[i] ? 1 : 0)) * k }
        }
        return [d]
    }
}

// MARK: - Attention

/// Multi-head attention on variables, as `multiHeadAttention` on tensors (same buffers, offsets, key bias) →
/// `[batch, lq, heads·d]`. q, k and v may be the same variable (a packed `[batch, seq, 3·width]` projection); the
/// key bias is a constant. `dropout` (training) drops attention probabilities; nil or p = 0 is the inference kernel.
package func multiHeadAttention(
    q: Variable, qOffset: Int = 0, k: Variable, kOffset: Int = 0, v: Variable, vOffset: Int = 0,
    batch: Int, lq: Int, lk: Int, heads: Int, headDim d: Int,
    keyBias: Tensor? = nil, dropout: AttentionDropout? = nil
) -> Variable {
    let dropout = (dropout?.p ?? 0) > 0 ? dropout : nil
    let out = multiHeadAttention(
        q: q.value, qOffset: qOffset, k: k.value, kOffset: kOffset, v: v.value, vOffset: vOffset,
        batch: batch, lq: lq, lk: lk, heads: heads, headDim: d, keyBias: keyBias, dropout: dropout)
    return Variable.record(out, inputs: [q, k, v]) { g in
        let (buffers, dst) = attentionGradientBuffers(q, k, v)
        multiHeadAttentionBackward(
            q: q.value, qOffset: qOffset, k: k.value, kOffset: kOffset, v: v.value, vOffset: vOffset,
            batch: batch, lq: lq, lk: lk, heads: heads, headDim: d, keyBias: keyBias,
            dropout: dropout, gradient: g, dq: dst(0), dk: dst(1), dv: dst(2))
        return buffers
    }
}

/// Gradient buffers for attention's inputs `q`, `k`, `v`: one zeroed tensor per distinct input that requires a
/// gradient — an input passed twice shares its buffer (each head writes disjoint columns) and its later positions
/// get nil so it is not counted twice — and where input `i`'s gradient goes (nil: not wanted).
func attentionGradientBuffers(_ q: Variable, _ k: Variable, _ v: Variable) -> ([Tensor?], (Int) -> UnsafeMutablePointer<Float>?) {
    let inputs = [q, k, v]
    var buffers: [Tensor?] = [nil, nil, nil]
    var owner: [Int] = [0, 1, 2]
    for i in 0..<3 where inputs[i].requiresGrad {
        if let j = (0..<i).first(where: { inputs[$0].node === inputs[i].node }) { owner[i] = j; continue }
        buffers[i] = Tensor(shape: inputs[i].shape)
    }
    let shared = buffers
    return (buffers, { i in inputs[i].requiresGrad ? shared[owner[i]]!.mutableData : nil })
}

// MARK: - Lookup, views and concatenation

/// Rows of `table [vocab, width]` picked by `ids` → `[ids.count, width]`; the gradient scatter-adds into the table.
package func embedding(_ table: Variable, ids: [Int32]) -> Variable {
    let shape = table.shape
    return Variable.record(embedding(table.value, ids: ids), inputs: [table]) { g in
        let w = shape[1]
        let d = Tensor(shape: shape)
        for (i, id) in ids.enumerated() { accumulate(d.mutableData + Int(id) * w, g.data + i * w, count: w) }
        return [d]
    }
}

/// The same elements under another shape (one dimension may be -1).
package func reshaped(_ x: Variable, _ shape: [Int]) -> Variable {
    let old = x.shape
    return Variable.record(x.value.reshaped(shape), inputs: [x]) { g in [g.reshaped(old)] }
}

extension Variable {
    /// The same elements under another shape (one dimension may be -1).
    package func reshaped(_ shape: [Int]) -> Variable { Tensors.reshaped(self, shape) }

    /// Rows `range` along the first dimension.
    package func rows(_ range: Range<Int>) -> Variable {
        let shape = self.shape
        return Variable.record(value.rows(range), inputs: [self]) { g in
            let d = Tensor(shape: shape)
            (d.mutableData + range.lowerBound * (g.count / Swift.max(range.count, 1))).update(from: g.data, count: g.count)
            return [d]
        }
    }
}

/// The first position of each sequence: `[batch, seq, width]` → `[batch, 1, width]`.
package func firstRows(_ x: Variable) -> Variable {
    let shape = x.shape
    if shape[1] == 1 { return x }
    return Variable.record(firstRows(x.value), inputs: [x]) { g in
        let (b, l, w) = (shape[0], shape[1], shape[2])
        let d = Tensor(shape: shape)
        for i in 0..<b { (d.mutableData + i * l * w).update(from: g.data + i * w, count: w) }
        return [d]
    }
}

/// Concatenation along `axis`: every part has the same dimensions except at `axis`.
package func concatenate(_ parts: [Variable], axis: Int) -> Variable {
    precondition(!parts.isEmpty, "concatenate: nothing to join")
    let first = parts[0].shape
    precondition(axis >= 0 && axis < first.count, "concatenate: axis \(axis) for \(first)")
    for p in parts {
        precondition(
            p.shape.count == first.count && (0..<first.count).allSatisfy { $0 == axis || p.shape[$0] == first[$0] },
            "concatenate: \(p.shape) vs \(first) along \(axis)")
    }
    let outer = first.prefix(axis).reduce(1, *)
    // Each part contributes a contiguous block of `inner[i]` floats to every outer index.
    let inner = parts.map { $0.shape.suffix(from: axis).reduce(1, *) }
    let total = inner.reduce(0, +)
    var shape = first
    shape[axis] = parts.reduce(0) { $0 + $1.shape[axis] }
    let out = Tensor.uninitialized(shape)
    for o in 0..<outer {
        var at = out.mutableData + o * total
        for (p, n) in zip(parts, inner) { at.update(from: p.value.data + o * n, count: n); at += n }
    }
    return Variable.record(out, inputs: parts) { g in
        var offset = 0
        var grads: [Tensor?] = []
        for (p, n) in zip(parts, inner) {
            if p.requiresGrad {
                let d = Tensor.uninitialized(p.shape)
                for o in 0..<outer { (d.mutableData + o * n).update(from: g.data + o * total + offset, count: n) }
                grads.append(d)
            } else {
                grads.append(nil)
            }
            offset += n
        }
        return grads
    }
}

/// `count` copies of `x` stacked along a new first dimension: `x [...]` → `[count, ...]` (a broadcast).
package func repeated(_ x: Variable, count: Int) -> Variable {
    let n = x.value.count
    let out = Tensor.uninitialized([count] + x.shape)
    for i in 0..<count { (out.mutableData + i * n).update(from: x.value.data, count: n) }
    let shape = x.shape
    return Variable.record(out, inputs: [x]) { g in [sumRows(g, width: n).reshaped(shape)] }
}

// MARK: - Images

/// Non-overlapping patches as rows: `x [n, c, h, w]` → `[n, (h/p)·(w/p), c·p·p]` (see `patches`).
package func patches(_ x: Variable, size p: Int) -> Variable {
    let shape = x.shape
    return Variable.record(patches(x.value, size: p), inputs: [x]) { g in [patchesBackward(g, imageShape: shape, size: p)] }
}

/// 2-D convolution without bias: `x [n, c, h, w]`, `weight [oc, c, kh, kw]` → `[n, oc, oh, ow]`.
package func conv2d(_ x: Variable, weight: Variable, stride: Int = 1, padding: Int = 0) -> Variable {
    let xv = x.value, wv = weight.value
    return Variable.record(conv2d(xv, weight: wv, stride: stride, padding: padding), inputs: [x, weight]) { g in
        let r = conv2dBackward(
            xv, weight: wv, stride: stride, padding: padding, gradient: g,
            wantInput: x.requiresGrad, wantWeight: weight.requiresGrad)
        return [r.x, r.weight]
    }
}

/// Average pooling with kernel = stride = `k`: `[n, c, h, w]` → `[n, c, h/k, w/k]`.
package func avgPool2d(_ x: Variable, kernel k: Int) -> Variable {
    let shape = x.shape
    return Variable.record(avgPool2d(x.value, kernel: k), inputs: [x]) { g in [avgPool2dBackward(g, inputShape: shape, kernel: k)] }
}

/// Batch normalisation of `x [n, c, h, w]` with the batch's own statistics (training mode), optionally
/// followed by ReLU; returns the output and the batch mean and biased variance (for the running statistics).
package func batchNorm2dTraining(_ x: Variable, weight: Variable, bias: Variable, eps: Float)
    -> (output: Variable, mean: [Float], variance: [Float])
{
    let xv = x.value, wv = weight.value
    let (mean, variance) = channelStatistics(xv)
    // The forward is the inference kernel with the batch statistics in place of the running ones.
    let out = batchNorm2d(
        xv, weight: wv, bias: bias.value, runningMean: Tensor(shape: [mean.count], scalars: mean),
        runningVar: Tensor(shape: [variance.count], scalars: variance), eps: eps)
    let y = Variable.record(out, inputs: [x, weight, bias]) { g in
        let r = batchNormTrainingBackward(xv, weight: wv, mean: mean, variance: variance, eps: eps, gradient: g)
        return [r.x, r.weight, r.bias]
    }
    return (y, mean, variance)
}

/// Batch normalisation of `x [n, c, h, w]` with fixed (running) statistics, as `batchNorm2d` (evaluation mode).
package func batchNorm2d(
    _ x: Variable, weight: Variable, bias: Variable, runningMean: Tensor, runningVar: Tensor,
    eps: Float
) -> Variable {
    let xv = x.value, wv = weight.value
    let out = batchNorm2d(xv, weight: wv, bias: bias.value, runningMean: runningMean, runningVar: runningVar, eps: eps)
    return Variable.record(out, inputs: [x, weight, bias]) { g in
        let (n, c) = (xv.shape[0], xv.shape[1]), plane = xv.shape[2] * xv.shape[3]
        let dx = Tensor.uninitialized(xv.shape), dw = Tensor(shape: [c]), db = Tensor(shape: [c])
        for ch in 0..<c {
            let inv = 1 / (runningVar.data[ch] + eps).squareRoot(), k = wv.data[ch] * inv, mu = runningMean.data[ch]
            for i in 0..<n {
                let o = (i * c + ch) * plane
                for p in 0..<plane {
                    let gv = g.data[o + p]
                    dx.mutableData[o + p] = gv * k
                    dw.mutableData[ch] += gv * (xv.data[o + p] - mu) * inv
                    db.mutableData[ch] += gv
                }
            }
        }
        return [dx, dw, db]
    }
}

/// The tokens of attention pooling: `x [n, c, h, w]` → `[n, h·w + 1, c]`, the spatial mean first, then the
/// pixels in row-major order (the reference's `flatten(2).permute(2, 0, 1)` with the mean concatenated in front).
package func spatialTokens(_ x: Variable) -> Variable {
    let xv = x.value
    precondition(xv.rank == 4, "spatialTokens: \(xv.shape)")
    let (n, c, hw) = (xv.shape[0], xv.shape[1], xv.shape[2] * xv.shape[3])
    let l = hw + 1
    let tokens = Tensor.uninitialized([n, l, c])
    for i in 0..<n {
        let src = xv.data + i * c * hw, dst = tokens.mutableData + i * l * c
        for ch in 0..<c {
            var sum: Float = 0
            for p in 0..<hw { let v = src[ch * hw + p]; dst[(p + 1) * c + ch] = v; sum += v }
            dst[ch] = sum / Float(hw)
        }
    }
    return Variable.record(tokens, inputs: [x]) { g in
        let d = Tensor.uninitialized(xv.shape)
        for i in 0..<n {
            let src = g.data + i * l * c, dst = d.mutableData + i * c * hw
            for ch in 0..<c {
                let fromMean = src[ch] / Float(hw)
                for p in 0..<hw { dst[ch * hw + p] = src[(p + 1) * c + ch] + fromMean }
            }
        }
        return [d]
    }
}

/// Running statistics `[c]` after one training batch, as PyTorch's BatchNorm: `(1 − momentum)·running +
/// momentum·batch`, the batch variance made unbiased (× count / (count − 1)) for the running variance.
/// `count` is the number of values per channel (`n·h·w`).
package func updateRunningStatistics(
    mean: Tensor, variance: Tensor, batchMean: [Float], batchVariance: [Float],
    count: Int, momentum: Float
) -> (mean: Tensor, variance: Tensor) {
    let c = mean.count
    precondition(variance.count == c && batchMean.count == c && batchVariance.count == c, "updateRunningStatistics: sizes")
    let unbias = count > 1 ? Float(count) / Float(count - 1) : 1
    let m = Tensor.uninitialized(mean.shape), v = Tensor.uninitialized(variance.shape)
    for i in 0..<c {
        m.mutableData[i] = (1 - momentum) * mean.data[i] + momentum * batchMean[i]
        v.mutableData[i] = (1 - momentum) * variance.data[i] + momentum * batchVariance[i] * unbias
    }
    return (m, v)
}

/// Rows of each batch item picked by index: `x [batch, seq, width]`, `indices [batch, keep]` (row-major, each in
/// `0..<seq`) → `[batch, keep, width]` (`torch.gather(x, 1, idx.unsqueeze(-1).repeat(1, 1, width))`).
/// The gradient adds each output row back to the row it came from.
package func gatherRows(_ x: Variable, indices: [Int], keep: Int) -> Variable {
    let shape = x.shape
    precondition(shape.count == 3 && indices.count == shape[0] * keep, "gatherRows: \(indices.count) indices for \(shape) keeping \(keep)")
    let (b, l, w) = (shape[0], shape[1], shape[2])
    precondition(indices.allSatisfy { $0 >= 0 && $0 < l }, "gatherRows: an index is outside 0..<\(l)")
    let out = Tensor.uninitialized([b, keep, w])
    for i in 0..<b {
        for k in 0..<keep {
            (out.mutableData + (i * keep + k) * w).update(from: x.value.data + (i * l + indices[i * keep + k]) * w, count: w)
        }
    }
    return Variable.record(out, inputs: [x]) { g in
        let d = Tensor(shape: shape)
        for i in 0..<b {
            for k in 0..<keep {
                accumulate(d.mutableData + (i * l + indices[i * keep + k]) * w, g.data + (i * keep + k) * w, count: w)
            }
        }
        return [d]
    }
}
