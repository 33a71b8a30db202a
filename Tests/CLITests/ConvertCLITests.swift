import Checkpoints
import Foundation
import TestSupport
import XCTest

/// `cnclip convert` end to end: round trips give identical tensors, the Hugging Face directory holds what transformers
/// reads (its weights equal the fixture the reference wrote under Hugging Face names), and bad requests fail cleanly.
final class ConvertCLITests: ModelFileTestCase {
    /// Runs `cnclip convert` and requires success.
    func convert(_ args: [String], to format: String, _ output: URL) throws {
        let r = try cnclip(["convert"] + args + ["--to", format, "--output", output.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("wrote \(output.path) (\(format)"), r.stderr)
    }

    /// The model tensors of a checkpoint (`module.` stripped, Hugging Face names mapped back, unused keys dropped).
    func tensors(_ url: URL) throws -> StateDict { try loadStateDict(url) }

    func assertIdentical(_ a: StateDict, _ b: StateDict, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.keys.sorted(), b.keys.sorted(), what, file: file, line: line)  // safetensors files sort their keys
        for (key, t) in a {
            guard let u = b[key] else { continue }
            XCTAssertTrue(t == u, "\(what): \(key) differs: \(t) vs \(u)", file: file, line: line)
        }
    }

    func testPtToHuggingFaceToPtIsIdentical() throws {
        let dir = try tempDir()
        let hf = dir.appendingPathComponent("hf"), back = dir.appendingPathComponent("back.pt")
        try convert(modelArgs("vit-tiny"), to: "hf", hf)
        try convert(["--resume", hf.path], to: "pt", back)
        let original = try tensors(models.appendingPathComponent("vit-tiny.pt"))
        assertIdentical(original, try tensors(back), "pt → hf → pt")
        XCTAssertEqual(original.count, 71)
        // The layout cn-clip's training writes: module.-prefixed keys, epoch and step 0, no optimizer entry.
        let file = try TorchCheckpoint(url: back)
        guard case .dict(let top) = file.root else { return XCTFail("the saved object is not a dict") }
        XCTAssertEqual(top.keys.compactMap(\.stringValue), ["epoch", "step", "name", "state_dict"])
        let checkpoint = try TrainingCheckpoint(contentsOf: back)
        XCTAssertEqual([checkpoint.epoch, checkpoint.step], [0, 0])
        XCTAssertEqual(checkpoint.name, "back")
        XCTAssertTrue(try loadRawStateDict(back).keys.allSatisfy { $0.hasPrefix("module.") })
        // Our own order is the reference model's state-dict order, as the reference's file has it.
        XCTAssertEqual(
            checkpoint.stateDict.map(\.0), try loadRawStateDict(models.appendingPathComponent("vit-tiny.pt")).keys.map { String($0.dropFirst(7)) })
    }

