// Decoding JPEG (TurboJPEG), PNG (libpng's simplified API) and WebP (libwebp) into the mode Pillow's
// `Image.open` gives for the same file. Hand-written to match Pillow's plugins:
//  - JPEG: 1 component -> L, 3 -> RGB, 4 -> CMYK read with Pillow's rawmode "CMYK;I", i.e. every
//    4-component JPEG is inverted (Pillow assumes Adobe's convention unconditionally). Accurate
//    (ISLOW) IDCT and fancy upsampling, libjpeg's defaults, as Pillow uses them. EXIF orientation
//    is not applied (Image.open does not).
//  - PNG: palette stays P with the file's PLTE; grey -> L (1-bit -> "1"), grey+alpha -> LA,
//    RGB -> RGB, RGBA -> RGBA; tRNS does not change the mode. Colour-space chunks are ignored, as
//    Pillow ignores them, by stripping gAMA/cHRM/sRGB/iCCP before libpng sees them (the simplified
//    API would otherwise gamma-correct). 16-bit samples keep their high byte (Pillow's ";16B"
//    rawmodes), except 16-bit grey, which Pillow opens as "I;16" (resized in 16 bits, then clipped
//    to 255 by convert("RGB")) and we open as L from the high byte: not bit-exact for those files.
//    16-bit files with alpha come back premultiplied from libpng's linear output; we divide it out,
//    which is exact only where alpha is 0 or 65535.
//  - WebP: RGBA when the bitstream has alpha, RGB otherwise (Pillow's WebPImagePlugin).
import CPNG
import CTurboJPEG
import CWebP
import Foundation
import Synchronization

/// The process-wide pixel limit behind ``Image/maxPixels``.
private let pixelLimit = Atomic<Int>(Image.defaultMaxPixels)

extension Image {
    /// Pillow's refusal threshold: `Image.open` raises `DecompressionBombError` above twice `Image.MAX_IMAGE_PIXELS`
    /// (89,478,485), so by default we decode exactly the images the reference decodes.
    public static let defaultMaxPixels = 2 * 89_478_485

    /// The most pixels a decoded image may have, checked against the file's header before pixel memory is taken;
    /// 0 means no limit (Pillow's `MAX_IMAGE_PIXELS = None`). Process-wide, like Pillow's setting.
    public static var maxPixels: Int {
        get { pixelLimit.load(ordering: .relaxed) }
        set { pixelLimit.store(max(0, newValue), ordering: .relaxed) }
    }

    /// Throws `tooManyPixels` when a header's `width × height` exceeds `limit` (0: no limit).
    static func checkPixelCount(width: Int, height: Int, limit: Int, name: String) throws {
        guard limit > 0 else { return }
        let (count, overflow) = width.multipliedReportingOverflow(by: height)
        if overflow || count > limit { throw ImageError(file: name, reason: .tooManyPixels(width: width, height: height, limit: limit)) }
    }
}

