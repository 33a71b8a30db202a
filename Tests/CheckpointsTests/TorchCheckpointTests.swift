import Foundation
import Tensors
import XCTest

@testable import Checkpoints

final class TorchCheckpointTests: XCTestCase {
    func testEdgeCasesEqualExpected() throws {
        let ck = try TorchCheckpoint(url: Fixture.model("edge_cases.pt"))
        let sd = try ck.stateDict
        XCTAssertEqual(sd.keys, ["transposed", "row_view", "base", "bf16", "fp16", "int64", "scalar", "empty"])
        let expected = try SafeTensors.read(Fixture.model("edge_cases.expected.safetensors"))
        XCTAssertEqual(Set(expected.keys), Set(sd.keys).subtracting(["empty"]))
        for (key, want) in expected {
            let got = try XCTUnwrap(sd[key], key)
            XCTAssertEqual(got.shape, want.shape, key)
            XCTAssertEqual(got, want, key)
        }
        XCTAssertEqual(sd["int64"]?.integers, [1, -2, 3, 1 << 40, 0, -1])
        XCTAssertEqual(sd["int64"]?.dtype, .int64)
        XCTAssertEqual(sd["bf16"]?.dtype, .bfloat16)
        XCTAssertEqual(sd["fp16"]?.dtype, .float16)
        XCTAssertEqual(sd["scalar"]?.shape, [])
        XCTAssertEqual(sd["scalar"]?.floats, [2.5])
        XCTAssertEqual(sd["empty"]?.shape, [0, 3])
        XCTAssertEqual(sd["empty"]?.count, 0)
        // The row view and its base borrow one storage from the map; the transposed view had to be gathered.
        let base = try sd.tensor("base"), row = try sd.tensor("row_view")
        XCTAssertTrue(base.storage === row.storage)
        XCTAssertEqual(row.offset, 6)
        XCTAssertNotNil(sd["base"]?.mapping)
        XCTAssertNil(sd["transposed"]?.mapping)
        XCTAssertEqual(try sd.tensor("transposed")[1, 0], base[0, 1])

        var nested = PickleDict()
        nested[.string("note")] = .string("non-tensor values")
        nested[.string("step")] = .int(7)
        XCTAssertEqual(ck.root["nested"], .dict(nested))
    }

    func testViTTinyCheckpoint() throws {
        let url = Fixture.model("vit-tiny.pt")
        let ck = try TorchCheckpoint(url: url)
        XCTAssertEqual(ck.epoch, 3)
        XCTAssertEqual(ck.step, 120)
        XCTAssertEqual(ck.name, "vit-tiny")
        XCTAssertEqual(ck.root["optimizer"], .dict(PickleDict()))
        let raw = try ck.stateDict
        XCTAssertEqual(raw.count, 71)
        XCTAssertTrue(raw.keys.allSatisfy { $0.hasPrefix("module.") })
        XCTAssertEqual(raw.keys.first, "module.text_projection")

        let sd = try loadStateDict(url)
        XCTAssertEqual(sd.count, 71)
        XCTAssertEqual(sd.dropped, [])
        XCTAssertEqual(sd.keys, raw.keys.map { String($0.dropFirst("module.".count)) })
        let shapes: [String: [Int]] = [
            "text_projection": [32, 32], "logit_scale": [], "visual.class_embedding": [64],
            "visual.positional_embedding": [17, 64], "visual.proj": [64, 32], "visual.conv1.weight": [64, 3, 16, 16],
            "visual.transformer.resblocks.1.attn.in_proj_weight": [192, 64], "visual.transformer.resblocks.1.mlp.c_fc.weight": [256, 64],
            "bert.embeddings.word_embeddings.weight": [21128, 32], "bert.encoder.layer.1.output.LayerNorm.bias": [32],
        ]
        for (k, s) in shapes { XCTAssertEqual(sd[k]?.shape, s, k) }
        XCTAssertThrowsError(try sd.tensor("visual.proj", shape: [32, 64])) { e in
            XCTAssertTrue("\(e)".contains("visual.proj"), "\(e)")
        }
    }

    func testFP16CheckpointsMatchRoundedFP32() throws {
        for name in ["vit-tiny", "rn-tiny"] {
            let full = try loadStateDict(Fixture.model("\(name).pt"))
            let half = try loadStateDict(Fixture.model("\(name).fp16.pt"))
            XCTAssertEqual(half.keys, full.keys, name)
            XCTAssertEqual(half.dropped, full.dropped, name)
            for (key, h) in half {
                let f = try XCTUnwrap(full[key])
                XCTAssertEqual(h.shape, f.shape, key)
                if f.isFloatingPoint {
                    XCTAssertEqual(h.dtype, .float16, key)
                    XCTAssertNil(h.mapping, key)
                    XCTAssertEqual(h.floats, f.floats.map(\.throughHalf), key)
                } else {
                    XCTAssertEqual(h, f, key)
                }
            }
        }
    }

