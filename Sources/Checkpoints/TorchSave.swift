// Writing `torch.save` files: what PyTorch 2.x's `torch.load` reads, with `weights_only=True` or False.
//
// The archive holds, under one top folder: `data.pkl` (the object pickled at protocol 2, see
// TorchPickler.swift), `.format_version` ("1"), `.storage_alignment` ("64"), `byteorder` ("little"), one
// `data/<key>` entry per tensor (its elements, contiguous, little-endian), `version` ("3\n") and
// `.data/serialization_id` — the records torch 2.15 writes, in its order. torch.load only requires
// `data.pkl` and the storages; the others tell it the layout (alignment, byte order) and match its files.
// Every tensor gets its own storage (no sharing), written straight from the tensor's memory.

import Essentials
import Foundation
import Tensors

#if _endian(big)
    #error("TorchSave writes fp32 storages as they lie in memory; torch archives are little-endian")
#endif

/// Writes `torch.save`-compatible zip archives.
package enum TorchSave {
    /// Writes `root` as `torch.save(root, url)` would, atomically (temporary sibling + rename), streaming tensor data.
    ///
    /// Floating tensors are stored as float32, integer ones in their stored integer type; a `PickleDict`
    /// with `isOrderedDict` becomes a `collections.OrderedDict`. `archiveName` is the top folder inside the zip.
    package static func write(_ root: PickleValue, to url: URL, archiveName: String = "archive") throws {
        try write(root, to: url, archiveName: archiveName, forceZip64: false)
    }

    /// `write`, optionally with ZIP64 fields on every entry (how files over 4 GB are laid out) for tests.
    static func write(_ root: PickleValue, to url: URL, archiveName: String, forceZip64: Bool) throws {
        let path = url.path
        guard !archiveName.isEmpty, !archiveName.contains("/") else {
            throw FileError(path: path, reason: "archive name '\(archiveName)' must be a non-empty name without '/'")
        }
        let pickled: (bytes: [UInt8], storages: [TorchStorageWrite])
        do {
            pickled = try TorchPickler.pickle(root)
        } catch CheckpointError.pickle(_, let offset, let reason) {
            throw CheckpointError.pickle(source: path, offset: offset, reason: reason)
        }
        let top = archiveName + "/"
        try writeAtomically(url) { emit in
            let zip = StoredZipWriter(emit: emit)
            zip.forceZip64 = forceZip64
            try zip.add(top + "data.pkl", pickled.bytes)
            try zip.add(top + ".format_version", Array("1".utf8))
            try zip.add(top + ".storage_alignment", Array(String(StoredZipWriter.alignment).utf8))
            try zip.add(top + "byteorder", Array("little".utf8))
            for s in pickled.storages {
                try zip.begin(top + "data/" + s.key)
                try writeStorage(s, to: zip)
                try zip.end()
            }
            try zip.add(top + "version", Array("3\n".utf8))
            // torch writes 40 decimal digits here and only reports them as load metadata; ours fingerprint the content.
            let d = zip.contentDigest
            try zip.add(top + ".data/serialization_id", Array((digits20(d.0) + digits20(d.1)).utf8))
            try zip.finish()
        }
    }

    private static func digits20(_ v: UInt64) -> String {
        let s = String(v)
        return String(repeating: "0", count: 20 - s.count) + s
    }

    /// The tensor's elements in the storage's type: fp32 straight from memory, integers converted in chunks.
    private static func writeStorage(_ s: TorchStorageWrite, to zip: StoredZipWriter) throws {
        switch s.tensor.values {
        case .float(let t):
            try t.withUnsafeBufferPointer { try zip.write(UnsafeRawBufferPointer($0)) }
        case .integer(let values):
            let width = s.dtype.byteSize
            var chunk = [UInt8](repeating: 0, count: min(values.count, 1 << 16) * width)
            var i = 0
            while i < values.count {
                let n = min(values.count - i, 1 << 16)
                chunk.withUnsafeMutableBytes { out in
                    for j in 0..<n {
                        let v = values[i + j]
                        switch width {
                        case 8: out.storeBytes(of: v.littleEndian, toByteOffset: j * 8, as: Int64.self)
                        case 4: out.storeBytes(of: Int32(truncatingIfNeeded: v).littleEndian, toByteOffset: j * 4, as: Int32.self)
                        case 2: out.storeBytes(of: Int16(truncatingIfNeeded: v).littleEndian, toByteOffset: j * 2, as: Int16.self)
                        default: out.storeBytes(of: UInt8(truncatingIfNeeded: v), toByteOffset: j, as: UInt8.self)
                        }
                    }
                }
                try chunk.withUnsafeBytes { try zip.write(UnsafeRawBufferPointer(rebasing: $0[0..<(n * width)])) }
                i += n
            }
        }
    }
}
