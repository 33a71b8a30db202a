// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of TensorBoard's record framing (TFRecord).

/// CRC-32C of byte sequences.
package enum CRC32C {
    private static let table: [UInt32] = (0..<256).map { i in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    /// The CRC-32C of `data` ("123456789" gives 0xE3069283).
    package static func checksum<C: Collection>(_ data: C) -> UInt32 where C.Element == UInt8 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in data { crc = table[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
        return ~crc
    }

    /// TFRecord's masked form: rotated right by 15 bits plus a constant, so that a CRC over data holding CRCs stays strong.
    package static func masked<C: Collection>(_ data: C) -> UInt32 where C.Element == UInt8 {
        let crc = checksum(data)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }
}
