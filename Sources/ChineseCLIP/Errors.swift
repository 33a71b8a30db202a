// The errors the library reports; each names the file, key or model at fault.

import Essentials

/// An error from loading or running a Chinese-CLIP model.
public enum CLIPError: UserFacingError {
    /// A file could not be read or written.
    case io(path: String, reason: String)
    /// A config file is malformed.
    case badConfig(path: String, reason: String)
    /// A model or preset name is not known.
    case unknownModel(name: String, known: [String])
    /// A checkpoint does not fit the model.
    case checkpoint(path: String, reason: String)
    /// Inputs of the wrong shape or kind.
    case invalidInput(String)

    /// A one-line message for the user.
    public var description: String {
        switch self {
        case .io(let p, let r): return "\(p): \(r)"
        case .badConfig(let p, let r): return "\(p): invalid model config: \(r)"
        case .unknownModel(let n, let k): return "unknown model '\(n)'; known: \(k.joined(separator: ", "))"
        case .checkpoint(let p, let r): return "\(p): \(r)"
        case .invalidInput(let r): return r
        }
    }
}
