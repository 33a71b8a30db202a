// A protobuf wire-format reader for tests: enough to walk the messages our writers produce (ONNX models, TensorBoard
// events) field by field, without the schema compiler.

/// One field of a protobuf message as it is on the wire.
package struct ProtobufField: Sendable {
    /// The field number.
    package let number: Int
    /// The value of a varint field, or the bits of a fixed32/fixed64 field.
    package let integer: UInt64?
    /// The payload of a length-delimited field (a string, bytes, an embedded message or a packed array).
    package let bytes: [UInt8]?

    /// The payload as UTF-8 text.
    package var string: String? { bytes.map { String(decoding: $0, as: UTF8.self) } }
}

/// A malformed message.
package struct ProtobufReadError: Error, CustomStringConvertible {
    /// What is wrong, with the byte offset.
    package let description: String
}

/// The fields of the message `bytes`, in order; throws on a truncated or malformed encoding.
package func readProtobuf(_ bytes: [UInt8]) throws -> [ProtobufField] {
    var at = 0
    func varint() throws -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard at < bytes.count, shift < 64 else { throw ProtobufReadError(description: "truncated varint at byte \(at)") }
            let b = bytes[at]
            at += 1
            value |= UInt64(b & 0x7f) << shift
            if b < 0x80 { return value }
            shift += 7
        }
    }
    var fields: [ProtobufField] = []
    while at < bytes.count {
        let key = try varint()
        let number = Int(key >> 3)
        switch key & 7 {
        case 0: fields.append(ProtobufField(number: number, integer: try varint(), bytes: nil))
        case 1, 5:
            let n = key & 7 == 1 ? 8 : 4
            guard at + n <= bytes.count else { throw ProtobufReadError(description: "truncated fixed field \(number) at byte \(at)") }
            var v: UInt64 = 0
            for i in 0..<n { v |= UInt64(bytes[at + i]) << (8 * UInt64(i)) }
            at += n
            fields.append(ProtobufField(number: number, integer: v, bytes: nil))
        case 2:
            let n = Int(try varint())
            guard n >= 0, at + n <= bytes.count else {
                throw ProtobufReadError(description: "field \(number) of \(n) bytes overruns the message at byte \(at)")
            }
            fields.append(ProtobufField(number: number, integer: nil, bytes: Array(bytes[at..<(at + n)])))
            at += n
        default: throw ProtobufReadError(description: "wire type \(key & 7) of field \(number) at byte \(at)")
        }
    }
    return fields
}

/// The varints of a packed repeated field's payload.
package func readPackedVarints(_ bytes: [UInt8]) throws -> [Int64] {
    var out: [Int64] = []
    var value: UInt64 = 0
    var shift: UInt64 = 0
    for b in bytes {
        value |= UInt64(b & 0x7f) << shift
        if b < 0x80 {
            out.append(Int64(bitPattern: value))
            value = 0
            shift = 0
        } else {
            shift += 7
        }
    }
    guard shift == 0 else { throw ProtobufReadError(description: "truncated packed varint") }
    return out
}

extension Array where Element == ProtobufField {
    /// The fields numbered `number`.
    package func all(_ number: Int) -> [ProtobufField] { filter { $0.number == number } }
    /// The first field numbered `number`.
    package func first(_ number: Int) -> ProtobufField? { first { $0.number == number } }
}
