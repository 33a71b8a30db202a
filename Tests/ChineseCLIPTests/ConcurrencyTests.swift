import Foundation
import Synchronization
import Tensors
import XCTest

@testable import ChineseCLIP

/// One model shared by concurrent callers gives each the same features as a lone caller.
final class ConcurrencyTests: XCTestCase {
    func testConcurrentEncodingIsSafe() throws {
        let config = try CLIPConfig.load(contentsOf: fixtures.appendingPathComponent("models/vit-tiny.json"))
        let model = try ChineseCLIPModel(checkpoint: fixtures.appendingPathComponent("models/vit-tiny.pt"), config: config)
        let paths = ["rgb.jpg", "rgba.png", "palette.png", "lossy.webp"].map { fixtures.appendingPathComponent("images/\($0)").path }
        let texts = ["皮卡丘", "一只可爱的小猫在草地上玩耍", "iPhone 15 Pro Max 手机壳"]
        let soloImages = try model.encodeImageFiles(paths).scalars
        let soloTexts = model.encodeTexts(texts).scalars
        let mismatches = Atomic(0)
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            let ok =
                i % 2 == 0
                ? (try? model.encodeImageFiles(paths).scalars) == soloImages
                : model.encodeTexts(texts).scalars == soloTexts
            if !ok { mismatches.add(1, ordering: .relaxed) }
        }
        XCTAssertEqual(mismatches.load(ordering: .relaxed), 0)
    }
}
