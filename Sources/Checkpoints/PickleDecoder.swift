// A hand-written pickle virtual machine (protocols 0–5, the opcodes CPython's pickler emits for plain data,
// plus what `torch.save` emits for tensors).
//
// Why hand-written: no Swift library reads pickle, and a checkpoint must never run code. Instead of
// importing arbitrary globals, the VM knows a short allow list — `collections.OrderedDict`, the torch
// storage classes, `torch._utils._rebuild_tensor_v2` / `_rebuild_parameter`, `_codecs.encode`, numpy's
// `dtype` and `scalar` (cn-clip's `cosine_lr` computes learning rates with `np.cos`, so the optimizer entry of
// every checkpoint saved after the warmup holds `numpy.float64` values) — and refuses any other global by name. Lists and dicts are reference boxes while decoding because pickle
// mutates them after memoizing (EMPTY_DICT, BINPUT, SETITEMS), and a memo hit must see those items.
// Opcode semantics follow CPython's `pickletools` documentation.

import Foundation

/// A torch storage named by a checkpoint's persistent id `('storage', torch.XStorage, key, location, numel)`.
package struct TorchStorageRef: Sendable, Hashable {
    /// Element type of the storage class.
    package let dtype: CheckpointDType
    /// The archive key: the storage's bytes are entry `data/<key>`.
    package let key: String
    /// The device it was saved from (`cpu`, `cuda:0`); the bytes are the same.
    package let location: String
    /// Number of elements the storage holds.
    package let count: Int
}

/// Decodes pickles into `PickleValue`s without executing code; tensors are built through `tensorResolver`.
package struct PickleDecoder {
    /// Builds the tensor viewing `storage` at element `offset` with `shape` and element `stride`.
    package typealias TensorResolver = (_ storage: TorchStorageRef, _ offset: Int, _ shape: [Int], _ stride: [Int]) throws -> CheckpointTensor

    /// Label used in error messages (a file name, an LMDB key).
    package var source: String
    /// How tensors are materialised; nil makes any tensor in the stream an error.
    package var tensorResolver: TensorResolver?

    /// A decoder whose errors name `source`; pass `tensorResolver` to decode torch tensors.
    package init(source: String = "<pickle>", tensorResolver: TensorResolver? = nil) {
        self.source = source
        self.tensorResolver = tensorResolver
    }

    /// Decodes one pickle from `bytes` (trailing bytes after STOP are ignored, as in `pickle.loads`).
    package func decode(_ bytes: UnsafeRawBufferPointer) throws -> PickleValue {
        let vm = PickleVM(bytes: bytes, source: source, resolver: tensorResolver)
        defer { vm.releaseContainers() }
        return try vm.run()
    }

    /// Decodes one pickle from `bytes`.
    package func decode(_ bytes: [UInt8]) throws -> PickleValue {
        try bytes.withUnsafeBytes { try decode($0) }
    }

    /// Decodes one pickle from `data`.
    package func decode(_ data: Data) throws -> PickleValue {
        try data.withUnsafeBytes { try decode($0) }
    }
}

extension PickleValue {
    /// Decodes a pickle of plain values (no tensors), e.g. an LMDB record; errors name `source`.
    package static func unpickle(_ bytes: [UInt8], source: String = "<pickle>") throws -> PickleValue {
        try PickleDecoder(source: source).decode(bytes)
    }
}

private final class ListBox { var items: [Item] = [] }
private final class DictBox {
    var entries: [(key: PickleValue, value: Item)] = []
    var index: [String: Int] = [:]
    var ordered = false
}

/// What lives on the VM stack: plain values, mutable containers, and the few non-data objects we allow.
private enum Item {
    case value(PickleValue)
    case list(ListBox)
    case dict(DictBox)
    case tuple([Item])
    case global(module: String, name: String)
    case storage(TorchStorageRef)
    /// `numpy.dtype(code)`: a kind letter and byte size (`f8`), and the byte order its BUILD state sets.
    case numpyDType(NumpyDType)
}

