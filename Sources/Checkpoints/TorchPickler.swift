// The pickle half of `torch.save`: protocol 2, as PyTorch pickles the saved object (its DEFAULT_PROTOCOL),
// with tensors replaced by persistent ids naming storages written next to the pickle.
//
// Hand-written for the same reason as the decoder: no Swift pickle library exists. Opcode choices follow
// CPython's C pickler at protocol 2 (BINUNICODE for every str, BININT1/BININT2/BININT/LONG1 for ints,
// BINFLOAT, EMPTY_DICT/EMPTY_LIST + MARK…SETITEMS/APPENDS batched by 1000, TUPLE1-3, BINPUT/LONG_BINPUT
// after every memoizable object, no framing), and a tensor is what `torch.save` writes for it:
//   torch._utils._rebuild_tensor_v2(('storage', torch.FloatStorage, key, 'cpu', numel), 0, size, stride,
//                                   False, collections.OrderedDict())
// CPython memoizes by object identity; this writer, having no identities, memoizes globals and strings by
// value (a repeated key such as 'lr' becomes a BINGET, as it does in torch's files because Python interns
// such strings). Every memo reference points at an equal value, so the file unpickles to the same data.

import Foundation

/// A tensor to be written as storage `data/<key>` of a torch archive.
struct TorchStorageWrite {
    /// The storage key (`"0"`, `"1"`, …).
    let key: String
    /// The tensor; its storage holds exactly its elements, contiguous.
    let tensor: CheckpointTensor
    /// The element type written: float32 for every floating tensor, the stored integer type otherwise.
    let dtype: CheckpointDType

    /// torch's storage class name for `dtype`.
    var storageClass: String {
        switch dtype {
        case .float32: return "FloatStorage"
        case .float16: return "HalfStorage"
        case .bfloat16: return "BFloat16Storage"
        case .float64: return "DoubleStorage"
        case .int64: return "LongStorage"
        case .int32: return "IntStorage"
        case .int16: return "ShortStorage"
        case .int8: return "CharStorage"
        case .uint8: return "ByteStorage"
        case .bool: return "BoolStorage"
        }
    }
}

/// Pickles a `PickleValue` at protocol 2 the way `torch.save` does, collecting the tensors to store.
struct TorchPickler {
    private(set) var out: [UInt8] = [0x80, 2]
    /// The tensors met, in pickling order, with the storage keys the pickle names.
    private(set) var storages: [TorchStorageWrite] = []
    private var memoCount = 0
    private var globalMemo: [String: Int] = [:]
    private var stringMemo: [String: Int] = [:]

    /// The protocol-2 pickle of `value` (with STOP) and its storages.
    static func pickle(_ value: PickleValue) throws -> (bytes: [UInt8], storages: [TorchStorageWrite]) {
        var p = TorchPickler()
        try p.save(value)
        p.out.append(0x2e)  // STOP
        return (p.out, p.storages)
    }

    private mutating func memoize() {
        let i = memoCount
        memoCount += 1
        if i < 256 {
            out += [0x71, UInt8(i)]
        }  // BINPUT
        else {
            out.append(0x72); out += withUnsafeBytes(of: UInt32(i).littleEndian, Array.init)
        }  // LONG_BINPUT
    }

    private mutating func get(_ i: Int) {
        if i < 256 {
            out += [0x68, UInt8(i)]
        }  // BINGET
        else {
            out.append(0x6a); out += withUnsafeBytes(of: UInt32(i).littleEndian, Array.init)
        }  // LONG_BINGET
    }

    /// GLOBAL `module\nname\n`, memoized so later uses are BINGETs (a class is one object in Python).
    private mutating func global(_ module: String, _ name: String) {
        let k = module + "\n" + name
        if let i = globalMemo[k] { get(i); return }
        out.append(0x63)
        out += Array((k + "\n").utf8)
        globalMemo[k] = memoCount
        memoize()
    }

    private mutating func string(_ s: String) {
        if let i = stringMemo[s] { get(i); return }
        let b = Array(s.utf8)
        out.append(0x58)  // BINUNICODE (protocol 2 has no SHORT_BINUNICODE)
        out += withUnsafeBytes(of: UInt32(b.count).littleEndian, Array.init)
        out += b
        stringMemo[s] = memoCount
        memoize()
    }

    private mutating func int(_ v: Int) {
        if v >= 0 && v <= 0xff { out += [0x4b, UInt8(v)]; return }  // BININT1
        if v >= 0 && v <= 0xffff { out += [0x4d, UInt8(v & 0xff), UInt8(v >> 8)]; return }  // BININT2
        if v >= Int(Int32.min) && v <= Int(Int32.max) { out.append(0x4a); out += withUnsafeBytes(of: Int32(v).littleEndian, Array.init); return }
        // LONG1: the shortest two's-complement little-endian form, as Python's encode_long gives it.
        var bytes = withUnsafeBytes(of: Int64(v).littleEndian, Array.init)
        while bytes.count > 1 {
            let last = bytes[bytes.count - 1], prev = bytes[bytes.count - 2]
            if (last == 0 && prev & 0x80 == 0) || (last == 0xff && prev & 0x80 != 0) { bytes.removeLast() } else { break }
        }
        out += [0x8a, UInt8(bytes.count)] + bytes
    }

