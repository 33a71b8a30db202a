// The errors the dataset toolchain reports. Every case names the file (and line, key or id) at fault, because
// the inputs are large hand-made files and "invalid base64" alone would leave the user searching.
import Essentials

/// An error reading, validating or writing a dataset; its description names the file and line, key or id at fault.
package enum DatasetError: UserFacingError, Equatable, Sendable {
    /// An LMDB call failed: `operation` (e.g. `mdb_put`) on the environment at `path`, with LMDB's message.
    case lmdb(path: String, operation: String, code: Int32, message: String)
    /// A line of an input file is malformed (1-based `line`).
    case malformedLine(file: String, line: Int, reason: String)
    /// An image id appears twice in an image TSV.
    case duplicateImage(file: String, line: Int, id: String, firstLine: Int)
    /// A text refers to an image id that the split's image TSV does not hold.
    case missingImage(file: String, line: Int, textID: String, imageID: String, imagesFile: String)
    /// An image could not be decoded (`--check-images`); `line` is its TSV line, or its LMDB/folder position.
    case badImage(file: String, line: Int?, id: String, reason: String)
    /// A value stored in an LMDB is not what the dataset layout says it should be.
    case badRecord(path: String, key: String, reason: String)
    /// Arguments that do not make sense together.
    case invalidArgument(String)

    /// A one-line message for the user.
    package var description: String {
        switch self {
        case .lmdb(let p, let op, let code, let m): return "\(p): \(op) failed: \(m) (LMDB error \(code))"
        case .malformedLine(let f, let l, let r): return "\(f):\(l): \(r)"
        case .duplicateImage(let f, let l, let id, let first):
            return "\(f):\(l): image id \(id) is duplicated (first seen on line \(first))"
        case .missingImage(let f, let l, let t, let i, let imgs):
            return "\(f):\(l): text_id \(t) refers to image id \(i), which \(imgs) does not contain"
        case .badImage(let f, let l, let id, let r):
            return "\(f)\(l.map { ":\($0)" } ?? ""): image id \(id) cannot be decoded: \(r)"
        case .badRecord(let p, let k, let r): return "\(p): key '\(k)': \(r)"
        case .invalidArgument(let m): return m
        }
    }
}
