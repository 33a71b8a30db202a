import Foundation
import Tensors
import XCTest

@testable import Checkpoints

final class KeyRemapTests: XCTestCase {
    func testHuggingFaceFileEqualsOriginalCheckpoint() throws {
        let original = try loadStateDict(Fixture.model("vit-tiny.pt"))
        let hf = try loadStateDict(Fixture.model("vit-tiny.hf.safetensors"))
        XCTAssertEqual(Set(hf.keys), Set(original.keys))
        XCTAssertEqual(hf.count, original.count)
        for (key, want) in original {
            let got = try XCTUnwrap(hf[key], key)
            XCTAssertEqual(got.shape, want.shape, key)
            XCTAssertEqual(got, want, key)
        }
    }

    func testInverseRemapReproducesHuggingFaceFileAndRoundTrips() throws {
        let original = try loadStateDict(Fixture.model("vit-tiny.pt"))
        let hfFile = try SafeTensors.read(Fixture.model("vit-tiny.hf.safetensors"))
        let exported = try KeyRemap.toHuggingFace(original)
        XCTAssertEqual(Set(exported.keys), Set(hfFile.keys))
        for (key, want) in hfFile { XCTAssertEqual(exported[key], want, key) }

        let back = try KeyRemap.fromHuggingFace(exported)
        XCTAssertEqual(back.keys, original.keys, "q/k/v fuse back at the position of the fused key")
        for (key, want) in original { XCTAssertEqual(back[key], want, key) }
    }

    func testHuggingFaceDirectory() throws {
        let dir = try temporaryDirectory(self)
        try Data("{\"model_type\": \"chinese_clip\"}".utf8).write(to: dir.appendingPathComponent("config.json"))
        // Extra keys a real Hugging Face checkpoint may carry, which the model never has.
        var sd = try SafeTensors.read(Fixture.model("vit-tiny.hf.safetensors"))
        sd["text_model.embeddings.position_ids"] = CheckpointTensor(shape: [1, 4], integers: [0, 1, 2, 3])
        sd["text_model.pooler.dense.weight"] = CheckpointTensor(Tensor(shape: [32, 32]))
        sd["text_model.pooler.dense.bias"] = CheckpointTensor(Tensor(shape: [32]))
        try SafeTensors.write(sd, to: dir.appendingPathComponent("model.safetensors"))
        XCTAssertEqual(try CheckpointFormat.detect(dir), .huggingFaceDirectory)

        let loaded = try loadStateDict(dir)
        let original = try loadStateDict(Fixture.model("vit-tiny.pt"))
        XCTAssertEqual(Set(loaded.keys), Set(original.keys))
        XCTAssertEqual(Set(loaded.dropped), ["text_model.embeddings.position_ids", "text_model.pooler.dense.weight", "text_model.pooler.dense.bias"])
        for (key, want) in original { XCTAssertEqual(loaded[key], want, key) }

        try FileManager.default.removeItem(at: dir.appendingPathComponent("config.json"))
        assertCheckpointError(try loadStateDict(dir)) { if case .unsupportedFormat = $0 { return true } else { return false } }
    }

    func testUnknownHuggingFaceKeyIsAnError() throws {
        var sd = StateDict(source: "hf.safetensors")
        sd["vision_model.encoder.layers.0.layer_norm1.weight"] = CheckpointTensor(Tensor(shape: [4]))
        sd["vision_model.encoder.layers.0.adapter.weight"] = CheckpointTensor(Tensor(shape: [4]))
        let e = assertCheckpointError(try KeyRemap.fromHuggingFace(sd)) {
            if case .unknownKey(_, "vision_model.encoder.layers.0.adapter.weight", _) = $0 { return true } else { return false }
        }
        XCTAssertTrue(e?.description.contains("hf.safetensors") ?? false)

        var partial = StateDict(source: "hf.safetensors")
        partial["vision_model.encoder.layers.0.self_attn.q_proj.weight"] = CheckpointTensor(Tensor(shape: [2, 2]))
        assertCheckpointError(try KeyRemap.fromHuggingFace(partial)) {
            if case .missingKey(_, let k) = $0 { return k.contains("in_proj_weight") && k.contains("k, v") } else { return false }
        }
    }

    func testResNetHasNoHuggingFaceLayout() throws {
        let rn = try loadStateDict(Fixture.model("rn-tiny.pt"))
        assertCheckpointError(try KeyRemap.toHuggingFace(rn)) {
            if case .unknownKey(_, let k, _) = $0 { return k.hasPrefix("visual.") } else { return false }
        }
    }

    func testNameTable() {
        XCTAssertEqual(KeyRemap.fromHuggingFace(name: "vision_model.pre_layrnorm.weight"), .rename("visual.ln_pre.weight"))
        XCTAssertEqual(
            KeyRemap.fromHuggingFace(name: "vision_model.encoder.layers.11.mlp.fc2.bias"), .rename("visual.transformer.resblocks.11.mlp.c_proj.bias"))
        XCTAssertEqual(
            KeyRemap.fromHuggingFace(name: "vision_model.encoder.layers.3.self_attn.k_proj.weight"),
            .fusedPart(target: "visual.transformer.resblocks.3.attn.in_proj_weight", index: 1))
        XCTAssertEqual(KeyRemap.fromHuggingFace(name: "text_projection.weight"), .transpose("text_projection"))
        XCTAssertEqual(
            KeyRemap.fromHuggingFace(name: "text_model.encoder.layer.0.attention.self.query.weight"),
            .rename("bert.encoder.layer.0.attention.self.query.weight"))
        XCTAssertEqual(KeyRemap.fromHuggingFace(name: "vision_model.embeddings.position_ids"), .drop)
        XCTAssertNil(KeyRemap.fromHuggingFace(name: "vision_model.pre_layrnorm.gamma"))
        XCTAssertEqual(
            KeyRemap.toHuggingFace(name: "visual.transformer.resblocks.0.attn.in_proj_bias"),
            .split([
                "vision_model.encoder.layers.0.self_attn.q_proj.bias", "vision_model.encoder.layers.0.self_attn.k_proj.bias",
                "vision_model.encoder.layers.0.self_attn.v_proj.bias",
            ]))
        XCTAssertEqual(KeyRemap.toHuggingFace(name: "bert.pooler.dense.weight"), .drop)
        XCTAssertTrue(KeyRemap.looksLikeHuggingFace(["logit_scale", "vision_model.embeddings.class_embedding"]))
        XCTAssertFalse(KeyRemap.looksLikeHuggingFace(["logit_scale", "visual.proj"]))
    }
}
