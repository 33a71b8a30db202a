// Reading `torch.save` files: a stored zip holding `<top>/data.pkl` and one `<top>/data/<key>` entry per
// storage. The pickle is decoded by our hand-written VM; each tensor it rebuilds is a view of a storage
// entry, so several tensors may share one storage at different offsets and strides.

import Foundation
import Tensors

/// A whole `torch.save` object, decoded, with accessors for cn-clip's training-checkpoint fields.
package struct TorchCheckpoint: Sendable {
    /// The file it was read from.
    package let url: URL
    /// The saved object (for cn-clip checkpoints a dict with `epoch`, `step`, `name`, `state_dict`, `optimizer`).
    package let root: PickleValue

    /// Reads and decodes `url`; fp32 tensors borrow the file's memory map.
    package init(url: URL) throws {
        self.url = url
        let archive = try StoredZipArchive(url: url)
        root = try Self.decode(archive)
    }

    /// The checkpoint's `epoch`, if saved.
    package var epoch: Int? { root["epoch"]?.intValue }
    /// The checkpoint's `step`, if saved.
    package var step: Int? { root["step"]?.intValue }
    /// The checkpoint's experiment `name`, if saved.
    package var name: String? { root["name"]?.stringValue }

    /// The raw state dict in file order (keys as saved, e.g. with `module.`): the `state_dict` entry, or the root if it is one.
    package var stateDict: StateDict {
        get throws { try StateDict.from(pickled: root, source: url.path) }
    }

    /// Decodes the pickle of a torch zip archive, resolving storages to slices of the map.
    static func decode(_ archive: StoredZipArchive) throws -> PickleValue {
        let path = archive.file.path
        // The top folder is whatever name the file was saved under (`archive/` in older torch).
        let pklCandidates = archive.entries.filter { e in
            e.name.hasSuffix("/data.pkl") && e.name.dropLast("/data.pkl".count).contains("/") == false
        }
        guard let pkl = pklCandidates.first ?? archive.entry(named: "data.pkl") else {
            throw CheckpointError.missingEntry(file: path, entry: "<top>/data.pkl")
        }
        let prefix = String(pkl.name.dropLast("data.pkl".count))
        if let bo = archive.entry(named: prefix + "byteorder") {
            let order = String(decoding: try archive.data(of: bo), as: UTF8.self)
            guard order == "little" else {
                throw CheckpointError.unsupportedFormat(file: path, reason: "byteorder is '\(order)'; only little-endian storages are read")
            }
        }
        let mapping = archive.file
        var shared: [String: TensorStorage] = [:]
        let resolver: PickleDecoder.TensorResolver = { storage, offset, shape, stride in
            let entryName = prefix + "data/" + storage.key
            guard let entry = archive.entry(named: entryName) else {
                throw CheckpointError.missingEntry(file: path, entry: entryName)
            }
            let bytes = try archive.data(of: entry)
            // The pickle's element count is checked against the entry before anything is sized from it.
            let (byteCount, overflow) = storage.count.multipliedReportingOverflow(by: storage.dtype.byteSize)
            guard storage.count >= 0, !overflow, bytes.count >= byteCount else {
                throw CheckpointError.truncated(
                    file: path, reason: "entry '\(entryName)' has \(bytes.count) bytes, the pickle says \(storage.count) \(storage.dtype) elements")
            }
            let used = UnsafeRawBufferPointer(rebasing: bytes[0..<byteCount])
            let makeShared: () -> TensorStorage = {
                if let s = shared[storage.key] { return s }
                let s = TensorStorage(
                    borrowing: UnsafeMutablePointer(mutating: used.baseAddress!.assumingMemoryBound(to: Float.self)),
                    count: storage.count, owner: mapping)
                shared[storage.key] = s
                return s
            }
            return try TensorBuild.make(
                bytes: used, dtype: storage.dtype, offset: offset, shape: shape, stride: stride,
                mapping: mapping, sharedStorage: makeShared, file: path, key: entryName)
        }
        let decoder = PickleDecoder(source: path + ":" + pkl.name, tensorResolver: resolver)
        return try decoder.decode(try archive.data(of: pkl))
    }
}
