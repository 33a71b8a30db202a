import Checkpoints
import Foundation
import TestSupport
import XCTest

/// `cnclip export onnx` end to end: the files parse as ONNX models (read here with a wire-format reader, field numbers
/// from onnx.proto3), carry dynamic batch and sequence axes, form valid graphs whose weights are the checkpoint's, and
/// bad requests fail cleanly. (Their numbers are checked with onnxruntime by scripts/reference/check_interop.py.)
final class ExportONNXCLITests: ModelFileTestCase {
    func export(_ name: String, _ extra: [String] = [], into dir: URL) throws -> URL {
        let out = dir.appendingPathComponent(name + extra.joined())
        let r = try cnclip(["export", "onnx"] + modelArgs(name) + extra + ["--output", out.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        return out
    }

    /// What a test needs of an ONNX model file.
    struct Model {
        struct Value: Equatable {
            var name: String, elementType: UInt64, dims: [String]  // a fixed size as its number, a symbolic one as its name
        }
        struct Initializer {
            var name: String, dataType: UInt64, dims: [Int64], raw: [UInt8]
        }
        var irVersion: UInt64, opset: UInt64, producer: String
        var inputs: [Value], outputs: [Value]
        var nodes: [(op: String, inputs: [String], outputs: [String])]
        var initializers: [Initializer]
        var metadata: [String: String]

        init(_ url: URL) throws {
            let model = try readProtobuf(Array(try Data(contentsOf: url)))
            irVersion = try XCTUnwrap(model.first(1)?.integer)
            producer = model.first(2)?.string ?? ""
            let opsetFields = try readProtobuf(try XCTUnwrap(model.first(8)?.bytes))
            XCTAssertEqual(opsetFields.first(1)?.string ?? "", "", "the default domain")
            opset = try XCTUnwrap(opsetFields.first(2)?.integer)
            metadata = [:]
            for entry in model.all(14) {
                let f = try readProtobuf(entry.bytes!)
                metadata[f.first(1)?.string ?? ""] = f.first(2)?.string ?? ""
            }
            let graph = try readProtobuf(try XCTUnwrap(model.first(7)?.bytes))
            func value(_ field: ProtobufField) throws -> Value {
                let info = try readProtobuf(field.bytes!)
                let tensorType = try readProtobuf(try readProtobuf(try XCTUnwrap(info.first(2)?.bytes)).first(1)!.bytes!)
                let dims = try readProtobuf(try XCTUnwrap(tensorType.first(2)?.bytes)).all(1).map { d -> String in
                    let dim = try readProtobuf(d.bytes!)
                    return dim.first(2)?.string ?? "\(dim.first(1)?.integer ?? 0)"
                }
                return Value(name: info.first(1)?.string ?? "", elementType: tensorType.first(1)?.integer ?? 0, dims: dims)
            }
            inputs = try graph.all(11).map(value)
            outputs = try graph.all(12).map(value)
            nodes = try graph.all(1).map { n in
                let f = try readProtobuf(n.bytes!)
                return (f.first(4)?.string ?? "", f.all(1).map { $0.string! }, f.all(2).map { $0.string! })
            }
            initializers = try graph.all(5).map { t in
                let f = try readProtobuf(t.bytes!)
                return Initializer(
                    name: f.first(8)?.string ?? "", dataType: f.first(2)?.integer ?? 0,
                    dims: try f.all(1).flatMap { try readPackedVarints($0.bytes!) },
                    raw: f.first(9)?.bytes ?? [])
            }
        }

        /// Checks that every node reads only graph inputs, initializers and earlier nodes' outputs, that each value
        /// has one producer, that the outputs are produced, and that each initializer holds its dims' worth of bytes.
        func assertWellFormed(file: StaticString = #filePath, line: UInt = #line) {
            var defined = Set(inputs.map(\.name))
            for i in initializers {
                XCTAssertTrue(defined.insert(i.name).inserted, "\(i.name) defined twice", file: file, line: line)
                let size: Int = [1: 4, 7: 8, 10: 2][Int(i.dataType)] ?? 0
                XCTAssertEqual(i.raw.count, Int(i.dims.reduce(1, *)) * size, "\(i.name): raw bytes for dims \(i.dims)", file: file, line: line)
            }
            for n in nodes {
                for i in n.inputs where !i.isEmpty {
                    XCTAssertTrue(defined.contains(i), "\(n.op) reads \(i) before it exists", file: file, line: line)
                }
                for o in n.outputs { XCTAssertTrue(defined.insert(o).inserted, "\(o) produced twice", file: file, line: line) }
            }
            for o in outputs { XCTAssertTrue(defined.contains(o.name), "output \(o.name) is never produced", file: file, line: line) }
        }

        func initializer(_ name: String) -> Initializer? { initializers.first { $0.name == name } }
        var ops: Set<String> { Set(nodes.map(\.op)) }
    }

    func floats(_ raw: [UInt8]) -> [Float] {
        stride(from: 0, to: raw.count, by: 4).map { i in
            Float(bitPattern: UInt32(raw[i]) | UInt32(raw[i + 1]) << 8 | UInt32(raw[i + 2]) << 16 | UInt32(raw[i + 3]) << 24)
        }
    }

    func testViTGraphsParseWithDynamicAxesAndHoldTheCheckpointsWeights() throws {
        let out = try export("vit-tiny", into: try tempDir())
        XCTAssertEqual(
            try FileManager.default.contentsOfDirectory(atPath: out.path).sorted(), ["preprocessing.json", "text.onnx", "vision.onnx", "vocab.txt"])
        let vision = try Model(out.appendingPathComponent("vision.onnx")), text = try Model(out.appendingPathComponent("text.onnx"))
        for m in [vision, text] {
            XCTAssertEqual(m.opset, 17)
            XCTAssertEqual(m.irVersion, 8)
            XCTAssertEqual(m.producer, "cnclip")
            XCTAssertEqual(m.metadata["precision"], "fp32")
            XCTAssertNotNil(m.metadata["config"])
            m.assertWellFormed()
            XCTAssertTrue(m.ops.contains("LayerNormalization"))
        }
        XCTAssertEqual(vision.inputs, [.init(name: "image", elementType: 1, dims: ["batch", "3", "64", "64"])])
        XCTAssertEqual(vision.outputs, [.init(name: "unnorm_image_features", elementType: 1, dims: ["batch", "32"])])
        XCTAssertEqual(
            text.inputs,
            [
                .init(name: "text", elementType: 7, dims: ["batch", "sequence"]),
                .init(name: "attention_mask", elementType: 7, dims: ["batch", "sequence"]),
            ])
        XCTAssertEqual(text.outputs, [.init(name: "unnorm_text_features", elementType: 1, dims: ["batch", "32"])])
        XCTAssertTrue(vision.ops.isSuperset(of: ["Conv", "MatMul", "Softmax", "Sigmoid"]), "\(vision.ops)")
        XCTAssertTrue(text.ops.isSuperset(of: ["Gather", "MatMul", "Softmax", "Erf"]), "\(text.ops)")
        // The weights are the checkpoint's own values.
        let checkpoint = try loadStateDict(models.appendingPathComponent("vit-tiny.pt"))
        for (model, key) in [
            (vision, "visual.positional_embedding"), (vision, "visual.proj"), (text, "text_projection"),
            (text, "bert.embeddings.word_embeddings.weight"),
        ] {
            let stored = try XCTUnwrap(model.initializer(key), key)
            XCTAssertEqual(stored.dims.map(Int.init), checkpoint[key]?.shape, key)
            XCTAssertEqual(floats(stored.raw), try checkpoint.tensor(key).scalars, key)
        }
        let preprocessing = try XCTUnwrap(
            JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("preprocessing.json"))) as? [String: Any])
        let image = try XCTUnwrap(preprocessing["image"] as? [String: Any]), textRules = try XCTUnwrap(preprocessing["text"] as? [String: Any])
        XCTAssertEqual(image["resolution"] as? Int, 64)
        XCTAssertEqual(image["mean"] as? [Double], [0.48145466, 0.4578275, 0.40821073])
        XCTAssertEqual(textRules["context_length"] as? Int, 52)
        XCTAssertEqual(textRules["vocab_file"] as? String, "vocab.txt")
        XCTAssertEqual(
            try Data(contentsOf: out.appendingPathComponent("vocab.txt")),
            try Data(contentsOf: Self.bundledVocabulary))
    }