/// The part of a `numpy.dtype` that decoding a scalar needs; a reference, as the memo shares it with the BUILD that sets its byte order.
private final class NumpyDType {
    let kind: Character
    let size: Int
    var bigEndian = false

    /// Parses numpy's type codes for plain numbers: `f2 f4 f8 i1…i8 u1…u8 b1`.
    init?(_ code: String) {
        guard let k = code.first, "fiub".contains(k), let n = Int(code.dropFirst()), [1, 2, 4, 8].contains(n) else { return nil }
        kind = k
        size = n
    }
}

private final class PickleVM {
    let bytes: UnsafeRawBufferPointer
    let source: String
    let resolver: PickleDecoder.TensorResolver?
    var pos = 0
    var opStart = 0
    var stack: [Item] = []
    var marks: [Int] = []
    var memo: [Int: Item] = [:]
    /// Every container made, so that ``releaseContainers()`` can break the cycles a pickle may build (a list that
    /// holds itself): the boxes are classes, and such a cycle would otherwise never be freed.
    private var lists: [ListBox] = []
    private var dicts: [DictBox] = []

    func newList() -> ListBox {
        let box = ListBox()
        lists.append(box)
        return box
    }

    func newDict() -> DictBox {
        let box = DictBox()
        dicts.append(box)
        return box
    }

    /// Empties every container once decoding is over (the result has been copied out of them into values).
    func releaseContainers() {
        for box in lists { box.items = [] }
        for box in dicts { box.entries = []; box.index = [:] }
        lists = []
        dicts = []
    }

    init(bytes: UnsafeRawBufferPointer, source: String, resolver: PickleDecoder.TensorResolver?) {
        self.bytes = bytes
        self.source = source
        self.resolver = resolver
    }

    func fail(_ reason: String) -> CheckpointError { .pickle(source: source, offset: opStart, reason: reason) }

    // MARK: reading

