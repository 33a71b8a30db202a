// Geometric operations the training augmentation needs, hand-written to match Pillow 13 bit for bit
// (libImaging/Geometry.c, Crop.c and Image.py), because timm's AutoAugment calls them through Pillow:
//  - `crop` is a plain copy of the box (the random resized crop only asks for boxes inside the image).
//  - FLIP_LEFT_RIGHT, ROTATE_90/180/270 are exact pixel permutations in every mode (palette kept).
//  - `Image.transform(size, AFFINE, (a, b, c, d, e, f), resample, fillcolor=fill)`: the output starts
//    filled with `fill`; output pixel (x, y) samples the source at (a*(x+.5) + b*(y+.5) + c,
//    d*(x+.5) + e*(y+.5) + f), all in double, expressions evaluated in C's left-to-right order (the
//    Pillow 13 wheel is built for baseline x86-64: no FMA contraction, so neither do we). A sample
//    point outside [0, w) x [0, h) leaves the fill colour. BICUBIC is Pillow's own a = -1 cubic
//    (not the a = -0.5 of resize), computed in double per band over a 4x4 neighbourhood with edge
//    clamping, then clipped and truncated to UInt8; BILINEAR likewise over 2x2, truncated.
//    (NEAREST takes a 16.16 fixed-point path in Pillow; the augmentation never uses it, so it is
//    not offered here.) Only L and RGB are accepted: timm transforms the RGB image.
//  - `Image.rotate(angle, resample, fillcolor=fill)` (expand off, centre (w/2, h/2)): `angle % 360`
//    with Python's float modulo; 0 copies, 180 rotates exactly, 90/270 transpose when the image is
//    square; otherwise the inverse matrix from `-radians(angle)` with cos/sin rounded to 15 decimals
//    (Python's correctly rounded `round(x, 15)`, reproduced with C's "%.15f"), then the affine path.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Interpolations Pillow's affine `transform` and `rotate` offer besides NEAREST.
package enum AffineFilter: Sendable {
    /// Pillow's BILINEAR affine sampling (2x2, truncated).
    case bilinear
    /// Pillow's BICUBIC affine sampling (4x4, a = -1, clipped and truncated); timm's AutoAugment filter.
    case bicubic
}

extension Image {
    /// Pillow's `crop((left, top, left + width, top + height))` for a box inside the image; mode and palette kept.
    package func cropped(left: Int, top: Int, width w: Int, height h: Int) -> Image {
        precondition(
            left >= 0 && top >= 0 && w >= 0 && h >= 0 && left + w <= width && top + h <= height,
            "crop box (\(left), \(top), \(left + w), \(top + h)) is not inside the \(width)x\(height) image")
        let c = mode.channels
        var out = [UInt8](repeating: 0, count: w * h * c)
        for y in 0..<h {
            let s = ((top + y) * width + left) * c
            out.replaceSubrange((y * w * c)..<((y + 1) * w * c), with: pixels[s..<(s + w * c)])
        }
        return Image(width: w, height: h, mode: mode, pixels: out, palette: palette)
    }

    /// Pillow's `transpose(FLIP_LEFT_RIGHT)` (torchvision's `hflip`).
    package func flippedLeftRight() -> Image {
        permuted(width: width, height: height) { x, y in (width - 1 - x, y) }
    }

    /// Pillow's `transpose(ROTATE_180)`.
    package func rotated180() -> Image {
        permuted(width: width, height: height) { x, y in (width - 1 - x, height - 1 - y) }
    }

    /// Pillow's `transpose(ROTATE_90)`: a quarter turn counter-clockwise.
    package func rotated90() -> Image {
        permuted(width: height, height: width) { x, y in (width - 1 - y, x) }
    }

    /// Pillow's `transpose(ROTATE_270)`: a quarter turn clockwise.
    package func rotated270() -> Image {
        permuted(width: height, height: width) { x, y in (y, height - 1 - x) }
    }

