// Shared helpers for the Checkpoints tests: fixture paths, temporary files, and a tiny stored-zip writer
// for hand-made torch archives (to exercise cases the reference fixtures do not contain).

import Essentials
import Foundation
import XCTest

@testable import Checkpoints

enum Fixture {
    /// `Tests/Fixtures`, found from this source file so tests run from any working directory.
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")
    static func model(_ name: String) -> URL { root.appendingPathComponent("models").appendingPathComponent(name) }
}

/// A fresh temporary directory, removed when the test case ends.
func temporaryDirectory(_ test: XCTestCase) throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
    return dir
}

/// Asserts that `body` throws a `CheckpointError` matching `check`, and returns it.
@discardableResult
func assertCheckpointError(
    _ body: @autoclosure () throws -> Any, file: StaticString = #filePath, line: UInt = #line,
    _ check: (CheckpointError) -> Bool
) -> CheckpointError? {
    do {
        _ = try body()
        XCTFail("expected an error", file: file, line: line)
    } catch let e as CheckpointError {
        XCTAssertTrue(check(e), "unexpected error: \(e)", file: file, line: line)
        return e
    } catch {
        XCTFail("unexpected error type: \(error)", file: file, line: line)
    }
    return nil
}

/// Asserts that `body` throws a `FileError` about `path`, and returns it.
@discardableResult
func assertFileError(_ body: @autoclosure () throws -> Any, path: String, file: StaticString = #filePath, line: UInt = #line) -> FileError? {
    do {
        _ = try body()
        XCTFail("expected an error", file: file, line: line)
    } catch let e as FileError {
        XCTAssertEqual(e.path, path, "unexpected error: \(e)", file: file, line: line)
        return e
    } catch {
        XCTFail("unexpected error type: \(error)", file: file, line: line)
    }
    return nil
}

/// A minimal zip writer (stored entries, no data descriptors); `methods` overrides the method of named entries.
/// With `zip64`, sizes and offsets go in ZIP64 extra fields and end records, as writers do for files over 4 GB.
func makeZip(_ entries: [(String, [UInt8])], methods: [String: UInt16] = [:], zip64: Bool = false) -> [UInt8] {
    func le64(_ v: Int) -> [UInt8] { (0..<8).map { UInt8((v >> (8 * $0)) & 0xff) } }
    func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xff), UInt8((v >> 8) & 0xff)] }
    func le32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xff) } }
    var out: [UInt8] = []
    var central: [UInt8] = []
    for (name, data) in entries {
        let n = Array(name.utf8)
        let method = Int(methods[name] ?? 0)
        let offset = out.count
        out +=
            le32(0x0403_4b50) + le16(20) + le16(0) + le16(method) + le16(0) + le16(0) + le32(0)
            + le32(data.count) + le32(data.count) + le16(n.count) + le16(0) + n + data
        if zip64 {
            let extra = le16(1) + le16(24) + le64(data.count) + le64(data.count) + le64(offset)
            central +=
                le32(0x0201_4b50) + le16(45) + le16(45) + le16(0) + le16(method) + le16(0) + le16(0) + le32(0)
                + le32(0xFFFF_FFFF) + le32(0xFFFF_FFFF) + le16(n.count) + le16(extra.count) + le16(0) + le16(0) + le16(0) + le32(0)
                + le32(0xFFFF_FFFF) + n + extra
        } else {
            central +=
                le32(0x0201_4b50) + le16(20) + le16(20) + le16(0) + le16(method) + le16(0) + le16(0) + le32(0)
                + le32(data.count) + le32(data.count) + le16(n.count) + le16(0) + le16(0) + le16(0) + le16(0) + le32(0)
                + le32(offset) + n
        }
    }
    let cdOffset = out.count
    out += central
    if zip64 {
        let record = out.count
        out +=
            le32(0x0606_4b50) + le64(44) + le16(45) + le16(45) + le32(0) + le32(0)
            + le64(entries.count) + le64(entries.count) + le64(central.count) + le64(cdOffset)
        out += le32(0x0706_4b50) + le32(0) + le64(record) + le32(1)
        out += le32(0x0605_4b50) + le16(0) + le16(0) + le16(0xFFFF) + le16(0xFFFF) + le32(0xFFFF_FFFF) + le32(0xFFFF_FFFF) + le16(0)
        return out
    }
    out += le32(0x0605_4b50) + le16(0) + le16(0) + le16(entries.count) + le16(entries.count) + le32(central.count) + le32(cdOffset) + le16(0)
    return out
}

/// Builders for hand-assembled pickle opcodes.
enum Op {
    static func unicode(_ s: String) -> [UInt8] {
        let b = Array(s.utf8)
        return [0x58] + (0..<4).map { UInt8((b.count >> (8 * $0)) & 0xff) } + b
    }
    static func global(_ module: String, _ name: String) -> [UInt8] { [0x63] + Array("\(module)\n\(name)\n".utf8) }
    static func int1(_ v: UInt8) -> [UInt8] { [0x4b, v] }
    static let mark: [UInt8] = [0x28], tuple: [UInt8] = [0x74], tuple2: [UInt8] = [0x86], reduce: [UInt8] = [0x52]
    static let emptyDict: [UInt8] = [0x7d], emptyTuple: [UInt8] = [0x29], setitems: [UInt8] = [0x75], stop: [UInt8] = [0x2e]
    static let newTrue: [UInt8] = [0x88], newFalse: [UInt8] = [0x89], binpersid: [UInt8] = [0x51]
    static func binput(_ i: UInt8) -> [UInt8] { [0x71, i] }
    static func binget(_ i: UInt8) -> [UInt8] { [0x68, i] }
}

extension Float {
    /// This value rounded to IEEE half and back, as `tensor.half().float()` does.
    var throughHalf: Float { Float(Float16(self)) }
}
