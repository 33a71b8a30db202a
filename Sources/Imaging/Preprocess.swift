// The reference's image transform (cn_clip.clip.utils.image_transform):
//   Resize((r, r), BICUBIC) in the image's own mode -> convert("RGB") -> ToTensor -> Normalize.
// ToTensor and Normalize are reproduced in torchvision's fp32 arithmetic order:
// x = Float(v) / 255, then (x - mean) / std, each a correctly rounded fp32 operation, with mean and
// std rounded from Python doubles to float32 as torch.as_tensor(..., dtype=float32) does.

/// CLIP's per-channel normalisation constants (OpenAI CLIP values, used by Chinese-CLIP).
package enum CLIPNormalization {
    /// Channel means (R, G, B) as the reference's source writes them (Python floats), for files that state them.
    package static let meanAsWritten: [Double] = [0.48145466, 0.4578275, 0.40821073]
    /// Channel standard deviations (R, G, B) as the reference's source writes them.
    package static let stdAsWritten: [Double] = [0.26862954, 0.26130258, 0.27577711]
    /// Channel means (R, G, B).
    package static let mean: [Float] = meanAsWritten.map { Float($0) }
    /// Channel standard deviations (R, G, B).
    package static let std: [Float] = stdAsWritten.map { Float($0) }
}

extension Image {
    /// The resized RGB image the reference feeds to ToTensor: bicubic resize to `resolution`² in its own mode, then RGB.
    package func resizedRGB(resolution: Int) -> Image {
        resized(to: (resolution, resolution), filter: .bicubic).converted(to: .rgb)
    }

    /// The reference's `image_transform(resolution)`: a CHW float tensor of shape `[3, resolution, resolution]`.
    package func preprocess(resolution: Int) -> [Float] {
        var out = [Float](repeating: 0, count: 3 * resolution * resolution)
        out.withUnsafeMutableBufferPointer { writeNormalizedCHW(resizedRGB(resolution: resolution), into: $0.baseAddress!) }
        return out
    }

    /// Preprocesses `images` into one contiguous batch of shape `[images.count, 3, resolution, resolution]`.
    package static func preprocessBatch(_ images: [Image], resolution: Int) -> [Float] {
        let plane = 3 * resolution * resolution
        var out = [Float](repeating: 0, count: images.count * plane)
        out.withUnsafeMutableBufferPointer { buf in
            for (i, image) in images.enumerated() {
                writeNormalizedCHW(image.resizedRGB(resolution: resolution), into: buf.baseAddress! + i * plane)
            }
        }
        return out
    }

    /// ToTensor + Normalize of an RGB image: CHW floats of shape `[3, height, width]`.
    package static func normalizedCHW(_ rgb: Image) -> [Float] {
        var out = [Float](repeating: 0, count: 3 * rgb.width * rgb.height)
        out.withUnsafeMutableBufferPointer { writeNormalizedCHW(rgb, into: $0.baseAddress!) }
        return out
    }
}

private func writeNormalizedCHW(_ rgb: Image, into dst: UnsafeMutablePointer<Float>) {
    precondition(rgb.mode == .rgb, "normalisation needs an RGB image, got \(rgb.mode.rawValue)")
    let n = rgb.width * rgb.height
    // A 256-entry table per channel gives the same fp32 results as computing each pixel.
    var table = [Float](repeating: 0, count: 3 * 256)
    for c in 0..<3 {
        let m = CLIPNormalization.mean[c], s = CLIPNormalization.std[c]
        for v in 0..<256 { table[c * 256 + v] = (Float(v) / 255 - m) / s }
    }
    rgb.pixels.withUnsafeBufferPointer { px in
        for p in 0..<n {
            dst[p] = table[Int(px[p * 3])]
            dst[n + p] = table[256 + Int(px[p * 3 + 1])]
            dst[2 * n + p] = table[512 + Int(px[p * 3 + 2])]
        }
    }
}
