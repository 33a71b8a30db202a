import Foundation
import TestSupport
import XCTest

@testable import Checkpoints

/// Files written to attack the reader: every size they declare is checked before memory is taken, no global outside
/// the checkpoint allow list is ever resolved, and each is refused with an error naming the file and what is wrong.
final class HostileInputTests: XCTestCase {
    private func le(_ value: Int, _ bytes: Int) -> [UInt8] { (0..<bytes).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }

    /// LONG1 with 8 bytes: any Int in a pickle.
    private func long(_ value: Int) -> [UInt8] { [0x8a, 8] + le(value, 8) }

    /// A torch.save archive of one tensor `t` whose pickle declares `storageCount` floats and the view `size`/`stride`,
    /// over a storage entry of `storageBytes` bytes.
    private func archive(storageCount: Int, size: [Int], stride: [Int], storageBytes: Int = 16) throws -> URL {
        var pkl: [UInt8] = [0x80, 0x02] + Op.emptyDict + Op.unicode("t")
        pkl += Op.global("torch._utils", "_rebuild_tensor_v2") + Op.mark
        pkl +=
            Op.mark + Op.unicode("storage") + Op.global("torch", "FloatStorage") + Op.unicode("0") + Op.unicode("cpu") + long(storageCount)
            + Op.tuple + Op.binpersid
        pkl += Op.int1(0) + Op.mark + size.flatMap(long) + Op.tuple + Op.mark + stride.flatMap(long) + Op.tuple
        pkl += Op.newFalse + Op.global("collections", "OrderedDict") + Op.emptyTuple + Op.reduce + Op.tuple + Op.reduce
        pkl += [0x73] + Op.stop  // SETITEM
        let url = try temporaryDirectory(self).appendingPathComponent("hostile.pt")
        let zip = makeZip([("hostile/data.pkl", pkl), ("hostile/data/0", [UInt8](repeating: 0, count: storageBytes))])
        try Data(zip).write(to: url)
        return url
    }

    private func badTensor(_ e: CheckpointError) -> Bool { if case .badTensor = e { return true } else { return false } }

    func testAWellFormedArchiveOfTheseBuildersLoads() throws {
        let sd = try TorchCheckpoint(url: try archive(storageCount: 4, size: [2, 2], stride: [2, 1])).stateDict
        XCTAssertEqual(sd["t"]?.shape, [2, 2])
    }

    func testDeclaredSizesAreCheckedBeforeMemoryIsTaken() throws {
        let before = peakResidentBytes()
        // A storage of 2^61 floats (its byte count overflows), in a 16-byte entry.
        let e = assertCheckpointError(try TorchCheckpoint(url: try archive(storageCount: 1 << 61, size: [4], stride: [1])).stateDict) {
            if case .truncated = $0 { return true } else { return false }
        }
        XCTAssertTrue(e?.description.contains("hostile.pt") ?? false)
        // A negative storage size.
        assertCheckpointError(try TorchCheckpoint(url: try archive(storageCount: -4, size: [4], stride: [1])).stateDict) {
            if case .truncated = $0 { return true } else { return false }
        }
        // A view whose element count overflows, and one whose reach overflows.
        assertCheckpointError(try TorchCheckpoint(url: try archive(storageCount: 4, size: [1 << 40, 1 << 40], stride: [1, 1])).stateDict, badTensor)
        assertCheckpointError(try TorchCheckpoint(url: try archive(storageCount: 4, size: [2], stride: [Int.max])).stateDict, badTensor)
        // Strides that run past the storage.
        assertCheckpointError(try TorchCheckpoint(url: try archive(storageCount: 4, size: [2, 3], stride: [3, 1])).stateDict, badTensor)
        // Overlapping strides: a billion elements viewed over one float would be a 4 GB copy from a 16-byte storage.
        let overlap = assertCheckpointError(
            try TorchCheckpoint(url: try archive(storageCount: 4, size: [1_000_000_000], stride: [0])).stateDict, badTensor)
        XCTAssertTrue(overlap?.description.contains("overlapping") ?? false, overlap?.description ?? "")
        XCTAssertLessThan(peakResidentBytes() - before, 64 << 20, "refusing the files took memory")
    }

