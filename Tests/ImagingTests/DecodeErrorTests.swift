import Foundation
import Imaging
import TestSupport
import XCTest

final class DecodeErrorTests: XCTestCase {
    private var tempDir: URL!

    override func setUpWithError() throws {
        tempDir = FileManager.default.temporaryDirectory.appendingPathComponent("imaging-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tempDir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: tempDir)
    }

    private func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let url = tempDir.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        return url.path
    }

    /// Whether a decode failure is reported as a cut or corrupt file.
    private func isTruncatedOrCorrupt(_ reason: ImageError.Reason) -> Bool {
        switch reason {
        case .truncated, .corrupt: return true
        default: return false
        }
    }

    private func expectError(
        _ path: String, file: StaticString = #filePath, line: UInt = #line,
        _ check: (ImageError.Reason) -> Bool, mentions words: [String]
    ) {
        do {
            let image = try Image(contentsOfFile: path)
            XCTFail("decoded \(path) as \(image.mode.rawValue) \(image.width)x\(image.height); expected an error", file: file, line: line)
        } catch let error as ImageError {
            XCTAssertEqual(error.file, path, file: file, line: line)
            XCTAssertTrue(check(error.reason), "unexpected reason \(error.reason)", file: file, line: line)
            let message = error.description
            XCTAssertTrue(message.contains(path), "message does not name the file: \(message)", file: file, line: line)
            for word in words {
                XCTAssertTrue(message.contains(word), "message lacks \"\(word)\": \(message)", file: file, line: line)
            }
        } catch {
            XCTFail("unexpected error type \(error)", file: file, line: line)
        }
    }

    func testTruncatedJPEGIsAnError() throws {
        for name in ["rgb.jpg", "progressive.jpg", "gray.jpg"] {
            let bytes = [UInt8](try Data(contentsOf: fixturesURL.appendingPathComponent("images/\(name)")))
            let path = try write(Array(bytes.prefix(bytes.count * 2 / 3)), "cut-\(name)")
            expectError(
                path,
                {
                    if case .truncated = $0 { return true }; return false
                }, mentions: ["truncated"])
        }
    }

    func testJPEGCutInsideItsHeadersIsAnError() throws {
        let bytes = [UInt8](try Data(contentsOf: fixturesURL.appendingPathComponent("images/rgb.jpg")))
        let path = try write(Array(bytes.prefix(100)), "header-only.jpg")
        expectError(path, isTruncatedOrCorrupt, mentions: [])
    }

    func testTruncatedPNGAndWebPAreErrors() throws {
        for name in ["rgb.png", "palette.png", "lossy.webp", "lossless.webp"] {
            let bytes = [UInt8](try Data(contentsOf: fixturesURL.appendingPathComponent("images/\(name)")))
            let path = try write(Array(bytes.prefix(bytes.count / 2)), "cut-\(name)")
            expectError(path, isTruncatedOrCorrupt, mentions: [])
        }
    }

    func testNonImageFile() throws {
        let path = try write(Array("just some text, not pixels\n".utf8), "notes.txt")
        expectError(path, { $0 == .notAnImage }, mentions: ["not an image"])
    }

    func testUnsupportedFormatsAreNamed() throws {
        let gif = try write(Array("GIF89a".utf8) + [1, 0, 1, 0, 0, 0, 0, 0x3B], "tiny.gif")
        expectError(gif, { $0 == .unsupportedFormat("GIF") }, mentions: ["unsupported", "GIF"])
        var bmp: [UInt8] = Array("BM".utf8) + [58, 0, 0, 0, 0, 0, 0, 0, 54, 0, 0, 0]
        bmp += [40, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 24, 0] + [UInt8](repeating: 0, count: 28)
        let bmpPath = try write(bmp, "tiny.bmp")
        expectError(bmpPath, { $0 == .unsupportedFormat("BMP") }, mentions: ["unsupported", "BMP"])
        let tiff = try write([0x49, 0x49, 0x2A, 0x00, 8, 0, 0, 0], "tiny.tif")
        expectError(tiff, { $0 == .unsupportedFormat("TIFF") }, mentions: ["TIFF"])
    }

    func testMissingFile() {
        let path = tempDir.appendingPathComponent("does-not-exist.jpg").path
        expectError(path, { $0 == .fileNotFound }, mentions: ["no such file"])
    }