/// Image container formats recognised by their leading bytes.
package enum ImageFormat: String, Sendable {
    /// JPEG / JFIF.
    case jpeg = "JPEG"
    /// PNG.
    case png = "PNG"
    /// WebP (RIFF container).
    case webp = "WebP"

    /// Detects a decodable format from magic bytes, or names a recognised but unsupported one.
    static func sniff(_ bytes: UnsafeRawBufferPointer) -> (ImageFormat?, unsupported: String?) {
        func starts(_ sig: [UInt8], at offset: Int = 0) -> Bool {
            guard bytes.count >= offset + sig.count else { return false }
            for (i, b) in sig.enumerated() where bytes[offset + i] != b { return false }
            return true
        }
        if starts([0xFF, 0xD8, 0xFF]) { return (.jpeg, nil) }
        if starts([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return (.png, nil) }
        if starts(Array("RIFF".utf8)) && starts(Array("WEBP".utf8), at: 8) { return (.webp, nil) }
        if starts(Array("GIF87a".utf8)) || starts(Array("GIF89a".utf8)) { return (nil, "GIF") }
        if starts(Array("BM".utf8)) && bytes.count >= 14 { return (nil, "BMP") }
        if starts([0x49, 0x49, 0x2A, 0x00]) || starts([0x4D, 0x4D, 0x00, 0x2A]) { return (nil, "TIFF") }
        if starts(Array("8BPS".utf8)) { return (nil, "PSD") }
        if starts([0x00, 0x00, 0x01, 0x00]) && bytes.count >= 6 { return (nil, "ICO") }
        if starts(Array("ftyp".utf8), at: 4) {
            let brand = bytes.count >= 12 ? String(decoding: bytes[8..<12], as: UTF8.self) : ""
            if ["avif", "avis"].contains(brand) { return (nil, "AVIF") }
            if ["heic", "heix", "hevc", "heim", "heis", "mif1", "msf1"].contains(brand) { return (nil, "HEIF") }
        }
        if starts([0xFF, 0x0A]) || starts([0x00, 0x00, 0x00, 0x0C, 0x4A, 0x58, 0x4C, 0x20]) { return (nil, "JPEG XL") }
        if starts([0x00, 0x00, 0x00, 0x0C, 0x6A, 0x50, 0x20, 0x20]) { return (nil, "JPEG 2000") }
        return (nil, nil)
    }
}

extension Image {
    /// Decodes the image file at `path` (format from its magic bytes).
    package init(contentsOfFile path: String) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw ImageError(file: path, reason: .fileNotFound)
        }
        if isDir.boolValue { throw ImageError(file: path, reason: .unreadable("is a directory")) }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe)
        } catch {
            throw ImageError(file: path, reason: .unreadable(error.localizedDescription))
        }
        try self.init(data: data, name: path)
    }

    /// Decodes the image file at `url`.
    package init(contentsOf url: URL) throws {
        try self.init(contentsOfFile: url.path)
    }

    /// Decodes encoded image bytes; `name` labels errors (a file path or an id). An image whose header declares more
    /// than `maxPixels` pixels is refused before it is decoded.
    package init(data: Data, name: String = "<memory>", maxPixels: Int = Image.maxPixels) throws {
        self = try data.withUnsafeBytes { raw -> Image in
            let (format, unsupported) = ImageFormat.sniff(raw)
            guard let format else {
                if let unsupported { throw ImageError(file: name, reason: .unsupportedFormat(unsupported)) }
                throw ImageError(file: name, reason: .notAnImage)
            }
            switch format {
            case .jpeg: return try decodeJPEG(raw, name: name, maxPixels: maxPixels)
            case .png: return try decodePNG(raw, name: name, maxPixels: maxPixels)
            case .webp: return try decodeWebP(raw, name: name, maxPixels: maxPixels)
            }
        }
    }

    /// The container format of encoded bytes, or nil if not JPEG, PNG or WebP.
    package static func format(of data: Data) -> ImageFormat? {
        data.withUnsafeBytes { ImageFormat.sniff($0).0 }
    }
}

// MARK: - JPEG

