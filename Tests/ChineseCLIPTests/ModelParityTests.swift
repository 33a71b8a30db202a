import Checkpoints
import Foundation
import Imaging
import Tensors
import TestSupport
import XCTest

@testable import ChineseCLIP

/// vit-tiny and rn-tiny features and logits against the reference (`models/NAME.expected.safetensors`, made by
/// `encode_image`, `encode_text` and `get_similarity` in cn-clip 1.6.0): max |diff| ≤ 1e-4 × max(1, max |value|).
final class ModelParityTests: XCTestCase {
    func config(_ name: String) throws -> CLIPConfig {
        try CLIPConfig.load(contentsOf: fixtures.appendingPathComponent("models/\(name).json"))
    }

    func check(_ name: String, checkpoint: String, tolerance: Float, file: StaticString = #filePath, line: UInt = #line) throws {
        let model = try CLIP.load(checkpoint: fixtures.appendingPathComponent("models/\(checkpoint)"), config: config(name))
        let expected = try loadFixture("models/\(name).expected.safetensors")
        let images = try expected.tensor("images")
        let tokens = expected["tokens"]!.integers!.map { Int32($0) }
        let imageFeatures = model.encodeImage(images)
        let textFeatures = model.encodeText(tokens, batch: expected["tokens"]!.shape[0])
        assertClose(
            imageFeatures, try expected.tensor("image_features"), tolerance: tolerance, "\(checkpoint) image_features", file: file, line: line)
        assertClose(textFeatures, try expected.tensor("text_features"), tolerance: tolerance, "\(checkpoint) text_features", file: file, line: line)
        let logits = model.similarity(imageFeatures: imageFeatures, textFeatures: textFeatures)
        assertClose(logits, try expected.tensor("logits_per_image"), tolerance: tolerance, "\(checkpoint) logits_per_image", file: file, line: line)
    }

    func testViTTinyFromTorchCheckpoint() throws { try check("vit-tiny", checkpoint: "vit-tiny.pt", tolerance: 1e-4) }
    func testResNetTinyFromTorchCheckpoint() throws { try check("rn-tiny", checkpoint: "rn-tiny.pt", tolerance: 1e-4) }
    func testViTTinyFromHuggingFaceSafetensors() throws { try check("vit-tiny", checkpoint: "vit-tiny.hf.safetensors", tolerance: 1e-4) }

    /// A checkpoint saved as the reference's training loop saves it (`model.state_dict()`: `module.` keys and the
    /// OrderedDict's `_metadata` attribute), made by scripts/reference/make_state_dict_checkpoint.py.
    func testCheckpointWithStateDictMetadata() throws {
        try check("vit-tiny", checkpoint: "../checkpoints/vit-tiny-ddp.pt", tolerance: 1e-4)
    }

    /// fp16 weights: within 5e-3 of the fp32 expectation (fixtures README).
    func testFloat16Checkpoints() throws {
        try check("vit-tiny", checkpoint: "vit-tiny.fp16.pt", tolerance: 5e-3)
        try check("rn-tiny", checkpoint: "rn-tiny.fp16.pt", tolerance: 5e-3)
    }

    /// The whole path a user takes: image files and texts in, through our decoder, resize and tokenizer.
    func testEndToEndFromFilesAndTexts() throws {
        let cfg = try config("vit-tiny")
        let model = try ChineseCLIPModel(checkpoint: fixtures.appendingPathComponent("models/vit-tiny.pt"), config: cfg)
        let inputs =
            try JSONSerialization.jsonObject(with: Data(contentsOf: fixtures.appendingPathComponent("models/vit-tiny.inputs.json"))) as! [String: Any]
        let names = inputs["image_order"] as! [String], texts = inputs["texts"] as! [String]
        let expected = try loadFixture("models/vit-tiny.expected.safetensors")
        let img = try model.encodeImageFiles(names.map { fixtures.appendingPathComponent("images/\($0)").path }, normalized: false, batchSize: 5)
        let txt = model.encodeTexts(texts, normalized: false, batchSize: 5)
        assertClose(img, try expected.tensor("image_features"), tolerance: 1e-4, "image features from files")
        assertClose(txt, try expected.tensor("text_features"), tolerance: 1e-4, "text features from strings")
        let (perImage, perText) = model.similarity(imageFeatures: img, textFeatures: txt)
        assertClose(perImage, try expected.tensor("logits_per_image"), tolerance: 1e-4, "logits_per_image")
        assertClose(perText, transposed(try expected.tensor("logits_per_image")), tolerance: 1e-4, "logits_per_text")
    }

    /// A Hugging Face directory: `config.json` + `model.safetensors`, config taken from the directory.
    func testHuggingFaceDirectory() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cnclip-hf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.copyItem(
            at: fixtures.appendingPathComponent("models/vit-tiny.hf.safetensors"),
            to: dir.appendingPathComponent("model.safetensors"))
        let hfConfig = """
            {"projection_dim": 32,
             "text_config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
                             "vocab_size": 21128, "max_position_embeddings": 512, "type_vocab_size": 2},
             "vision_config": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "patch_size": 16, "image_size": 64}}
            """
        try Data(hfConfig.utf8).write(to: dir.appendingPathComponent("config.json"))
        let model = try ChineseCLIPModel(huggingFaceDirectory: dir)
        XCTAssertEqual(model.config.visionHeadWidth, 16)
        let expected = try loadFixture("models/vit-tiny.expected.safetensors")
        assertClose(
            model.clip.encodeImage(try expected.tensor("images")), try expected.tensor("image_features"), tolerance: 1e-4, "HF dir image features")
    }
}
