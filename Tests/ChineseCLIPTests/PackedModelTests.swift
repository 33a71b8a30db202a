// fp32 inference on packed linear weights (`CLIP.pack()`, what `ChineseCLIPModel` does at load): the same features to
// the bit as the model computing on the weights as stored, no fp32 weight lost for the commands that write them back
// (convert, export, quantize) or when unpacked again, and nothing of the checkpoint's map kept.

import Checkpoints
import Foundation
import NeuralNet
import Tensors
import XCTest

@testable import ChineseCLIP
@testable import Tensors

final class PackedModelTests: XCTestCase {
    func testWeightsLetGoAreNotKeptForReuse() throws {
        // After a random initialisation the fp32 weights live in the buffer pool's memory; packed or quantized, their
        // buffers must not stay kept (the forward passes never ask for their sizes, and the pool's room is bounded).
        let config = try CLIPConfig.load(contentsOf: fixtures.appendingPathComponent("models/vit-tiny.json"))
        for int8 in [false, true] {
            let clip = CLIP(config)
            clip.initializeRandomly(seed: 1)
            if int8 { clip.quantize() } else { clip.pack() }
            XCTAssertEqual(StoragePool.keptBytes, 0, int8 ? "quantized" : "packed")
        }
    }

    func testPackedWeightsGiveTheSameFeaturesBitForBit() throws {
        let images = ["rgb.jpg", "rgba.png", "gray.png"].map { fixtures.appendingPathComponent("images/\($0)").path }
        let texts = ["皮卡丘", "一只可爱的小猫在草地上玩耍", "iPhone 15 Pro Max 手机壳"]
        for name in ["vit-tiny", "rn-tiny"] {
            let config = try CLIPConfig.load(contentsOf: fixtures.appendingPathComponent("models/\(name).json"))
            let checkpoint = fixtures.appendingPathComponent("models/\(name).pt")
            let stored = try ChineseCLIPModel(clip: CLIP.load(checkpoint: checkpoint, config: config), tokenizer: .bundled())
            let packed = try ChineseCLIPModel(checkpoint: checkpoint, config: config)
            XCTAssertEqual(packed.precision, .fp32)
            assertHeldForInference(packed) { $0.packed }
            XCTAssertEqual(try packed.encodeImageFiles(images).scalars, try stored.encodeImageFiles(images).scalars, name)
            XCTAssertEqual(packed.encodeTexts(texts).scalars, stored.encodeTexts(texts).scalars, name)
            // What convert and export write: every tensor as stored.
            let written = Dictionary(uniqueKeysWithValues: packed.clip.exportedStateDict().map { ($0.0, $0.1.tensor) })
            for (key, value) in stored.clip.exportedStateDict() {
                XCTAssertEqual(written[key]?.shape, value.tensor.shape, key)
                XCTAssertEqual(written[key]?.scalars, value.tensor.scalars, key)
            }
            // What convert and export hold while writing: the plain values back, weight by weight.
            packed.clip.unpack()
            let storedValues = Dictionary(uniqueKeysWithValues: stored.clip.linearWeights().map { ($0.0, $0.1.value) })
            for (key, p) in packed.clip.linearWeights() {
                XCTAssertNil(p.packed, key)
                XCTAssertEqual(p.value.shape, p.shape, key)
                XCTAssertEqual(p.value.scalars, storedValues[key]?.scalars, key)
            }
            XCTAssertEqual(packed.encodeTexts(texts).scalars, stored.encodeTexts(texts).scalars, "\(name) unpacked")
        }
    }
}
