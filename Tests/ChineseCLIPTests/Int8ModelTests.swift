// The int8 path on whole models: the fixture models' features against their fp32 features.

import Foundation
import XCTest

@testable import ChineseCLIP

final class Int8ModelTests: XCTestCase {
    /// Cosine of each row of `a` with the same row of `b` (`[rows, dim]`).
    private func rowCosines(_ a: [Float], _ b: [Float], dim: Int) -> [Float] {
        stride(from: 0, to: a.count, by: dim).map { s in
            let x = a[s..<(s + dim)], y = b[s..<(s + dim)]
            let dot = zip(x, y).reduce(Float(0)) { $0 + $1.0 * $1.1 }
            return dot / (x.reduce(0) { $0 + $1 * $1 }.squareRoot() * y.reduce(0) { $0 + $1 * $1 }.squareRoot())
        }
    }

    func testFixtureModelsOnTheInt8Path() throws {
        let images = ["rgb.jpg", "rgba.png", "palette.png", "lossy.webp", "gray.png"].map { fixtures.appendingPathComponent("images/\($0)").path }
        let texts = ["皮卡丘", "一只可爱的小猫在草地上玩耍", "iPhone 15 Pro Max 手机壳", "红色的圆形"]
        for name in ["vit-tiny", "rn-tiny"] {
            let config = try CLIPConfig.load(contentsOf: fixtures.appendingPathComponent("models/\(name).json"))
            let checkpoint = fixtures.appendingPathComponent("models/\(name).pt")
            let fp32 = try ChineseCLIPModel(checkpoint: checkpoint, config: config)
            let int8 = try ChineseCLIPModel(checkpoint: checkpoint, config: config)
            int8.clip.quantizeLinearLayers()
            let dim = config.embedDim
            let imageCos = rowCosines(try fp32.encodeImageFiles(images).scalars, try int8.encodeImageFiles(images).scalars, dim: dim)
            let textCos = rowCosines(fp32.encodeTexts(texts).scalars, int8.encodeTexts(texts).scalars, dim: dim)
            print("\(name) int8 vs fp32 cosines: images \(imageCos), texts \(textCos)")
            for c in imageCos + textCos { XCTAssertGreaterThanOrEqual(c, 0.999, "\(name): the issue's gate") }
        }
    }
}