private func decodeJPEG(_ raw: UnsafeRawBufferPointer, name: String, maxPixels: Int) throws -> Image {
    guard let handle = tjInitDecompress() else {
        throw ImageError(file: name, reason: .corrupt("cannot create a TurboJPEG decompressor"))
    }
    defer { tjDestroy(handle) }
    let src = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
    let len = UInt(raw.count)
    var w: Int32 = 0, h: Int32 = 0, subsamp: Int32 = 0, colorspace: Int32 = 0
    if tjDecompressHeader3(handle, src, len, &w, &h, &subsamp, &colorspace) != 0 {
        let msg = String(cString: tjGetErrorStr2(handle))
        throw ImageError(file: name, reason: isTruncationMessage(msg) || raw.count < 128 ? .truncated(msg) : .corrupt(msg))
    }
    guard w > 0, h > 0 else {
        throw ImageError(file: name, reason: .truncated("JPEG data ends before its frame header"))
    }
    let mode: Image.Mode
    let pf: TJPF
    switch Int(colorspace) {
    case Int(TJCS_GRAY.rawValue): mode = .l; pf = TJPF_GRAY
    case Int(TJCS_CMYK.rawValue), Int(TJCS_YCCK.rawValue): mode = .cmyk; pf = TJPF_CMYK
    default: mode = .rgb; pf = TJPF_RGB
    }
    let width = Int(w), height = Int(h)
    try Image.checkPixelCount(width: width, height: height, limit: maxPixels, name: name)
    var pixels = [UInt8](repeating: 0, count: width * height * mode.channels)
    let rc = pixels.withUnsafeMutableBufferPointer { out in
        tjDecompress2(handle, src, len, out.baseAddress, w, 0, h, pf.rawValue, 0)
    }
    if rc != 0 {
        let msg = String(cString: tjGetErrorStr2(handle))
        // libjpeg reports a short file as a *warning* and pads the rest with grey; Pillow raises
        // "image file is truncated" for it, so a premature end is an error here too. Other warnings
        // (e.g. extraneous bytes before a marker) Pillow tolerates, and so do we.
        if tjGetErrorCode(handle) != Int32(TJERR_WARNING.rawValue) {
            throw ImageError(file: name, reason: isTruncationMessage(msg) ? .truncated(msg) : .corrupt(msg))
        }
        if isTruncationMessage(msg) { throw ImageError(file: name, reason: .truncated(msg)) }
    }
    if mode == .cmyk {
        // Pillow's "CMYK;I" rawmode: stored values are inverted (Adobe convention).
        for i in pixels.indices { pixels[i] = ~pixels[i] }
    }
    return Image(width: width, height: height, mode: mode, pixels: pixels)
}

private func isTruncationMessage(_ msg: String) -> Bool {
    msg.contains("Premature end") || msg.contains("premature end") || msg.contains("insufficient data")
}

// MARK: - PNG

/// The facts of a PNG stream that libpng's simplified API hides: IHDR depth/colour type and the raw PLTE.
private struct PNGHeader {
    var bitDepth = 0
    var colorType = 0
    var palette: [UInt8] = []
    /// The stream with colour-space chunks removed, when any were present.
    var stripped: [UInt8]? = nil
}

private func scanPNG(_ raw: UnsafeRawBufferPointer, name: String) throws -> PNGHeader {
    var header = PNGHeader()
    guard raw.count >= 8 + 25 else { throw ImageError(file: name, reason: .truncated("PNG shorter than its header")) }
    func u32(_ at: Int) -> Int { Int(raw[at]) << 24 | Int(raw[at + 1]) << 16 | Int(raw[at + 2]) << 8 | Int(raw[at + 3]) }
    // Chunks that make libpng's simplified reader gamma-convert samples, which Pillow never does.
    let colourSpaceChunks: Set<String> = ["gAMA", "cHRM", "sRGB", "iCCP"]
    var dropped: [Range<Int>] = []
    var at = 8
    while at + 8 <= raw.count {
        let length = u32(at)
        let type = String(decoding: raw[(at + 4)..<(at + 8)], as: UTF8.self)
        let body = at + 8
        let end = body + length + 4
        if type == "IHDR", length >= 13, body + 13 <= raw.count {
            header.bitDepth = Int(raw[body + 8])
            header.colorType = Int(raw[body + 9])
        } else if type == "PLTE", end <= raw.count {
            header.palette = Array(raw[body..<(body + min(length, 768) / 3 * 3)])
        } else if colourSpaceChunks.contains(type), end <= raw.count {
            dropped.append(at..<end)
        } else if type == "IDAT" || type == "IEND" {
            break  // colour-space chunks must precede IDAT; no need to walk the data
        }
        if length < 0 || end > raw.count { break }
        at = end
    }
    if !dropped.isEmpty {
        var out = [UInt8]()
        out.reserveCapacity(raw.count)
        var from = 0
        for r in dropped {
            out.append(contentsOf: raw[from..<r.lowerBound])
            from = r.upperBound
        }
        out.append(contentsOf: raw[from...])
        header.stripped = out
    }
    return header
}

private func pngMessage(_ image: inout png_image) -> String {
    withUnsafeBytes(of: &image.message) { buf in
        String(decoding: buf.prefix { $0 != 0 }, as: UTF8.self)
    }
}