    func take(_ n: Int) throws -> UnsafeRawBufferPointer {
        guard n >= 0, n <= bytes.count - pos else {
            throw fail("stream ends inside an opcode argument (needs \(n) bytes at \(pos), has \(bytes.count - pos))")
        }
        defer { pos += n }
        return UnsafeRawBufferPointer(rebasing: bytes[pos..<(pos + n)])
    }
    func u8() throws -> Int { Int(try take(1)[0]) }
    func u16() throws -> Int { Int(UInt16(littleEndian: try take(2).loadUnaligned(as: UInt16.self))) }
    func u32() throws -> Int { Int(UInt32(littleEndian: try take(4).loadUnaligned(as: UInt32.self))) }
    func i32() throws -> Int { Int(Int32(littleEndian: try take(4).loadUnaligned(as: Int32.self))) }
    func u64() throws -> Int {
        let v = UInt64(littleEndian: try take(8).loadUnaligned(as: UInt64.self))
        guard v <= UInt64(Int.max) else { throw fail("length \(v) too large") }
        return Int(v)
    }
    /// A newline-terminated argument of the text opcodes (protocol 0).
    func line() throws -> String {
        var end = pos
        while end < bytes.count && bytes[end] != 0x0a { end += 1 }
        guard end < bytes.count else { throw fail("stream ends inside a text argument") }
        let s = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[pos..<end]), as: UTF8.self)
        pos = end + 1
        return s
    }
    func utf8(_ n: Int) throws -> String {
        let b = try take(n)
        guard let s = String(validating: b, as: UTF8.self) else {
            // CPython's "surrogatepass" lets lone surrogates through; we replace them rather than fail.
            return String(decoding: b, as: UTF8.self)
        }
        return s
    }
    /// Python-2 `str` payloads: decoded as UTF-8 when valid, else Latin-1 (as `encoding='latin1'` does).
    func legacyString(_ n: Int) throws -> String {
        let b = try take(n)
        if let s = String(validating: b, as: UTF8.self) { return s }
        return String(b.map { Character(Unicode.Scalar($0)) })
    }

    // MARK: stack

    func pop() throws -> Item {
        guard let v = stack.popLast() else { throw fail("pop from an empty stack") }
        if let m = marks.last, stack.count < m { throw fail("pop across a MARK") }
        return v
    }
    func popMark() throws -> [Item] {
        guard let m = marks.popLast() else { throw fail("no MARK on the stack") }
        guard m <= stack.count else { throw fail("MARK above the stack") }
        let items = Array(stack[m...])
        stack.removeSubrange(m...)
        return items
    }
    func top() throws -> Item {
        guard let v = stack.last else { throw fail("empty stack") }
        return v
    }
    func push(_ v: PickleValue) { stack.append(.value(v)) }

    // MARK: conversion

    func materialize(_ item: Item, _ path: inout Set<ObjectIdentifier>) throws -> PickleValue {
        switch item {
        case .value(let v): return v
        case .tuple(let a): return .tuple(try a.map { try materialize($0, &path) })
        case .list(let box):
            let id = ObjectIdentifier(box)
            guard path.insert(id).inserted else { throw fail("a list contains itself") }
            defer { path.remove(id) }
            return .list(try box.items.map { try materialize($0, &path) })
        case .dict(let box):
            let id = ObjectIdentifier(box)
            guard path.insert(id).inserted else { throw fail("a dict contains itself") }
            defer { path.remove(id) }
            var d = PickleDict()
            d.isOrderedDict = box.ordered
            for e in box.entries { d[e.key] = try materialize(e.value, &path) }
            return .dict(d)
        case .global(let m, let n): throw fail("the global '\(m).\(n)' is used as a value")
        case .numpyDType: throw fail("a numpy dtype is used as a value")
        case .storage(let s): throw fail("a bare storage (key '\(s.key)') is used as a value")
        }
    }
    func value(_ item: Item) throws -> PickleValue {
        var path = Set<ObjectIdentifier>()
        return try materialize(item, &path)
    }

    func setItem(_ box: DictBox, _ key: Item, _ value: Item) throws {
        let k = try self.value(key)
        switch k {
        case .list, .dict: throw fail("unhashable dict key \(k)")
        default: break
        }
        if case .string(let s) = k {
            if let i = box.index[s] { box.entries[i].value = value; return }
            box.index[s] = box.entries.count
        } else if let i = box.entries.firstIndex(where: { $0.key == k }) {
            box.entries[i].value = value; return
        }
        box.entries.append((k, value))
    }

    // MARK: globals and calls

    static let storageModule = "torch"

    func resolveGlobal(_ module: String, _ name: String) throws -> Item {
        switch (module, name) {
        case ("collections", "OrderedDict"),
            ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor"),
            ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"),
            ("_codecs", "encode"), ("builtins", "set"), ("builtins", "frozenset"), ("__builtin__", "set"),
            ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"):
            return .global(module: module, name: name)
        case ("torch", _) where CheckpointDType(torchStorage: name) != nil:
            return .global(module: module, name: name)
        default:
            throw CheckpointError.unsupportedGlobal(source: source, offset: opStart, name: "\(module).\(name)")
        }
    }

    func ints(_ item: Item, what: String) throws -> [Int] {
        guard case .tuple(let a) = item else {
            if case .list(let box) = item { return try box.items.map { try int($0, what: what) } }
            throw fail("\(what) is not a tuple")
        }
        return try a.map { try int($0, what: what) }
    }
    func int(_ item: Item, what: String) throws -> Int {
        guard case .value(let v) = item, let i = v.intValue else { throw fail("\(what) is not an int") }
        return i
    }

    func call(_ callable: Item, _ argsItem: Item) throws -> Item {
        guard case .global(let module, let name) = callable else { throw fail("REDUCE on something that is not an allowed callable") }
        guard case .tuple(let args) = argsItem else { throw fail("REDUCE arguments for '\(module).\(name)' are not a tuple") }
        switch (module, name) {
        case ("collections", "OrderedDict"):
            let box = newDict()
            box.ordered = true
            if let first = args.first {
                let pairs: [Item]
                switch first {
                case .list(let l): pairs = l.items
                case .tuple(let t): pairs = t
                case .dict(let d): box.entries = d.entries; box.index = d.index; return .dict(box)
                default: throw fail("OrderedDict argument is not a list of pairs")
                }
                for p in pairs {
                    guard case .tuple(let kv) = p, kv.count == 2 else { throw fail("OrderedDict item is not a pair") }
                    try setItem(box, kv[0], kv[1])
                }
            }
            return .dict(box)
        case ("builtins", "set"), ("builtins", "frozenset"), ("__builtin__", "set"):
            let box = newList()
            if let first = args.first {
                switch first {
                case .list(let l): box.items = l.items
                case .tuple(let t): box.items = t
                default: throw fail("\(name)() argument is not a sequence")
                }
            }
            return .list(box)
        case ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor"):
            guard args.count >= 4 else { throw fail("\(name) takes at least 4 arguments, got \(args.count)") }
            guard case .storage(let storage) = args[0] else { throw fail("\(name): first argument is not a storage") }
            let offset = try int(args[1], what: "storage offset")
            let size = try ints(args[2], what: "tensor size")
            let stride = try ints(args[3], what: "tensor stride")
            guard let resolver else { throw fail("a tensor (storage '\(storage.key)') appears, but this decoder has no tensor resolver") }
            return .value(.tensor(try resolver(storage, offset, size, stride)))
        case ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"):
            // A Parameter is its data for loading purposes; requires_grad and hooks do not apply here.
            guard let data = args.first else { throw fail("\(name) without arguments") }
            return data
        case ("_codecs", "encode"):
            // Protocol 2 pickles Python-3 bytes as _codecs.encode(str_of_latin1_chars, 'latin1').
            guard let s = args.first.flatMap({ if case .value(.string(let s)) = $0 { return s } else { return nil } }) else {
                throw fail("_codecs.encode argument is not a str")
            }
            let encoding = args.count > 1 ? (try value(args[1]).stringValue ?? "") : "utf-8"
            if encoding == "latin1" || encoding == "latin-1" || encoding == "iso-8859-1" {
                var out: [UInt8] = []
                for u in s.unicodeScalars {
                    guard u.value < 256 else { throw fail("_codecs.encode: character U+\(String(u.value, radix: 16)) is not latin1") }
                    out.append(UInt8(u.value))
                }
                return .value(.bytes(out))
            }
            return .value(.bytes(Array(s.utf8)))
        case ("numpy", "dtype"):
            // numpy.dtype('f8', False, True); the byte order comes with the BUILD that follows.
            guard case .value(.string(let code))? = args.first, let dtype = NumpyDType(code) else {
                throw fail("numpy.dtype of something other than a plain number type (f2–f8, i1–i8, u1–u8, b1)")
            }
            return .numpyDType(dtype)
        case ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"):
            guard args.count == 2, case .numpyDType(let dtype) = args[0], case .value(.bytes(let raw)) = args[1] else {
                throw fail("numpy scalar() takes a plain-number dtype and its bytes")
            }
            return .value(try numpyScalar(dtype, raw))
        default:
            throw fail("the global '\(module).\(name)' cannot be called")
        }
    }

    /// The Python number a numpy scalar of `dtype` holds in `raw`.
    func numpyScalar(_ dtype: NumpyDType, _ raw: [UInt8]) throws -> PickleValue {
        guard raw.count == dtype.size else { throw fail("numpy scalar of \(dtype.kind)\(dtype.size) has \(raw.count) bytes") }
        var bits: UInt64 = 0
        for b in (dtype.bigEndian ? raw : raw.reversed()) { bits = bits << 8 | UInt64(b) }
        switch (dtype.kind, dtype.size) {
        case ("f", 8): return .float(Double(bitPattern: bits))
        case ("f", 4): return .float(Double(Float(bitPattern: UInt32(bits))))
        case ("f", 2): return .float(Double(Float16(bitPattern: UInt16(bits))))
        case ("b", _): return .bool(bits != 0)
        case ("u", _):
            guard bits <= UInt64(Int.max) else { throw fail("numpy uint64 scalar \(bits) does not fit 64-bit int") }
            return .int(Int(bits))
        default:  // signed: sign-extend from the top bit of its size
            let shift = UInt64(64 - 8 * dtype.size)
            return .int(Int(Int64(bitPattern: bits << shift) >> Int64(shift)))
        }
    }

    func persistent(_ pidItem: Item) throws -> Item {
        guard case .tuple(let pid) = pidItem, pid.count >= 5,
            case .value(.string("storage")) = pid[0]
        else {
            throw fail("unsupported persistent id (only torch ('storage', ...) ids are understood)")
        }
        guard case .global(_, let cls) = pid[1], let dtype = CheckpointDType(torchStorage: cls) else {
            throw fail("persistent id names no supported storage class")
        }
        guard case .value(.string(let key)) = pid[2] else { throw fail("storage key is not a str") }
        let location: String
        if case .value(.string(let l)) = pid[3] { location = l } else { location = "?" }
        let count = try int(pid[4], what: "storage size")
        return .storage(TorchStorageRef(dtype: dtype, key: key, location: location, count: count))
    }

    // MARK: the loop

    func run() throws -> PickleValue {
        while true {
            opStart = pos
            guard pos < bytes.count else { throw fail("stream ends without STOP") }
            let op = bytes[pos]
            pos += 1
            switch op {
            case 0x80:  // PROTO
                let v = try u8()
                guard v <= 5 else { throw fail("unsupported pickle protocol \(v)") }
            case 0x95: _ = try u64()  // FRAME: framing only groups bytes; the stream is read as one buffer
            case 0x2e:  // STOP
                let result = try pop()
                return try value(result)
            case 0x28: marks.append(stack.count)  // MARK
            case 0x30: _ = try pop()  // POP
            case 0x31: _ = try popMark()  // POP_MARK
            case 0x32: stack.append(try top())  // DUP

            case 0x4e: push(.none)
            case 0x88: push(.bool(true))
            case 0x89: push(.bool(false))
            case 0x4b: push(.int(try u8()))  // BININT1
            case 0x4d: push(.int(try u16()))  // BININT2
            case 0x4a: push(.int(try i32()))  // BININT
            case 0x8a: push(.int(try long(try u8())))  // LONG1
            case 0x8b:  // LONG4
                let n = try i32()
                guard n >= 0 else { throw fail("negative LONG4 length") }
                push(.int(try long(n)))
            case 0x49:  // INT (text)
                let s = try line()
                if s == "01" {
                    push(.bool(true))
                } else if s == "00" {
                    push(.bool(false))
                } else {
                    guard let v = Int(s) else { throw fail("INT argument '\(s)' is not a 64-bit integer") }
                    push(.int(v))
                }
            case 0x4c:  // LONG (text)
                var s = try line()
                if s.hasSuffix("L") { s.removeLast() }
                guard let v = Int(s) else { throw fail("LONG argument '\(s)' is not a 64-bit integer") }
                push(.int(v))
            case 0x47:  // BINFLOAT (big-endian double)
                push(.float(Double(bitPattern: UInt64(bigEndian: try take(8).loadUnaligned(as: UInt64.self)))))
            case 0x46:  // FLOAT (text)
                let s = try line()
                guard let v = Double(s) else { throw fail("FLOAT argument '\(s)' is not a number") }
                push(.float(v))

            case 0x58: push(.string(try utf8(try u32())))  // BINUNICODE
            case 0x8c: push(.string(try utf8(try u8())))  // SHORT_BINUNICODE
            case 0x8d: push(.string(try utf8(try u64())))  // BINUNICODE8
            case 0x56: push(.string(try rawUnicodeEscape(try line())))  // UNICODE (text)
            case 0x54:  // BINSTRING
                let n = try i32()
                guard n >= 0 else { throw fail("negative BINSTRING length") }
                push(.string(try legacyString(n)))
            case 0x55: push(.string(try legacyString(try u8())))  // SHORT_BINSTRING
            case 0x42: push(.bytes(Array(try take(try u32()))))  // BINBYTES
            case 0x43: push(.bytes(Array(try take(try u8()))))  // SHORT_BINBYTES
            case 0x8e, 0x96: push(.bytes(Array(try take(try u64()))))  // BINBYTES8, BYTEARRAY8

            case 0x5d: stack.append(.list(newList()))  // EMPTY_LIST
            case 0x8f: stack.append(.list(newList()))  // EMPTY_SET
            case 0x6c:  // LIST
                let box = newList(); box.items = try popMark(); stack.append(.list(box))
            case 0x61:  // APPEND
                let v = try pop()
                guard case .list(let box) = try top() else { throw fail("APPEND to something that is not a list") }
                box.items.append(v)
            case 0x65, 0x90:  // APPENDS, ADDITEMS
                let items = try popMark()
                guard case .list(let box) = try top() else { throw fail("APPENDS to something that is not a list or set") }
                box.items.append(contentsOf: items)
            case 0x91:  // FROZENSET
                let box = newList(); box.items = try popMark(); stack.append(.list(box))

            case 0x29: stack.append(.tuple([]))  // EMPTY_TUPLE
            case 0x74: stack.append(.tuple(try popMark()))  // TUPLE
            case 0x85: let a = try pop(); stack.append(.tuple([a]))  // TUPLE1
            case 0x86: let b = try pop(); let a = try pop(); stack.append(.tuple([a, b]))  // TUPLE2
            case 0x87: let c = try pop(); let b = try pop(); let a = try pop(); stack.append(.tuple([a, b, c]))  // TUPLE3

            case 0x7d: stack.append(.dict(newDict()))  // EMPTY_DICT
            case 0x64:  // DICT
                let items = try popMark()
                guard items.count % 2 == 0 else { throw fail("DICT with an odd number of items") }
                let box = newDict()
                for i in stride(from: 0, to: items.count, by: 2) { try setItem(box, items[i], items[i + 1]) }
                stack.append(.dict(box))
            case 0x73:  // SETITEM
                let v = try pop(); let k = try pop()
                guard case .dict(let box) = try top() else { throw fail("SETITEM on something that is not a dict") }
                try setItem(box, k, v)
            case 0x75:  // SETITEMS
                let items = try popMark()
                guard items.count % 2 == 0 else { throw fail("SETITEMS with an odd number of items") }
                guard case .dict(let box) = try top() else { throw fail("SETITEMS on something that is not a dict") }
                for i in stride(from: 0, to: items.count, by: 2) { try setItem(box, items[i], items[i + 1]) }

            case 0x71: memo[try u8()] = try top()  // BINPUT
            case 0x72: memo[try u32()] = try top()  // LONG_BINPUT
            case 0x70:  // PUT (text)
                let s = try line()
                guard let i = Int(s) else { throw fail("PUT index '\(s)' is not an int") }
                memo[i] = try top()
            case 0x94: memo[memo.count] = try top()  // MEMOIZE
            case 0x68: try get(try u8())  // BINGET
            case 0x6a: try get(try u32())  // LONG_BINGET
            case 0x67:  // GET (text)
                let s = try line()
                guard let i = Int(s) else { throw fail("GET index '\(s)' is not an int") }
                try get(i)

            case 0x63:  // GLOBAL
                let module = try line(), name = try line()
                stack.append(try resolveGlobal(module, name))
            case 0x93:  // STACK_GLOBAL
                let nameItem = try pop(), moduleItem = try pop()
                guard case .value(.string(let name)) = nameItem, case .value(.string(let module)) = moduleItem else {
                    throw fail("STACK_GLOBAL operands are not strings")
                }
                stack.append(try resolveGlobal(module, name))
            case 0x52:  // REDUCE
                let args = try pop(), callable = try pop()
                stack.append(try call(callable, args))
            case 0x81:  // NEWOBJ
                let args = try pop(), cls = try pop()
                stack.append(try newObject(cls, args))
            case 0x92:  // NEWOBJ_EX
                _ = try pop()  // kwargs
                let args = try pop(), cls = try pop()
                stack.append(try newObject(cls, args))
            case 0x62:  // BUILD
                let state = try pop()  // dropped for dicts and tensors: see below
                let target = try top()
                switch target {
                case .dict:
                    // A dict subclass's BUILD state is its instance attributes (Python's default `__setstate__`
                    // updates `__dict__`), never its items: `model.state_dict()` pickles its `_metadata`
                    // attribute this way, and it must not turn into a state-dict key.
                    break
                case .value(.tensor):
                    break  // Python-side attributes of a tensor do not affect its values.
                case .numpyDType(let dtype):
                    // numpy's dtype state: (version, byte order '<' '>' '|' '=', ...).
                    guard case .tuple(let fields) = state, fields.count > 1, case .value(.string(let order)) = fields[1] else {
                        throw fail("numpy.dtype state is not (version, byte order, ...)")
                    }
                    dtype.bigEndian = order == ">"
                default:
                    throw fail("BUILD on an object that is not a dict or tensor")
                }
            case 0x51:  // BINPERSID
                stack.append(try persistent(try pop()))
            case 0x50:  // PERSID (text): ids are strings, never torch storages
                throw fail("text persistent id '\(try line())' is not supported")
            case 0x82, 0x83, 0x84: throw fail("extension registry opcodes (EXT1/2/4) are not supported")
            case 0x97, 0x98: throw fail("out-of-band buffers (NEXT_BUFFER/READONLY_BUFFER) are not supported")
            case 0x69, 0x6f: throw fail("INST/OBJ (arbitrary class instantiation) is not supported")
            case 0x53: throw fail("text STRING opcode is not supported")
            default:
                throw fail(String(format: "unknown opcode 0x%02x", op))
            }
        }
    }

    func get(_ i: Int) throws {
        guard let v = memo[i] else { throw fail("memo key \(i) was never stored") }
        stack.append(v)
    }

    func newObject(_ cls: Item, _ args: Item) throws -> Item {
        guard case .global(let module, let name) = cls else { throw fail("NEWOBJ on something that is not a class") }
        switch (module, name) {
        case ("collections", "OrderedDict"):
            let box = newDict()
            box.ordered = true
            return .dict(box)
        case ("builtins", "set"), ("builtins", "frozenset"): return try call(cls, args)
        default: throw fail("cannot instantiate '\(module).\(name)'")
        }
    }

    /// Little-endian two's-complement integer of `n` bytes; must fit 64 bits after sign extension.
    func long(_ n: Int) throws -> Int {
        let b = try take(n)
        if n == 0 { return 0 }
        let negative = b[n - 1] & 0x80 != 0
        if n > 8 {
            let fill: UInt8 = negative ? 0xff : 0
            guard b[8...].allSatisfy({ $0 == fill }), (b[7] & 0x80 != 0) == negative else {
                throw fail("integer of \(n) bytes does not fit 64 bits")
            }
        }
        var v: UInt64 = negative ? ~0 : 0
        for i in stride(from: min(n, 8) - 1, through: 0, by: -1) { v = (v << 8) | UInt64(b[i]) }
        return Int(Int64(bitPattern: v))
    }

    func rawUnicodeEscape(_ s: String) throws -> String {
        // raw-unicode-escape: only \uXXXX and \UXXXXXXXX are escapes; other bytes are Latin-1 characters.
        let scalars = Array(s.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        while i < scalars.count {
            if scalars[i] == "\\", i + 1 < scalars.count, scalars[i + 1] == "u" || scalars[i + 1] == "U" {
                let len = scalars[i + 1] == "u" ? 4 : 8
                guard i + 2 + len <= scalars.count,
                    let code = UInt32(String(String.UnicodeScalarView(scalars[(i + 2)..<(i + 2 + len)])), radix: 16),
                    let u = Unicode.Scalar(code)
                else { throw fail("bad escape in UNICODE argument") }
                out.append(u); i += 2 + len
            } else {
                out.append(scalars[i]); i += 1
            }
        }
        return String(out)
    }
}
