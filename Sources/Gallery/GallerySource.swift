// Where gallery images come from: an `imgs` LMDB (as `cnclip build-lmdb` writes it), an images TSV
// (`id<TAB>base64` per line, the reference's `{split}_imgs.tsv`), or a folder of image files.

import Datasets
import Essentials
import Foundation

/// A source of gallery images, read in a fixed order: LMDB cursor order (the order `extract-features` uses),
/// TSV line order, or folder paths sorted by their UTF-8 bytes.
package enum GalleryImageSource: Sendable, Equatable {
    /// An `imgs` LMDB directory.
    case lmdb(String)
    /// An images TSV file.
    case tsv(String)
    /// A folder of JPEG, PNG and WebP files, searched recursively; ids are paths relative to it.
    case folder(String)

    /// File name extensions taken from a folder (lower-cased).
    package static let imageExtensions: Set<String> = ["jpg", "jpeg", "png", "webp"]

    /// Tells the kind of `path`: a directory holding `data.mdb` is an LMDB, another directory a folder, a file a TSV.
    package static func detect(_ path: String) throws -> GalleryImageSource {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw FileError(path: path, reason: "no such file or directory")
        }
        if !isDir.boolValue { return .tsv(path) }
        return FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent("data.mdb")) ? .lmdb(path) : .folder(path)
    }

    /// The path given.
    package var path: String {
        switch self {
        case .lmdb(let p), .tsv(let p), .folder(let p): return p
        }
    }

    /// One image as the source holds it; `bytes()` decodes or reads it (on a worker thread).
    package struct Item: Sendable {
        /// The id as json.dumps renders it (`123`, `"cats/1.jpg"`).
        package var id: String
        /// Base64 text (LMDB, TSV) or nil for a folder file.
        var base64: [UInt8]?
        /// The file (folder sources).
        var file: String?

        /// The image file's bytes.
        package func bytes() throws -> Data {
            if let base64 { return Data(try Base64.decode(base64)) }
            guard let file, let data = FileManager.default.contents(atPath: file) else {
                throw FileError(path: file ?? "?", reason: "cannot read")
            }
            return data
        }
    }

    /// Calls `body` with each image in order until it returns false.
    package func forEach(_ body: (Item) throws -> Bool) throws {
        switch self {
        case .lmdb(let path):
            let store = try ImageStore(path: path)
            var going = true
            try store.forEachBase64 { key, b64 in
                if going { going = try body(Item(id: Self.renderedID(key), base64: Array(b64), file: nil)) }
            }
        case .tsv(let path):
            var going = true
            try ImageTSVReader(path: path).forEach { record, _, _ in
                if going {
                    going = try body(Item(id: Self.renderedID(String(decoding: record.id, as: UTF8.self)), base64: Array(record.base64), file: nil))
                }
            }
        case .folder(let path):
            for relative in try Self.imageFiles(in: path) {
                var out = [UInt8]()
                pythonDumps(.string(relative), into: &out)
                let item = Item(id: String(decoding: out, as: UTF8.self), base64: nil, file: (path as NSString).appendingPathComponent(relative))
                if try !body(item) { return }
            }
        }
    }

    /// An LMDB key or TSV id as the reference's `int(key)` makes it when it is a decimal number, else as a string.
    static func renderedID(_ key: String) -> String {
        if let n = Int(key), key.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 || $0 == 0x2D }) { return String(n) }
        var out = [UInt8]()
        pythonDumps(.string(key), into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Image files under `root`, as relative paths sorted by their bytes (so the order is the same on every machine).
    static func imageFiles(in root: String) throws -> [String] {
        guard let walker = FileManager.default.enumerator(atPath: root) else {
            throw FileError(path: root, reason: "cannot list the folder")
        }
        var files: [String] = []
        while let rel = walker.nextObject() as? String {
            if imageExtensions.contains((rel as NSString).pathExtension.lowercased()) { files.append(rel) }
        }
        return files.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
    }
}
