// The values a pickle decodes to (hand-written codec; see PickleDecoder.swift).
//
// A closed enum rather than "any object": checkpoints and LMDB records only hold plain data and tensors,
// and a closed set is what lets the decoder refuse everything else instead of executing it.

import Foundation

/// A decoded pickle value: plain Python data plus tensors. Python sets decode as `.list`.
package indirect enum PickleValue: Equatable, CustomStringConvertible, Sendable {
    /// Python `None`.
    case none
    /// Python `bool`.
    case bool(Bool)
    /// Python `int` that fits 64 bits.
    case int(Int)
    /// Python `float`.
    case float(Double)
    /// Python `str`.
    case string(String)
    /// Python `bytes` / `bytearray`.
    case bytes([UInt8])
    /// Python `list` (and `set`, in pickle order).
    case list([PickleValue])
    /// Python `tuple`.
    case tuple([PickleValue])
    /// Python `dict` / `OrderedDict`, keys in insertion order.
    case dict(PickleDict)
    /// A torch tensor rebuilt from its storage.
    case tensor(CheckpointTensor)

    /// The value for string key `key` when this is a dict.
    package subscript(key: String) -> PickleValue? {
        if case .dict(let d) = self { return d[key] }
        return nil
    }

    /// The integer, when this is `.int` (or `.bool`, as Python treats it).
    package var intValue: Int? {
        switch self {
        case .int(let v): return v
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }
    /// The number, when this is `.float` or `.int`.
    package var doubleValue: Double? {
        switch self {
        case .float(let v): return v
        case .int(let v): return Double(v)
        default: return nil
        }
    }
    /// The string, when this is `.string`.
    package var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    /// The flag, when this is `.bool`.
    package var boolValue: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    /// The dict, when this is `.dict`.
    package var dictValue: PickleDict? { if case .dict(let d) = self { return d } else { return nil } }
    /// The elements, when this is `.list` or `.tuple`.
    package var arrayValue: [PickleValue]? {
        switch self {
        case .list(let a), .tuple(let a): return a
        default: return nil
        }
    }
    /// The tensor, when this is `.tensor`.
    package var tensorValue: CheckpointTensor? { if case .tensor(let t) = self { return t } else { return nil } }

    /// A Python-like rendering (tensors shortened).
    package var description: String {
        switch self {
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let v): return String(v)
        case .float(let v): return String(v)
        case .string(let s): return "'\(s)'"
        case .bytes(let b): return "b<\(b.count) bytes>"
        case .list(let a): return "[" + a.map(\.description).joined(separator: ", ") + "]"
        case .tuple(let a): return "(" + a.map(\.description).joined(separator: ", ") + (a.count == 1 ? ",)" : ")")
        case .dict(let d): return "{" + d.entries.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + "}"
        case .tensor(let t): return "tensor(\(t))"
        }
    }
}

/// An insertion-ordered dict as pickled by Python (`dict` and `OrderedDict` alike).
package struct PickleDict: Equatable, Sequence, Sendable {
    /// The entries in insertion order.
    package private(set) var entries: [(key: PickleValue, value: PickleValue)] = []
    private var stringIndex: [String: Int] = [:]
    /// True for a `collections.OrderedDict` (what `torch.save` uses for state dicts); writers pickle it as one.
    /// Not part of equality: Python compares a dict and an OrderedDict by their items.
    package var isOrderedDict = false

    /// An empty dict.
    package init() {}

    /// A dict of `entries` in order; a repeated key keeps its first position and its last value, as in Python.
    package init(_ entries: [(key: PickleValue, value: PickleValue)], ordered: Bool = false) {
        for (k, v) in entries { self[k] = v }
        isOrderedDict = ordered
    }

    /// Number of entries.
    package var count: Int { entries.count }
    /// The keys in insertion order.
    package var keys: [PickleValue] { entries.map(\.key) }

    /// The value for string key `key`.
    package subscript(key: String) -> PickleValue? {
        stringIndex[key].map { entries[$0].value }
    }

    /// The value for `key`; setting replaces in place or appends.
    package subscript(key: PickleValue) -> PickleValue? {
        get {
            if case .string(let s) = key { return self[s] }
            return entries.first { $0.key == key }?.value
        }
        set {
            let existing: Int?
            if case .string(let s) = key { existing = stringIndex[s] } else { existing = entries.firstIndex { $0.key == key } }
            if let i = existing {
                if let newValue { entries[i].value = newValue } else { remove(at: i) }
            } else if let newValue {
                if case .string(let s) = key { stringIndex[s] = entries.count }
                entries.append((key, newValue))
            }
        }
    }

    private mutating func remove(at i: Int) {
        entries.remove(at: i)
        stringIndex = [:]
        for (j, e) in entries.enumerated() { if case .string(let s) = e.key { stringIndex[s] = j } }
    }

    /// Iterates the entries in order.
    package func makeIterator() -> IndexingIterator<[(key: PickleValue, value: PickleValue)]> { entries.makeIterator() }

    /// Same entries in the same order.
    package static func == (a: PickleDict, b: PickleDict) -> Bool {
        a.entries.count == b.entries.count && zip(a.entries, b.entries).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }
}
