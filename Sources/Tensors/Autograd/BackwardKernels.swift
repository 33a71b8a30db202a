// Kernels used only by backward rules and by training-mode forwards (batch statistics). Like the forward
// kernels they allocate their outputs and never mutate their inputs.

import Dispatch
import Essentials
import Foundation

// MARK: - Helpers

/// `dst[i] += src[i]` for `count` floats.
@inlinable
func accumulate(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, count: Int) {
    var i = 0
    while i + 8 <= count {
        let v = UnsafeRawPointer(dst + i).loadUnaligned(as: SIMD8<Float>.self) + UnsafeRawPointer(src + i).loadUnaligned(as: SIMD8<Float>.self)
        UnsafeMutableRawPointer(dst + i).storeBytes(of: v, as: SIMD8<Float>.self)
        i += 8
    }
    while i < count { dst[i] += src[i]; i += 1 }
}

/// Sum over the leading dimensions: `x [rows, n]` (any leading shape) → `[n]` (the gradient of a broadcast).
package func sumRows(_ x: Tensor, width n: Int) -> Tensor {
    precondition(n > 0 && x.count % n == 0, "sumRows: \(x.shape) by \(n)")
    let rows = x.count / n
    let out = Tensor(shape: [n])
    let s = x.data, d = out.mutableData
    for r in 0..<rows { accumulate(d, s + r * n, count: n) }
    return out
}

/// Elementwise product of two tensors of one shape.
package func multiplied(_ a: Tensor, _ b: Tensor) -> Tensor {
    precondition(a.count == b.count, "multiplied: \(a.shape) * \(b.shape)")
    let out = Tensor.uninitialized(a.shape)
    let x = a.data, y = b.data, d = out.mutableData
    for i in 0..<a.count { d[i] = x[i] * y[i] }
    return out
}

// MARK: - Normalisation

/// Gradients of layer normalisation: `x [..., n]`, `g` the output gradient → (`dx`, `dweight [n]`, `dbias [n]`).
/// Mean and inverse deviation are recomputed per row (cheaper than storing them).
package func layerNormBackward(_ x: Tensor, weight: Tensor, eps: Float, gradient g: Tensor) -> (x: Tensor, weight: Tensor, bias: Tensor) {
    let n = x.lastDim, rows = x.rowCount
    let dx = Tensor.uninitialized(x.shape)
    let threads = max(1, ComputeThreads.count)
    // Per-chunk partial sums of dweight and dbias, reduced in chunk order (deterministic).
    let partial = Tensor(shape: [threads, 2, n])
    let s = x.data, gp = g.data, w = weight.data, d = dx.mutableData, pp = partial.mutableData
    let chunks = parallelChunks(rows, cost: 8 * n) { c, range in
        let dw = pp + c * 2 * n, db = dw + n
        var xhat = [Float](repeating: 0, count: n), dxhat = [Float](repeating: 0, count: n)
        for r in range {
            let xi = s + r * n, gi = gp + r * n, di = d + r * n
            let mean = sum(xi, count: n) / Float(n)
            let variance = sumOfSquares(xi, count: n, minus: mean) / Float(n)
            let inv = 1 / (variance + eps).squareRoot()
            var m1: Float = 0, m2: Float = 0
            for j in 0..<n {
                let xh = (xi[j] - mean) * inv
                xhat[j] = xh
                let dh = gi[j] * w[j]
                dxhat[j] = dh
                m1 += dh
                m2 += dh * xh
                dw[j] += gi[j] * xh
                db[j] += gi[j]
            }
            m1 /= Float(n); m2 /= Float(n)
            for j in 0..<n { di[j] = inv * (dxhat[j] - m1 - xhat[j] * m2) }
        }
    }
    let dWeight = Tensor(shape: weight.shape), dBias = Tensor(shape: weight.shape)
    for c in 0..<chunks {
        accumulate(dWeight.mutableData, pp + c * 2 * n, count: n)
        accumulate(dBias.mutableData, pp + c * 2 * n + n, count: n)
    }
    return (dx, dWeight, dBias)
}

