// TorchSave (writing torch.save archives), TrainingCheckpoint and the pickled form of AdamW.StateDict.
//
// torch.load compatibility cannot run in CI (no torch there), so it was checked by hand with PyTorch 2.15
// (the reference venv) on files these tests write when CNCLIP_TORCH_SAVE_OUT=DIR is set:
//   CNCLIP_TORCH_SAVE_OUT=/tmp/ts swift test -c release --filter TorchSaveTests
//   python scripts/reference/check_torch_save_compat.py /tmp/ts/every_kind.pt   (and zip64.pt, training.pt)
// The script loads each file with torch.load(weights_only=True), weights_only=False and mmap=True and
// zipfile.testzip() (CRCs). Result recorded 2026-11-29, torch 2.15.0: all three loads succeed and agree
// for every_kind.pt, zip64.pt (ZIP64 extra fields on every entry) and training.pt; CRCs OK; every entry's
// data offset is a multiple of 64; the values (float32 bit patterns, int64 values, key order, dict vs
// OrderedDict, tuples, bytes, 0-d and empty tensors, ints past 2^31) are exactly the ones written here.
// The golden torch_saved.pt (scripts/reference/make_torch_save_fixtures.py) checks the other direction:
// what torch writes, we read, and our writer reproduces torch's data.pkl byte for byte.

import Foundation
import NeuralNet
import Tensors
import TestSupport
import XCTest

@testable import Checkpoints

final class TorchSaveTests: XCTestCase {
    static var checkpointsFixtures: URL { Fixture.root.appendingPathComponent("checkpoints") }

    /// Where a test writes a file: a temporary directory, or CNCLIP_TORCH_SAVE_OUT for the manual torch check.
    func outputURL(_ name: String) throws -> URL {
        if let dir = ProcessInfo.processInfo.environment["CNCLIP_TORCH_SAVE_OUT"] {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            return URL(fileURLWithPath: dir).appendingPathComponent(name)
        }
        return try temporaryDirectory(self).appendingPathComponent(name)
    }

    /// A root holding every kind of value a checkpoint holds.
    static func everyKind() -> PickleValue {
        var sd = PickleDict()
        sd.isOrderedDict = true
        sd[.string("w")] = .tensor(CheckpointTensor(Tensor(shape: [2, 3], scalars: [1, -2.5, 3e-7, .infinity, -0.0, 6])))
        sd[.string("scalar")] = .tensor(CheckpointTensor(Tensor(shape: [], scalars: [2.5])))
        sd[.string("ids")] = .tensor(CheckpointTensor(shape: [4], integers: [1, -2, 1 << 40, Int64.min + 1]))
        sd[.string("empty")] = .tensor(CheckpointTensor(Tensor(shape: [0, 3])))
        sd[.string("big")] = .tensor(CheckpointTensor(Tensor(shape: [300, 7], scalars: (0..<2100).map { Float($0) * 0.25 - 7 })))
        return .dict(
            PickleDict([
                (.string("epoch"), .int(3)),
                (.string("step"), .int(1_234_567_890_123)),
                (.string("neg"), .int(-70000)),
                (.string("min"), .int(Int.min)),
                (.string("name"), .string("实验-finetune")),
                (.string("lr"), .float(1e-4)),
                (.string("flag"), .bool(true)),
                (.string("nothing"), .none),
                (.string("raw"), .bytes([0, 0xff, 0x61, 0x80])),
                (.string("list"), .list([.int(1), .float(2.5), .string("x"), .list([]), .tuple([])])),
                (.string("tuples"), .tuple([.tuple([.int(9)]), .tuple([.int(1), .int(2), .int(3), .int(4)])])),
                (.string("int_keys"), .dict(PickleDict([(.int(0), .string("zero")), (.int(7), .string("seven"))]))),
                (.string("long_list"), .list((0..<2500).map { .int($0) })),
                (.string("state_dict"), .dict(sd)),
            ]))
    }

