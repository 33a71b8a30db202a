import Foundation
import Tensors
import XCTest

@testable import ChineseCLIP

/// Text features computed only up to the batch's longest text (the trimmed layout) are the bits of the full
/// context: padding is masked, and every kernel rounds a row the same whatever the other rows. And a text's
/// features (the default, packed layout; `PackedTextTests`) do not depend on the batch it is encoded in or on the
/// thread count.
final class TextTrimmingTests: XCTestCase {
    /// A random model wide enough that products are split across threads (`--threads`).
    private func model() throws -> ChineseCLIPModel {
        var config = try CLIPConfig.load(contentsOf: fixtures.appendingPathComponent("models/vit-tiny.json"))
        config.textHiddenSize = 128
        config.textIntermediateSize = 512
        config.textNumAttentionHeads = 2
        let clip = CLIP(config)
        clip.initializeRandomly(seed: 11)
        return try ChineseCLIPModel(clip: clip, tokenizer: ChineseCLIPModel.bundledTokenizer())
    }

    private let texts = ["皮卡丘", "一只可爱的小猫在草地上玩耍", "iPhone 15 Pro Max 手机壳", "北京", "春天的西湖边，游人如织，柳树发芽了"]

    func testTrimmedFeaturesAreTheFullContextBits() throws {
        let m = try model()
        let ids = m.tokenize(texts, contextLength: 52)
        XCTAssertEqual(CLIP.usedLength(ids, batch: texts.count), 19)  // the longest: 17 characters + [CLS] + [SEP]
        let trimmed = m.clip.textFeatures(ids, batch: texts.count, layout: .trimmed).value.scalars
        let full = m.clip.textFeatures(ids, batch: texts.count, layout: .padded).value.scalars
        XCTAssertEqual(trimmed, full)
    }

    func testATextsFeaturesDoNotDependOnItsBatchOrTheThreadCount() throws {
        let m = try model()
        let saved = ComputeThreads.count
        defer { ComputeThreads.set(saved) }
        ComputeThreads.set(2)
        let batch = m.encodeTexts(texts, normalized: false).scalars
        let dim = batch.count / texts.count
        for (i, text) in texts.enumerated() {
            XCTAssertEqual(m.encodeTexts([text], normalized: false).scalars, Array(batch[(i * dim)..<((i + 1) * dim)]), text)
        }
        let reversed = m.encodeTexts(texts.reversed(), normalized: false).scalars
        for i in texts.indices {
            let j = texts.count - 1 - i
            XCTAssertEqual(Array(reversed[(j * dim)..<((j + 1) * dim)]), Array(batch[(i * dim)..<((i + 1) * dim)]))
        }
        for threads in [1, 3] {
            ComputeThreads.set(threads)
            XCTAssertEqual(m.encodeTexts(texts, normalized: false).scalars, batch, "\(threads) threads")
        }
    }
}
