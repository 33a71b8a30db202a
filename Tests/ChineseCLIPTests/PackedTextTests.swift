import Foundation
import Tensors
import XCTest

@testable import ChineseCLIP

/// Packed texts (each computed over its own tokens, the batch's rows in one matrix) give the bits of the padded
/// layouts: the whole context and the batch's longest text, in fp32 and on the int8 path, alone or in a batch of
/// mixed lengths, at any thread count.
final class PackedTextTests: XCTestCase {
    /// A random model wide enough that products and attention are split across threads.
    private func model(seed: UInt64 = 5) throws -> CLIP {
        var config = try CLIPConfig.load(contentsOf: fixtures.appendingPathComponent("models/vit-tiny.json"))
        config.textHiddenSize = 128
        config.textIntermediateSize = 512
        config.textNumAttentionHeads = 2
        config.textNumHiddenLayers = 3
        let clip = CLIP(config)
        clip.initializeRandomly(seed: seed)
        return clip
    }

    /// `batch` random texts padded to `context` (flat `[batch, context]`): `[CLS]`, random ids, `[SEP]`, of lengths
    /// 2...context (the first text of a batch of several fills the context, the second is `[CLS] [SEP]`, the third
    /// has a padding id inside it, which stays a masked key).
    private func randomTexts(batch: Int, context: Int = 52, seed: UInt64) -> [Int32] {
        var state = seed
        func next(_ bound: Int) -> Int {  // SplitMix64
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return Int((z ^ (z >> 31)) % UInt64(bound))
        }
        var ids = [Int32](repeating: 0, count: batch * context)
        for b in 0..<batch {
            let length = batch == 1 ? 2 + next(context - 1) : b == 0 ? context : b == 1 ? 2 : 2 + next(context - 1)
            ids[b * context] = 101
            for i in 1..<(length - 1) { ids[b * context + i] = Int32(1 + next(21_000)) }
            ids[b * context + length - 1] = 102
            if b == 2 && batch > 2 && length > 3 { ids[b * context + 1] = 0 }
        }
        return ids
    }

    /// Every layout at 1 and 2 threads, batch 1 and 32, against the whole context at one thread.
    private func assertLayoutsAgree(_ clip: CLIP, _ what: String) {
        let saved = ComputeThreads.count
        defer { ComputeThreads.set(saved) }
        for (batch, seed) in [(1, 3), (1, 4), (32, 7), (32, 8)] {
            let ids = randomTexts(batch: batch, seed: UInt64(seed))
            ComputeThreads.set(1)
            let reference = clip.textFeatures(ids, batch: batch, layout: .padded).value.scalars
            for threads in [1, 2] {
                ComputeThreads.set(threads)
                for layout in CLIP.TextLayout.allCases {
                    let features = clip.textFeatures(ids, batch: batch, layout: layout).value.scalars
                    XCTAssertEqual(
                        features.map(\.bitPattern), reference.map(\.bitPattern),
                        "\(what): \(layout) at batch \(batch) (seed \(seed)), \(threads) threads")
                }
            }
        }
    }

    func testPackedFeaturesAreThePaddedBits() throws {
        let clip = try model()
        assertLayoutsAgree(clip, "fp32")
        // The default layout is the packed one.
        let ids = randomTexts(batch: 32, seed: 9)
        XCTAssertEqual(
            clip.encodeText(ids, batch: 32).scalars.map(\.bitPattern),
            clip.textFeatures(ids, batch: 32, layout: .packed).value.scalars.map(\.bitPattern))
    }

    func testPackedFeaturesAreThePaddedBitsOnTheInt8Path() throws {
        let clip = try model(seed: 6)
        clip.quantize()
        XCTAssertTrue(clip.isQuantized)
        assertLayoutsAgree(clip, "int8")
    }

    func testATextIsTheSameBitsAloneAndPackedWithOthers() throws {
        let clip = try model()
        let ids = randomTexts(batch: 32, seed: 11)
        let batch = clip.encodeText(ids, batch: 32).scalars
        let dim = batch.count / 32
        for b in [0, 1, 2, 17, 31] {
            let alone = clip.encodeText(Array(ids[(b * 52)..<((b + 1) * 52)]), batch: 1).scalars
            XCTAssertEqual(alone.map(\.bitPattern), batch[(b * dim)..<((b + 1) * dim)].map(\.bitPattern), "text \(b)")
        }
    }

    func testTextLengths() {
        let ids: [Int32] = [101, 5, 102, 0, 0, 101, 0, 7, 102, 0, 0, 0, 0, 0, 0, 101, 1, 2, 3, 102]
        XCTAssertEqual(CLIP.textLengths(ids, batch: 4), [3, 4, 1, 5])
        XCTAssertEqual(CLIP.usedLength(ids, batch: 4), 5)
        XCTAssertEqual(CLIP.usedLength(Array(ids[10..<15]), batch: 1), 1)
    }

    func testPackedGradientsAreThePaddedOnes() throws {
        // Gradients through the packed layout (an evaluation-mode model whose parameters require them) match the
        // padded layout's; padded keys get exact-zero gradients there, so only summation order may differ.
        let clip = try model()
        clip.requireGradients()
        let ids = randomTexts(batch: 6, seed: 13)
        var gradients: [CLIP.TextLayout: [String: [Float]]] = [:]
        for layout in [CLIP.TextLayout.padded, .packed] {
            clip.zeroGrad()
            let f = clip.textFeatures(ids, batch: 6, layout: layout)
            f.backward(seed: Tensor(shape: f.shape, scalars: (0..<f.value.count).map { Float($0 % 7) - 3 }))
            gradients[layout] = Dictionary(
                uniqueKeysWithValues: clip.namedParameters().compactMap { key, p in
                    key.hasPrefix("bert.") || key == "text_projection" ? p.grad.map { (key, $0.scalars) } : nil
                })
        }
        let padded = try XCTUnwrap(gradients[.padded]), packed = try XCTUnwrap(gradients[.packed])
        XCTAssertEqual(Set(padded.keys), Set(packed.keys))
        XCTAssertTrue(padded.keys.contains("bert.embeddings.position_embeddings.weight"))
        let largest = padded.values.joined().map { abs($0) }.max() ?? 0
        for (key, expected) in padded {
            let actual = try XCTUnwrap(packed[key])
            let scale = expected.map { abs($0) }.max() ?? 0
            if key.hasSuffix("attention.self.key.bias") {
                // Zero in exact arithmetic (a softmax ignores a shift shared by a row's scores): rounding noise in both.
                XCTAssertLessThanOrEqual(max(scale, actual.map { abs($0) }.max() ?? 0), 1e-6 * largest, key)
                continue
            }
            XCTAssertGreaterThan(scale, 0, key)
            let worst = zip(actual, expected).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThanOrEqual(worst, 1e-5 * scale, key)
        }
    }

    func testTrainingKeepsThePaddedLayout() throws {
        // In training the text tower sees the whole context (dropout draws as the reference's), whatever layout is asked.
        let clip = try model()
        let ids = randomTexts(batch: 4, seed: 12)
        let padded = clip.textFeatures(ids, batch: 4, layout: .padded).value.scalars
        clip.train()
        defer { clip.eval() }
        XCTAssertEqual(clip.textFeatures(ids, batch: 4, layout: .packed).value.scalars, padded)  // dropout p = 0
    }
}
