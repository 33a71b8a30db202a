// Training curves for TensorBoard: an event file (`events.out.tfevents.<time>.<host>.<pid>.0`, the name TensorBoard's
// own EventFileWriter gives) of TFRecord-framed `Event` protos — first `file_version: "brain.Event:2"`, then one
// event per scalar as `torch.utils.tensorboard`'s `add_scalar` writes it (`Summary.Value.simple_value`). The bytes of
// each record equal TensorBoard's for the same values (Tests/Fixtures/tensorboard, from its RecordWriter).
//
// The file is appended to a record at a time, each in one write: a killed run leaves at most a torn last record,
// which TensorBoard's reader stops at; a resumed run starts a new file beside it, and TensorBoard merges the files of
// a folder by step.

import Essentials
import Foundation

/// Appends scalars to a TensorBoard event file.
package final class TensorBoardWriter {
    /// The event file.
    package let path: String
    private let handle: FileHandle

    /// Creates `folder` if needed and a new event file in it, starting with the file-version event at `wallTime`.
    package init(folder: String, wallTime: Double = Date().timeIntervalSince1970) throws {
        do { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) } catch {
            throw FileError(path: folder, reason: "cannot create the folder: \(error.localizedDescription)")
        }
        let host = ProcessInfo.processInfo.hostName
        path = "\(folder)/events.out.tfevents.\(String(format: "%010d", Int(wallTime))).\(host).\(getpid()).0"
        handle = try openForAppending(path)
        try append(Self.fileVersionEvent(wallTime: wallTime))
    }

    /// Appends `value` under `tag` (e.g. `train/loss`) at `step`.
    package func scalar(_ tag: String, _ value: Float, step: Int, wallTime: Double = Date().timeIntervalSince1970) throws {
        try append(Self.scalarEvent(tag: tag, value: value, step: step, wallTime: wallTime))
    }

    /// Appends one event per `(tag, value)` at `step`, in one write.
    package func scalars(_ values: [(String, Float)], step: Int, wallTime: Double = Date().timeIntervalSince1970) throws {
        try append(values.map { Self.scalarEvent(tag: $0.0, value: $0.1, step: step, wallTime: wallTime) })
    }

    private func append(_ event: [UInt8]) throws { try append([event]) }

    private func append(_ events: [[UInt8]]) throws {
        do { try handle.write(contentsOf: events.flatMap(Self.record)) } catch {
            throw FileError(path: path, reason: "cannot write: \(error.localizedDescription)")
        }
    }

    /// `Event {wall_time = 1; step = 2; file_version = 3}` with proto3's rule: a plain field equal to its default (all
    /// bits zero) is left out; `file_version` and `summary` are in a oneof and always written.
    static func fileVersionEvent(wallTime: Double) -> [UInt8] {
        var e = ProtobufWriter()
        if wallTime.bitPattern != 0 { e.field(1, double: wallTime) }
        e.field(3, string: "brain.Event:2")
        return e.bytes
    }

    /// `Event {wall_time = 1; step = 2; summary = 5 {value = 1 {tag = 1; simple_value = 2}}}`. `simple_value` is
    /// written even when 0: it is in a oneof, whose fields have presence (TensorBoard's reader skips a value without it).
    static func scalarEvent(tag: String, value: Float, step: Int, wallTime: Double) -> [UInt8] {
        var v = ProtobufWriter()
        if !tag.isEmpty { v.field(1, string: tag) }
        v.field(2, float: value)
        var summary = ProtobufWriter()
        summary.field(1, message: v)
        var e = ProtobufWriter()
        if wallTime.bitPattern != 0 { e.field(1, double: wallTime) }
        if step != 0 { e.field(2, varint: Int64(step)) }
        e.field(5, message: summary)
        return e.bytes
    }

    /// TFRecord framing: little-endian length, masked CRC-32C of those 8 bytes, the data, masked CRC-32C of the data.
    static func record(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(data.count + 16)
        let length = withUnsafeBytes(of: UInt64(data.count).littleEndian, Array.init)
        out += length
        withUnsafeBytes(of: CRC32C.masked(length).littleEndian) { out += $0 }
        out += data
        withUnsafeBytes(of: CRC32C.masked(data).littleEndian) { out += $0 }
        return out
    }
}