    func testRNTinyDropsBatchNormCounters() throws {
        let url = Fixture.model("rn-tiny.pt")
        let ck = try TorchCheckpoint(url: url)
        XCTAssertEqual(ck.epoch, 3)
        XCTAssertEqual(ck.step, 120)
        XCTAssertEqual(ck.name, "rn-tiny")
        let raw = try ck.stateDict
        XCTAssertEqual(raw.count, 162)
        XCTAssertEqual(raw["module.visual.bn1.num_batches_tracked"]?.dtype, .int64)
        XCTAssertEqual(raw["module.visual.bn1.num_batches_tracked"]?.shape, [])
        XCTAssertNotNil(raw["module.visual.bn1.num_batches_tracked"]?.integers)
        let sd = try loadStateDict(url)
        XCTAssertEqual(sd.count, 143)
        XCTAssertEqual(sd.dropped.count, 19)
        XCTAssertTrue(sd.dropped.allSatisfy { $0.hasSuffix(".num_batches_tracked") && !$0.hasPrefix("module.") })
        XCTAssertTrue(sd.keys.allSatisfy { !$0.contains("num_batches_tracked") && !$0.hasPrefix("module.") })
        XCTAssertEqual(sd["visual.bn1.running_var"]?.shape, [4])
        XCTAssertTrue(sd.contains("visual.attnpool.positional_embedding"))
    }

    func testFP32TensorsBorrowTheMapAndReleaseIt() throws {
        weak var weakMap: MappedFile?
        do {
            let sd = try loadStateDict(Fixture.model("vit-tiny.pt"))
            for (key, t) in sd {
                let map = try XCTUnwrap(t.mapping, key)
                let x = t.tensor
                XCTAssertTrue(map.contains(UnsafeRawPointer(x.data), byteCount: x.count * 4), key)
                XCTAssertEqual(Int(bitPattern: UnsafeRawPointer(x.data)) % 64, 0, "recent torch aligns storages to 64 bytes: \(key)")
                weakMap = map
            }
            // Swift may release `sd` right after its last use; keep it alive across this check.
            withExtendedLifetime(sd) { XCTAssertNotNil(weakMap) }
        }
        XCTAssertNil(weakMap, "the mapping must go away with the last tensor borrowing it")
    }