    func testHalfPrecisionKeepsFloatInputsAndOutputs() throws {
        let out = try export("vit-tiny", ["--fp16"], into: try tempDir())
        for file in ["vision.onnx", "text.onnx"] {
            let m = try Model(out.appendingPathComponent(file))
            m.assertWellFormed()
            XCTAssertEqual(m.metadata["precision"], "fp16")
            XCTAssertTrue(m.inputs.allSatisfy { $0.elementType == 1 || $0.elementType == 7 }, "\(m.inputs)")
            XCTAssertEqual(m.outputs.map(\.elementType), [1])
            // Weights in half precision; layer norms alone normalise in float32.
            for i in m.initializers where i.dataType != 10 && i.dataType != 7 {
                XCTAssertTrue(i.dataType == 1 && (i.name.contains(".ln_") || i.name.contains("LayerNorm")), "\(i.name) is not half precision")
            }
            let halfBytes = m.initializers.filter { $0.dataType == 10 }.reduce(0) { $0 + $1.raw.count }
            XCTAssertGreaterThan(Double(halfBytes) / Double(m.initializers.reduce(0) { $0 + $1.raw.count }), 0.95)
            XCTAssertTrue(m.ops.contains("Cast"))
        }
    }

    func testResNetAndOlderOpsetsExport() throws {
        let dir = try tempDir()
        let rn = try Model(try export("rn-tiny", into: dir).appendingPathComponent("vision.onnx"))
        rn.assertWellFormed()
        XCTAssertTrue(rn.ops.isSuperset(of: ["Conv", "BatchNormalization", "AveragePool", "Relu", "Softmax"]), "\(rn.ops)")
        XCTAssertEqual(rn.inputs.first?.dims, ["batch", "3", "64", "64"])
        let old = try Model(try export("vit-tiny", ["--opset", "13"], into: dir).appendingPathComponent("text.onnx"))
        old.assertWellFormed()
        XCTAssertEqual(old.opset, 13)
        XCTAssertEqual(old.irVersion, 7)
        XCTAssertFalse(old.ops.contains("LayerNormalization"), "opset 13 has no LayerNormalization; its definition is written out")
        XCTAssertTrue(old.ops.contains("ReduceMean"))
    }

