import Checkpoints
import Foundation
import Tensors
import XCTest

@testable import ChineseCLIP

/// Bad checkpoints, configs and names give errors that name the file and the key or name at fault.
final class LoadingErrorTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("cnclip-err-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func vitConfig() throws -> CLIPConfig { try CLIPConfig.load(contentsOf: fixtures.appendingPathComponent("models/vit-tiny.json")) }

    /// Writes the vit-tiny weights, changed by `edit`, as a safetensors file.
    func writeEdited(_ edit: (inout [String: Tensor]) -> Void) throws -> URL {
        var sd: [String: Tensor] = [:]
        for (k, v) in try loadStateDict(fixtures.appendingPathComponent("models/vit-tiny.pt")) { sd[k] = v.tensor }
        edit(&sd)
        let url = dir.appendingPathComponent("edited.safetensors")
        try SafeTensors.write(sd, to: url)
        return url
    }

    func assertError(_ body: @autoclosure () throws -> Any, contains parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            let message = "\(error)"
            for p in parts { XCTAssertTrue(message.contains(p), "'\(message)' should mention '\(p)'", file: file, line: line) }
        }
    }

    func testMissingKey() throws {
        let url = try writeEdited { $0["visual.ln_post.bias"] = nil }
        assertError(try CLIP.load(checkpoint: url, config: vitConfig()), contains: [url.path, "missing key 'visual.ln_post.bias'"])
    }

    func testExtraKey() throws {
        let url = try writeEdited { $0["visual.extra.weight"] = Tensor(shape: [2]) }
        assertError(try CLIP.load(checkpoint: url, config: vitConfig()), contains: [url.path, "unexpected key 'visual.extra.weight'"])
    }

    func testMisShapedKey() throws {
        let url = try writeEdited { $0["text_projection"] = Tensor(shape: [32, 16]) }
        assertError(try CLIP.load(checkpoint: url, config: vitConfig()), contains: [url.path, "'text_projection'", "[32, 16]", "[32, 32]"])
    }

    func testCheckpointOfAnotherModel() throws {
        let url = fixtures.appendingPathComponent("models/rn-tiny.pt")
        assertError(try CLIP.load(checkpoint: url, config: vitConfig()), contains: [url.path, "key 'visual."])
    }

    func testMissingCheckpoint() throws {
        let url = dir.appendingPathComponent("nope.pt")
        assertError(try CLIP.load(checkpoint: url, config: vitConfig()), contains: [url.path, "no such file"])
    }

    func testNotACheckpoint() throws {
        let url = dir.appendingPathComponent("notes.pt")
        try Data("just some text".utf8).write(to: url)
        assertError(try CLIP.load(checkpoint: url, config: vitConfig()), contains: [url.path])
    }

    func testUnknownModelNames() {
        assertError(try ModelPresets.config(vision: "ViT-X-99", text: "RBT3-chinese"), contains: ["ViT-X-99", "ViT-B-16"])
        assertError(try ModelPresets.config(vision: "ViT-B-16", text: "GPT"), contains: ["GPT", "RBT3-chinese"])
        assertError(try ModelPresets.config(named: "ViT-B-16-RoBERTa"), contains: ["ViT-B-16-RoBERTa", "VISION@TEXT"])
        assertError(try ChineseCLIPModel(released: "ViT-Q", cacheDirectory: dir), contains: ["ViT-Q", "RN50"])
    }

    func testReleasedModelNotDownloaded() {
        assertError(try ChineseCLIPModel(released: "RN50", cacheDirectory: dir), contains: ["clip_cn_rn50.pt", "cnclip download RN50"])
    }

    func testBadConfigNamesKey() throws {
        let url = dir.appendingPathComponent("cfg.json")
        try Data(#"{"embed_dim": 32, "image_resolution": 64}"#.utf8).write(to: url)
        assertError(try CLIPConfig.load(contentsOf: url), contains: [url.path, "vision_layers"])
    }

    func testMissingVocabulary() throws {
        let vocab = dir.appendingPathComponent("vocab.txt").path
        assertError(
            try ChineseCLIPModel(
                checkpoint: fixtures.appendingPathComponent("models/vit-tiny.pt"), config: vitConfig(),
                vocabularyPath: vocab), contains: [vocab])
    }

    func testPresetsMatchReference() throws {
        // The nine reference model_configs, combined as the released pairs.
        let b16 = try ModelPresets.config(named: "ViT-B-16")
        XCTAssertEqual(b16.visionLayers, .transformer(12)); XCTAssertEqual(b16.visionWidth, 768); XCTAssertEqual(b16.textNumHiddenLayers, 12)
        let h14 = try ModelPresets.config(named: "ViT-H-14")
        XCTAssertEqual(h14.visionHeadWidth, 80); XCTAssertEqual(h14.textHiddenSize, 1024); XCTAssertEqual(h14.embedDim, 1024)
        let rn = try ModelPresets.config(named: "RN50")
        XCTAssertEqual(rn.visionLayers, .resnet([3, 4, 6, 3])); XCTAssertEqual(rn.textNumHiddenLayers, 3)
        XCTAssertEqual(try ModelPresets.config(named: "ViT-L-14-336").imageResolution, 336)
        // RN50.json in the reference writes vision_layers as a string.
        let json =
            #"{"embed_dim":1024,"image_resolution":224,"vision_layers":"[3,4,6,3]","vision_width":64,"vision_patch_size":null,"vocab_size":21128,"text_attention_probs_dropout_prob":0.1,"text_hidden_act":"gelu","text_hidden_dropout_prob":0.1,"text_hidden_size":768,"text_initializer_range":0.02,"text_intermediate_size":3072,"text_max_position_embeddings":512,"text_num_attention_heads":12,"text_num_hidden_layers":3,"text_type_vocab_size":2}"#
        XCTAssertEqual(try JSONDecoder().decode(CLIPConfig.self, from: Data(json.utf8)), rn)
        // Every preset pair builds a model whose parameter count is positive and whose names are unique.
        for v in ModelPresets.vision.keys where v != "ViT-H-14" && v != "ViT-L-14" && v != "ViT-L-14-336" {
            let m = CLIP(try ModelPresets.config(vision: v, text: "RBT3-chinese"))
            let names = m.namedParameters().map(\.0)
            XCTAssertEqual(Set(names).count, names.count, v)
        }
    }
}