    func testAZipEndRecordClaimingTrillionsOfEntriesIsRefused() throws {
        var zip = makeZip([("top/a", [1, 2, 3])], zip64: true)
        // The ZIP64 end record's two entry counts (at 24 and 32 from its signature).
        let record = try XCTUnwrap((0..<(zip.count - 3)).last { zip[$0] == 0x50 && zip[$0 + 1] == 0x4b && zip[$0 + 2] == 6 && zip[$0 + 3] == 6 })
        for field in [24, 32] { zip.replaceSubrange((record + field)..<(record + field + 8), with: le(1 << 42, 8)) }
        let url = try temporaryDirectory(self).appendingPathComponent("entries.zip")
        try Data(zip).write(to: url)
        let before = peakResidentBytes()
        assertCheckpointError(try StoredZipArchive(url: url)) { if case .badZip = $0 { return true } else { return false } }
        XCTAssertLessThan(peakResidentBytes() - before, 64 << 20)
    }

    func testSafetensorsHeadersDeclaringTerabytesAreRefused() throws {
        func file(_ header: String, data: Int) throws -> URL {
            let h = Array(header.utf8)
            let url = try temporaryDirectory(self).appendingPathComponent("huge.safetensors")
            try Data(le(h.count, 8) + h + [UInt8](repeating: 0, count: data)).write(to: url)
            return url
        }
        let before = peakResidentBytes()
        for header in [
            #"{"a":{"dtype":"F32","shape":[1099511627776],"data_offsets":[0,4398046511104]}}"#,  // 4 TB past a 8-byte file
            #"{"a":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,8]}}"#,  // the element count overflows
            #"{"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,8]}}"#,  // its byte count overflows
            #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[9223372036854775800,9223372036854775807]}}"#,
        ] {
            let e = assertCheckpointError(try SafeTensors.read(try file(header, data: 8)), badTensor)
            XCTAssertTrue(e?.description.contains("huge.safetensors") ?? false)
        }
        XCTAssertLessThan(peakResidentBytes() - before, 64 << 20)
    }

    /// Loading an untrusted `.pt` is safe with us, unlike `torch.load(weights_only=False)`: a global outside the
    /// checkpoint allow list is refused by name when the pickle names it, before anything could call it.
    func testGlobalsBeyondCheckpointsAreRefusedByName() throws {
        for (module, name) in [
            ("os", "system"), ("posix", "system"), ("builtins", "eval"), ("builtins", "exec"), ("builtins", "getattr"),
            ("subprocess", "Popen"), ("__builtin__", "open"), ("torch", "load"), ("numpy", "load"), ("shutil", "rmtree"),
        ] {
            let pkl: [UInt8] = [0x80, 0x02] + Op.global(module, name) + Op.unicode("touch /tmp/pwned") + [0x85] + Op.reduce + Op.stop
            let url = try temporaryDirectory(self).appendingPathComponent("evil.pt")
            try Data(makeZip([("evil/data.pkl", pkl)])).write(to: url)
            let e = assertCheckpointError(try TorchCheckpoint(url: url)) {
                if case .unsupportedGlobal(_, 2, "\(module).\(name)") = $0 { return true } else { return false }
            }
            XCTAssertTrue(e?.description.contains("\(module).\(name)") ?? false)
        }
    }

    /// A pickle can build a list that holds itself (EMPTY_LIST, DUP, APPEND): refused, and its containers freed — each
    /// decode here holds 16 MB, so twenty leaked decodes would add 320 MB. (Found by Fuzz/FuzzPickle.)
    func testSelfContainingContainersAreFreed() throws {
        let payload = 16 << 20
        var pkl: [UInt8] = [0x80, 0x04, 0x5d, 0x32, 0x61]  // EMPTY_LIST, DUP, APPEND: the list holds itself
        pkl += [0x42] + le(payload, 4) + [UInt8](repeating: 7, count: payload) + [0x61, 0x2e]  // BINBYTES, APPEND, STOP
        let before = peakResidentBytes()
        for _ in 0..<20 {
            XCTAssertThrowsError(try PickleDecoder().decode(pkl)) { XCTAssertTrue("\($0)".contains("contains itself"), "\($0)") }
        }
        XCTAssertLessThan(peakResidentBytes() - before, 64 << 20, "decoding leaks its containers")
    }
}