    /// A hand-built archive: top folder `archive/`, a misaligned storage, a strided view, and `_rebuild_parameter`.
    private func handMadeArchive(compressStorage: Bool = false) throws -> URL {
        func rebuild(offset: UInt8, size: [UInt8], stride: [UInt8]) -> [UInt8] {
            var p = Op.global("torch._utils", "_rebuild_tensor_v2") + Op.mark
            p +=
                Op.mark + Op.unicode("storage") + Op.global("torch", "FloatStorage") + Op.unicode("0") + Op.unicode("cpu") + Op.int1(6) + Op.tuple
                + Op.binpersid
            p += Op.int1(offset) + Op.mark + size.flatMap(Op.int1) + Op.tuple + Op.mark + stride.flatMap(Op.int1) + Op.tuple
            p += Op.newFalse + Op.global("collections", "OrderedDict") + Op.emptyTuple + Op.reduce + Op.tuple + Op.reduce
            return p
        }
        var pkl: [UInt8] = [0x80, 0x02] + Op.emptyDict + Op.mark
        pkl +=
            Op.unicode("param") + Op.global("torch._utils", "_rebuild_parameter") + Op.mark
            + rebuild(offset: 1, size: [2, 2], stride: [1, 2]) + Op.newTrue + Op.global("collections", "OrderedDict") + Op.emptyTuple + Op.reduce
            + Op.tuple + Op.reduce
        pkl += Op.unicode("whole") + rebuild(offset: 0, size: [6], stride: [1])
        pkl += Op.setitems + Op.stop
        let storage = [Float](arrayLiteral: 0, 1, 2, 3, 4, 5).flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }
        // Pad so the storage's data starts at an odd offset: it cannot be borrowed as Float.
        let before = 30 + "archive/data.pkl".utf8.count + pkl.count + 30 + "archive/byteorder".utf8.count + 6 + 30 + "archive/pad".utf8.count
        let pad = [UInt8](repeating: 0, count: (4 - (before + 30 + "archive/data/0".utf8.count) % 4) % 4 + 1)
        let zip = makeZip(
            [("archive/data.pkl", pkl), ("archive/byteorder", Array("little".utf8)), ("archive/pad", pad), ("archive/data/0", storage)],
            methods: compressStorage ? ["archive/data/0": 8] : [:])
        let url = try temporaryDirectory(self).appendingPathComponent("hand.pt")
        try Data(zip).write(to: url)
        return url
    }

    func testHandMadeArchiveWithParameterAndMisalignedStorage() throws {
        let url = try handMadeArchive()
        let archive = try StoredZipArchive(url: url)
        XCTAssertNotEqual(try XCTUnwrap(archive.entry(named: "archive/data/0")).dataOffset % 4, 0)
        let sd = try loadStateDict(url)
        XCTAssertEqual(sd.keys, ["param", "whole"])
        XCTAssertEqual(sd["param"]?.shape, [2, 2])
        XCTAssertEqual(sd["param"]?.floats, [1, 3, 2, 4])
        XCTAssertEqual(sd["whole"]?.floats, [0, 1, 2, 3, 4, 5])
        XCTAssertNil(sd["whole"]?.mapping, "a misaligned fp32 storage is copied")
    }

    func testCompressedEntryIsAnErrorNamingIt() throws {
        let url = try handMadeArchive(compressStorage: true)
        let e = assertCheckpointError(try loadStateDict(url)) {
            if case .compressedEntry(_, "archive/data/0", 8) = $0 { return true } else { return false }
        }
        XCTAssertTrue(e?.description.contains(url.path) ?? false)
    }

    func testZip64ExtraFieldsAreRead() throws {
        let url = try temporaryDirectory(self).appendingPathComponent("z64.zip")
        let payload = Array("hello".utf8)
        try Data(makeZip([("top/a", [1, 2, 3]), ("top/b", payload)], zip64: true)).write(to: url)
        let archive = try StoredZipArchive(url: url)
        XCTAssertEqual(archive.entries.map(\.name), ["top/a", "top/b"])
        XCTAssertEqual(Array(try archive.data(named: "top/b")), payload)
        XCTAssertEqual(Array(try archive.data(named: "top/a")), [1, 2, 3])
        assertCheckpointError(try archive.data(named: "top/c")) { if case .missingEntry(_, "top/c") = $0 { return true } else { return false } }
    }

    func testTruncatedFileIsAnError() throws {
        let bytes = try Data(contentsOf: Fixture.model("vit-tiny.pt"))
        let url = try temporaryDirectory(self).appendingPathComponent("truncated.pt")
        try bytes.prefix(bytes.count / 2).write(to: url)
        let e = assertCheckpointError(try loadStateDict(url)) { if case .truncated = $0 { return true } else { return false } }
        XCTAssertTrue(e?.description.contains("truncated.pt") ?? false)

        // Cut just before the end records: the central directory is gone too.
        try bytes.prefix(bytes.count - 30).write(to: url)
        assertCheckpointError(try TorchCheckpoint(url: url)) { if case .truncated = $0 { return true } else { return false } }
    }

    func testNonZipAndLegacyFilesAreErrors() throws {
        let dir = try temporaryDirectory(self)
        let text = dir.appendingPathComponent("notes.pt")
        try Data("just some text, not a checkpoint".utf8).write(to: text)
        assertCheckpointError(try StoredZipArchive(url: text)) { if case .notZip = $0 { return true } else { return false } }
        assertCheckpointError(try loadStateDict(text)) { if case .unsupportedFormat = $0 { return true } else { return false } }

        let legacy = dir.appendingPathComponent("legacy.pt")
        try Data([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]).write(to: legacy)
        let e = assertCheckpointError(try loadStateDict(legacy)) { if case .legacyTorchFormat = $0 { return true } else { return false } }
        XCTAssertTrue(e?.description.contains("re-save") ?? false)

        let empty = dir.appendingPathComponent("empty.pt")
        try Data().write(to: empty)
        assertCheckpointError(try TorchCheckpoint(url: empty)) { if case .notZip = $0 { return true } else { return false } }
        assertFileError(try loadStateDict(dir.appendingPathComponent("missing.pt")), path: dir.appendingPathComponent("missing.pt").path)
    }

    func testUnknownGlobalInACheckpointIsAnError() throws {
        let pkl: [UInt8] = [0x80, 0x02] + Op.global("os", "system") + Op.unicode("echo hi") + [0x85] + Op.reduce + Op.stop
        let url = try temporaryDirectory(self).appendingPathComponent("evil.pt")
        try Data(makeZip([("evil/data.pkl", pkl)])).write(to: url)
        let e = assertCheckpointError(try TorchCheckpoint(url: url)) {
            if case .unsupportedGlobal(_, 2, "os.system") = $0 { return true } else { return false }
        }
        XCTAssertTrue(e?.description.contains("evil.pt") ?? false)
    }
}
