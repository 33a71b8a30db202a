// Encoders for thumbnails and dataset building: JPEG (TurboJPEG), PNG (libpng simplified API) and
// WebP (libwebp). Each writes what our decoder (and Pillow) read back in the same mode where the
// format allows it; CMYK JPEGs are written inverted, the Adobe convention Pillow reads and writes.
import CPNG
import CTurboJPEG
import CWebP
import Essentials
import Foundation

extension Image {
    /// Encodes as baseline JPEG at `quality` (1...100), 4:2:0 chroma like Pillow's default; alpha and palettes are flattened to RGB.
    package func jpegData(quality: Int = 75) throws -> Data {
        precondition((1...100).contains(quality), "JPEG quality must be in 1...100")
        var source = self
        switch mode {
        case .l, .rgb, .cmyk: break
        case .bilevel, .la: source = converted(to: .l)
        case .rgba, .palette: source = converted(to: .rgb)
        }
        let pf: TJPF, subsamp: TJSAMP
        switch source.mode {
        case .l: pf = TJPF_GRAY; subsamp = TJSAMP_GRAY
        case .cmyk:
            pf = TJPF_CMYK; subsamp = TJSAMP_444
            source.pixels = source.pixels.map { ~$0 }
        default: pf = TJPF_RGB; subsamp = TJSAMP_420
        }
        guard let handle = tjInitCompress() else { throw ImageError(file: "<jpeg>", reason: .encodingFailed("cannot create a TurboJPEG compressor")) }
        defer { tjDestroy(handle) }
        var out: UnsafeMutablePointer<UInt8>? = nil
        var size: UInt = 0
        let rc = source.pixels.withUnsafeBufferPointer { px in
            tjCompress2(
                handle, px.baseAddress, Int32(width), 0, Int32(height), Int32(pf.rawValue),
                &out, &size, Int32(subsamp.rawValue), Int32(quality), 0)
        }
        defer { if let out { tjFree(out) } }
        guard rc == 0, let out else {
            throw ImageError(file: "<jpeg>", reason: .encodingFailed(String(cString: tjGetErrorStr2(handle))))
        }
        return Data(bytes: out, count: Int(size))
    }

    /// Encodes as 8-bit PNG in the image's own mode (P keeps its palette; "1" is written as L, CMYK as RGB).
    package func pngData() throws -> Data {
        var source = self
        if mode == .bilevel { source = converted(to: .l) }
        if mode == .cmyk { source = converted(to: .rgb) }
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        image.width = UInt32(width)
        image.height = UInt32(height)
        var colormap: [UInt8]? = nil
        switch source.mode {
        case .l: image.format = 0
        case .la: image.format = UInt32(PNG_FORMAT_FLAG_ALPHA)
        case .rgb: image.format = UInt32(PNG_FORMAT_FLAG_COLOR)
        case .rgba: image.format = UInt32(PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_ALPHA)
        case .palette:
            image.format = UInt32(PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_COLORMAP)
            var table = source.palette ?? []
            let used = Int(source.pixels.max() ?? 0) + 1
            if table.count < used * 3 { table += [UInt8](repeating: 0, count: used * 3 - table.count) }
            image.colormap_entries = UInt32(table.count / 3)
            colormap = table
        case .bilevel, .cmyk: preconditionFailure("converted above")
        }
        defer { png_image_free(&image) }
        var size: png_alloc_size_t = 0
        let stride = Int32(width * source.mode.channels)
        func write(_ memory: UnsafeMutableRawPointer?) -> Int32 {
            source.pixels.withUnsafeBytes { px in
                if let colormap {
                    return colormap.withUnsafeBytes { cm in
                        png_image_write_to_memory(&image, memory, &size, 0, px.baseAddress, stride, cm.baseAddress)
                    }
                }
                return png_image_write_to_memory(&image, memory, &size, 0, px.baseAddress, stride, nil)
            }
        }
        // The first call only measures; the second writes into a buffer of that size.
        guard write(nil) != 0 else { throw ImageError(file: "<png>", reason: .encodingFailed(pngMessageText(&image))) }
        var data = Data(count: Int(size))
        let ok = data.withUnsafeMutableBytes { write($0.baseAddress) }
        guard ok != 0 else { throw ImageError(file: "<png>", reason: .encodingFailed(pngMessageText(&image))) }
        data.count = Int(size)
        return data
    }

    /// Encodes as WebP, lossy at `quality` (0...100) or lossless; RGBA/LA keep alpha, other modes are written as RGB.
    package func webpData(quality: Float = 80, lossless: Bool = false) throws -> Data {
        let withAlpha = mode == .rgba || mode == .la
        let source = converted(to: withAlpha ? .rgba : .rgb)
        var out: UnsafeMutablePointer<UInt8>? = nil
        let stride = Int32(width * source.mode.channels)
        let size = source.pixels.withUnsafeBufferPointer { px -> Int in
            let w = Int32(width), h = Int32(height)
            switch (withAlpha, lossless) {
            case (true, true): return WebPEncodeLosslessRGBA(px.baseAddress, w, h, stride, &out)
            case (true, false): return WebPEncodeRGBA(px.baseAddress, w, h, stride, quality, &out)
            case (false, true): return WebPEncodeLosslessRGB(px.baseAddress, w, h, stride, &out)
            case (false, false): return WebPEncodeRGB(px.baseAddress, w, h, stride, quality, &out)
            }
        }
        defer { if let out { WebPFree(out) } }
        guard size > 0, let out else { throw ImageError(file: "<webp>", reason: .encodingFailed("libwebp returned no data")) }
        return Data(bytes: out, count: size)
    }

    /// Encodes in `format` (JPEG and WebP at `quality`) and writes the file atomically (temporary file, then rename).
    package func write(to url: URL, format: ImageFormat, quality: Int = 90) throws {
        let data: Data
        do {
            switch format {
            case .jpeg: data = try jpegData(quality: quality)
            case .png: data = try pngData()
            case .webp: data = try webpData(quality: Float(quality))
            }
        } catch let error as ImageError {
            throw ImageError(file: url.path, reason: error.reason)
        }
        do {
            try AtomicOutput.write(path: url.path) { try $0.write(data) }
        } catch let error as FileError {
            throw ImageError(file: url.path, reason: .encodingFailed(error.reason))
        }
    }
}

private func pngMessageText(_ image: inout png_image) -> String {
    withUnsafeBytes(of: &image.message) { buf in
        String(decoding: buf.prefix { $0 != 0 }, as: UTF8.self)
    }
}