private func decodePNG(_ raw: UnsafeRawBufferPointer, name: String, maxPixels: Int) throws -> Image {
    let header = try scanPNG(raw, name: name)
    if let stripped = header.stripped {
        return try stripped.withUnsafeBytes { try decodePNGStream($0, header: header, name: name, maxPixels: maxPixels) }
    }
    return try decodePNGStream(raw, header: header, name: name, maxPixels: maxPixels)
}

private func decodePNGStream(_ raw: UnsafeRawBufferPointer, header: PNGHeader, name: String, maxPixels: Int) throws -> Image {
    var image = png_image()
    image.version = UInt32(PNG_IMAGE_VERSION)
    defer { png_image_free(&image) }
    guard png_image_begin_read_from_memory(&image, raw.baseAddress, raw.count) != 0 else {
        let msg = pngMessage(&image)
        throw ImageError(file: name, reason: msg.contains("truncated") || msg.contains("EOF") ? .truncated(msg) : .corrupt(msg))
    }
    let width = Int(image.width), height = Int(image.height)
    try Image.checkPixelCount(width: width, height: height, limit: maxPixels, name: name)
    let hasAlphaInFile = image.format & UInt32(PNG_FORMAT_FLAG_ALPHA) != 0
    let sixteen = header.bitDepth == 16

    func fail(_ image: inout png_image) -> ImageError {
        let msg = pngMessage(&image)
        let short = msg.contains("Not enough") || msg.contains("truncated") || msg.contains("EOF") || msg.contains("end of")
        return ImageError(file: name, reason: short ? .truncated(msg) : .corrupt(msg))
    }

    if header.colorType == 3 {
        // Palette: ask for colour-map output so indices come through untouched; the colours come
        // from our own PLTE parse, because Pillow converts P->RGB with the file's palette verbatim.
        image.format = UInt32(PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_COLORMAP | (hasAlphaInFile ? PNG_FORMAT_FLAG_ALPHA : 0))
        var indices = [UInt8](repeating: 0, count: width * height)
        var colormap = [UInt8](repeating: 0, count: 256 * 4)
        let ok = indices.withUnsafeMutableBytes { px in
            colormap.withUnsafeMutableBytes { cm in
                png_image_finish_read(&image, nil, px.baseAddress, Int32(width), cm.baseAddress)
            }
        }
        guard ok != 0 else { throw fail(&image) }
        return Image(width: width, height: height, mode: .palette, pixels: indices, palette: header.palette)
    }

    // The Pillow mode, and the libpng format that yields its samples (alpha kept when the file has
    // it, so nothing is composited, then dropped if the Pillow mode has none).
    let mode: Image.Mode
    var format: UInt32
    switch header.colorType {
    case 0: mode = header.bitDepth == 1 ? .bilevel : .l; format = 0
    case 4: mode = .la; format = UInt32(PNG_FORMAT_FLAG_ALPHA)
    case 2: mode = .rgb; format = UInt32(PNG_FORMAT_FLAG_COLOR)
    case 6: mode = .rgba; format = UInt32(PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_ALPHA)
    default: throw ImageError(file: name, reason: .corrupt("PNG colour type \(header.colorType)"))
    }
    if hasAlphaInFile { format |= UInt32(PNG_FORMAT_FLAG_ALPHA) }
    // 16-bit files: linear output with the colour-space chunks gone is the identity on samples
    // (input gamma defaults to linear for 16-bit data), so we get the raw values and keep the high
    // byte as Pillow's ";16B" unpackers do. 8-bit output would round (v*255/65535) instead.
    if sixteen { format |= UInt32(PNG_FORMAT_FLAG_LINEAR) }
    image.format = format
    let fileChannels = Int(format & UInt32(PNG_FORMAT_FLAG_COLOR) != 0 ? 3 : 1) + (hasAlphaInFile ? 1 : 0)
    let bytesPerSample = sixteen ? 2 : 1
    var buffer = [UInt8](repeating: 0, count: width * height * fileChannels * bytesPerSample)
    let ok = buffer.withUnsafeMutableBytes { px in
        png_image_finish_read(&image, nil, px.baseAddress, 0, nil)
    }
    guard ok != 0 else { throw fail(&image) }

    var samples: [UInt8]
    if sixteen {
        samples = [UInt8](repeating: 0, count: width * height * fileChannels)
        buffer.withUnsafeBytes { b in
            let s = b.bindMemory(to: UInt16.self)
            if hasAlphaInFile {
                // libpng's linear output is premultiplied; undo it (exact only where alpha is 0 or max).
                let n = width * height
                for p in 0..<n {
                    let base = p * fileChannels
                    let a = UInt32(s[base + fileChannels - 1])
                    for c in 0..<(fileChannels - 1) {
                        let v = UInt32(s[base + c])
                        let straight = a == 0 ? 0 : min(65535, (v * 65535 + a / 2) / a)
                        samples[base + c] = UInt8(straight >> 8)
                    }
                    samples[base + fileChannels - 1] = UInt8(a >> 8)
                }
            } else {
                for i in 0..<samples.count { samples[i] = UInt8(s[i] >> 8) }
            }
        }
    } else {
        samples = buffer
    }
    if fileChannels != mode.channels {
        // tRNS on an L or RGB file: Pillow keeps the mode and ignores the key for RGB output.
        let c = mode.channels
        var out = [UInt8](repeating: 0, count: width * height * c)
        for p in 0..<(width * height) {
            for k in 0..<c { out[p * c + k] = samples[p * fileChannels + k] }
        }
        samples = out
    }
    return Image(width: width, height: height, mode: mode, pixels: samples)
}

