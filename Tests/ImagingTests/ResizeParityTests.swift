// Golden resize cases from Pillow 13 (Tests/Fixtures/resize, made by
// scripts/reference/make_resize_fixtures.py): each source is resized with `resized(to:)` (BICUBIC,
// or NEAREST for P), converted to RGB, and must equal Pillow's bytes exactly. The cases include both
// sides of Pillow 13's vertical-first boundary (see `verticalFirst` in Sources/Imaging/Resample.swift).
import Foundation
import Imaging
import XCTest

final class ResizeParityTests: XCTestCase {
    struct Case: Decodable {
        var name: String
        var mode: String
        var src: [Int]
        var dst: [Int]
        var order: String
        var palette: [Int]?
    }

    struct Cases: Decodable {
        var pillow: String
        var cases: [Case]
    }

    static let directory = fixturesURL.appendingPathComponent("resize")

    func loadCases() throws -> Cases {
        try JSONDecoder().decode(Cases.self, from: Data(contentsOf: Self.directory.appendingPathComponent("cases.json")))
    }

    func testFixtureCoversBothPassOrdersAndAllModes() throws {
        let cases = try loadCases()
        XCTAssertTrue(cases.pillow.hasPrefix("13."), "fixture made with Pillow \(cases.pillow)")
        XCTAssertGreaterThanOrEqual(cases.cases.count, 50)
        let orders = Set(cases.cases.map(\.order)), modes = Set(cases.cases.map(\.mode))
        XCTAssertTrue(orders.isSuperset(of: ["H", "V"]), "orders: \(orders)")
        XCTAssertEqual(modes, ["L", "RGB", "RGBA", "LA", "CMYK", "P"])
    }

    func testEveryCaseMatchesPillowExactly() throws {
        let cases = try loadCases().cases
        let tensors = try readSafetensors(Self.directory.appendingPathComponent("expected.safetensors"))
        var failures: [String] = []
        for c in cases {
            guard let mode = Image.Mode(rawValue: c.mode) else { failures.append("\(c.name): unknown mode \(c.mode)"); continue }
            guard let srcT = tensors["\(c.name).src"], let outT = tensors["\(c.name).out"] else {
                failures.append("\(c.name): missing from expected.safetensors"); continue
            }
            let (w, h, W, H) = (c.src[0], c.src[1], c.dst[0], c.dst[1])
            XCTAssertEqual(srcT.shape, [h, w, mode.channels], c.name)
            XCTAssertEqual(outT.shape, [H, W, 3], c.name)
            let image = Image(width: w, height: h, mode: mode, pixels: srcT.uint8, palette: c.palette.map { $0.map(UInt8.init) })
            let resized = image.resized(to: (W, H))
            XCTAssertEqual(resized.mode, mode, c.name)
            let got = resized.converted(to: .rgb).pixels
            let want = outT.uint8
            let label = "\(c.name) (\(c.mode) \(w)x\(h) -> \(W)x\(H), Pillow order \(c.order))"
            guard got.count == want.count else { failures.append("\(label): \(got.count) bytes, expected \(want.count)"); continue }
            var mismatches = 0, first: Int? = nil
            for i in 0..<want.count where want[i] != got[i] {
                mismatches += 1
                if first == nil { first = i }
            }
            if let first {
                let p = first / 3
                failures.append(
                    "\(label): \(mismatches) of \(want.count) samples differ; first at (x \(p % W), y \(p / W)) channel \(first % 3): expected \(want[first]), got \(got[first])"
                )
            }
        }
        if !failures.isEmpty {
            XCTFail("\(failures.count) of \(cases.count) resize cases differ from Pillow:\n" + failures.joined(separator: "\n"))
        }
    }
}
