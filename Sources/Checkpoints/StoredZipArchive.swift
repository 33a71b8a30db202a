// A reader for the stored (uncompressed) zip archives `torch.save` writes, straight off a memory map.
//
// A general zip library would inflate entries into fresh buffers; torch archives are stored and their
// storages 64-byte aligned, so returning slices of the map is what makes zero-copy loading possible.
// torch writes data descriptors (flag bit 3), leaving sizes in the local headers zero: sizes and offsets
// are taken from the central directory, with ZIP64 fields when present (torch always writes the ZIP64
// end records, and needs them for files over 4 GB).

import Foundation

/// One entry of a stored zip archive: its name and where its bytes lie in the file.
package struct ZipEntry: Sendable, Hashable {
    /// Full name inside the archive, e.g. `vit-tiny/data/3`.
    package let name: String
    /// Compression method (0 = stored; the only one this reader returns data for).
    package let method: Int
    /// Byte offset of the entry's data in the file.
    package let dataOffset: Int
    /// Size of the entry's data in bytes (compressed size, equal to the uncompressed size when stored).
    package let size: Int
}

/// A zip archive read from a memory map; entries' bytes are slices of the map (no copies).
package final class StoredZipArchive: Sendable {
    /// The mapped file.
    package let file: MappedFile
    /// Entries in central-directory order.
    package let entries: [ZipEntry]
    private let byName: [String: Int]

    private static let eocdSignature: UInt32 = 0x0605_4b50
    private static let zip64LocatorSignature: UInt32 = 0x0706_4b50
    private static let zip64EOCDSignature: UInt32 = 0x0606_4b50
    private static let centralSignature: UInt32 = 0x0201_4b50
    private static let localSignature: UInt32 = 0x0403_4b50

    /// Opens `url` (memory-mapped) as a zip archive.
    package convenience init(url: URL) throws {
        try self.init(file: MappedFile(url: url))
    }

    /// Parses the central directory of `file`; throws `notZip`, `truncated` or `badZip` naming the file and offset.
    package init(file: MappedFile) throws {
        self.file = file
        let path = file.path
        let r = ByteReader(bytes: file.bytes)
        let size = file.bytes.count
        guard size >= 4 else { throw CheckpointError.notZip(file: path, reason: "file is \(size) bytes") }
        let magic = r.u32(0)
        if magic != Self.localSignature && magic != Self.eocdSignature {
            if size >= 4, r.u8(0) == 0x80, r.u8(1) == 0x02, r.u8(2) == 0x8a, r.u8(3) == 0x0a {
                throw CheckpointError.legacyTorchFormat(file: path)
            }
            throw CheckpointError.notZip(
                file: path, reason: String(format: "starts with bytes %02x %02x %02x %02x, not PK\\3\\4", r.u8(0), r.u8(1), r.u8(2), r.u8(3)))
        }

        // The end record sits in the last 22 + up to 65535 comment bytes; prefer one whose comment ends the file.
        var eocd = -1
        var p = size - 22
        let lowest = max(0, size - 22 - 65535)
        while p >= lowest {
            if r.u32(p) == Self.eocdSignature {
                let comment = Int(r.u16(p + 20))
                if p + 22 + comment == size { eocd = p; break }
                if eocd < 0 { eocd = p }
            }
            p -= 1
        }
        guard eocd >= 0 else {
            throw CheckpointError.truncated(
                file: path, reason: "zip end-of-central-directory record not found in the last \(min(size, 22 + 65535)) bytes of \(size)")
        }
        var entryCount = Int(r.u16(eocd + 10))
        var cdSize = Int(r.u32(eocd + 12))
        var cdOffset = Int(r.u32(eocd + 16))
        let locator = eocd - 20
        if locator >= 0, r.u32(locator) == Self.zip64LocatorSignature {
            let rec64 = r.u64(locator + 8)
            guard rec64 < UInt64(size), r.has(Int(rec64), 56), r.u32(Int(rec64)) == Self.zip64EOCDSignature else {
                throw CheckpointError.badZip(
                    file: path, offset: locator, reason: "ZIP64 locator points to \(rec64), where there is no ZIP64 end record")
            }
            let o = Int(rec64)
            let n64 = r.u64(o + 32), s64 = r.u64(o + 40), off64 = r.u64(o + 48)
            guard n64 < UInt64(Int.max), s64 < UInt64(size), off64 < UInt64(size) else {
                throw CheckpointError.badZip(file: path, offset: o, reason: "ZIP64 end record values out of range")
            }
            entryCount = Int(n64); cdSize = Int(s64); cdOffset = Int(off64)
        }
        guard r.has(cdOffset, cdSize) else {
            throw CheckpointError.truncated(
                file: path, reason: "central directory at \(cdOffset) (\(cdSize) bytes) runs past the end (\(size) bytes)")
        }

        // Every central-directory entry takes at least 46 bytes: a larger count is a lie, and must not size an allocation.
        guard entryCount <= cdSize / 46 else {
            throw CheckpointError.badZip(
                file: path, offset: cdOffset, reason: "the end record claims \(entryCount) entries for a \(cdSize)-byte central directory")
        }
        var list: [ZipEntry] = []
        list.reserveCapacity(entryCount)
        var index: [String: Int] = [:]
        var c = cdOffset
        for i in 0..<entryCount {
            guard r.has(c, 46), r.u32(c) == Self.centralSignature else {
                throw CheckpointError.badZip(file: path, offset: c, reason: "central directory entry \(i) of \(entryCount) has no signature")
            }
            let method = Int(r.u16(c + 10))
            var csize = UInt64(r.u32(c + 20))
            var usize = UInt64(r.u32(c + 24))
            let nameLen = Int(r.u16(c + 28)), extraLen = Int(r.u16(c + 30)), commentLen = Int(r.u16(c + 32))
            var localOffset = UInt64(r.u32(c + 42))
            guard r.has(c + 46, nameLen + extraLen + commentLen) else {
                throw CheckpointError.truncated(file: path, reason: "central directory entry \(i) at \(c) runs past the end")
            }
            let name = String(decoding: UnsafeRawBufferPointer(rebasing: file.bytes[(c + 46)..<(c + 46 + nameLen)]), as: UTF8.self)
            // ZIP64 extra field: only the fields whose 32-bit slot is saturated are present, in this order.
            var e = c + 46 + nameLen
            let extraEnd = e + extraLen
            while e + 4 <= extraEnd {
                let id = r.u16(e), len = Int(r.u16(e + 2))
                guard e + 4 + len <= extraEnd else { break }
                if id == 0x0001 {
                    var f = e + 4
                    if usize == 0xFFFF_FFFF, f + 8 <= e + 4 + len { usize = r.u64(f); f += 8 }
                    if csize == 0xFFFF_FFFF, f + 8 <= e + 4 + len { csize = r.u64(f); f += 8 }
                    if localOffset == 0xFFFF_FFFF, f + 8 <= e + 4 + len { localOffset = r.u64(f); f += 8 }
                }
                e += 4 + len
            }
            guard localOffset < UInt64(size), r.has(Int(localOffset), 30), r.u32(Int(localOffset)) == Self.localSignature else {
                throw CheckpointError.badZip(
                    file: path, offset: Int(min(localOffset, UInt64(Int.max))), reason: "entry '\(name)': no local header at its recorded offset")
            }
            let lo = Int(localOffset)
            let dataOffset = lo + 30 + Int(r.u16(lo + 26)) + Int(r.u16(lo + 28))
            guard csize <= UInt64(size), r.has(dataOffset, Int(csize)) else {
                throw CheckpointError.truncated(
                    file: path, reason: "entry '\(name)': \(csize) bytes at \(dataOffset) run past the end (\(size) bytes)")
            }
            if method == 0 && csize != usize {
                throw CheckpointError.badZip(file: path, offset: c, reason: "stored entry '\(name)' has compressed size \(csize) but size \(usize)")
            }
            index[name] = list.count
            list.append(ZipEntry(name: name, method: method, dataOffset: dataOffset, size: Int(csize)))
            c += 46 + nameLen + extraLen + commentLen
        }
        entries = list
        byName = index
    }

    /// The entry called `name`, if any.
    package func entry(named name: String) -> ZipEntry? {
        byName[name].map { entries[$0] }
    }

    /// The bytes of `entry` as a slice of the map; throws `compressedEntry` for anything not stored.
    package func data(of entry: ZipEntry) throws -> UnsafeRawBufferPointer {
        guard entry.method == 0 else { throw CheckpointError.compressedEntry(file: file.path, entry: entry.name, method: entry.method) }
        return UnsafeRawBufferPointer(rebasing: file.bytes[entry.dataOffset..<(entry.dataOffset + entry.size)])
    }

    /// The bytes of the entry called `name`; throws `missingEntry` naming it when absent.
    package func data(named name: String) throws -> UnsafeRawBufferPointer {
        guard let e = entry(named: name) else { throw CheckpointError.missingEntry(file: file.path, entry: name) }
        return try data(of: e)
    }
}