    func testInMemoryErrorsUseTheGivenName() {
        XCTAssertThrowsError(try Image(data: Data("hello".utf8), name: "image 42")) { error in
            XCTAssertEqual((error as? ImageError)?.file, "image 42")
            XCTAssertTrue("\(error)".contains("image 42"))
        }
    }
}

final class EncodeTests: XCTestCase {
    func testPNGRoundTripKeepsModeAndPixels() throws {
        for name in ["rgb.png", "rgba.png", "palette.png", "gray.png", "gray.jpg", "cmyk.jpg"] {
            let image = try fixtureImage(name)
            let back = try Image(data: try image.pngData(), name: name)
            let expected = image.mode == .cmyk ? image.converted(to: .rgb) : image
            XCTAssertEqual(back.mode, expected.mode, name)
            XCTAssertEqual(back.pixels, expected.pixels, name)
            if expected.mode == .palette { XCTAssertEqual(back.palette, expected.palette, name) }
        }
        let la = try fixtureImage("rgba.png").converted(to: .l)
        XCTAssertEqual(try Image(data: la.pngData()), la)
    }

    func testLosslessWebPRoundTrip() throws {
        for name in ["rgb.png", "rgba.png"] {
            let image = try fixtureImage(name)
            let back = try Image(data: try image.webpData(lossless: true))
            XCTAssertEqual(back.mode, image.mode, name)
            // libwebp's lossless mode may rewrite the colour of fully transparent pixels.
            let c = image.mode.channels
            var differing = 0
            for p in 0..<(image.width * image.height) {
                let transparent = c == 4 && image.pixels[p * 4 + 3] == 0
                for k in 0..<c where !(transparent && k < 3) && back.pixels[p * c + k] != image.pixels[p * c + k] {
                    differing += 1
                }
            }
            XCTAssertEqual(differing, 0, name)
        }
    }

    func testLossyEncodersStayClose() throws {
        // A smooth image, so the error measures the codec rather than the fixture's noise.
        let (w, h) = (96, 64)
        var px = [UInt8](repeating: 0, count: w * h * 3)
        for y in 0..<h {
            for x in 0..<w {
                px[(y * w + x) * 3] = UInt8(x * 255 / (w - 1))
                px[(y * w + x) * 3 + 1] = UInt8(y * 255 / (h - 1))
                px[(y * w + x) * 3 + 2] = UInt8((x + y) * 255 / (w + h - 2))
            }
        }
        let image = Image(width: w, height: h, mode: .rgb, pixels: px)
        for (label, data) in [("jpeg", try image.jpegData(quality: 95)), ("webp", try image.webpData(quality: 95))] {
            let back = try Image(data: data)
            XCTAssertEqual(back.mode, .rgb, label)
            XCTAssertEqual(back.width, image.width, label)
            let meanError = zip(back.pixels, image.pixels).reduce(0.0) { $0 + abs(Double($1.0) - Double($1.1)) } / Double(image.pixels.count)
            XCTAssertLessThan(meanError, 3, "\(label) mean abs error \(meanError)")
        }
        let cmyk = try fixtureImage("cmyk.jpg")
        let cmykBack = try Image(data: cmyk.jpegData(quality: 95))
        XCTAssertEqual(cmykBack.mode, .cmyk)
        let gray = try Image(data: try fixtureImage("gray.png").jpegData(quality: 90))
        XCTAssertEqual(gray.mode, .l)
    }

    func testAtomicWriteNamesTheFileOnFailure() throws {
        let image = try fixtureImage("tiny.png")
        let bad = URL(fileURLWithPath: "/nonexistent-dir-\(UUID().uuidString)/x.png")
        XCTAssertThrowsError(try image.write(to: bad, format: .png)) { error in
            XCTAssertTrue("\(error)".contains(bad.path), "\(error)")
        }
    }
}