/// Batch statistics of `x [n, c, h, w]` per channel: mean and biased variance (two passes, as PyTorch).
package func channelStatistics(_ x: Tensor) -> (mean: [Float], variance: [Float]) {
    precondition(x.rank == 4, "channelStatistics: \(x.shape)")
    let (n, c) = (x.shape[0], x.shape[1])
    let plane = x.shape[2] * x.shape[3], m = Float(n * plane)
    var mean = [Float](repeating: 0, count: c), variance = [Float](repeating: 0, count: c)
    for ch in 0..<c {
        var s: Float = 0
        for i in 0..<n { s += sum(x.data + (i * c + ch) * plane, count: plane) }
        let mu = s / m
        var q: Float = 0
        for i in 0..<n { q += sumOfSquares(x.data + (i * c + ch) * plane, count: plane, minus: mu) }
        mean[ch] = mu
        variance[ch] = q / m
    }
    return (mean, variance)
}

/// Gradient of training-mode batch normalisation w.r.t. `x [n, c, h, w]`, weight and bias, given the batch
/// statistics the forward used.
package func batchNormTrainingBackward(
    _ x: Tensor, weight: Tensor, mean: [Float], variance: [Float], eps: Float,
    gradient g: Tensor
) -> (x: Tensor, weight: Tensor, bias: Tensor) {
    let (n, c) = (x.shape[0], x.shape[1])
    let plane = x.shape[2] * x.shape[3], m = Float(n * plane)
    let dx = Tensor.uninitialized(x.shape), dw = Tensor(shape: [c]), db = Tensor(shape: [c])
    let s = x.data, gp = g.data, d = dx.mutableData
    parallelFor(c, cost: 4 * n * plane) { channels in
        for ch in channels {
            let inv = 1 / (variance[ch] + eps).squareRoot(), mu = mean[ch]
            var sg: Float = 0, sgx: Float = 0
            for i in 0..<n {
                let o = (i * c + ch) * plane
                for p in 0..<plane { let gv = gp[o + p]; sg += gv; sgx += gv * (s[o + p] - mu) * inv }
            }
            dw.mutableData[ch] = sgx
            db.mutableData[ch] = sg
            let k = weight.data[ch] * inv / m
            for i in 0..<n {
                let o = (i * c + ch) * plane
                for p in 0..<plane { d[o + p] = k * (m * gp[o + p] - sg - (s[o + p] - mu) * inv * sgx) }
            }
        }
    }
    return (dx, dw, db)
}

// MARK: - Attention

/// Dropout of attention probabilities (BERT's `attention_probs_dropout_prob`): probability `p`, and a seed from
/// which each head's mask is a pure function, so the backward pass regenerates the forward's mask exactly.
package struct AttentionDropout: Sendable {
    /// Probability of zeroing a probability.
    package let p: Float
    /// Seed of this call's masks.
    package let seed: UInt64

    /// Dropout with probability `p` and masks drawn from `seed`.
    package init(p: Float, seed: UInt64) {
        precondition(p >= 0 && p < 1, "attention dropout: p = \(p) outside [0, 1)")
        self.p = p
        self.seed = seed
    }

    /// Multiplies the `[lq, lk]` probabilities of head `item` (batch·heads + head) by its mask: 0 with
    /// probability `p`, else `1/(1-p)` (SplitMix64 stream of `seed` and `item`).
    func apply(to probabilities: UnsafeMutablePointer<Float>, count: Int, item: Int) {
        var generator = SplitMix64(seed: seed ^ (UInt64(item) &* 0xD1B5_4A32_D192_ED03))
        let keep = 1 / (1 - p)
        for i in 0..<count {
            let u = Float(generator.next() >> 40) * 0x1p-24  // uniform in [0, 1)
            probabilities[i] *= u < p ? 0 : keep
        }
    }
}