/// Configs whose sizes cannot build a model, or would size allocations no checkpoint fills, are refused before the
/// model is built (the reference raises on most of them in `CLIP.__init__`; a hostile file must not crash us).
final class ConfigSizeTests: XCTestCase {
    private func edited(_ edit: (inout [String: Any]) -> Void) throws -> URL {
        let data = try Data(contentsOf: fixtures.appendingPathComponent("models/vit-tiny.json"))
        var json = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        edit(&json)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("cnclip-config-\(UUID().uuidString).json")
        try JSONSerialization.data(withJSONObject: json).write(to: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    private func assertRefused(_ edit: (inout [String: Any]) -> Void, mentions words: [String], line: UInt = #line) throws {
        let url = try edited(edit)
        XCTAssertThrowsError(try CLIPConfig.load(contentsOf: url), line: line) { error in
            let message = "\(error)"
            for word in [url.path] + words { XCTAssertTrue(message.contains(word), "'\(message)' should mention '\(word)'", line: line) }
        }
    }

    func testSizesThatBuildNoModelAreRefused() throws {
        try assertRefused({ $0["text_num_attention_heads"] = 0 }, mentions: ["text_num_attention_heads is 0"])
        try assertRefused({ $0["text_num_attention_heads"] = 5 }, mentions: ["not divisible by text_num_attention_heads 5"])
        try assertRefused({ $0["vision_width"] = -64 }, mentions: ["vision_width is -64"])
        try assertRefused({ $0["vision_patch_size"] = 0 }, mentions: ["vision_patch_size 0"])
        try assertRefused({ $0["vision_head_width"] = 128 }, mentions: ["vision_width 64 does not split"])
        try assertRefused({ $0["vocab_size"] = 1 << 40 }, mentions: ["a size above"])
        try assertRefused(
            {
                $0["text_num_hidden_layers"] = 1 << 30; $0["text_hidden_size"] = 4096
            }, mentions: ["20 billion"])
        XCTAssertNil(try CLIPConfig.load(contentsOf: try edited { _ in }).sizeProblem)
    }

    /// A valid config far larger than the checkpoint: refused from the file's size, not after allocating the model.
    func testAConfigLargerThanItsCheckpointIsRefusedBeforeBuilding() throws {
        let config = try CLIPConfig.load(
            contentsOf: try edited {
                $0["vision_width"] = 4096; $0["vision_layers"] = 32
            })
        let checkpoint = fixtures.appendingPathComponent("models/vit-tiny.pt")
        XCTAssertThrowsError(try CLIP.load(checkpoint: checkpoint, config: config)) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains(checkpoint.path) && message.contains("more than the checkpoint's"), message)
        }
    }

    /// A vocabulary with more tokens than the model's vocab_size (found by FuzzHFConfig: a Hugging Face config with
    /// `"vocab_size": 21`): refused when model and tokenizer meet, naming both numbers, instead of a trap at the
    /// first id beyond the embedding (the reference's IndexError mid-run).
    func testAVocabularyLargerThanTheModelsIsRefused() throws {
        var config = try CLIPConfig.load(contentsOf: fixtures.appendingPathComponent("models/vit-tiny.json"))
        config.vocabSize = 21
        XCTAssertThrowsError(try ChineseCLIPModel(clip: CLIP(config), tokenizer: ChineseCLIPModel.bundledTokenizer())) {
            let message = "\($0)"
            XCTAssertTrue(message.contains("vocab.txt") && message.contains("21128 tokens") && message.contains("vocab_size is 21"), message)
        }
        config.vocabSize = 21128
        XCTAssertNoThrow(try ChineseCLIPModel(clip: CLIP(config), tokenizer: ChineseCLIPModel.bundledTokenizer()))
    }
}
