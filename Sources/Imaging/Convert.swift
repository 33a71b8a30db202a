// Mode conversions, hand-written to match Pillow's Convert.c bit for bit:
//  - L/"1"/LA -> RGB replicate the grey (alpha dropped); RGBA -> RGB drops alpha;
//    P -> RGB looks up the palette (entries past its end are black, as Pillow's zero-filled palette);
//    CMYK -> RGB is nk - MULDIV255(c, nk) with nk = 255 - k.
//  - RGB -> L is ITU-R 601-2 in 16.16 fixed point (19595, 38470, 7471, + 0x8000) >> 16.
//  - Premultiplication for resizing: RGBA -> RGBa is MULDIV255(c, a); RGBa -> RGBA is
//    CLIP8(255 * c / a) with integer division, unless a is 0 or 255 (then c is kept).
//    LA <-> La likewise on the grey sample.
// MULDIV255(a, b) = ((t >> 8) + t) >> 8 with t = a * b + 128.

@inline(__always)
private func mulDiv255(_ a: Int, _ b: Int) -> Int {
    let t = a * b + 128
    return ((t >> 8) + t) >> 8
}

/// RGBA -> RGBa or LA -> La (colour samples multiplied by alpha), Pillow's rgbA2rgba / lA2la.
func premultipliedAlpha(_ px: [UInt8], channels c: Int) -> [UInt8] {
    var out = px
    out.withUnsafeMutableBufferPointer { o in
        var i = 0
        while i < o.count {
            let a = Int(o[i + c - 1])
            if a != 255 {
                for k in 0..<(c - 1) { o[i + k] = UInt8(mulDiv255(Int(o[i + k]), a)) }
            }
            i += c
        }
    }
    return out
}

/// RGBa -> RGBA or La -> LA, Pillow's rgba2rgbA / la2lA.
func unpremultipliedAlpha(_ px: [UInt8], channels c: Int) -> [UInt8] {
    var out = px
    out.withUnsafeMutableBufferPointer { o in
        var i = 0
        while i < o.count {
            let a = Int(o[i + c - 1])
            if a != 255 && a != 0 {
                for k in 0..<(c - 1) { o[i + k] = UInt8(min(255, 255 * Int(o[i + k]) / a)) }
            }
            i += c
        }
    }
    return out
}

extension Image {
    /// Converts to `target` as Pillow's `Image.convert(target)` does; supported targets are RGB, RGBA and L.
    package func converted(to target: Mode) -> Image {
        if target == mode { return self }
        switch target {
        case .rgb: return convertedToRGB()
        case .rgba:
            let rgb = mode == .rgba ? self : convertedToRGB()
            var out = [UInt8](repeating: 255, count: width * height * 4)
            let n = width * height
            let alpha: [UInt8]? = mode == .la ? pixels : nil
            for p in 0..<n {
                out[p * 4] = rgb.pixels[p * 3]
                out[p * 4 + 1] = rgb.pixels[p * 3 + 1]
                out[p * 4 + 2] = rgb.pixels[p * 3 + 2]
                if let alpha { out[p * 4 + 3] = alpha[p * 2 + 1] }
            }
            return Image(width: width, height: height, mode: .rgba, pixels: out)
        case .l:
            switch mode {
            case .la:
                return Image(width: width, height: height, mode: .l, pixels: stride(from: 0, to: pixels.count, by: 2).map { pixels[$0] })
            case .bilevel:
                return Image(width: width, height: height, mode: .l, pixels: pixels.map { $0 != 0 ? 255 : 0 })
            default:
                let rgb = mode == .rgb ? self : convertedToRGB()
                var out = [UInt8](repeating: 0, count: width * height)
                for p in 0..<out.count {
                    let r = Int(rgb.pixels[p * 3]), g = Int(rgb.pixels[p * 3 + 1]), b = Int(rgb.pixels[p * 3 + 2])
                    out[p] = UInt8((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16)
                }
                return Image(width: width, height: height, mode: .l, pixels: out)
            }
        default:
            preconditionFailure("conversion to \(target.rawValue) is not supported (targets: RGB, RGBA, L)")
        }
    }

    private func convertedToRGB() -> Image {
        let n = width * height
        var out = [UInt8](repeating: 0, count: n * 3)
        pixels.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { o in
                switch mode {
                case .rgb:
                    _ = o.initialize(from: s)
                case .l, .bilevel:
                    for p in 0..<n {
                        let v = mode == .bilevel ? (s[p] != 0 ? 255 : 0) : s[p]
                        o[p * 3] = v; o[p * 3 + 1] = v; o[p * 3 + 2] = v
                    }
                case .la:
                    for p in 0..<n {
                        let v = s[p * 2]
                        o[p * 3] = v; o[p * 3 + 1] = v; o[p * 3 + 2] = v
                    }
                case .rgba:
                    for p in 0..<n {
                        o[p * 3] = s[p * 4]; o[p * 3 + 1] = s[p * 4 + 1]; o[p * 3 + 2] = s[p * 4 + 2]
                    }
                case .cmyk:
                    for p in 0..<n {
                        let nk = 255 - Int(s[p * 4 + 3])
                        for ch in 0..<3 {
                            let v = nk - mulDiv255(Int(s[p * 4 + ch]), nk)
                            o[p * 3 + ch] = UInt8(max(0, min(255, v)))
                        }
                    }
                case .palette:
                    var table = [UInt8](repeating: 0, count: 768)
                    let pal = palette ?? []
                    table.replaceSubrange(0..<pal.count, with: pal)
                    for p in 0..<n {
                        let i = Int(s[p]) * 3
                        o[p * 3] = table[i]; o[p * 3 + 1] = table[i + 1]; o[p * 3 + 2] = table[i + 2]
                    }
                }
            }
        }
        return Image(width: width, height: height, mode: .rgb, pixels: out)
    }
}
