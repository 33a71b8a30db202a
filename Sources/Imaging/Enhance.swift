// Pixel-value operations the training augmentation needs, hand-written to match Pillow 13 bit for bit
// (PIL/ImageOps.py, PIL/ImageEnhance.py, libImaging/Blend.c, Filter.c, Point.c), because timm's
// AutoAugment calls them through Pillow. L and RGB images only, as `ImageOps._lut` allows.
//  - `point(lut)`: per-band table lookup; table values are clipped to 0...255 (Pillow's getlist), which
//    matters for `equalize`, whose table can reach 256+ at the brightest used level.
//  - `autocontrast()` (cutoff 0, no ignore/mask): per band, lo/hi = first/last non-empty histogram bin;
//    hi <= lo keeps the band; else scale = 255.0 / (hi - lo), offset = -lo * scale and
//    lut[i] = int(i * scale + offset) clipped, in double as Python computes it.
//  - `equalize()`: per band, h = non-empty bins; one bin keeps the band; step = (sum(h) - h[-1]) // 255,
//    0 keeps the band; else lut[i] = n // step with n starting at step // 2 and growing by bin i.
//  - `posterize(bits)`: i & ~(2^(8-bits) - 1); `solarize(t)`: i < t ? i : 255 - i; `invert`: 255 - i.
//  - `Image.blend(a, b, alpha)`: alpha is rounded to float32 (`(float)alpha`); 0 and 1 copy; inside
//    [0, 1] out = (UInt8)(a + alpha * (b - a)) in float32; outside, the same float clipped to 0...255.
//  - ImageEnhance: Color blends with RGB->L->RGB, Contrast with the grey level int(mean(L) + 0.5),
//    Brightness with black, Sharpness with `filter(SMOOTH)`; `enhance(f)` = blend(degenerate, image, f).
//  - `filter(SMOOTH)`: 3x3 kernel (1 1 1 / 1 5 1 / 1 1 1) with each weight float32(k) / float32(13);
//    per pixel, float32 ss = 0.5 (offset 0 + Pillow's rounding bias), then ss += the row below, the row
//    itself, the row above (each row's three products summed left to right), clamp, truncate. The
//    border rows and columns are copied; images smaller than 3x3 are returned unchanged.

extension Image {
    /// Pillow's `histogram()` for L and RGB: 256 counts per band, bands in order.
    package func histogram() -> [Int] {
        precondition(mode == .rgb || mode == .l, "histogram supports L and RGB images, got \(mode.rawValue)")
        let c = mode.channels
        var h = [Int](repeating: 0, count: 256 * c)
        pixels.withUnsafeBufferPointer { s in
            h.withUnsafeMutableBufferPointer { hh in
                for i in 0..<s.count { hh[(i % c) * 256 + Int(s[i])] += 1 }
            }
        }
        return h
    }

    /// Pillow's `point(lut)` for L and RGB: `lut` holds 256 entries per band (or 256 shared by all bands),
    /// each clipped to 0...255 as Pillow clips table values.
    package func mapped(through lut: [Int]) -> Image {
        precondition(mode == .rgb || mode == .l, "point tables support L and RGB images, got \(mode.rawValue)")
        let c = mode.channels
        precondition(lut.count == 256 || lut.count == 256 * c, "a point table needs 256 or \(256 * c) entries, got \(lut.count)")
        let table = (lut.count == 256 ? Array(repeating: lut, count: c).flatMap { $0 } : lut).map { UInt8(min(max($0, 0), 255)) }
        var out = pixels
        out.withUnsafeMutableBufferPointer { o in
            table.withUnsafeBufferPointer { t in
                for i in 0..<o.count { o[i] = t[(i % c) * 256 + Int(o[i])] }
            }
        }
        return Image(width: width, height: height, mode: mode, pixels: out)
    }

    /// `ImageOps.autocontrast(image)`: each band stretched so its darkest level becomes 0 and its lightest 255.
    package func autocontrasted() -> Image {
        let hist = histogram()
        var lut: [Int] = []
        for layer in stride(from: 0, to: hist.count, by: 256) {
            let h = hist[layer..<(layer + 256)]
            let lo = h.firstIndex(where: { $0 != 0 }).map { $0 - layer } ?? 255
            let hi = h.lastIndex(where: { $0 != 0 }).map { $0 - layer } ?? 0
            if hi <= lo {
                lut += Array(0..<256)
            } else {
                let scale = 255.0 / Double(hi - lo)
                let offset = Double(-lo) * scale
                for ix in 0..<256 {
                    let v = Int(Double(ix) * scale + offset)
                    lut.append(v < 0 ? 0 : (v > 255 ? 255 : v))
                }
            }
        }
        return mapped(through: lut)
    }

    /// `ImageOps.equalize(image)`: each band's histogram flattened.
    package func equalized() -> Image {
        let hist = histogram()
        var lut: [Int] = []
        for b in stride(from: 0, to: hist.count, by: 256) {
            let used = hist[b..<(b + 256)].filter { $0 != 0 }
            if used.count <= 1 {
                lut += Array(0..<256)
                continue
            }
            let step = (used.reduce(0, +) - used.last!) / 255
            if step == 0 {
                lut += Array(0..<256)
                continue
            }
            var n = step / 2
            for i in 0..<256 {
                lut.append(n / step)
                n += hist[i + b]
            }
        }
        return mapped(through: lut)
    }

    /// `ImageOps.posterize(image, bits)`: keeps the top `bits` (1...8) of every sample.
    package func posterized(bits: Int) -> Image {
        precondition((1...8).contains(bits), "bits must be between 1 and 8, got \(bits)")
        let mask = ~((1 << (8 - bits)) - 1)
        return mapped(through: (0..<256).map { $0 & mask })
    }