    func testExportIsDeterministic() throws {
        let dir = try tempDir()
        let a = try export("rn-tiny", into: dir)
        let b = dir.appendingPathComponent("again")
        XCTAssertEqual(try cnclip(["export", "onnx"] + modelArgs("rn-tiny") + ["--output", b.path]).status, 0)
        for file in ["vision.onnx", "text.onnx", "preprocessing.json"] {
            XCTAssertEqual(try Data(contentsOf: a.appendingPathComponent(file)), try Data(contentsOf: b.appendingPathComponent(file)), file)
        }
    }

    func testBadRequestsFailCleanly() throws {
        let dir = try tempDir()
        let occupied = dir.appendingPathComponent("occupied")
        try FileManager.default.createDirectory(at: occupied, withIntermediateDirectories: true)
        try Data("keep me".utf8).write(to: occupied.appendingPathComponent("notes.txt"))
        let vit = modelArgs("vit-tiny")
        let cases: [([String], Int32, [String])] = [
            (vit + ["--opset", "12", "--output", dir.appendingPathComponent("x").path], 64, ["--opset 12", "13 to 21"]),
            (vit + ["--output", occupied.path], 1, [occupied.path, "not empty", "--force"]),
            (vit + ["--output", dir.appendingPathComponent("no/such/dir").path], 1, ["no/such"]),
            (vit + ["--context-length", "600", "--output", dir.appendingPathComponent("x").path], 1, ["--context-length 600", "512"]),
        ]
        for (args, status, mentions) in cases {
            let r = try cnclip(["export", "onnx"] + args)
            XCTAssertEqual(r.status, status, "\(args): \(r.stderr)")
            for m in mentions { XCTAssertTrue(r.stderr.contains(m), "\(args): stderr '\(r.stderr)' should mention \(m)") }
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["occupied"], "nothing half-written")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: occupied.path), ["notes.txt"])
    }
}