/// Gradients of `multiHeadAttention` w.r.t. its q, k and v buffers (same shapes and offsets as the forward),
/// added into `dq`, `dk`, `dv` (zeroed by the caller; any may alias another when the inputs were one tensor,
/// since each head writes only its own columns). A nil destination is not computed.
///
/// The attention probabilities are recomputed per head rather than kept from the forward: keeping them costs
/// `batch·heads·lq·lk` floats per layer (hundreds of MB for ViT-B at training batch sizes), recomputing costs
/// one `q kᵀ` product and a softmax, and the forward kernel stays exactly the inference kernel.
package func multiHeadAttentionBackward(
    q: Tensor, qOffset: Int, k: Tensor, kOffset: Int, v: Tensor, vOffset: Int,
    batch: Int, lq: Int, lk: Int, heads: Int, headDim d: Int, keyBias: Tensor?,
    dropout: AttentionDropout? = nil, gradient g: Tensor,
    dq: UnsafeMutablePointer<Float>?, dk: UnsafeMutablePointer<Float>?,
    dv: UnsafeMutablePointer<Float>?
) {
    let qs = q.lastDim, ks = k.lastDim, vs = v.lastDim, width = heads * d
    let scale = 1 / Float(d).squareRoot()
    parallelFor(batch * heads, cost: 6 * lq * lk * d) { items in
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(1, lq * lk))
        let dp = UnsafeMutablePointer<Float>.allocate(capacity: max(1, lq * lk))
        // With dropout: the mask (regenerated from the seed) and the dropped probabilities P ∘ M.
        let mask = dropout == nil ? nil : UnsafeMutablePointer<Float>.allocate(capacity: max(1, lq * lk))
        let dropped = dropout == nil ? nil : UnsafeMutablePointer<Float>.allocate(capacity: max(1, lq * lk))
        defer { p.deallocate(); dp.deallocate(); mask?.deallocate(); dropped?.deallocate() }
        for item in items {
            let b = item / heads, h = item % heads
            let qp = q.data + b * lq * qs + qOffset + h * d
            let kp = k.data + b * lk * ks + kOffset + h * d
            let vp = v.data + b * lk * vs + vOffset + h * d
            let gp = g.data + b * lq * width + h * d
            // Recompute the probabilities exactly as the forward does.
            BLAS.sgemm(false, true, lq, lk, d, scale, qp, qs, kp, ks, 0, p, lk)
            if let keyBias {
                let kb = keyBias.data + b * lk
                for i in 0..<lq { for j in 0..<lk { p[i * lk + j] += kb[j] } }
            }
            softmaxRowsInPlace(p, rows: lq, cols: lk)
            var used = UnsafePointer(p)
            if let dropout, let mask, let dropped {
                mask.update(repeating: 1, count: lq * lk)
                dropout.apply(to: mask, count: lq * lk, item: item)
                for i in 0..<(lq * lk) { dropped[i] = p[i] * mask[i] }
                used = UnsafePointer(dropped)
            }
            // dV += (P ∘ M)ᵀ dO
            if let dv { BLAS.sgemm(true, false, lk, d, lq, 1, used, lk, gp, width, 1, dv + b * lk * vs + vOffset + h * d, vs) }
            guard dq != nil || dk != nil else { continue }
            // dP = (dO Vᵀ) ∘ M; dS = P ∘ (dP − rowsum(dP ∘ P)) (softmax backward); the key bias is a constant.
            BLAS.sgemm(false, true, lq, lk, d, 1, gp, width, vp, vs, 0, dp, lk)
            if let mask { for i in 0..<(lq * lk) { dp[i] *= mask[i] } }
            for i in 0..<lq {
                let pr = p + i * lk, dr = dp + i * lk
                var dot: Float = 0
                for j in 0..<lk { dot += pr[j] * dr[j] }
                for j in 0..<lk { dr[j] = pr[j] * (dr[j] - dot) }
            }
            // S = scale · Q Kᵀ: dQ += scale · dS K, dK += scale · dSᵀ Q.
            if let dq { BLAS.sgemm(false, false, lq, d, lk, scale, dp, lk, kp, ks, 1, dq + b * lq * qs + qOffset + h * d, qs) }
            if let dk { BLAS.sgemm(true, false, lk, d, lq, scale, dp, lk, qp, qs, 1, dk + b * lk * ks + kOffset + h * d, ks) }
        }
    }
}

// MARK: - Convolution