// MARK: - WebP

private func decodeWebP(_ raw: UnsafeRawBufferPointer, name: String, maxPixels: Int) throws -> Image {
    let src = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
    var features = WebPBitstreamFeatures()
    let status = WebPGetFeatures(src, raw.count, &features)
    guard status == VP8_STATUS_OK else {
        throw ImageError(file: name, reason: webpReason(status))
    }
    if features.has_animation != 0 {
        throw ImageError(file: name, reason: .unsupportedFormat("animated WebP"))
    }
    let width = Int(features.width), height = Int(features.height)
    try Image.checkPixelCount(width: width, height: height, limit: maxPixels, name: name)
    let mode: Image.Mode = features.has_alpha != 0 ? .rgba : .rgb
    var pixels = [UInt8](repeating: 0, count: width * height * mode.channels)
    let stride = width * mode.channels
    let result = pixels.withUnsafeMutableBufferPointer { out -> UnsafeMutablePointer<UInt8>? in
        if mode == .rgba {
            return WebPDecodeRGBAInto(src, raw.count, out.baseAddress, out.count, Int32(stride))
        }
        return WebPDecodeRGBInto(src, raw.count, out.baseAddress, out.count, Int32(stride))
    }
    guard result != nil else {
        // The Into decoders only say "failed"; re-run the incremental decoder's verdict on why.
        var config = WebPDecoderConfig()
        _ = WebPInitDecoderConfig(&config)
        let why = WebPDecode(src, raw.count, &config)
        WebPFreeDecBuffer(&config.output)
        throw ImageError(file: name, reason: webpReason(why == VP8_STATUS_OK ? VP8_STATUS_BITSTREAM_ERROR : why))
    }
    return Image(width: width, height: height, mode: mode, pixels: pixels)
}

private func webpReason(_ status: VP8StatusCode) -> ImageError.Reason {
    switch status {
    case VP8_STATUS_NOT_ENOUGH_DATA: return .truncated("WebP data ends early")
    case VP8_STATUS_UNSUPPORTED_FEATURE: return .unsupportedFormat("WebP feature not supported by libwebp")
    case VP8_STATUS_OUT_OF_MEMORY: return .corrupt("out of memory decoding WebP")
    case VP8_STATUS_INVALID_PARAM: return .corrupt("invalid WebP parameters")
    default: return .corrupt("WebP bitstream error (status \(status.rawValue))")
    }
}