    func testHuggingFaceDirectoryHoldsWhatTransformersReads() throws {
        let hf = try tempDir().appendingPathComponent("hf")
        try convert(modelArgs("vit-tiny"), to: "hf", hf)
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: hf.path).sorted(),
            ["config.json", "model.safetensors", "preprocessor_config.json", "special_tokens_map.json", "tokenizer_config.json", "vocab.txt"])
        // The weights under Hugging Face names equal, key for key, the fixture the reference converted and checked
        // with transformers.
        var ours = try SafeTensors.read(hf.appendingPathComponent("model.safetensors"))
        let reference = try SafeTensors.read(models.appendingPathComponent("vit-tiny.hf.safetensors"))
        ours.source = reference.source
        XCTAssertEqual(Set(ours.keys), Set(reference.keys))
        for (key, t) in reference { XCTAssertTrue(ours[key].map { $0 == t } ?? false, "\(key) differs from the reference's Hugging Face tensor") }
        XCTAssertEqual(ours["vision_model.encoder.layers.0.self_attn.q_proj.weight"]?.shape, [64, 64])
        XCTAssertEqual(ours["visual_projection.weight"]?.shape, [32, 64])
        XCTAssertEqual((try SafeTensorsFile(url: hf.appendingPathComponent("model.safetensors")).metadata)?["format"], "pt")

        func json(_ name: String) throws -> [String: Any] {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: hf.appendingPathComponent(name))) as? [String: Any])
        }
        let config = try json("config.json")
        XCTAssertEqual(config["model_type"] as? String, "chinese_clip")
        XCTAssertEqual(config["architectures"] as? [String], ["ChineseCLIPModel"])
        XCTAssertEqual(config["projection_dim"] as? Int, 32)
        let text = try XCTUnwrap(config["text_config"] as? [String: Any]), vision = try XCTUnwrap(config["vision_config"] as? [String: Any])
        XCTAssertEqual(text["hidden_size"] as? Int, 32)
        XCTAssertEqual(text["num_hidden_layers"] as? Int, 2)
        XCTAssertEqual(text["num_attention_heads"] as? Int, 4)
        XCTAssertEqual(text["intermediate_size"] as? Int, 64)
        XCTAssertEqual(text["vocab_size"] as? Int, 21128)
        XCTAssertEqual(text["layer_norm_eps"] as? Double, 1e-12)
        XCTAssertEqual(vision["hidden_size"] as? Int, 64)
        XCTAssertEqual(vision["num_attention_heads"] as? Int, 4)  // vision_width 64 / vision_head_width 16
        XCTAssertEqual(vision["intermediate_size"] as? Int, 256)
        XCTAssertEqual(vision["patch_size"] as? Int, 16)
        XCTAssertEqual(vision["image_size"] as? Int, 64)
        XCTAssertEqual(vision["hidden_act"] as? String, "quick_gelu")
        let preprocessor = try json("preprocessor_config.json")
        XCTAssertEqual(preprocessor["size"] as? [String: Int], ["height": 64, "width": 64])
        XCTAssertEqual(preprocessor["do_center_crop"] as? Bool, false)
        XCTAssertEqual(preprocessor["resample"] as? Int, 3)  // PIL's BICUBIC, as image_transform resizes
        XCTAssertEqual(preprocessor["image_mean"] as? [Double], [0.48145466, 0.4578275, 0.40821073])
        XCTAssertEqual(preprocessor["image_std"] as? [Double], [0.26862954, 0.26130258, 0.27577711])
        XCTAssertEqual(try json("tokenizer_config.json")["do_lower_case"] as? Bool, true)
        XCTAssertEqual(try json("special_tokens_map.json")["pad_token"] as? String, "[PAD]")
        XCTAssertEqual(
            try Data(contentsOf: hf.appendingPathComponent("vocab.txt")),
            try Data(contentsOf: Self.bundledVocabulary))
        // The directory loads with no model flags and computes what the checkpoint computes.
        let inputs = ["--unnormalized", "--image", Self.fixtures.appendingPathComponent("images/rgb.jpg").path, "--text", "皮卡丘"]
        let fromDirectory = try cnclip(["encode", "--resume", hf.path] + inputs)
        XCTAssertEqual(fromDirectory.status, 0, fromDirectory.stderr)
        XCTAssertEqual(fromDirectory.stdout, try cnclip(["encode"] + modelArgs("vit-tiny") + inputs).stdout)
    }

    func testSafeTensorsRoundTripIsIdenticalAndLoadsWithoutModelFlags() throws {
        let dir = try tempDir()
        for name in ["vit-tiny", "rn-tiny"] {
            let file = dir.appendingPathComponent("\(name).safetensors"), back = dir.appendingPathComponent("\(name).back.pt")
            try convert(modelArgs(name), to: "safetensors", file)
            try convert(["--resume", file.path], to: "pt", back)
            let original = try tensors(models.appendingPathComponent("\(name).pt"))
            assertIdentical(original, try tensors(file), "\(name) pt → safetensors")
            assertIdentical(original, try tensors(back), "\(name) pt → safetensors → pt")
            // Key for key, as the reference's file holds them: a ResNet's BatchNorm counters (int64) too.
            let raw = try loadRawStateDict(models.appendingPathComponent("\(name).pt")), rawBack = try loadRawStateDict(back)
            XCTAssertEqual(raw.keys, rawBack.keys, "\(name): the reference's keys in its order")
            for (key, t) in raw { XCTAssertTrue(rawBack[key].map { $0 == t && $0.dtype == t.dtype } ?? false, "\(name): \(key)") }
            let metadata = try XCTUnwrap((try SafeTensorsFile(url: file)).metadata)
            XCTAssertEqual(metadata["format"], "cnclip")
            let recorded = try JSONSerialization.jsonObject(with: Data(try XCTUnwrap(metadata["config"]).utf8)) as? [String: Any]
            let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: models.appendingPathComponent("\(name).json"))) as? [String: Any]
            XCTAssertEqual(recorded?["embed_dim"] as? Int, expected?["embed_dim"] as? Int)
            XCTAssertEqual("\(recorded?["vision_layers"] ?? "")", "\(expected?["vision_layers"] ?? "")")
            let inputs = ["--unnormalized", "--image", Self.fixtures.appendingPathComponent("images/rgb.jpg").path, "--text", "皮卡丘"]
            let alone = try cnclip(["encode", "--resume", file.path] + inputs)
            XCTAssertEqual(alone.status, 0, alone.stderr)
            XCTAssertEqual(alone.stdout, try cnclip(["encode"] + modelArgs(name) + inputs).stdout, "\(name): same features")
        }
    }

    func testHalfPrecisionCheckpointWidensExactly() throws {
        let file = try tempDir().appendingPathComponent("m.safetensors")
        try convert(
            ["--resume", models.appendingPathComponent("vit-tiny.fp16.pt").path, "--config", models.appendingPathComponent("vit-tiny.json").path],
            to: "safetensors", file)
        assertIdentical(try tensors(models.appendingPathComponent("vit-tiny.fp16.pt")), try tensors(file), "fp16 → fp32")
        XCTAssertTrue(try SafeTensorsFile(url: file).infos.values.allSatisfy { $0.dtype == .float32 })
    }

    func testBadRequestsFailCleanlyAndLeaveNothingHalfWritten() throws {
        let dir = try tempDir()
        let occupied = dir.appendingPathComponent("occupied")
        try FileManager.default.createDirectory(at: occupied, withIntermediateDirectories: true)
        try Data("keep me".utf8).write(to: occupied.appendingPathComponent("notes.txt"))
        let existing = dir.appendingPathComponent("existing.pt")
        try Data("mine".utf8).write(to: existing)
        let vit = modelArgs("vit-tiny")
        let cases: [([String], Int32, [String])] = [
            (vit + ["--to", "onnx", "--output", dir.appendingPathComponent("x").path], 64, ["hf, pt or safetensors", "cnclip export onnx"]),
            (vit + ["--to", "tflite", "--output", dir.appendingPathComponent("x").path], 64, ["unknown --to 'tflite'"]),
            (modelArgs("rn-tiny") + ["--to", "hf", "--output", dir.appendingPathComponent("rn").path], 1, ["RN50", "Hugging Face"]),
            (vit + ["--to", "pt", "--output", dir.appendingPathComponent("no/such/dir/m.pt").path], 1, ["no/such/dir"]),
            (vit + ["--to", "hf", "--output", occupied.path], 1, [occupied.path, "not empty", "--force"]),
            (vit + ["--to", "pt", "--output", existing.path], 1, [existing.path, "--force"]),
            (vit + ["--to", "hf", "--output", existing.path], 1, [existing.path, "is a file"]),
            (vit + ["--to", "pt", "--output", models.appendingPathComponent("vit-tiny.pt").path, "--force"], 1, ["being read"]),
            (
                ["--resume", models.appendingPathComponent("vit-tiny.pt").path, "--to", "pt", "--output", dir.appendingPathComponent("y.pt").path], 1,
                ["--vision-model"]
            ),
        ]
        for (args, status, mentions) in cases {
            let r = try cnclip(["convert"] + args)
            XCTAssertEqual(r.status, status, "\(args): \(r.stderr)")
            for m in mentions { XCTAssertTrue(r.stderr.contains(m), "\(args): stderr '\(r.stderr)' should mention \(m)") }
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted(), ["existing.pt", "occupied"], "nothing half-written")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: occupied.path), ["notes.txt"])
        XCTAssertEqual(try String(contentsOf: existing, encoding: .utf8), "mine")
        // --force replaces the whole directory in one step.
        let r = try cnclip(["convert"] + vit + ["--to", "hf", "--output", occupied.path, "--force"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: occupied.appendingPathComponent("notes.txt").path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: occupied.appendingPathComponent("model.safetensors").path))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted(), ["existing.pt", "occupied"], "no temporary left")
    }
}