    /// Items batched as CPython does: chunks of 1000, a lone item with the single-item opcode.
    private mutating func batched(_ n: Int, single: UInt8, multiple: UInt8, _ item: (inout TorchPickler, Int) throws -> Void) rethrows {
        var i = 0
        while i < n {
            let end = min(n, i + 1000)
            if end - i == 1 {
                try item(&self, i)
                out.append(single)
            } else {
                out.append(0x28)  // MARK
                for j in i..<end { try item(&self, j) }
                out.append(multiple)
            }
            i = end
        }
    }

    private mutating func save(_ value: PickleValue) throws {
        switch value {
        case .none: out.append(0x4e)
        case .bool(let b): out.append(b ? 0x88 : 0x89)
        case .int(let v): int(v)
        case .float(let d): out.append(0x47); out += withUnsafeBytes(of: d.bitPattern.bigEndian, Array.init)
        case .string(let s): string(s)
        case .bytes(let b):
            // Protocol 2 predates a bytes opcode: Python 3 writes _codecs.encode(latin1_text, 'latin1').
            global("_codecs", "encode")
            var text = ""
            text.unicodeScalars.append(contentsOf: b.map { Unicode.Scalar($0) })
            string(text)
            string("latin1")
            out.append(0x86)  // TUPLE2
            memoize()
            out.append(0x52)  // REDUCE
            memoize()
        case .tuple(let items):
            try tuple(items.count) { p, i in try p.save(items[i]) }
        case .list(let items):
            out.append(0x5d)  // EMPTY_LIST
            memoize()
            try batched(items.count, single: 0x61, multiple: 0x65) { p, i in try p.save(items[i]) }
        case .dict(let d):
            if d.isOrderedDict {
                // OrderedDict.__reduce__: the class called with no arguments, then the items.
                global("collections", "OrderedDict")
                out.append(0x29)  // EMPTY_TUPLE
                out.append(0x52)  // REDUCE
            } else {
                out.append(0x7d)  // EMPTY_DICT
            }
            memoize()
            let entries = d.entries
            for e in entries {
                switch e.key {
                case .list, .dict, .tensor:
                    throw CheckpointError.pickle(
                        source: "<torch.save>", offset: out.count, reason: "dict key \(e.key.kindName) is unhashable in Python")
                default: break
                }
            }
            try batched(entries.count, single: 0x73, multiple: 0x75) { p, i in
                try p.save(entries[i].key)
                try p.save(entries[i].value)
            }
        case .tensor(let t):
            tensor(t)
        }
    }

    /// A tuple of `n` items saved by `item`: EMPTY_TUPLE, TUPLE1-3, or MARK…TUPLE, then memoized.
    private mutating func tuple(_ n: Int, _ item: (inout TorchPickler, Int) throws -> Void) rethrows {
        if n == 0 { out.append(0x29); return }  // the empty tuple is a singleton CPython never memoizes
        if n > 3 { out.append(0x28) }
        for i in 0..<n { try item(&self, i) }
        out.append(n > 3 ? 0x74 : [0x85, 0x86, 0x87][n - 1])
        memoize()
    }

    private mutating func tensor(_ t: CheckpointTensor) {
        let dtype: CheckpointDType = t.isFloatingPoint ? .float32 : t.dtype
        let key = String(storages.count)
        let write = TorchStorageWrite(key: key, tensor: t, dtype: dtype)
        storages.append(write)
        // Contiguous strides as torch computes them (a zero-size dimension counts as 1).
        var strides = [Int](repeating: 1, count: t.shape.count)
        var acc = 1
        for i in stride(from: t.shape.count - 1, through: 0, by: -1) { strides[i] = acc; acc *= max(t.shape[i], 1) }
        let shape = t.shape

        global("torch._utils", "_rebuild_tensor_v2")
        out.append(0x28)  // MARK: the six arguments
        // The persistent id ('storage', torch.XStorage, key, 'cpu', numel), then BINPERSID.
        out.append(0x28)
        string("storage")
        global("torch", write.storageClass)
        string(key)
        string("cpu")
        int(t.count)
        out.append(0x74)
        memoize()
        out.append(0x51)  // BINPERSID
        int(0)  // storage offset
        tuple(shape.count) { p, i in p.int(shape[i]) }
        tuple(strides.count) { p, i in p.int(strides[i]) }
        out.append(0x89)  // requires_grad False
        global("collections", "OrderedDict")  // backward hooks: an empty OrderedDict
        out.append(0x29)
        out.append(0x52)
        memoize()
        out.append(0x74)  // TUPLE
        memoize()
        out.append(0x52)  // REDUCE
        memoize()
    }
}
