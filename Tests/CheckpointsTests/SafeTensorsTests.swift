import Foundation
import Tensors
import XCTest

@testable import Checkpoints

final class SafeTensorsTests: XCTestCase {
    func testReadsReferenceFileZeroCopy() throws {
        let file = try SafeTensorsFile(url: Fixture.model("vit-tiny.expected.safetensors"))
        XCTAssertEqual(file.keys, ["tokens", "image_features", "images", "logits_per_image", "text_features"])
        XCTAssertNil(file.metadata)
        let tokens = try file.tensor("tokens")
        XCTAssertEqual(tokens.dtype, .int64)
        XCTAssertEqual(tokens.shape, [12, 52])
        XCTAssertEqual(tokens.integers?.first, 101)  // [CLS]
        let images = try file.tensor("images")
        XCTAssertEqual(images.shape, [13, 3, 64, 64])
        let map = try XCTUnwrap(images.mapping)
        XCTAssertTrue(map === file.file)
        XCTAssertTrue(map.contains(UnsafeRawPointer(images.tensor.data), byteCount: images.count * 4))
    }

    func testWriteReproducesReferenceBytes() throws {
        // Written back, the reference's own file comes out byte for byte: same order, JSON and padding.
        for name in ["edge_cases.expected.safetensors", "vit-tiny.expected.safetensors", "vit-tiny.hf.safetensors"] {
            let url = Fixture.model(name)
            let sd = try SafeTensors.read(url)
            let out = try temporaryDirectory(self).appendingPathComponent(name)
            try SafeTensors.write(sd, to: out)
            XCTAssertEqual(try Data(contentsOf: out), try Data(contentsOf: url), name)
        }
    }