/// Gradients of `conv2d` (no bias) w.r.t. `x [n, c, h, w]` and `weight [oc, c, kh, kw]`; nil where not wanted.
package func conv2dBackward(
    _ x: Tensor, weight: Tensor, stride: Int, padding: Int, gradient g: Tensor,
    wantInput: Bool, wantWeight: Bool
) -> (x: Tensor?, weight: Tensor?) {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (oc, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
    let oh = g.shape[2], ow = g.shape[3]
    let kdim = c * kh * kw, pixels = oh * ow
    let dx = wantInput ? Tensor(shape: x.shape) : nil
    let dw = wantWeight ? Tensor(shape: weight.shape) : nil
    let cols = UnsafeMutablePointer<Float>.allocate(capacity: max(1, kdim * pixels))
    defer { cols.deallocate() }
    for img in 0..<n {
        let gi = g.data + img * oc * pixels
        if let dw {
            // dW += g_img [oc, pixels] @ colsᵀ [pixels, kdim]
            im2col(x, image: img, kh: kh, kw: kw, stride: stride, padding: padding, oh: oh, ow: ow, into: cols)
            BLAS.gemm(
                transB: true, m: oc, n: kdim, k: pixels, a: gi, lda: pixels, b: cols, ldb: pixels,
                beta: 1, c: dw.mutableData, ldc: kdim)
        }
        if let dx {
            // dcols = Wᵀ [kdim, oc] @ g_img [oc, pixels], then scattered back (col2im); channels are independent.
            BLAS.gemm(
                transA: true, m: kdim, n: pixels, k: oc, a: weight.data, lda: kdim, b: gi, ldb: pixels,
                c: cols, ldc: pixels)
            let dst = dx.mutableData + img * c * h * w
            parallelFor(c, cost: kh * kw * pixels) { channels in
                for ci in channels {
                    let plane = dst + ci * h * w
                    for ky in 0..<kh {
                        for kx in 0..<kw {
                            let src = cols + ((ci * kh + ky) * kw + kx) * pixels
                            for oy in 0..<oh {
                                let iy = oy * stride - padding + ky
                                if iy < 0 || iy >= h { continue }
                                for ox in 0..<ow {
                                    let ix = ox * stride - padding + kx
                                    if ix >= 0 && ix < w { plane[iy * w + ix] += src[oy * ow + ox] }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    return (dx, dw)
}

/// Gradient of `patches`: rows `[n, grid², c·p·p]` scattered back to `[n, c, h, w]` (pixels no patch covers get 0).
package func patchesBackward(_ g: Tensor, imageShape: [Int], size p: Int) -> Tensor {
    let (n, c, h, w) = (imageShape[0], imageShape[1], imageShape[2], imageShape[3])
    let gh = h / p, gw = w / p, k = c * p * p
    let out = Tensor(shape: imageShape)
    let s = g.data, d = out.mutableData
    parallelFor(n * gh, cost: gw * k) { range in
        for ng in range {
            let img = ng / gh, gy = ng % gh
            for gx in 0..<gw {
                var o = s + ((img * gh + gy) * gw + gx) * k
                for ci in 0..<c {
                    for py in 0..<p {
                        (d + ((img * c + ci) * h + gy * p + py) * w + gx * p).update(from: o, count: p)
                        o += p
                    }
                }
            }
        }
    }
    return out
}

/// Gradient of `avgPool2d` with kernel = stride = `k`: each window's pixels get `g / k²`.
package func avgPool2dBackward(_ g: Tensor, inputShape: [Int], kernel k: Int) -> Tensor {
    let (n, c, h, w) = (inputShape[0], inputShape[1], inputShape[2], inputShape[3])
    let oh = h / k, ow = w / k
    let out = Tensor(shape: inputShape)
    let s = g.data, d = out.mutableData
    let inv = 1 / Float(k * k)
    parallelFor(n * c, cost: h * w) { planes in
        for pl in planes {
            let src = s + pl * oh * ow, dst = d + pl * h * w
            for oy in 0..<oh {
                for ox in 0..<ow {
                    let v = src[oy * ow + ox] * inv
                    for ky in 0..<k { for kx in 0..<k { dst[(oy * k + ky) * w + ox * k + kx] = v } }
                }
            }
        }
    }
    return out
}