    func testCRC32KnownValue() {
        XCTAssertEqual(CRC32.checksum(Array("123456789".utf8)), 0xCBF4_3926)
        XCTAssertEqual(CRC32.checksum([UInt8]()), 0)
        // Incremental feeding agrees with one pass (slicing-by-8 plus the byte tail).
        let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 37) }
        var crc = CRC32()
        bytes.withUnsafeBytes { b in
            crc.update(UnsafeRawBufferPointer(rebasing: b[0..<13]))
            crc.update(UnsafeRawBufferPointer(rebasing: b[13...]))
        }
        XCTAssertEqual(crc.value, CRC32.checksum(bytes))
    }

    func testRoundTripEveryKind() throws {
        let url = try outputURL("every_kind.pt")
        let root = Self.everyKind()
        try TorchSave.write(root, to: url)
        let back = try TorchCheckpoint(url: url)
        XCTAssertEqual(back.root, root)
        XCTAssertEqual(back.root["state_dict"]?.dictValue?.isOrderedDict, true)
        XCTAssertEqual(back.root.dictValue?.isOrderedDict, false)
        XCTAssertEqual(back.root["int_keys"]?.dictValue?.isOrderedDict, false)
        XCTAssertEqual(back.root.dictValue?.keys.compactMap(\.stringValue), root.dictValue?.keys.compactMap(\.stringValue))
        // -0.0 and infinity survive bit for bit (== alone would accept +0.0).
        let w = try XCTUnwrap(back.root["state_dict"]?["w"]?.tensorValue)
        XCTAssertEqual(w.floats.map(\.bitPattern), [1, -2.5, 3e-7, .infinity, -0.0, 6].map { Float($0).bitPattern })
        XCTAssertEqual(back.root["state_dict"]?["ids"]?.tensorValue?.dtype, .int64)
        XCTAssertEqual(back.root["state_dict"]?["scalar"]?.tensorValue?.shape, [])
    }

    func testArchiveLayoutMatchesTorch() throws {
        let url = try temporaryDirectory(self).appendingPathComponent("layout.pt")
        try TorchSave.write(Self.everyKind(), to: url, archiveName: "layout")
        let archive = try StoredZipArchive(url: url)
        XCTAssertEqual(
            archive.entries.map(\.name),
            [
                "layout/data.pkl", "layout/.format_version", "layout/.storage_alignment", "layout/byteorder",
                "layout/data/0", "layout/data/1", "layout/data/2", "layout/data/3", "layout/data/4",
                "layout/version", "layout/.data/serialization_id",
            ])
        for e in archive.entries { XCTAssertEqual(e.dataOffset % 64, 0, e.name) }
        func text(_ n: String) throws -> String { String(decoding: try archive.data(named: "layout/" + n), as: UTF8.self) }
        XCTAssertEqual(try text("version"), "3\n")
        XCTAssertEqual(try text("byteorder"), "little")
        XCTAssertEqual(try text(".format_version"), "1")
        XCTAssertEqual(try text(".storage_alignment"), "64")
        XCTAssertEqual(try text(".data/serialization_id").count, 40)
        XCTAssertEqual(try archive.data(named: "layout/data/1").count, 4)  // the 0-d tensor: one element
        XCTAssertEqual(try archive.data(named: "layout/data/2").count, 32)  // int64 ×4
        XCTAssertEqual(try archive.data(named: "layout/data/3").count, 0)  // the empty tensor
        withExtendedLifetime(archive) {}  // the data(named:) buffers above are views of its memory map
        // Local headers as torch writes them: data-descriptor + UTF-8 flags, padding extra field "FB".
        let bytes = try Data(contentsOf: url)
        XCTAssertEqual(Array(bytes[0..<4]), [0x50, 0x4b, 0x03, 0x04])
        XCTAssertEqual(bytes[6], 0x08); XCTAssertEqual(bytes[7], 0x08)
        let nameLength = Int(bytes[26]) | Int(bytes[27]) << 8
        XCTAssertEqual(Array(bytes[(30 + nameLength)..<(32 + nameLength)]), [0x46, 0x42])
        // Writing twice gives the same bytes (no time stamps, a content-derived serialization id).
        let again = url.deletingLastPathComponent().appendingPathComponent("again.pt")
        try TorchSave.write(Self.everyKind(), to: again, archiveName: "layout")
        XCTAssertEqual(try Data(contentsOf: again), bytes)
    }

    func testZip64LayoutReadsBack() throws {
        let url = try outputURL("zip64.pt")
        try TorchSave.write(Self.everyKind(), to: url, archiveName: "zip64", forceZip64: true)
        XCTAssertEqual(try TorchCheckpoint(url: url).root, Self.everyKind())
    }

    func testGoldenTorchSavedFile() throws {
        let url = Self.checkpointsFixtures.appendingPathComponent("torch_saved.pt")
        let got = try TorchCheckpoint(url: url).root
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.checkpointsFixtures.appendingPathComponent("expected.json")))
        let expected = try Self.untag(json)
        XCTAssertEqual(got, expected)
        XCTAssertTrue(Self.sameDictKinds(got, expected), "dict / OrderedDict kinds differ")
        XCTAssertEqual(got["state_dict"]?["ids"]?.tensorValue?.integers, [1, -2, 1 << 40, -(1 << 62)])

        // Our pickle of what we read is torch's data.pkl, byte for byte.
        let archive = try StoredZipArchive(url: url)  // keeps the map alive while its bytes are copied
        let torchPickle = try withExtendedLifetime(archive) { Array(try archive.data(named: "torch_saved/data.pkl")) }
        XCTAssertEqual(try TorchPickler.pickle(got).bytes, torchPickle)

        // Written by us, read by us: the same values.
        let ours = try temporaryDirectory(self).appendingPathComponent("resaved.pt")
        try TorchSave.write(got, to: ours)
        let back = try TorchCheckpoint(url: ours).root
        XCTAssertEqual(back, expected)
        XCTAssertTrue(Self.sameDictKinds(back, expected))
    }

    func testFailedWriteLeavesNothing() throws {
        let dir = try temporaryDirectory(self)
        let url = dir.appendingPathComponent("keep.pt")
        try TorchSave.write(.dict(PickleDict([(.string("a"), .int(1))])), to: url)
        let before = try Data(contentsOf: url)
        // An unhashable key fails while pickling: the old file stays, no temporary is left behind.
        let bad = PickleValue.dict(PickleDict([(.list([]), .int(1))]))
        assertCheckpointError(try TorchSave.write(bad, to: url)) {
            if case .pickle(let source, _, _) = $0 { return source == url.path } else { return false }
        }
        XCTAssertEqual(try Data(contentsOf: url), before)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["keep.pt"])
        // A missing directory is an I/O error naming the file.
        let missing = dir.appendingPathComponent("no/such/dir/x.pt")
        assertFileError(try TorchSave.write(.none, to: missing), path: missing.path)
    }

    func testProtocol4EncoderUnchangedForSimpleTuples() throws {
        // pickle.dumps((7, 7, 'a text'), protocol=4) in CPython 3.11.
        let bytes = try PickleEncoder.encode(.tuple([.int(7), .int(7), .string("a text")]))
        XCTAssertEqual(
            bytes,
            [0x80, 0x04, 0x95, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x4b, 0x07, 0x4b, 0x07, 0x8c, 0x06]
                + Array("a text".utf8) + [0x94, 0x87, 0x94, 0x2e])
    }

    // MARK: TrainingCheckpoint

    func testTrainingCheckpointRoundTrip() throws {
        let url = try outputURL("training.pt")
        let optimizer = AdamW.StateDict(
            state: [
                0: .init(step: 3, expAvg: Tensor(shape: [2], scalars: [0.1, 0.2]), expAvgSq: Tensor(shape: [2], scalars: [0.01, 0.04])),
                1: .init(step: 3, expAvg: Tensor(shape: [2, 2], scalars: [1, 2, 3, 4]), expAvgSq: Tensor(shape: [2, 2], scalars: [5, 6, 7, 8])),
            ],
            groups: [
                .init(learningRate: 1e-3, betas: (0.9, 0.98), eps: 1e-6, weightDecay: 0, parameterIndices: [0]),
                .init(learningRate: 1e-3, betas: (0.9, 0.98), eps: 1e-6, weightDecay: 0.2, parameterIndices: [1, 2]),
            ])
        let ck = TrainingCheckpoint(
            epoch: 2, step: 40, name: "exp",
            stateDict: [
                ("visual.ln_pre.bias", Tensor(shape: [2], scalars: [1, 2])),
                ("visual.proj", Tensor(shape: [2, 2], scalars: [3, 4, 5, 6])),
                ("visual.bn1.num_batches_tracked", Tensor(shape: [], scalars: [12])),
            ], optimizer: optimizer.pickleValue)
        try ck.write(to: url)

        // The raw file has the reference's layout.
        let raw = try TorchCheckpoint(url: url)
        XCTAssertEqual(raw.root.dictValue?.keys, ["epoch", "step", "name", "state_dict", "optimizer"].map { PickleValue.string($0) })
        XCTAssertEqual(try raw.stateDict.keys, ["module.visual.ln_pre.bias", "module.visual.proj", "module.visual.bn1.num_batches_tracked"])
        XCTAssertEqual(raw.root["state_dict"]?.dictValue?.isOrderedDict, true)
        XCTAssertEqual(raw.root["state_dict"]?["module.visual.bn1.num_batches_tracked"]?.tensorValue?.integers, [12])
        XCTAssertEqual(try StoredZipArchive(url: url).entries.first?.name, "training/data.pkl")
        let groups = try XCTUnwrap(raw.root["optimizer"]?["param_groups"]?.arrayValue)
        XCTAssertEqual(
            groups[0].dictValue?.keys.compactMap(\.stringValue),
            [
                "weight_decay", "lr", "betas", "eps", "amsgrad", "maximize", "foreach", "capturable", "differentiable",
                "fused", "decoupled_weight_decay", "params",
            ])
        let step = try XCTUnwrap(raw.root["optimizer"]?["state"]?.dictValue?[.int(1)]?["step"]?.tensorValue)
        XCTAssertEqual(step.shape, [])
        XCTAssertEqual(step.dtype, .float32)
        XCTAssertEqual(step.floats, [3])

        let back = try TrainingCheckpoint(contentsOf: url)
        XCTAssertEqual(back.epoch, 2)
        XCTAssertEqual(back.step, 40)
        XCTAssertEqual(back.name, "exp")
        XCTAssertEqual(back.stateDict.map(\.0), ck.stateDict.map(\.0))
        for (a, b) in zip(back.stateDict, ck.stateDict) { XCTAssertEqual(a.1.shape, b.1.shape); XCTAssertEqual(a.1.scalars, b.1.scalars) }
        XCTAssertEqual(back.optimizer, optimizer.pickleValue)
        let parsed = try AdamW.StateDict(back.optimizer)
        XCTAssertEqual(parsed.state.keys.sorted(), [0, 1])
        XCTAssertEqual(parsed.state[1]?.step, 3)
        XCTAssertEqual(parsed.state[1]?.expAvgSq.scalars, [5, 6, 7, 8])
        XCTAssertEqual(parsed.groups.map(\.parameterIndices), [[0], [1, 2]])
        XCTAssertEqual(parsed.groups[1].weightDecay, 0.2)
        XCTAssertEqual(parsed.groups[1].betas.1, 0.98)
    }

    func testTrainingCheckpointReadsReferenceFile() throws {
        // The fixture is the reference's own training-checkpoint dict (written by torch.save).
        let ck = try TrainingCheckpoint(contentsOf: Fixture.model("vit-tiny.pt"))
        XCTAssertEqual(ck.epoch, 3)
        XCTAssertEqual(ck.step, 120)
        XCTAssertEqual(ck.name, "vit-tiny")
        XCTAssertEqual(ck.stateDict.count, 71)
        XCTAssertEqual(ck.stateDict.first?.0, "text_projection")
        // Re-saved by us and read again: same names, same values.
        let url = try temporaryDirectory(self).appendingPathComponent("epoch_latest.pt")
        try ck.write(to: url)
        let back = try TrainingCheckpoint(contentsOf: url)
        XCTAssertEqual(back.stateDict.map(\.0), ck.stateDict.map(\.0))
        for (a, b) in zip(back.stateDict, ck.stateDict) { XCTAssertEqual(a.1.scalars, b.1.scalars, a.0) }
    }

    func testTrainingCheckpointErrorsNameTheFile() throws {
        let url = try temporaryDirectory(self).appendingPathComponent("partial.pt")
        try TorchSave.write(.dict(PickleDict([(.string("epoch"), .int(1)), (.string("step"), .string("x"))])), to: url)
        assertCheckpointError(try TrainingCheckpoint(contentsOf: url)) {
            if case .typeMismatch(let file, let key, _) = $0 { return file == url.path && key == "step" } else { return false }
        }
        assertCheckpointError(try AdamW.StateDict(.dict(PickleDict()), source: url.path)) {
            if case .missingKey(let file, let key) = $0 { return file == url.path && key == "optimizer.state" } else { return false }
        }
    }

    // MARK: helpers

    /// A tagged JSON value of expected.json as a PickleValue.
    static func untag(_ json: Any) throws -> PickleValue {
        guard let o = json as? [String: Any], let (tag, v) = o.first(where: { $0.key != "ordered" }) else { throw CocoaError(.coderReadCorrupt) }
        switch tag {
        case "int": return .int((v as! NSNumber).intValue)
        case "float": return .float((v as! NSNumber).doubleValue)
        case "str": return .string(v as! String)
        case "bool": return .bool((v as! NSNumber).boolValue)
        case "none": return .none
        case "bytes": return .bytes((v as! [NSNumber]).map { $0.uint8Value })
        case "list": return .list(try (v as! [Any]).map(untag))
        case "tuple": return .tuple(try (v as! [Any]).map(untag))
        case "dict":
            var d = PickleDict(try (v as! [[Any]]).map { (try untag($0[0]), try untag($0[1])) })
            d.isOrderedDict = (o["ordered"] as! NSNumber).boolValue
            return .dict(d)
        case "tensor":
            let t = v as! [String: Any]
            let shape = (t["shape"] as! [NSNumber]).map(\.intValue)
            let values = t["values"] as! [NSNumber]
            if t["dtype"] as! String == "int64" { return .tensor(CheckpointTensor(shape: shape, integers: values.map(\.int64Value))) }
            return .tensor(CheckpointTensor(Tensor(shape: shape, scalars: values.map { Float($0.doubleValue) })))
        default: throw CocoaError(.coderReadCorrupt)
        }
    }

    /// True when every dict has the same OrderedDict-ness in both (PickleDict equality ignores it, as Python does).
    static func sameDictKinds(_ a: PickleValue, _ b: PickleValue) -> Bool {
        switch (a, b) {
        case let (.dict(x), .dict(y)):
            return x.isOrderedDict == y.isOrderedDict && zip(x.entries, y.entries).allSatisfy { sameDictKinds($0.value, $1.value) }
        case let (.list(x), .list(y)), let (.tuple(x), .tuple(y)):
            return zip(x, y).allSatisfy { sameDictKinds($0, $1) }
        default: return true
        }
    }
}