/// Decompression bombs: a header that declares more pixels than ``Image/maxPixels`` is refused before any pixel memory
/// is taken (Pillow's `DecompressionBombError`, raised by `Image.open` above twice `MAX_IMAGE_PIXELS`).
final class PixelLimitTests: XCTestCase {
    private func fixture(_ name: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: fixturesURL.appendingPathComponent("images/\(name)")))
    }

    private func crc32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }

    /// rgb.jpg with its frame header (SOF0) declaring 50,000 × 50,000 pixels.
    private func jpegBomb() throws -> [UInt8] {
        var bytes = try fixture("rgb.jpg")
        let sof = try XCTUnwrap((0..<(bytes.count - 1)).first { bytes[$0] == 0xFF && bytes[$0 + 1] == 0xC0 })
        for (offset, value) in [(5, 50_000), (7, 50_000)] {  // height, then width, big-endian after length and precision
            bytes[sof + offset] = UInt8(value >> 8)
            bytes[sof + offset + 1] = UInt8(value & 0xFF)
        }
        return bytes
    }

    /// rgb.png with its IHDR declaring 50,000 × 50,000 pixels (CRC mended, so libpng accepts the header).
    private func pngBomb() throws -> [UInt8] {
        var bytes = try fixture("rgb.png")
        for field in [16, 20] {  // width, height after the signature, the chunk length and "IHDR"
            for i in 0..<4 { bytes[field + i] = UInt8((50_000 >> (8 * (3 - i))) & 0xFF) }
        }
        let crc = crc32(bytes[12..<29])
        for i in 0..<4 { bytes[29 + i] = UInt8((crc >> (8 * (3 - i))) & 0xFF) }
        return bytes
    }

    /// lossless.webp with its VP8L header declaring the format's largest size, 16,384 × 16,384.
    private func webpBomb() throws -> [UInt8] {
        var bytes = try fixture("lossless.webp")
        // After "VP8L", its size and the 0x2F signature: 14 bits width − 1, 14 bits height − 1, alpha, version.
        let bits = UInt32(bytes[21]) | UInt32(bytes[22]) << 8 | UInt32(bytes[23]) << 16 | UInt32(bytes[24]) << 24
        let patched = (bits & ~UInt32(0x0FFF_FFFF)) | 0x0FFF_FFFF
        for i in 0..<4 { bytes[21 + i] = UInt8((patched >> (8 * i)) & 0xFF) }
        return bytes
    }

    func testTheDefaultIsPillowsRefusalThreshold() {
        XCTAssertEqual(Image.defaultMaxPixels, 178_956_970)  // 2 × PIL.Image.MAX_IMAGE_PIXELS (89,478,485)
        XCTAssertEqual(Image.maxPixels, Image.defaultMaxPixels)
    }

    func testBombsAreRefusedFromTheirHeaders() throws {
        let before = peakResidentBytes()
        for (name, bytes, side) in [("bomb.jpg", try jpegBomb(), 50_000), ("bomb.png", try pngBomb(), 50_000), ("bomb.webp", try webpBomb(), 16_384)]
        {
            XCTAssertThrowsError(try Image(data: Data(bytes), name: name)) { error in
                guard let error = error as? ImageError else { return XCTFail("\(name): \(error)") }
                XCTAssertEqual(error.reason, .tooManyPixels(width: side, height: side, limit: Image.defaultMaxPixels), name)
                XCTAssertTrue(error.description.contains(name) && error.description.contains("--max-image-pixels"), error.description)
            }
        }
        // The smallest of these would take 0.8 GB of pixels had it been allocated.
        XCTAssertLessThan(peakResidentBytes() - before, 64 << 20, "refusing the bombs took memory")
    }

    func testTheLimitIsExactAndZeroLiftsIt() throws {
        let bytes = Data(try fixture("rgb.jpg"))
        let image = try Image(data: bytes)
        let pixels = image.width * image.height
        XCTAssertEqual(try Image(data: bytes, maxPixels: pixels), image)
        XCTAssertEqual(try Image(data: bytes, maxPixels: 0), image)
        XCTAssertThrowsError(try Image(data: bytes, name: "rgb.jpg", maxPixels: pixels - 1)) { error in
            XCTAssertEqual((error as? ImageError)?.reason, .tooManyPixels(width: image.width, height: image.height, limit: pixels - 1))
        }
        for name in ["rgb.png", "lossy.webp"] {
            let other = Data(try fixture(name))
            let decoded = try Image(data: other)
            XCTAssertThrowsError(try Image(data: other, maxPixels: decoded.width * decoded.height - 1), name)
        }
    }
}
