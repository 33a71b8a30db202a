// A JSON value as Python's `json.loads` gives it, so text annotations can be pickled with the same types the
// reference pickles (ints stay ints, strings stay strings).

import Checkpoints
import Foundation

/// A decoded JSON value.
public enum JSONValue: Decodable, Equatable, Sendable {
    /// `null`.
    case null
    /// `true` / `false`.
    case bool(Bool)
    /// An integer. Limitation: `1.0` also decodes as an integer (Python keeps it a float).
    case int(Int)
    /// A non-integer number.
    case double(Double)
    /// A string.
    case string(String)
    /// An array.
    case array([JSONValue])
    /// An object (member order is not kept).
    case object([String: JSONValue])

    /// Decodes any JSON value.
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int.self) { self = .int(i) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    /// The value as Python would print it with `str()` (used for ids in messages and for LMDB keys).
    public var pythonString: String {
        switch self {
        case .null: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d): return d.description
        case .string(let s): return s
        case .array(let a): return "[" + a.map(\.pythonString).joined(separator: ", ") + "]"
        case .object: return "{…}"
        }
    }

    /// The same value as a pickle value.
    public var pickleValue: PickleValue {
        switch self {
        case .null: return .none
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .double(let d): return .float(d)
        case .string(let s): return .string(s)
        case .array(let a): return .list(a.map(\.pickleValue))
        case .object(let o): return .dict(PickleDict(o.sorted { $0.key < $1.key }.map { (PickleValue.string($0.key), $0.value.pickleValue) }))
        }
    }
}
