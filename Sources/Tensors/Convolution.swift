// Convolution, pooling and batch normalisation on NCHW tensors (ResNet and the ViT patch embedding).

import Foundation

/// 2-D convolution without bias: `x [n, c, h, w]`, `weight [oc, c, kh, kw]` → `[n, oc, oh, ow]`, by im2col + GEMM.
package func conv2d(_ x: Tensor, weight: Tensor, stride: Int = 1, padding: Int = 0) -> Tensor {
    precondition(x.rank == 4 && weight.rank == 4 && weight.shape[1] == x.shape[1], "conv2d: x \(x.shape) weight \(weight.shape)")
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (oc, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
    let oh = (h + 2 * padding - kh) / stride + 1, ow = (w + 2 * padding - kw) / stride + 1
    let out = Tensor.uninitialized([n, oc, oh, ow])
    let kdim = c * kh * kw, pixels = oh * ow
    // A 1×1 stride-1 convolution needs no column buffer: the image already is the column matrix.
    let direct = kh == 1 && kw == 1 && stride == 1 && padding == 0
    let cols = direct ? nil : UnsafeMutablePointer<Float>.allocate(capacity: max(1, kdim * pixels))
    defer { cols?.deallocate() }
    for img in 0..<n {
        let src = x.data + img * c * h * w
        var colPtr = UnsafePointer(src)
        if let cols {
            im2col(x, image: img, kh: kh, kw: kw, stride: stride, padding: padding, oh: oh, ow: ow, into: cols)
            colPtr = UnsafePointer(cols)
        }
        BLAS.gemm(
            m: oc, n: pixels, k: kdim, a: weight.data, lda: kdim, b: colPtr, ldb: pixels,
            c: out.mutableData + img * oc * pixels, ldc: pixels)
    }
    return out
}

/// The im2col matrix of image `img` of `x [n, c, h, w]` for a `kh`×`kw` kernel: `[c·kh·kw, oh·ow]` into `cols`.
func im2col(
    _ x: Tensor, image img: Int, kh: Int, kw: Int, stride: Int, padding: Int, oh: Int, ow: Int,
    into cols: UnsafeMutablePointer<Float>
) {
    let (c, h, w) = (x.shape[1], x.shape[2], x.shape[3])
    let pixels = oh * ow, src = x.data + img * c * h * w
    parallelFor(c * kh * kw, cost: pixels) { rows in
        for row in rows {
            let ci = row / (kh * kw), ky = (row / kw) % kh, kx = row % kw
            let dst = cols + row * pixels
            let plane = src + ci * h * w
            for oy in 0..<oh {
                let iy = oy * stride - padding + ky
                let d = dst + oy * ow
                if iy < 0 || iy >= h { d.update(repeating: 0, count: ow); continue }
                let line = plane + iy * w
                for ox in 0..<ow {
                    let ix = ox * stride - padding + kx
                    d[ox] = (ix >= 0 && ix < w) ? line[ix] : 0
                }
            }
        }
    }
}

/// Non-overlapping patches as rows: `x [n, c, h, w]` → `[n, (h/p)·(w/p), c·p·p]` in the order a stride-`p`
/// convolution with kernel `p` reads them (channel, then row, then column within a patch).
package func patches(_ x: Tensor, size p: Int) -> Tensor {
    precondition(x.rank == 4, "patches: x \(x.shape)")
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let gh = h / p, gw = w / p, k = c * p * p
    let out = Tensor.uninitialized([n, gh * gw, k])
    let s = x.data, d = out.mutableData
    parallelFor(n * gh, cost: gw * k) { range in
        for ng in range {
            let img = ng / gh, gy = ng % gh
            for gx in 0..<gw {
                var o = d + ((img * gh + gy) * gw + gx) * k
                for ci in 0..<c {
                    for py in 0..<p {
                        let line = s + ((img * c + ci) * h + gy * p + py) * w + gx * p
                        o.update(from: line, count: p)
                        o += p
                    }
                }
            }
        }
    }
    return out
}

/// Average pooling with kernel = stride = `k`, no padding: `[n, c, h, w]` → `[n, c, h/k, w/k]`.
package func avgPool2d(_ x: Tensor, kernel k: Int) -> Tensor {
    precondition(x.rank == 4, "avgPool2d: x \(x.shape)")
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let oh = h / k, ow = w / k
    let out = Tensor.uninitialized([n, c, oh, ow])
    let s = x.data, d = out.mutableData
    let inv = 1 / Float(k * k)
    parallelFor(n * c, cost: h * w) { planes in
        for pl in planes {
            let src = s + pl * h * w, dst = d + pl * oh * ow
            for oy in 0..<oh {
                for ox in 0..<ow {
                    var sum: Float = 0
                    for ky in 0..<k { for kx in 0..<k { sum += src[(oy * k + ky) * w + ox * k + kx] } }
                    dst[oy * ow + ox] = sum * inv
                }
            }
        }
    }
    return out
}

/// Batch normalisation with running statistics (inference), optionally followed by ReLU: `x [n, c, h, w]`.
package func batchNorm2d(
    _ x: Tensor, weight: Tensor, bias: Tensor, runningMean: Tensor, runningVar: Tensor,
    eps: Float, relu: Bool = false
) -> Tensor {
    precondition(x.rank == 4 && weight.count == x.shape[1], "batchNorm2d: x \(x.shape) weight \(weight.shape)")
    let (n, c) = (x.shape[0], x.shape[1])
    let plane = x.shape[2] * x.shape[3]
    var scale = [Float](repeating: 0, count: c), shift = [Float](repeating: 0, count: c)
    for i in 0..<c {
        scale[i] = weight.data[i] / (runningVar.data[i] + eps).squareRoot()
        shift[i] = bias.data[i] - runningMean.data[i] * scale[i]
    }
    let out = Tensor.uninitialized(x.shape)
    let s = x.data, d = out.mutableData
    parallelFor(n * c, cost: plane) { planes in
        for pl in planes {
            let a = scale[pl % c], b = shift[pl % c]
            let src = s + pl * plane, dst = d + pl * plane
            if relu {
                for i in 0..<plane { let v = src[i] * a + b; dst[i] = v > 0 ? v : 0 }
            } else {
                for i in 0..<plane { dst[i] = src[i] * a + b }
            }
        }
    }
    return out
}
