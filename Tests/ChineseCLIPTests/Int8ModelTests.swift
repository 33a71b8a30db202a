// The int8 path on whole models: the fixture models' features against their fp32 features, the model holding no fp32
// copy of its int8 weights, and the quantized model file (round trip, strict loading, clear errors).

import Checkpoints
import Foundation
import NeuralNet
import Tensors
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
            let int8 = try ChineseCLIPModel(checkpoint: checkpoint, config: config, precision: .int8)
            XCTAssertEqual(int8.precision, .int8)
            XCTAssertEqual(fp32.precision, .fp32)
            assertHeldForInference(int8) { $0.int8 }
            let dim = config.embedDim
            let imageCos = rowCosines(try fp32.encodeImageFiles(images).scalars, try int8.encodeImageFiles(images).scalars, dim: dim)
            let textCos = rowCosines(fp32.encodeTexts(texts).scalars, int8.encodeTexts(texts).scalars, dim: dim)
            print("\(name) int8 vs fp32 cosines: images \(imageCos), texts \(textCos)")
            for c in imageCos + textCos { XCTAssertGreaterThanOrEqual(c, 0.999, "\(name): the issue's gate") }
        }
    }

    private func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cnclip-int8-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    func testQuantizedFileGivesTheInt8FeaturesBitForBit() throws {
        let dir = try temporaryDirectory()
        let images = ["rgb.jpg", "lossy.webp"].map { fixtures.appendingPathComponent("images/\($0)").path }
        let texts = ["皮卡丘", "一只可爱的小猫在草地上玩耍"]
        for name in ["vit-tiny", "rn-tiny"] {
            let config = try CLIPConfig.load(contentsOf: fixtures.appendingPathComponent("models/\(name).json"))
            let checkpoint = fixtures.appendingPathComponent("models/\(name).pt")
            let int8 = try ChineseCLIPModel(checkpoint: checkpoint, config: config, precision: .int8)
            let file = dir.appendingPathComponent("\(name).int8.safetensors")
            try QuantizedModelFile.write(int8.clip, source: checkpoint.path, to: file)

            XCTAssertTrue(try ChineseCLIPModel.isQuantizedModel(file))
            XCTAssertFalse(try ChineseCLIPModel.isQuantizedModel(checkpoint))
            let loaded = try ChineseCLIPModel(quantizedModel: file)
            XCTAssertEqual(loaded.config, config, "\(name): the architecture comes from the file")
            XCTAssertEqual(loaded.precision, .int8)
            let viaConfig = try ChineseCLIPModel(checkpoint: file, config: config)
            for model in [loaded, viaConfig] {
                XCTAssertEqual(try model.encodeImageFiles(images).scalars, try int8.encodeImageFiles(images).scalars, "\(name) images")
                XCTAssertEqual(model.encodeTexts(texts).scalars, int8.encodeTexts(texts).scalars, "\(name) texts")
            }
            let before = Dictionary(uniqueKeysWithValues: int8.clip.linearWeights().map { ($0.0, $0.1.int8!) })
            for (key, p) in loaded.clip.linearWeights() {
                XCTAssertEqual(p.int8?.values, before[key]?.values, key)
                XCTAssertEqual(p.int8?.scales, before[key]?.scales, key)
            }
            // The fp32 tensors are stored as they were, so only the int8 weights shrink: 1 byte + a scale per row.
            let stored = try SafeTensorsFile(url: file)
            for (key, p) in int8.clip.namedParameters() where p.int8 == nil {
                XCTAssertEqual(try stored.tensor(key).floats, p.value.scalars, key)
            }
            XCTAssertEqual(stored.metadata?["format"], "cnclip-int8")
            XCTAssertEqual(stored.metadata?["source"], checkpoint.path)
        }
    }

    func testQuantizedFileErrorsNameTheProblem() throws {
        let dir = try temporaryDirectory()
        let config = try CLIPConfig.load(contentsOf: fixtures.appendingPathComponent("models/vit-tiny.json"))
        let other = try CLIPConfig.load(contentsOf: fixtures.appendingPathComponent("models/rn-tiny.json"))
        let model = try ChineseCLIPModel(checkpoint: fixtures.appendingPathComponent("models/vit-tiny.pt"), config: config, precision: .int8)
        let good = dir.appendingPathComponent("good.safetensors")
        try QuantizedModelFile.write(model.clip, source: "vit-tiny.pt", to: good)

        func message(_ body: () throws -> Void) -> String {
            do {
                try body()
                return "(no error)"
            } catch { return "\(error)" }
        }
        XCTAssertTrue(message { _ = try ChineseCLIPModel(quantizedModel: good, precision: .fp32) }.contains("fp32"))
        XCTAssertTrue(message { _ = try ChineseCLIPModel(checkpoint: good, config: other) }.contains("another architecture"))

        // Variants of the good file, each with one thing wrong.
        let file = try SafeTensorsFile(url: good)
        var tensors: [(String, SafeTensors.StoredTensor)] = []
        for key in file.keys {
            let info = file.infos[key]!
            tensors.append(
                (key, info.dtype == .int8 ? .init(shape: info.shape, int8: try file.int8Values(key)) : .init(try file.tensor(key))))
        }
        let metadata = file.metadata!
        let weight = "bert.encoder.layer.0.attention.self.query.weight"
        XCTAssertTrue(file.keys.contains(weight))
        func variant(_ name: String, drop: String? = nil, add: (String, SafeTensors.StoredTensor)? = nil, meta: [String: String]? = nil)
            throws -> URL
        {
            let url = dir.appendingPathComponent(name + ".safetensors")
            var t = tensors.filter { $0.0 != drop }
            if let add { t.append(add) }
            try SafeTensors.write(stored: t, metadata: meta ?? metadata, to: url)
            return url
        }
        let asFloat = SafeTensors.StoredTensor(CheckpointTensor(Tensor(shape: file.infos[weight]!.shape)))
        let cases: [(URL, [String])] = [
            (try variant("no-scale", drop: weight + "_scale"), ["missing key", weight + "_scale"]),
            (try variant("float-weight", drop: weight, add: (weight, asFloat)), [weight, "F32", "expected I8"]),
            (
                try variant("extra", add: ("visual.extra", SafeTensors.StoredTensor(CheckpointTensor(Tensor(shape: [2]))))),
                ["unexpected key", "visual.extra"]
            ),
            (try variant("version", meta: metadata.merging(["format_version": "9"]) { $1 }), ["version 9"]),
            (try variant("config", meta: metadata.merging(["config": "{\"embed_dim\": 1}"]) { $1 }), ["config", "image_resolution"]),
            (
                try variant(
                    "zero-scale", drop: weight + "_scale",
                    add: (weight + "_scale", .init(CheckpointTensor(Tensor(shape: [file.infos[weight]!.shape[0]]))))),
                [weight + "_scale", "positive"]
            ),
        ]
        for (url, mentions) in cases {
            let m = message { _ = try ChineseCLIPModel(quantizedModel: url) }
            XCTAssertTrue(m.contains(url.path), "\(url.lastPathComponent): '\(m)' names the file")
            for word in mentions { XCTAssertTrue(m.contains(word), "\(url.lastPathComponent): '\(m)' should mention \(word)") }
        }
    }

    func testAssigningAValueEndsTheInt8Form() {
        let p = Parameter(shape: [4, 3])
        p.value = Tensor(shape: [4, 3], scalars: (0..<12).map { Float($0) - 5 })
        p.quantize()
        XCTAssertNotNil(p.int8)
        XCTAssertEqual(p.value.count, 0)
        XCTAssertEqual(p.shape, [4, 3])
        p.value = Tensor(shape: [4, 3], repeating: 1)
        XCTAssertNil(p.int8, "an fp32 value replaces the int8 form")
    }
}