    /// An image of `w`x`h` whose pixel (x, y) is this image's pixel `source(x, y)`.
    private func permuted(width w: Int, height h: Int, _ source: (Int, Int) -> (Int, Int)) -> Image {
        let c = mode.channels
        var out = [UInt8](repeating: 0, count: w * h * c)
        pixels.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { o in
                for y in 0..<h {
                    for x in 0..<w {
                        let (sx, sy) = source(x, y)
                        let si = (sy * width + sx) * c, di = (y * w + x) * c
                        for k in 0..<c { o[di + k] = s[si + k] }
                    }
                }
            }
        }
        return Image(width: w, height: h, mode: mode, pixels: out, palette: palette)
    }

    /// Pillow's `transform(size, AFFINE, matrix, filter, fillcolor=fill)` into an image of the same size:
    /// `matrix` (a, b, c, d, e, f) maps output pixel centres to source points; `fill` has one value per band.
    package func affineTransformed(_ matrix: [Double], filter: AffineFilter, fill: [UInt8]) -> Image {
        precondition(matrix.count == 6, "an affine matrix has 6 coefficients, got \(matrix.count)")
        precondition(mode == .rgb || mode == .l, "affine transforms support L and RGB images, got \(mode.rawValue)")
        let c = mode.channels
        precondition(fill.count == c, "fill needs \(c) values for \(mode.rawValue), got \(fill.count)")
        let (a0, a1, a2, a3, a4, a5) = (matrix[0], matrix[1], matrix[2], matrix[3], matrix[4], matrix[5])
        var out = [UInt8](repeating: 0, count: width * height * c)
        for p in 0..<(width * height) { for k in 0..<c { out[p * c + k] = fill[k] } }
        let w = width, h = height
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                var sample = [UInt8](repeating: 0, count: c)
                for y in 0..<h {
                    for x in 0..<w {
                        let xin = Double(x) + 0.5, yin = Double(y) + 0.5
                        let xx = a0 * xin + a1 * yin + a2
                        let yy = a3 * xin + a4 * yin + a5
                        let inside: Bool
                        switch filter {
                        case .bicubic: inside = bicubicSample(src, w, h, c, xx, yy, &sample)
                        case .bilinear: inside = bilinearSample(src, w, h, c, xx, yy, &sample)
                        }
                        if inside { for k in 0..<c { dst[(y * w + x) * c + k] = sample[k] } }
                    }
                }
            }
        }
        return Image(width: width, height: height, mode: mode, pixels: out)
    }

    /// Pillow's `rotate(degrees, filter, fillcolor=fill)` (counter-clockwise about the centre, same size).
    package func rotated(degrees: Double, filter: AffineFilter, fill: [UInt8]) -> Image {
        let angle = pythonFloatModulo(degrees, 360.0)
        if angle == 0 { return self }
        if angle == 180 { return rotated180() }
        if (angle == 90 || angle == 270) && width == height { return angle == 90 ? rotated90() : rotated270() }
        let cx = Double(width) / 2, cy = Double(height) / 2
        let radians = -(angle * (Double.pi / 180.0))
        var m = [
            pythonRound15(cos(radians)), pythonRound15(sin(radians)), 0.0,
            pythonRound15(-sin(radians)), pythonRound15(cos(radians)), 0.0,
        ]
        let x = -cx - 0, y = -cy - 0
        let c2 = m[0] * x + m[1] * y + m[2]
        let c5 = m[3] * x + m[4] * y + m[5]
        m[2] = c2 + cx
        m[5] = c5 + cy
        return affineTransformed(m, filter: filter, fill: fill)
    }
}

/// Python's `a % b` for floats: the result takes the sign of `b`.
func pythonFloatModulo(_ a: Double, _ b: Double) -> Double {
    var m = fmod(a, b)
    if m != 0 {
        if (b < 0) != (m < 0) { m += b }
    } else {
        m = copysign(0, b)
    }
    return m
}

/// Python's `round(x, 15)`: correctly rounded to 15 decimals (ties to even on the exact binary value),
/// which glibc's "%.15f" also gives; the decimal string is then read back correctly rounded.
func pythonRound15(_ x: Double) -> Double {
    var buffer = [CChar](repeating: 0, count: 64)
    let n = withVaList([x]) { vsnprintf(&buffer, buffer.count, "%.15f", $0) }
    precondition(n > 0 && n < buffer.count, "cannot format \(x)")
    return strtod(buffer, nil)
}

/// Pillow's FLOOR macro: `(int)floor(v)` below zero, truncation otherwise (the same for finite values).
@inline(__always)
private func pillowFloor(_ v: Double) -> Int { v < 0.0 ? Int(floor(v)) : Int(v) }

/// Pillow's BICUBIC macro (a = -1) on four samples at fraction `d`, in its evaluation order.
@inline(__always)
private func cubic(_ v1: Double, _ v2: Double, _ v3: Double, _ v4: Double, _ d: Double) -> Double {
    let p1 = v2
    let p2 = -v1 + v3
    let p3 = 2 * (v1 - v2) + v3 - v4
    let p4 = -v1 + v2 - v3 + v4
    return p1 + d * (p2 + d * (p3 + d * p4))
}

