// The one error type of the Checkpoints module.
//
// Every case carries the file (or pickle source label) and the entry, key or byte offset at fault, so a
// user with a broken multi-gigabyte checkpoint learns where to look without a debugger.

import Essentials
import Foundation

/// Everything that can go wrong reading or writing checkpoints; each message names the file and the key, entry or offset.
package enum CheckpointError: UserFacingError, Equatable, LocalizedError {
    /// The file is not a zip archive (and not another format we recognise).
    case notZip(file: String, reason: String)
    /// The file uses the pre-1.6 `torch.save` format, which this reader does not implement.
    case legacyTorchFormat(file: String)
    /// The file ends early: a structure runs past its end.
    case truncated(file: String, reason: String)
    /// A zip entry is compressed; `torch.save` stores entries, so the file was repacked by another tool.
    case compressedEntry(file: String, entry: String, method: Int)
    /// A zip structure is malformed at `offset`.
    case badZip(file: String, offset: Int, reason: String)
    /// An entry the format requires is absent.
    case missingEntry(file: String, entry: String)
    /// The pickle stream is malformed or uses something unsupported at byte `offset`.
    case pickle(source: String, offset: Int, reason: String)
    /// The pickle names a global that is not on the allow list (no code is ever executed).
    case unsupportedGlobal(source: String, offset: Int, name: String)
    /// A tensor's storage, dtype, shape or stride is inconsistent.
    case badTensor(file: String, key: String, reason: String)
    /// A safetensors header is malformed.
    case badSafetensorsHeader(file: String, reason: String)
    /// A key is not known to the name table (for example an unexpected Hugging Face parameter).
    case unknownKey(file: String, key: String, reason: String)
    /// A key the caller asked for is absent.
    case missingKey(file: String, key: String)
    /// A value has the wrong type or shape for how it is used.
    case typeMismatch(file: String, key: String, reason: String)
    /// The file is in no format this module reads.
    case unsupportedFormat(file: String, reason: String)

    /// A one-line message naming the file and the entry, key or offset at fault.
    package var description: String {
        switch self {
        case let .notZip(file, reason): return "\(file): not a zip archive (\(reason))"
        case let .legacyTorchFormat(file):
            return
                "\(file): legacy (pre-1.6, non-zip) torch.save format is not supported; re-save it with a recent PyTorch (torch.save(obj, path) with the default _use_new_zipfile_serialization=True) or convert it to safetensors"
        case let .truncated(file, reason): return "\(file): truncated file: \(reason)"
        case let .compressedEntry(file, entry, method):
            return
                "\(file): zip entry '\(entry)' is compressed (method \(method)); torch.save archives store entries uncompressed — re-save with torch.save"
        case let .badZip(file, offset, reason): return "\(file): malformed zip at byte \(offset): \(reason)"
        case let .missingEntry(file, entry): return "\(file): missing entry '\(entry)'"
        case let .pickle(source, offset, reason): return "\(source): pickle error at byte \(offset): \(reason)"
        case let .unsupportedGlobal(source, offset, name):
            return
                "\(source): pickle at byte \(offset) refers to global '\(name)', which is not allowed (only tensors, storages, OrderedDict and plain values are decoded)"
        case let .badTensor(file, key, reason): return "\(file): tensor '\(key)': \(reason)"
        case let .badSafetensorsHeader(file, reason): return "\(file): bad safetensors header: \(reason)"
        case let .unknownKey(file, key, reason): return "\(file): unknown key '\(key)': \(reason)"
        case let .missingKey(file, key): return "\(file): missing key '\(key)'"
        case let .typeMismatch(file, key, reason): return "\(file): '\(key)': \(reason)"
        case let .unsupportedFormat(file, reason): return "\(file): unsupported checkpoint format: \(reason)"
        }
    }

    /// Same as `description`, for `localizedDescription`.
    package var errorDescription: String? { description }
}
