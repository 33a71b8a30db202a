// The protobuf wire format and CRC-32C against their specifications' worked examples.

import Essentials
import XCTest

final class ProtobufWriterTests: XCTestCase {
    /// The encoding guide's examples: field 1 = 150 is `08 96 01`; a string "testing" in field 2 is `12 07 74 65 73 74
    /// 69 6e 67`; an embedded message is its bytes behind a length; -1 takes ten bytes.
    func testFieldsAsTheEncodingGuideWritesThem() {
        var m = ProtobufWriter()
        m.field(1, varint: 150)
        XCTAssertEqual(m.bytes, [0x08, 0x96, 0x01])
        var s = ProtobufWriter()
        s.field(2, string: "testing")
        XCTAssertEqual(s.bytes, [0x12, 0x07, 0x74, 0x65, 0x73, 0x74, 0x69, 0x6E, 0x67])
        var outer = ProtobufWriter()
        outer.field(3, message: m)
        XCTAssertEqual(outer.bytes, [0x1A, 0x03, 0x08, 0x96, 0x01])
        var n = ProtobufWriter()
        n.field(1, varint: -1)
        XCTAssertEqual(n.bytes, [0x08] + Array(repeating: 0xFF, count: 9) + [0x01])
        var f = ProtobufWriter()
        f.field(2, float: 1.0)
        f.field(1, double: -2.0)
        XCTAssertEqual(f.bytes, [0x15, 0x00, 0x00, 0x80, 0x3F, 0x09, 0, 0, 0, 0, 0, 0, 0, 0xC0])
    }

    /// RFC 3720's check value and test vectors (B.4): "123456789", 32 zeros, 32 bytes 0xFF, 0…31.
    func testCRC32CCheckValues() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8($0) }), 0x46DD_794E)
    }
}
