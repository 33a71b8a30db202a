import Foundation
import TestSupport
import XCTest

@testable import ChineseCLIP

/// The ONNX writer's external-data layout (what models over protobuf's 2 GB limit, ViT-H-14's vision tower, use):
/// every weight of 1 KiB or more moves to `NAME.data` at the offset and length its TensorProto states, shapes and
/// small tensors stay inline, and nothing else changes. (onnxruntime runs such a file with the inline one's outputs.)
final class ONNXGraphTests: XCTestCase {
    func testExternalDataHoldsTheSameBytesAtTheStatedOffsets() throws {
        let config = try CLIPConfig.load(contentsOf: fixtures.appendingPathComponent("models/vit-tiny.json"))
        let clip = try CLIP.load(checkpoint: fixtures.appendingPathComponent("models/vit-tiny.pt"), config: config)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("onnx-graph-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let inline = dir.appendingPathComponent("inline.onnx"), external = dir.appendingPathComponent("external.onnx")
        let graph = ONNXExport.visionGraph(clip, opset: 17, half: false)
        try graph.write(to: inline, opset: 17, producerVersion: "test", metadata: [])
        try graph.write(to: external, opset: 17, producerVersion: "test", metadata: [], externalDataThreshold: 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: inline.path + ".data"))
        let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: external.path + ".data")))

        func initializers(_ url: URL) throws -> [[ProtobufField]] {
            let model = try readProtobuf([UInt8](try Data(contentsOf: url)))
            return try readProtobuf(try XCTUnwrap(model.first(7)?.bytes)).all(5).map { try readProtobuf($0.bytes!) }
        }
        let a = try initializers(inline), b = try initializers(external)
        XCTAssertEqual(a.count, b.count)
        XCTAssertGreaterThan(a.count, 30)
        var moved = 0
        for (x, y) in zip(a, b) {
            XCTAssertEqual(x.first(8)?.string, y.first(8)?.string)
            let bytes = try XCTUnwrap(x.first(9)?.bytes)
            guard bytes.count >= 1024 && x.first(2)?.integer != 7 else {  // shapes and small tensors stay inline
                XCTAssertEqual(y.first(9)?.bytes, bytes)
                XCTAssertNil(y.first(14))
                continue
            }
            moved += bytes.count
            XCTAssertNil(y.first(9), "no raw_data inline")
            XCTAssertEqual(y.first(14)?.integer, 1, "data_location EXTERNAL")
            var entries: [String: String] = [:]
            for e in y.all(13) {
                let f = try readProtobuf(e.bytes!)
                entries[f.first(1)?.string ?? ""] = f.first(2)?.string
            }
            XCTAssertEqual(entries["location"], "external.onnx.data")
            let offset = try XCTUnwrap(Int(entries["offset"] ?? "")), length = try XCTUnwrap(Int(entries["length"] ?? ""))
            XCTAssertEqual(Array(data[offset..<(offset + length)]), bytes, "\(x.first(8)?.string ?? "")")
        }
        XCTAssertEqual(data.count, moved)
        XCTAssertGreaterThan(moved, graph.weightBytes * 9 / 10)
    }
}
