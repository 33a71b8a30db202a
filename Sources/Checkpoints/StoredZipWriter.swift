// A streaming writer for stored (uncompressed) zip archives laid out as PyTorch's `torch.save` lays them out.
//
// Facts taken from files torch 2.15 writes (see scripts/reference/check_torch_save_compat.py and the test
// file's notes): every local header has zero CRC and sizes with general-purpose flag bit 3 set (a data
// descriptor follows the data) and bit 11 (UTF-8 names); each entry's data starts on a 64-byte boundary,
// reached by padding the local header with an extra field of id "FB" filled with 'Z' (at least the 4-byte
// field header, so a gap under 4 bytes takes 64 more); the end of the archive always carries the ZIP64
// end record and locator before the classic end record. Sizes and offsets that do not fit 32 bits go in a
// ZIP64 extra field of the central directory, which is what readers (miniz in torch, Python's zipfile,
// StoredZipArchive) take sizes from.
//
// Streaming: bytes go to `emit` through a 1 MiB buffer, and large payloads go straight from the caller's
// memory, so writing a multi-gigabyte state dict never holds a second copy of it.

import Foundation

/// Writes a stored zip archive entry by entry to a byte sink.
final class StoredZipWriter {
    /// Data offsets are multiples of this (torch's default `storage_alignment`).
    static let alignment = 64

    private struct CentralEntry {
        let name: [UInt8]
        let offset: Int
        let size: Int
        let crc: UInt32
    }

    private let emit: (UnsafeRawBufferPointer) throws -> Void
    private var buffer: [UInt8] = []
    private let bufferLimit = 1 << 20
    private var central: [CentralEntry] = []
    /// Bytes written so far (including buffered ones).
    private(set) var offset = 0
    /// Writes ZIP64 extra fields for every entry, small or not, so tests can exercise the >4 GB layout.
    var forceZip64 = false
    private var currentName: [UInt8]?
    private var currentStart = 0
    private var currentDataStart = 0
    private var currentCRC = CRC32()
    /// FNV-1a over every closed entry's CRC and size: a fingerprint of the content (for `serialization_id`).
    private(set) var contentDigest: (UInt64, UInt64) = (0xcbf2_9ce4_8422_2325, 0x8422_2325_cbf2_9ce4)

    /// A writer sending its bytes, in order, to `emit`.
    init(emit: @escaping (UnsafeRawBufferPointer) throws -> Void) {
        self.emit = emit
        buffer.reserveCapacity(bufferLimit)
    }

    // MARK: low-level output

