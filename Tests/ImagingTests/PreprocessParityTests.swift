import Foundation
import Imaging
import XCTest

/// `Tests/Fixtures`, found from this file's path.
let fixturesURL: URL = {
    var url = URL(fileURLWithPath: #filePath)
    while url.path != "/" {
        url.deleteLastPathComponent()
        let candidate = url.appendingPathComponent("Tests/Fixtures")
        if FileManager.default.fileExists(atPath: candidate.path) { return candidate }
        if url.lastPathComponent == "Tests", FileManager.default.fileExists(atPath: url.appendingPathComponent("Fixtures").path) {
            return url.appendingPathComponent("Fixtures")
        }
    }
    fatalError("Tests/Fixtures not found above \(#filePath)")
}()

let fixtureImageNames: [String] = {
    let dir = fixturesURL.appendingPathComponent("images")
    return ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).sorted()
}()

func fixtureImage(_ name: String) throws -> Image {
    try Image(contentsOfFile: fixturesURL.appendingPathComponent("images").appendingPathComponent(name).path)
}

final class PreprocessParityTests: XCTestCase {
    static let expected: [String: TestTensor] = {
        do {
            return try readSafetensors(fixturesURL.appendingPathComponent("preprocess/expected.safetensors"))
        } catch {
            fatalError("cannot read preprocess/expected.safetensors: \(error)")
        }
    }()

    func testAllThirteenFixtureImagesArePresent() {
        XCTAssertEqual(fixtureImageNames.count, 13, "fixture images: \(fixtureImageNames)")
    }

    /// The modes Pillow's Image.open gives these files (the resize happens in that mode).
    func testDecodedModesMatchPillow() throws {
        let modes: [String: Image.Mode] = [
            "rgb.jpg": .rgb, "progressive.jpg": .rgb, "gray.jpg": .l, "cmyk.jpg": .cmyk, "big.jpg": .rgb,
            "rgb.png": .rgb, "rgba.png": .rgba, "palette.png": .palette, "gray.png": .l, "tiny.png": .rgb,
            "wide.png": .rgb, "lossy.webp": .rgb, "lossless.webp": .rgb,
        ]
        for name in fixtureImageNames {
            let image = try fixtureImage(name)
            XCTAssertEqual(image.mode, modes[name], "\(name) opened as \(image.mode.rawValue)")
            XCTAssertEqual(image.pixels.count, image.width * image.height * image.mode.channels)
        }
        let palette = try fixtureImage("palette.png")
        XCTAssertLessThanOrEqual(palette.palette!.count, 64 * 3, "ADAPTIVE palette of 64 colours")
    }

    private func compareUInt8(resolution: Int) throws {
        var failures: [String] = []
        for name in fixtureImageNames {
            let key = "\(name)@\(resolution).uint8"
            guard let expected = Self.expected[key] else { failures.append("\(key): missing from fixture"); continue }
            XCTAssertEqual(expected.shape, [resolution, resolution, 3], key)
            let want = expected.uint8
            let got = try fixtureImage(name).resizedRGB(resolution: resolution).pixels
            guard got.count == want.count else { failures.append("\(key): size \(got.count) vs \(want.count)"); continue }
            var mismatches = 0, first: Int? = nil, maxDiff = 0
            for i in 0..<want.count where want[i] != got[i] {
                mismatches += 1
                if first == nil { first = i }
                maxDiff = max(maxDiff, abs(Int(want[i]) - Int(got[i])))
            }
            if let first {
                let p = first / 3, y = p / resolution, x = p % resolution
                let w = Array(want[(p * 3)..<(p * 3 + 3)]), g = Array(got[(p * 3)..<(p * 3 + 3)])
                failures.append(
                    "\(key): \(mismatches) of \(want.count) samples differ (max |diff| \(maxDiff)); first at (x \(x), y \(y)) channel \(first % 3): expected RGB \(w), got \(g)"
                )
            }
        }
        if !failures.isEmpty {
            XCTFail("resized uint8 images differ from the reference:\n" + failures.joined(separator: "\n"))
        }
    }

    func testResizedUInt8MatchesReferenceAt224() throws { try compareUInt8(resolution: 224) }

    func testResizedUInt8MatchesReferenceAt64() throws { try compareUInt8(resolution: 64) }

    func testNormalizedTensorMatchesReferenceAt64() throws {
        var failures: [String] = []
        for name in fixtureImageNames {
            let key = "\(name)@64.tensor"
            guard let expected = Self.expected[key] else { failures.append("\(key): missing from fixture"); continue }
            XCTAssertEqual(expected.shape, [3, 64, 64], key)
            let want = expected.float32
            let got = try fixtureImage(name).preprocess(resolution: 64)
            XCTAssertEqual(got.count, want.count, key)
            var worst = 0 as Float, worstAt = 0, over = 0
            for i in 0..<min(got.count, want.count) {
                let d = abs(got[i] - want[i])
                if d > 1e-6 { over += 1 }
                if d > worst { worst = d; worstAt = i }
            }
            if over > 0 {
                let c = worstAt / 4096, y = (worstAt % 4096) / 64, x = worstAt % 64
                failures.append(
                    "\(key): \(over) values off by more than 1e-6; worst at [c \(c), y \(y), x \(x)]: expected \(want[worstAt]), got \(got[worstAt])")
            }
        }
        if !failures.isEmpty { XCTFail(failures.joined(separator: "\n")) }
    }

