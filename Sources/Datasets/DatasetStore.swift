// The LMDB layout of a cn-clip dataset split, as `build_lmdb_dataset.py` writes it:
//   {lmdb_dir}/{split}/pairs: key "0".."N-1" (decimal, UTF-8) → pickle.dumps((image_id, text_id, text)), protocol 4;
//                             key "num_samples" → str(N) as UTF-8 text.
//   {lmdb_dir}/{split}/imgs:  key str(image_id) → the base64 text of the image file (UTF-8);
//                             key "num_images" → str(number of TSV lines) as UTF-8 text.

import Checkpoints
import Essentials
import Foundation

/// The key names and encodings of the dataset LMDBs.
package enum DatasetLayout {
    /// The key holding the number of pairs in `pairs`.
    package static let numSamplesKey = "num_samples"
    /// The key holding the number of images in `imgs`.
    package static let numImagesKey = "num_images"
    /// The image-text pairs environment inside a split directory.
    package static let pairsDirectory = "pairs"
    /// The image environment inside a split directory.
    package static let imagesDirectory = "imgs"

    /// The value stored for pair `(imageID, textID, text)`: `pickle.dumps((image_id, text_id, text))` (protocol 4).
    package static func pairValue(imageID: PickleValue, textID: PickleValue, text: PickleValue) throws -> [UInt8] {
        try PickleEncoder.encode(.tuple([imageID, textID, text]))
    }
}

/// One image-text pair of a `pairs` LMDB.
package struct PairRecord: Equatable, Sendable {
    /// The image id (an int in the reference's datasets).
    package var imageID: PickleValue
    /// The text id (an int in the reference's datasets).
    package var textID: PickleValue
    /// The caption.
    package var text: PickleValue
}

/// Reads a `pairs` LMDB (`{split}/pairs`).
package final class PairsStore: Sendable {
    /// The environment read.
    package let environment: LMDBEnvironment
    /// The `num_samples` value.
    package let count: Int

    /// Opens the `pairs` environment at `path`.
    package init(path: String) throws {
        environment = try LMDBEnvironment(readingAt: path)
        count = try readCount(environment, key: DatasetLayout.numSamplesKey)
    }

    /// The pair stored under key `String(index)`.
    package func pair(at index: Int) throws -> PairRecord {
        let key = String(index)
        return try environment.read { txn in
            guard let bytes = try txn.get(key) else {
                throw DatasetError.badRecord(path: environment.path, key: key, reason: "no such pair")
            }
            return try decode(bytes, key: key)
        }
    }

    /// Every pair with its key, in cursor (key byte) order — "0", "1", "10", "11", … — skipping `num_samples`.
    package func forEach(_ body: (_ key: String, _ pair: PairRecord) throws -> Void) throws {
        try environment.read { txn in
            try txn.forEach { k, v in
                let key = String(decoding: k, as: UTF8.self)
                if key != DatasetLayout.numSamplesKey { try body(key, try decode(Array(v), key: key)) }
                return true
            }
        }
    }

    /// Unpickles one stored value into a pair.
    func decode(_ bytes: [UInt8], key: String) throws -> PairRecord {
        let value: PickleValue
        do { value = try PickleValue.unpickle(bytes, source: "\(environment.path) key '\(key)'") } catch {
            throw DatasetError.badRecord(path: environment.path, key: key, reason: "cannot unpickle: \(error)")
        }
        guard let items = value.arrayValue, items.count == 3 else {
            throw DatasetError.badRecord(path: environment.path, key: key, reason: "expected a 3-tuple (image_id, text_id, text), got \(value)")
        }
        return PairRecord(imageID: items[0], textID: items[1], text: items[2])
    }
}

/// Reads an `imgs` LMDB (`{split}/imgs`).
package final class ImageStore: Sendable {
    /// The environment read.
    package let environment: LMDBEnvironment
    /// The `num_images` value.
    package let count: Int

    /// Opens the `imgs` environment at `path`.
    package init(path: String) throws {
        environment = try LMDBEnvironment(readingAt: path)
        count = try readCount(environment, key: DatasetLayout.numImagesKey)
    }

    /// The image file bytes stored for `id` (base64-decoded, either alphabet), or nil when absent.
    package func imageData(id: String) throws -> Data? {
        try environment.read { txn in
            guard let b64 = try txn.get(id) else { return nil }
            return try decode(b64, key: id)
        }
    }

    /// Every image id with its base64 text, in cursor (key byte) order, skipping `num_images`.
    package func forEachBase64(_ body: (_ id: String, _ base64: UnsafeRawBufferPointer) throws -> Void) throws {
        try environment.read { txn in
            try txn.forEach { k, v in
                let key = String(decoding: k, as: UTF8.self)
                if key != DatasetLayout.numImagesKey { try body(key, v) }
                return true
            }
        }
    }

    /// Every image id with its decoded file bytes, in cursor (key byte) order — the order feature extraction uses.
    package func forEach(_ body: (_ id: String, _ data: Data) throws -> Void) throws {
        try forEachBase64 { id, b64 in try body(id, try decode(b64, key: id)) }
    }

    func decode<C: RandomAccessCollection>(_ b64: C, key: String) throws -> Data where C.Element == UInt8, C.Index == Int {
        do { return Data(try Base64.decode(b64)) } catch {
            throw DatasetError.badRecord(path: environment.path, key: key, reason: "\(error)")
        }
    }
}

private func readCount(_ env: LMDBEnvironment, key: String) throws -> Int {
    try env.read { txn in
        guard let bytes = try txn.get(key) else {
            throw DatasetError.badRecord(path: env.path, key: key, reason: "missing (not a cn-clip dataset LMDB?)")
        }
        guard let n = Int(String(decoding: bytes, as: UTF8.self)) else {
            throw DatasetError.badRecord(path: env.path, key: key, reason: "not a decimal count: \(bytes.prefix(32))")
        }
        return n
    }
}