/// The same macro on UInt8 samples: C evaluates the p's in int (exact), then the polynomial in double.
@inline(__always)
private func cubic8(_ v1: UInt8, _ v2: UInt8, _ v3: UInt8, _ v4: UInt8, _ d: Double) -> Double {
    let i1 = Int(v1), i2 = Int(v2), i3 = Int(v3), i4 = Int(v4)
    let p1 = Double(i2)
    let p2 = Double(-i1 + i3)
    let p3 = Double(2 * (i1 - i2) + i3 - i4)
    let p4 = Double(-i1 + i2 - i3 + i4)
    return p1 + d * (p2 + d * (p3 + d * p4))
}

/// Pillow's bicubic_filter8 / bicubic_filter32RGB: false (pixel keeps the fill) when the point is outside.
private func bicubicSample(
    _ src: UnsafeBufferPointer<UInt8>, _ w: Int, _ h: Int, _ c: Int,
    _ xin0: Double, _ yin0: Double, _ out: inout [UInt8]
) -> Bool {
    if xin0 < 0.0 || xin0 >= Double(w) || yin0 < 0.0 || yin0 >= Double(h) { return false }
    let xin = xin0 - 0.5, yin = yin0 - 0.5
    var x = pillowFloor(xin), y = pillowFloor(yin)
    let dx = xin - Double(x), dy = yin - Double(y)
    x -= 1
    y -= 1
    @inline(__always) func xclip(_ v: Int) -> Int { v < 0 ? 0 : (v < w ? v : w - 1) }
    let x0 = xclip(x) * c, x1 = xclip(x + 1) * c, x2 = xclip(x + 2) * c, x3 = xclip(x + 3) * c
    let row0 = (y < 0 ? 0 : (y < h ? y : h - 1)) * w * c
    for b in 0..<c {
        @inline(__always) func rowValue(_ r: Int) -> Double {
            cubic8(src[r + x0 + b], src[r + x1 + b], src[r + x2 + b], src[r + x3 + b], dx)
        }
        let v1 = rowValue(row0)
        let v2 = (y + 1 >= 0 && y + 1 < h) ? rowValue((y + 1) * w * c) : v1
        let v3 = (y + 2 >= 0 && y + 2 < h) ? rowValue((y + 2) * w * c) : v2
        let v4 = (y + 3 >= 0 && y + 3 < h) ? rowValue((y + 3) * w * c) : v3
        let v = cubic(v1, v2, v3, v4, dy)
        out[b] = v <= 0.0 ? 0 : (v >= 255.0 ? 255 : UInt8(v))
    }
    return true
}

/// Pillow's bilinear_filter8 / bilinear_filter32RGB: false when the point is outside.
private func bilinearSample(
    _ src: UnsafeBufferPointer<UInt8>, _ w: Int, _ h: Int, _ c: Int,
    _ xin0: Double, _ yin0: Double, _ out: inout [UInt8]
) -> Bool {
    if xin0 < 0.0 || xin0 >= Double(w) || yin0 < 0.0 || yin0 >= Double(h) { return false }
    let xin = xin0 - 0.5, yin = yin0 - 0.5
    let x = pillowFloor(xin), y = pillowFloor(yin)
    let dx = xin - Double(x), dy = yin - Double(y)
    @inline(__always) func xclip(_ v: Int) -> Int { v < 0 ? 0 : (v < w ? v : w - 1) }
    let x0 = xclip(x) * c, x1 = xclip(x + 1) * c
    let row0 = (y < 0 ? 0 : (y < h ? y : h - 1)) * w * c
    for b in 0..<c {
        // BILINEAR(v, a, b, d) = a + (b - a) * d; on UInt8 samples (b - a) is an int.
        @inline(__always) func rowValue(_ r: Int) -> Double {
            let a = Int(src[r + x0 + b]), bb = Int(src[r + x1 + b])
            return Double(a) + Double(bb - a) * dx
        }
        let v1 = rowValue(row0)
        let v2 = (y + 1 >= 0 && y + 1 < h) ? rowValue((y + 1) * w * c) : v1
        let v = v1 + (v2 - v1) * dy
        // Pillow casts without clipping; the value is a convex combination of samples, so within 0...255.
        out[b] = UInt8(min(max(v, 0), 255))
    }
    return true
}