    /// `ImageOps.solarize(image, threshold)`: samples at or above `threshold` are inverted.
    package func solarized(threshold: Int) -> Image {
        mapped(through: (0..<256).map { $0 < threshold ? $0 : 255 - $0 })
    }

    /// `ImageOps.invert(image)`: every sample becomes 255 minus itself.
    package func inverted() -> Image {
        mapped(through: (0..<256).map { 255 - $0 })
    }

    /// `Image.blend(a, b, alpha)`: `a + alpha * (b - a)` per sample in float32, truncated (clipped when extrapolating).
    package static func blend(_ a: Image, _ b: Image, alpha: Double) -> Image {
        precondition(
            a.mode == b.mode && a.width == b.width && a.height == b.height,
            "blend needs images of one mode and size, got \(a.mode.rawValue) \(a.width)x\(a.height) and \(b.mode.rawValue) \(b.width)x\(b.height)")
        precondition(a.mode != .palette && a.mode != .bilevel, "blend does not support \(a.mode.rawValue) images")
        let f = Float(alpha)
        if f == 0 { return a }
        if f == 1 { return b }
        var out = [UInt8](repeating: 0, count: a.pixels.count)
        a.pixels.withUnsafeBufferPointer { p1 in
            b.pixels.withUnsafeBufferPointer { p2 in
                out.withUnsafeMutableBufferPointer { o in
                    if f >= 0 && f <= 1 {
                        for i in 0..<o.count {
                            let v1 = Int(p1[i]), v2 = Int(p2[i])
                            o[i] = UInt8(Float(v1) + f * Float(v2 - v1))
                        }
                    } else {
                        for i in 0..<o.count {
                            let v1 = Int(p1[i]), v2 = Int(p2[i])
                            let t = Float(v1) + f * Float(v2 - v1)
                            o[i] = t <= 0 ? 0 : (t >= 255 ? 255 : UInt8(t))
                        }
                    }
                }
            }
        }
        return Image(width: a.width, height: a.height, mode: a.mode, pixels: out)
    }

    /// `ImageEnhance.Color(image).enhance(factor)`: 0 is greyscale, 1 the image.
    package func colorEnhanced(_ factor: Double) -> Image {
        precondition(mode == .rgb || mode == .l, "Color supports L and RGB images, got \(mode.rawValue)")
        let degenerate = mode == .l ? self : converted(to: .l).converted(to: mode)
        return Image.blend(degenerate, self, alpha: factor)
    }

    /// `ImageEnhance.Contrast(image).enhance(factor)`: 0 is the mean grey, 1 the image.
    package func contrastEnhanced(_ factor: Double) -> Image {
        precondition(mode == .rgb || mode == .l, "Contrast supports L and RGB images, got \(mode.rawValue)")
        let grey = mode == .l ? self : converted(to: .l)
        let h = grey.histogram()
        var sum = 0, count = 0
        for (j, n) in h.enumerated() { sum += j * n; count += n }
        let mean = count == 0 ? 0.0 : Double(sum) / Double(count)
        let level = UInt8(Int(mean + 0.5))
        let degenerate = Image(
            width: width, height: height, mode: mode,
            pixels: [UInt8](repeating: level, count: pixels.count))
        return Image.blend(degenerate, self, alpha: factor)
    }

    /// `ImageEnhance.Brightness(image).enhance(factor)`: 0 is black, 1 the image.
    package func brightnessEnhanced(_ factor: Double) -> Image {
        precondition(mode == .rgb || mode == .l, "Brightness supports L and RGB images, got \(mode.rawValue)")
        let black = Image(width: width, height: height, mode: mode, pixels: [UInt8](repeating: 0, count: pixels.count))
        return Image.blend(black, self, alpha: factor)
    }

    /// `ImageEnhance.Sharpness(image).enhance(factor)`: 0 is `filter(SMOOTH)`, 1 the image, 2 sharpened.
    package func sharpnessEnhanced(_ factor: Double) -> Image {
        Image.blend(smoothed(), self, alpha: factor)
    }

    /// `filter(ImageFilter.SMOOTH)`: Pillow's 3x3 float32 convolution with the border copied.
    package func smoothed() -> Image {
        precondition(mode == .rgb || mode == .l, "SMOOTH supports L and RGB images, got \(mode.rawValue)")
        if width < 3 || height < 3 { return self }
        let k: [Float] = [1, 1, 1, 1, 5, 1, 1, 1, 1].map { Float($0) / Float(13) }
        let c = mode.channels, w = width, h = height
        var out = pixels
        pixels.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { o in
                @inline(__always) func row3(_ r: Int, _ x: Int, _ b: Int, _ k0: Float, _ k1: Float, _ k2: Float) -> Float {
                    let base = r * w * c + b
                    return Float(s[base + (x - 1) * c]) * k0 + Float(s[base + x * c]) * k1 + Float(s[base + (x + 1) * c]) * k2
                }
                for y in 1..<(h - 1) {
                    for x in 1..<(w - 1) {
                        for b in 0..<c {
                            var ss: Float = 0 + 0.5
                            ss += row3(y + 1, x, b, k[0], k[1], k[2])
                            ss += row3(y, x, b, k[3], k[4], k[5])
                            ss += row3(y - 1, x, b, k[6], k[7], k[8])
                            ss = ss < 0 ? 0 : ss
                            ss = ss > 255 ? 255 : ss
                            o[(y * w + x) * c + b] = UInt8(ss)
                        }
                    }
                }
            }
        }
        return Image(width: width, height: height, mode: mode, pixels: out)
    }
}