extension TorchSaveTests {
    /// Manual: CNCLIP_BIG_SAVE_MB=750 writes a state dict of that size and checks that peak memory grows by
    /// far less than the file (tensors are streamed from their own memory, not copied). Skipped in CI.
    /// Measured 2026-11-29: 750 MB written in 4.2 s, peak RSS 786 -> 787 MB.
    func testLargeWriteStreams() throws {
        guard let mb = ProcessInfo.processInfo.environment["CNCLIP_BIG_SAVE_MB"].flatMap(Int.init) else {
            throw XCTSkip("set CNCLIP_BIG_SAVE_MB to run")
        }
        let count = mb << 18  // floats
        let t = Tensor(shape: [count / 1024, 1024], repeating: 0.5)
        var sd = PickleDict()
        sd.isOrderedDict = true
        sd[.string("big")] = .tensor(CheckpointTensor(t))
        func peakMB() -> Int { peakResidentBytes() >> 20 }
        let before = peakMB()
        let url = try temporaryDirectory(self).appendingPathComponent("big.pt")
        let start = Date()
        try TorchSave.write(.dict(PickleDict([(.string("state_dict"), .dict(sd))])), to: url)
        let after = peakMB()
        print("wrote \(mb) MB in \(String(format: "%.2f", Date().timeIntervalSince(start))) s; peak RSS \(before) -> \(after) MB")
        XCTAssertLessThan(after - before, 64)
        let back = try TorchCheckpoint(url: url)
        XCTAssertEqual(back.root["state_dict"]?["big"]?.tensorValue?.shape, t.shape)
    }
}