    func testRoundTripWithMetadata() throws {
        let dir = try temporaryDirectory(self)
        let url = dir.appendingPathComponent("rt.safetensors")
        var sd = StateDict()
        sd["b.weight"] = CheckpointTensor(Tensor(shape: [2, 3], scalars: [1, -2, 3.5, .infinity, 0, -0.0]))
        sd["a.ids"] = CheckpointTensor(shape: [3], integers: [7, -8, 1 << 50])
        sd["scalar"] = CheckpointTensor(Tensor(shape: [], scalars: [0.25]))
        sd["empty"] = CheckpointTensor(Tensor(shape: [0, 4]))
        sd["名字 \"quoted\""] = CheckpointTensor(Tensor(shape: [1], scalars: [9]))
        try SafeTensors.write(sd, metadata: ["format": "pt", "note": "line\nbreak"], to: url)
        let file = try SafeTensorsFile(url: url)
        XCTAssertEqual(file.metadata, ["format": "pt", "note": "line\nbreak"])
        XCTAssertEqual(Set(file.keys), Set(sd.keys))
        let back = try file.stateDict()
        for (k, v) in sd { XCTAssertEqual(back[k], v, k) }
        XCTAssertEqual(back["a.ids"]?.integers, [7, -8, 1 << 50])
        XCTAssertEqual(back["empty"]?.shape, [0, 4])
        let headerLength = try Data(contentsOf: url).prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        XCTAssertEqual(headerLength % 8, 0)

        // The [String: Tensor] convenience, overwriting atomically and leaving no temporary behind.
        try SafeTensors.write(["x": Tensor(shape: [2], scalars: [1, 2])], to: url)
        XCTAssertEqual(try SafeTensors.read(url)["x"]?.floats, [1, 2])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["rt.safetensors"])
    }

    func testWriteIntoMissingDirectoryFailsCleanly() throws {
        let url = try temporaryDirectory(self).appendingPathComponent("no/such/dir/x.safetensors")
        assertFileError(try SafeTensors.write(["x": Tensor(shape: [1])], to: url), path: url.path)
    }

    /// A safetensors file with `header` as its JSON and `data` after it.
    private func file(header: String, data: [UInt8] = [], lengthOverride: UInt64? = nil) throws -> URL {
        let h = Array(header.utf8)
        var bytes = withUnsafeBytes(of: (lengthOverride ?? UInt64(h.count)).littleEndian, Array.init)
        bytes += h + data
        let url = try temporaryDirectory(self).appendingPathComponent("bad.safetensors")
        try Data(bytes).write(to: url)
        return url
    }

    func testCorruptHeadersAreErrors() throws {
        let ok = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        XCTAssertEqual(try SafeTensors.read(try file(header: ok, data: Array(repeating: 0, count: 8)))["a"]?.shape, [2])

        func header(_ e: CheckpointError) -> Bool { if case .badSafetensorsHeader = e { return true } else { return false } }
        func tensor(_ key: String) -> (CheckpointError) -> Bool {
            { if case .badTensor(_, let k, _) = $0 { return k == key } else { return false } }
        }
        assertCheckpointError(try SafeTensors.read(try file(header: ok, data: Array(repeating: 0, count: 8), lengthOverride: 1 << 40)), header)
        assertCheckpointError(try SafeTensors.read(try file(header: ok, data: [], lengthOverride: 500)), header)
        assertCheckpointError(
            try SafeTensors.read(try file(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]"#, data: Array(repeating: 0, count: 8))),
            header)
        assertCheckpointError(try SafeTensors.read(try file(header: "[1,2,3]   ")), header)
        // Out of range, overlapping, wrong size, unknown dtype: each names the key.
        assertCheckpointError(
            try SafeTensors.read(try file(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: [0, 0, 0, 0])), tensor("a"))
        assertCheckpointError(
            try SafeTensors.read(
                try file(
                    header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                    data: Array(repeating: 0, count: 12))), tensor("b"))
        assertCheckpointError(
            try SafeTensors.read(try file(header: #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: Array(repeating: 0, count: 8))),
            tensor("a"))
        assertCheckpointError(
            try SafeTensors.read(try file(header: #"{"q":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}}"#, data: Array(repeating: 0, count: 8))),
            tensor("q"))
        // Bytes after the last tensor are not allowed by the reference reader either.
        assertCheckpointError(try SafeTensors.read(try file(header: ok, data: Array(repeating: 0, count: 12))), header)
    }

    func testOtherDtypesConvert() throws {
        // F16 [1, -2], BF16 [0.5], F64 [3.25], I32 [-5], U8 [200], BOOL [1]
        let header =
            #"{"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"BF16","shape":[1],"data_offsets":[4,6]},"#
            + #""d":{"dtype":"F64","shape":[1],"data_offsets":[6,14]},"i":{"dtype":"I32","shape":[1],"data_offsets":[14,18]},"#
            + #""u":{"dtype":"U8","shape":[1],"data_offsets":[18,19]},"t":{"dtype":"BOOL","shape":[1],"data_offsets":[19,20]}}"#
        var data: [UInt8] = [0x00, 0x3c, 0x00, 0xc0, 0x00, 0x3f]
        data += withUnsafeBytes(of: Double(3.25).bitPattern.littleEndian, Array.init)
        data += withUnsafeBytes(of: Int32(-5).littleEndian, Array.init)
        data += [200, 1]
        let sd = try SafeTensors.read(try file(header: header, data: data))
        XCTAssertEqual(sd.keys, ["h", "b", "d", "i", "u", "t"])
        XCTAssertEqual(sd["h"]?.floats, [1, -2])
        XCTAssertEqual(sd["b"]?.floats, [0.5])
        XCTAssertEqual(sd["d"]?.floats, [3.25])
        XCTAssertEqual(sd["i"]?.integers, [-5])
        XCTAssertEqual(sd["u"]?.integers, [200])
        XCTAssertEqual(sd["t"]?.integers, [1])
        XCTAssertEqual(sd["t"]?.dtype, .bool)
    }

    func testHalfConversionIsExactForEveryBitPattern() {
        let wrong = (0...UInt16.max).filter { bits in
            let want = Float(Float16(bitPattern: bits)), got = halfBitsToFloat(bits)
            return !(got.bitPattern == want.bitPattern || (got.isNaN && want.isNaN))
        }
        XCTAssertEqual(wrong, [])
    }
}
