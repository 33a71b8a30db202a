// Protocol Buffers' wire format, written by hand for the few messages we emit (TensorBoard events; ONNX graphs):
// fields as (number << 3 | wire type) varint keys followed by a varint, a little-endian fixed32/fixed64, or a
// varint length and bytes. Which fields to leave out (proto3 omits a scalar equal to its default) is the caller's
// decision, so that our bytes can equal the official encoder's.

/// A protobuf message being encoded: append fields in field-number order, as the official encoders do.
package struct ProtobufWriter {
    /// The encoded message so far.
    package private(set) var bytes: [UInt8] = []

    /// An empty message.
    package init() {}

    private mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    private mutating func key(_ number: Int, _ wireType: UInt64) { varint(UInt64(number) << 3 | wireType) }

    /// A varint field (`int32`, `int64`, `uint64`, `bool`, enum): negative values take ten bytes, as in protobuf.
    package mutating func field(_ number: Int, varint value: Int64) {
        key(number, 0)
        varint(UInt64(bitPattern: value))
    }

    /// A `double` field (wire type 1, little-endian).
    package mutating func field(_ number: Int, double value: Double) {
        key(number, 1)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes += $0 }
    }

    /// A `float` field (wire type 5, little-endian).
    package mutating func field(_ number: Int, float value: Float) {
        key(number, 5)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes += $0 }
    }

    /// A length-delimited field: `bytes`, or a packed repeated field's payload.
    package mutating func field<C: Collection>(_ number: Int, bytes payload: C) where C.Element == UInt8 {
        key(number, 2)
        varint(UInt64(payload.count))
        bytes += payload
    }

    /// The key and length of a length-delimited field whose `length` payload bytes the caller writes after these
    /// bytes (a large payload streamed to a file instead of copied into the message).
    package mutating func lengthDelimitedHeader(_ number: Int, length: Int) {
        key(number, 2)
        varint(UInt64(length))
    }

    /// A packed repeated `int64` field.
    package mutating func field(_ number: Int, packed values: [Int64]) {
        var payload = ProtobufWriter()
        for v in values { payload.varint(UInt64(bitPattern: v)) }
        field(number, bytes: payload.bytes)
    }

    /// A `string` field (UTF-8).
    package mutating func field(_ number: Int, string value: String) { field(number, bytes: Array(value.utf8)) }

    /// An embedded message field.
    package mutating func field(_ number: Int, message: ProtobufWriter) { field(number, bytes: message.bytes) }
}