    func testBatchIsConcatenationOfSingles() throws {
        let images = try ["rgb.jpg", "palette.png", "rgba.png"].map(fixtureImage)
        let batch = Image.preprocessBatch(images, resolution: 32)
        XCTAssertEqual(batch.count, 3 * 3 * 32 * 32)
        let singles = images.flatMap { $0.preprocess(resolution: 32) }
        XCTAssertEqual(batch, singles)
    }

    /// A resize that changes only one dimension takes Pillow's one-pass shortcut; check it against
    /// the two-pass result of the same coefficients (the skipped pass is the identity there).
    func testSinglePassResizesKeepTheOtherAxis() throws {
        let image = try fixtureImage("tiny.png")
        let wider = image.resized(to: (20, image.height))
        XCTAssertEqual(wider.height, image.height)
        XCTAssertEqual(wider.width, 20)
        let same = image.resized(to: (image.width, image.height))
        XCTAssertEqual(same, image)
    }

    func testResizeTiming1024x768To224() throws {
        let image = try fixtureImage("big.jpg")
        XCTAssertEqual(image.width, 1024)
        XCTAssertEqual(image.height, 768)
        var times: [Double] = []
        var sink = 0
        for _ in 0..<15 {
            let start = DispatchTime.now().uptimeNanoseconds
            let out = image.resized(to: (224, 224))
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
            sink &+= Int(out.pixels[0])
        }
        times.sort()
        print(
            "resize 1024x768 RGB -> 224x224 bicubic: median \(String(format: "%.2f", times[times.count / 2])) ms, best \(String(format: "%.2f", times[0])) ms (sink \(sink))"
        )
        let pre = DispatchTime.now().uptimeNanoseconds
        _ = image.preprocess(resolution: 224)
        print("preprocess(resolution: 224) on 1024x768: \(String(format: "%.2f", Double(DispatchTime.now().uptimeNanoseconds - pre) / 1e6)) ms")
    }
}

final class ModeRuleTests: XCTestCase {
    /// Pillow resizes La with the same per-band arithmetic as RGBa, so LA(l, a) must resize like RGBA(l, l, l, a).
    func testLAResizesLikeGreyRGBA() throws {
        let rgba = try fixtureImage("rgba.png")
        let la = rgba.converted(to: .l)
        var laPixels = [UInt8](repeating: 0, count: la.width * la.height * 2)
        var greyRGBA = [UInt8](repeating: 0, count: la.width * la.height * 4)
        for p in 0..<(la.width * la.height) {
            let a = rgba.pixels[p * 4 + 3]
            laPixels[p * 2] = la.pixels[p]; laPixels[p * 2 + 1] = a
            greyRGBA[p * 4] = la.pixels[p]; greyRGBA[p * 4 + 1] = la.pixels[p]; greyRGBA[p * 4 + 2] = la.pixels[p]; greyRGBA[p * 4 + 3] = a
        }
        let laImage = Image(width: la.width, height: la.height, mode: .la, pixels: laPixels)
        let rgbaImage = Image(width: la.width, height: la.height, mode: .rgba, pixels: greyRGBA)
        for size in [(64, 64), (300, 100), (240, 17)] {
            let a = laImage.resized(to: size), b = rgbaImage.resized(to: size)
            XCTAssertEqual(a.converted(to: .rgb).pixels, b.converted(to: .rgb).pixels, "\(size)")
        }
    }

    /// "1" and "P" images ignore the requested filter and use nearest neighbour, keeping their mode and palette.
    func testPaletteAndBilevelUseNearest() throws {
        let palette = try fixtureImage("palette.png")
        let resized = palette.resized(to: (37, 211), filter: .lanczos)
        XCTAssertEqual(resized.mode, .palette)
        XCTAssertEqual(resized.palette, palette.palette)
        XCTAssertEqual(resized, palette.resized(to: (37, 211), filter: .nearest))
        XCTAssertTrue(Set(resized.pixels).isSubset(of: Set(palette.pixels)))
        let bilevel = Image(width: 3, height: 2, mode: .bilevel, pixels: [0, 255, 0, 255, 255, 0])
        let big = bilevel.resized(to: (6, 4), filter: .bicubic)
        XCTAssertEqual(big.pixels, [0, 0, 255, 255, 0, 0, 0, 0, 255, 255, 0, 0, 255, 255, 255, 255, 0, 0, 255, 255, 255, 255, 0, 0])
    }
}
