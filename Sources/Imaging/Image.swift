// Image: a decoded raster in one of Pillow's modes, stored interleaved as UInt8.
//
// The modes and their byte layouts mirror what Pillow's `Image.open` yields, because the reference
// resizes an image in its *own* mode before converting it to RGB: keeping the same mode is what makes
// our resize give the same bytes.
import Essentials
import Foundation

/// A decoded image: `height` rows of `width` pixels, `mode.channels` interleaved bytes per pixel.
public struct Image: Sendable, Equatable {
    /// Pixel modes, named as Pillow names them.
    public enum Mode: String, Sendable, CaseIterable {
        /// Bilevel ("1"); stored one byte per pixel as 0 or 255, as Pillow unpacks it in memory.
        case bilevel = "1"
        /// 8-bit greyscale ("L").
        case l = "L"
        /// Greyscale with straight (unpremultiplied) alpha ("LA").
        case la = "LA"
        /// 8-bit RGB.
        case rgb = "RGB"
        /// RGB with straight alpha.
        case rgba = "RGBA"
        /// CMYK with Pillow's polarity (0 = no ink).
        case cmyk = "CMYK"
        /// Palette indices into `Image.palette` ("P").
        case palette = "P"

        /// Bytes per pixel in `Image.pixels`.
        public var channels: Int {
            switch self {
            case .bilevel, .l, .palette: return 1
            case .la: return 2
            case .rgb: return 3
            case .rgba, .cmyk: return 4
            }
        }
    }

    /// Width in pixels.
    public var width: Int
    /// Height in pixels.
    public var height: Int
    /// Pixel mode.
    public var mode: Mode
    /// Row-major interleaved samples, `height * width * mode.channels` bytes.
    public var pixels: [UInt8]
    /// For `.palette` images: RGB triples (`3 * entries` bytes, at most 256 entries); nil otherwise.
    public var palette: [UInt8]?

    /// Wraps existing pixels; the buffer must hold `width * height * mode.channels` bytes.
    public init(width: Int, height: Int, mode: Mode, pixels: [UInt8], palette: [UInt8]? = nil) {
        precondition(width >= 0 && height >= 0, "negative image size")
        precondition(
            pixels.count == width * height * mode.channels,
            "pixel buffer holds \(pixels.count) bytes, \(mode.rawValue) \(width)x\(height) needs \(width * height * mode.channels)")
        precondition(mode != .palette || palette != nil, "a palette image needs a palette")
        precondition(palette == nil || (palette!.count % 3 == 0 && palette!.count <= 768), "palette must be at most 256 RGB triples")
        self.width = width
        self.height = height
        self.mode = mode
        self.pixels = pixels
        self.palette = mode == .palette ? palette : nil
    }

    /// The image's size as (width, height).
    public var size: (width: Int, height: Int) { (width, height) }
}

/// Why an image could not be read or written; `file` names the file (or the label given for in-memory bytes).
public struct ImageError: UserFacingError, Sendable, Equatable {
    /// The category of failure.
    public enum Reason: Sendable, Equatable {
        /// No file at the path.
        case fileNotFound
        /// The file exists but could not be read (permissions, a directory, I/O error).
        case unreadable(String)
        /// The bytes match no image signature we know.
        case notAnImage
        /// A recognised image format that this package does not decode (GIF, BMP, TIFF, ...).
        case unsupportedFormat(String)
        /// The data ends before the image does.
        case truncated(String)
        /// The decoder rejected the data.
        case corrupt(String)
        /// Encoding failed.
        case encodingFailed(String)
        /// The header declares more pixels than ``Image/maxPixels`` (a decompression-bomb guard, checked before any
        /// pixel memory is taken).
        case tooManyPixels(width: Int, height: Int, limit: Int)
    }

    /// The file path, or the label given for in-memory data.
    public let file: String
    /// What went wrong.
    public let reason: Reason

    /// Creates an error for `file`.
    public init(file: String, reason: Reason) {
        self.file = file
        self.reason = reason
    }

    /// A one-line message naming the file and the reason.
    public var description: String {
        switch reason {
        case .fileNotFound: return "\(file): no such file"
        case .unreadable(let why): return "\(file): cannot read file: \(why)"
        case .notAnImage: return "\(file): not an image (no JPEG, PNG or WebP signature)"
        case .unsupportedFormat(let format): return "\(file): unsupported image format \(format) (supported: JPEG, PNG, WebP)"
        case .truncated(let why): return "\(file): truncated image data: \(why)"
        case .corrupt(let why): return "\(file): corrupt image data: \(why)"
        case .encodingFailed(let why): return "\(file): cannot encode image: \(why)"
        case .tooManyPixels(let width, let height, let limit):
            return
                "\(file): \(width)×\(height) = \(width * height) pixels exceeds the limit of \(limit) (a guard against decompression bombs, as Pillow's; raise it with --max-image-pixels)"
        }
    }
}