    private func flush() throws {
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { try emit($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    private func put(_ bytes: UnsafeRawBufferPointer) throws {
        if bytes.count >= bufferLimit {
            try flush()
            try emit(bytes)
        } else {
            if buffer.count + bytes.count > bufferLimit { try flush() }
            buffer.append(contentsOf: bytes)
        }
        offset += bytes.count
    }

    private func put(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try put($0) } }
    private func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xff), UInt8((v >> 8) & 0xff)] }
    private func le32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
    private func le32(_ v: Int) -> [UInt8] { le32(UInt32(truncatingIfNeeded: v)) }
    private func le64(_ v: Int) -> [UInt8] { withUnsafeBytes(of: UInt64(v).littleEndian, Array.init) }

    // MARK: entries

    /// Starts entry `name`: writes its local header, padded so that its data starts on a 64-byte boundary.
    func begin(_ name: String) throws {
        precondition(currentName == nil, "an entry is already open")
        let n = Array(name.utf8)
        let start = offset
        let headerEnd = start + 30 + n.count
        var gap = (Self.alignment - headerEnd % Self.alignment) % Self.alignment
        if gap < 4 { gap += Self.alignment }
        var header = le32(UInt32(0x0403_4b50)) + le16(20) + le16(0x0808) + le16(0) + le16(0) + le16(0)
        header += le32(0) + le32(0) + le32(0) + le16(n.count) + le16(gap) + n
        header += [0x46, 0x42] + le16(gap - 4) + [UInt8](repeating: 0x5a, count: gap - 4)  // "FB", then 'Z' padding
        try put(header)
        currentName = n
        currentStart = start
        currentDataStart = offset
        currentCRC = CRC32()
    }

    /// Appends `bytes` to the open entry.
    func write(_ bytes: UnsafeRawBufferPointer) throws {
        precondition(currentName != nil, "no entry is open")
        currentCRC.update(bytes)
        try put(bytes)
    }

    /// Appends `bytes` to the open entry.
    func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }

    /// Closes the open entry with its data descriptor (64-bit sizes when the entry needs ZIP64).
    func end() throws {
        guard let name = currentName else { preconditionFailure("no entry is open") }
        let size = offset - currentDataStart
        let crc = currentCRC.value
        let zip64 = forceZip64 || size >= 0xFFFF_FFFF || currentStart >= 0xFFFF_FFFF
        var descriptor = le32(UInt32(0x0807_4b50)) + le32(crc)
        descriptor += zip64 ? le64(size) + le64(size) : le32(size) + le32(size)
        try put(descriptor)
        central.append(CentralEntry(name: name, offset: currentStart, size: size, crc: crc))
        for v in [UInt64(crc), UInt64(size)] {
            contentDigest.0 = (contentDigest.0 ^ v) &* 0x0000_0100_0000_01b3
            contentDigest.1 = (contentDigest.1 ^ (v &+ 0x9e37_79b9)) &* 0x0000_0100_0000_01b3
        }
        currentName = nil
    }

    /// A whole entry from memory.
    func add(_ name: String, _ bytes: [UInt8]) throws {
        try begin(name)
        try write(bytes)
        try end()
    }

    /// Writes the central directory and the end records, then flushes.
    func finish() throws {
        precondition(currentName == nil, "an entry is still open")
        let cdStart = offset
        for e in central {
            let bigSize = forceZip64 || e.size >= 0xFFFF_FFFF
            let bigOffset = forceZip64 || e.offset >= 0xFFFF_FFFF
            // The ZIP64 extra holds only the saturated fields, in the order size, compressed size, offset.
            var extra: [UInt8] = []
            if bigSize { extra += le64(e.size) + le64(e.size) }
            if bigOffset { extra += le64(e.offset) }
            if !extra.isEmpty { extra = le16(1) + le16(extra.count) + extra }
            let version = extra.isEmpty ? 20 : 45
            var h = le32(UInt32(0x0201_4b50)) + le16(version) + le16(version) + le16(0x0808) + le16(0) + le16(0) + le16(0)
            h += le32(e.crc) + le32(bigSize ? 0xFFFF_FFFF : e.size) + le32(bigSize ? 0xFFFF_FFFF : e.size)
            h += le16(e.name.count) + le16(extra.count) + le16(0) + le16(0) + le16(0) + le32(0)
            h += le32(bigOffset ? 0xFFFF_FFFF : e.offset)
            try put(h + e.name + extra)
        }
        let cdSize = offset - cdStart
        let zip64End = offset
        var tail = le32(UInt32(0x0606_4b50)) + le64(44) + le16(45) + le16(45) + le32(0) + le32(0)
        tail += le64(central.count) + le64(central.count) + le64(cdSize) + le64(cdStart)
        tail += le32(UInt32(0x0706_4b50)) + le32(0) + le64(zip64End) + le32(1)
        let count16 = central.count >= 0xFFFF ? 0xFFFF : central.count
        tail += le32(UInt32(0x0605_4b50)) + le16(0) + le16(0) + le16(count16) + le16(count16)
        tail += le32(cdSize >= 0xFFFF_FFFF ? 0xFFFF_FFFF : cdSize) + le32(cdStart >= 0xFFFF_FFFF || forceZip64 ? 0xFFFF_FFFF : cdStart) + le16(0)
        try put(tail)
        try flush()
    }
}
