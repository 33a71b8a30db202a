// A read-only memory map of a whole file.
//
// Checkpoints reach ~4 GB (ViT-H); mapping lets fp32 tensors borrow the page cache directly instead of
// being read into a second copy. Tensors keep the map alive through `TensorStorage`'s owner reference, so
// the mapping disappears exactly when the last borrowing tensor does.

import Essentials
import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A file mapped read-only into memory; unmapped when the last reference (including borrowing tensors) goes away.
package final class MappedFile: @unchecked Sendable {  // sound: the mapping is read-only and lives as long as this object
    /// The mapped file.
    package let url: URL
    /// The file's bytes (empty for an empty file).
    package let bytes: UnsafeRawBufferPointer

    /// Maps `url` read-only; throws `CheckpointError.io` naming the file when it cannot be opened or mapped.
    package init(url: URL) throws {
        self.url = url
        let path = url.path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw FileError(path: path, reason: "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileError(path: path, reason: "cannot stat: \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw FileError(path: path, reason: "not a regular file") }
        let size = Int(st.st_size)
        if size == 0 {
            // mmap refuses length 0; an empty buffer lets every format report "too short" uniformly.
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw FileError(path: path, reason: "cannot memory-map \(size) bytes: \(String(cString: strerror(errno)))")
        }
        bytes = UnsafeRawBufferPointer(start: p, count: size)
    }

    /// The file's path, for error messages.
    package var path: String { url.path }

    /// True when `pointer ..< pointer + byteCount` lies inside the mapping.
    package func contains(_ pointer: UnsafeRawPointer, byteCount: Int) -> Bool {
        guard let base = bytes.baseAddress else { return false }
        return pointer >= base && pointer + byteCount <= base + bytes.count
    }

    /// Lets the kernel drop the pages lying wholly inside `pointer ..< pointer + byteCount` from this process's memory
    /// (a weight copied elsewhere and no longer read here): read again, they would come back from the file.
    package func releasePages(_ pointer: UnsafeRawPointer, byteCount: Int) {
        guard contains(pointer, byteCount: byteCount) else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (Int(bitPattern: pointer) + page - 1) / page * page, end = (Int(bitPattern: pointer) + byteCount) / page * page
        guard end > start else { return }
        madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_DONTNEED)
    }

    deinit {
        if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
    }
}

/// Bounds-checked little-endian reads from a byte buffer; `fail` builds the error for an out-of-range read.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer

    @inline(__always) func has(_ offset: Int, _ count: Int) -> Bool {
        offset >= 0 && count >= 0 && offset <= bytes.count && count <= bytes.count - offset
    }
    @inline(__always) func u8(_ o: Int) -> UInt8 { bytes[o] }
    @inline(__always) func u16(_ o: Int) -> UInt16 { UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: o, as: UInt16.self)) }
    @inline(__always) func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
    @inline(__always) func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
}
