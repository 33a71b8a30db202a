// Tensors as checkpoints store them, turned into what the model code uses.
//
// Models compute in fp32, so floating tensors of every stored precision become an fp32 `Tensor` once, at
// load time; integer tensors (token ids, BatchNorm counters) stay exact as `[Int64]`. Contiguous,
// aligned fp32 data borrows the memory map instead of being copied.

import Foundation
import Tensors

/// Element types found in torch storages and safetensors files.
package enum CheckpointDType: String, Sendable, CaseIterable {
    /// One case per element type, named as torch names it.
    case float32, float16, bfloat16, float64, int64, int32, int16, int8, uint8, bool

    /// Bytes per element.
    package var byteSize: Int {
        switch self {
        case .float64, .int64: return 8
        case .float32, .int32: return 4
        case .float16, .bfloat16, .int16: return 2
        case .int8, .uint8, .bool: return 1
        }
    }

    /// True for float32/float16/bfloat16/float64.
    package var isFloatingPoint: Bool {
        switch self {
        case .float32, .float16, .bfloat16, .float64: return true
        default: return false
        }
    }

    /// The dtype of a torch storage class name such as `FloatStorage`, or nil for one we do not read.
    package init?(torchStorage name: String) {
        switch name {
        case "FloatStorage": self = .float32
        case "HalfStorage": self = .float16
        case "BFloat16Storage": self = .bfloat16
        case "DoubleStorage": self = .float64
        case "LongStorage": self = .int64
        case "IntStorage": self = .int32
        case "ShortStorage": self = .int16
        case "CharStorage": self = .int8
        case "ByteStorage": self = .uint8
        case "BoolStorage": self = .bool
        default: return nil
        }
    }

    /// The dtype of a safetensors dtype string such as `F32`, or nil for one we do not read.
    package init?(safetensors name: String) {
        switch name {
        case "F32": self = .float32
        case "F16": self = .float16
        case "BF16": self = .bfloat16
        case "F64": self = .float64
        case "I64": self = .int64
        case "I32": self = .int32
        case "I16": self = .int16
        case "I8": self = .int8
        case "U8": self = .uint8
        case "BOOL": self = .bool
        default: return nil
        }
    }

    /// The safetensors dtype string (`F32`, `I64`, ...).
    package var safetensorsName: String {
        switch self {
        case .float32: return "F32"
        case .float16: return "F16"
        case .bfloat16: return "BF16"
        case .float64: return "F64"
        case .int64: return "I64"
        case .int32: return "I32"
        case .int16: return "I16"
        case .int8: return "I8"
        case .uint8: return "U8"
        case .bool: return "BOOL"
        }
    }
}

/// A tensor read from a checkpoint: its stored dtype and shape, with values as fp32 `Tensor` (floating) or `[Int64]` (integer).
package struct CheckpointTensor: Sendable, Equatable, CustomStringConvertible {
    /// The values: fp32 for every floating dtype, exact 64-bit integers for every integer or bool dtype.
    package enum Values {
        /// fp32 elements, contiguous row-major.
        case float(Tensor)
        /// Integer elements, row-major.
        case integer([Int64])
    }

    /// The dtype the file stored (the values may have been widened to fp32 / Int64).
    package let dtype: CheckpointDType
    /// Dimensions, outermost first (`[]` for a 0-d scalar).
    package let shape: [Int]
    /// The elements.
    package let values: Values
    /// The memory map the fp32 values borrow, or nil when they were copied or converted.
    package let mapping: MappedFile?

    /// A floating tensor of stored type `dtype` whose fp32 values are `tensor` (shape taken from it).
    package init(_ tensor: Tensor, dtype: CheckpointDType = .float32, mapping: MappedFile? = nil) {
        self.dtype = dtype
        self.shape = tensor.shape
        self.values = .float(tensor)
        self.mapping = mapping
    }

    /// An integer tensor of stored type `dtype` with row-major `values` of shape `shape`.
    package init(shape: [Int], integers: [Int64], dtype: CheckpointDType = .int64) {
        precondition(shape.reduce(1, *) == integers.count, "shape \(shape) needs \(shape.reduce(1, *)) values, got \(integers.count)")
        self.dtype = dtype
        self.shape = shape
        self.values = .integer(integers)
        self.mapping = nil
    }

    /// Number of elements.
    package var count: Int { shape.reduce(1, *) }

    /// True when the values are fp32 (the stored dtype was floating).
    package var isFloatingPoint: Bool { if case .float = values { return true } else { return false } }

    /// The values as an fp32 tensor of `shape`; integers are converted (exact up to 2^24).
    package var tensor: Tensor {
        switch values {
        case .float(let t): return t
        case .integer(let v): return Tensor(shape: shape, scalars: v.map { Float($0) })
        }
    }

    /// The values as integers, or nil for a floating tensor.
    package var integers: [Int64]? {
        if case .integer(let v) = values { return v } else { return nil }
    }

    /// The values as `Float`s in row-major order (integers converted).
    package var floats: [Float] { tensor.scalars }

    /// Same dtype class, shape and element values (fp32 compared with `==`).
    package static func == (a: CheckpointTensor, b: CheckpointTensor) -> Bool {
        guard a.shape == b.shape else { return false }
        switch (a.values, b.values) {
        case let (.float(x), .float(y)):
            return x.withUnsafeBufferPointer { xb in y.withUnsafeBufferPointer { yb in xb.elementsEqual(yb) } }
        case let (.integer(x), .integer(y)): return x == y
        default: return false
        }
    }

    /// The dtype, shape and first values.
    package var description: String {
        switch values {
        case .float(let t): return "\(dtype)\(shape) \(t.withUnsafeBufferPointer { Array($0.prefix(6)) })\(count > 6 ? "…" : "")"
        case .integer(let v): return "\(dtype)\(shape) \(Array(v.prefix(6)))\(count > 6 ? "…" : "")"
        }
    }
}

// MARK: - Building tensors from raw storage bytes

/// Exact IEEE half → single conversion from bits (no `Float16` so that it builds everywhere).
@inline(__always) func halfBitsToFloat(_ h: UInt16) -> Float {
    let sign = UInt32(h & 0x8000) << 16
    let exp = UInt32((h >> 10) & 0x1f)
    let mant = UInt32(h & 0x3ff)
    if exp == 0 {
        if mant == 0 { return Float(bitPattern: sign) }
        // Subnormal halves are mant·2⁻²⁴, always exact in fp32.
        let v = Float(mant) * 0x1p-24
        return sign != 0 ? -v : v
    }
    if exp == 31 { return Float(bitPattern: sign | 0x7f80_0000 | (mant << 13)) }
    return Float(bitPattern: sign | ((exp + 112) << 23) | (mant << 13))
}

enum TensorBuild {
    /// Row-major strides of `shape`.
    static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var s = Array(repeating: 1, count: shape.count)
        var acc = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) { s[i] = acc; acc *= shape[i] }
        return s
    }

    /// True when `stride` walks `shape` in row-major order; strides of size-1 dimensions do not matter.
    static func isContiguous(shape: [Int], stride: [Int]) -> Bool {
        var expected = 1
        for i in stride.indices.reversed() where shape[i] != 1 {
            if stride[i] != expected { return false }
            expected *= shape[i]
        }
        return true
    }

    /// Calls `body(sourceIndex, destinationIndex)` for every element of a strided view, row-major.
    @inline(__always) static func forEachIndex(shape: [Int], stride: [Int], offset: Int, _ body: (Int, Int) -> Void) {
        let n = shape.reduce(1, *)
        if n == 0 { return }
        if shape.isEmpty { body(offset, 0); return }
        let rank = shape.count
        let inner = shape[rank - 1], innerStride = stride[rank - 1]
        var idx = Array(repeating: 0, count: rank)
        var base = offset
        var dst = 0
        while dst < n {
            var s = base
            for _ in 0..<inner { body(s, dst); s += innerStride; dst += 1 }
            // Odometer over the outer dimensions.
            var d = rank - 2
            while d >= 0 {
                idx[d] += 1
                base += stride[d]
                if idx[d] < shape[d] { break }
                base -= stride[d] * shape[d]
                idx[d] = 0
                d -= 1
            }
        }
    }

    /// Builds a tensor of `shape`/`stride` starting at element `offset` of a storage of `dtype` held in `bytes`.
    ///
    /// Contiguous aligned fp32 data borrows `bytes` (kept alive by `mapping`, through `sharedStorage` when
    /// several tensors view one storage); everything else is gathered into a fresh fp32 or Int64 copy.
    static func make(
        bytes: UnsafeRawBufferPointer, dtype: CheckpointDType, offset: Int, shape: [Int], stride: [Int],
        mapping: MappedFile?, sharedStorage: (() -> TensorStorage)?, file: String, key: String
    ) throws -> CheckpointTensor {
        guard shape.count == stride.count else {
            throw CheckpointError.badTensor(file: file, key: key, reason: "size \(shape) and stride \(stride) differ in rank")
        }
        guard shape.allSatisfy({ $0 >= 0 }), stride.allSatisfy({ $0 >= 0 }), offset >= 0 else {
            throw CheckpointError.badTensor(file: file, key: key, reason: "negative size \(shape), stride \(stride) or offset \(offset)")
        }
        let storageCount = bytes.count / dtype.byteSize
        // Sizes come from the file: every product is checked, and nothing is allocated before the view is known to
        // lie inside its storage.
        var n = 1
        var last = offset
        var overflow = false
        for (size, step) in zip(shape, stride) {
            let (count, o1) = n.multipliedReportingOverflow(by: size)
            let (reach, o2) = max(size - 1, 0).multipliedReportingOverflow(by: step)
            let (end, o3) = last.addingReportingOverflow(reach)
            n = count
            last = end
            overflow = overflow || o1 || o2 || o3
        }
        if overflow || (n > 0 && last >= storageCount) {
            throw CheckpointError.badTensor(
                file: file, key: key,
                reason: "size \(shape), stride \(stride), offset \(offset) reach past a storage of \(storageCount) \(dtype) elements")
        }
        // Overlapping strides (an expanded view) would be gathered into a copy larger than the storage: a small file
        // could then ask for any amount of memory. State dicts never hold such views.
        guard n <= storageCount else {
            throw CheckpointError.badTensor(
                file: file, key: key,
                reason: "size \(shape) with stride \(stride) views \(n) elements of a storage of \(storageCount): overlapping views are not read")
        }
        let contiguous = isContiguous(shape: shape, stride: stride)
        if n == 0 {
            if dtype.isFloatingPoint { return CheckpointTensor(Tensor(shape: shape), dtype: dtype) }
            return CheckpointTensor(shape: shape, integers: [], dtype: dtype)
        }
        let raw = bytes.baseAddress!
        switch dtype {
        case .float32:
            if contiguous, let mapping, Int(bitPattern: raw) % MemoryLayout<Float>.alignment == 0 {
                let storage =
                    sharedStorage?()
                    ?? TensorStorage(
                        borrowing: UnsafeMutablePointer(mutating: raw.assumingMemoryBound(to: Float.self)),
                        count: storageCount, owner: mapping)
                return CheckpointTensor(Tensor(shape: shape, storage: storage, offset: offset), dtype: .float32, mapping: mapping)
            }
            return floatCopy(shape: shape, stride: stride, offset: offset, contiguous: contiguous, dtype: dtype) { i in
                Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)))
            }
        case .float16:
            return floatCopy(shape: shape, stride: stride, offset: offset, contiguous: contiguous, dtype: dtype) { i in
                halfBitsToFloat(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
            }
        case .bfloat16:
            return floatCopy(shape: shape, stride: stride, offset: offset, contiguous: contiguous, dtype: dtype) { i in
                Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))) << 16)
            }
        case .float64:
            return floatCopy(shape: shape, stride: stride, offset: offset, contiguous: contiguous, dtype: dtype) { i in
                Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))))
            }
        case .int64:
            return intCopy(shape: shape, stride: stride, offset: offset, dtype: dtype) { i in
                Int64(littleEndian: raw.loadUnaligned(fromByteOffset: i * 8, as: Int64.self))
            }
        case .int32:
            return intCopy(shape: shape, stride: stride, offset: offset, dtype: dtype) { i in
                Int64(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)))
            }
        case .int16:
            return intCopy(shape: shape, stride: stride, offset: offset, dtype: dtype) { i in
                Int64(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: i * 2, as: Int16.self)))
            }
        case .int8:
            return intCopy(shape: shape, stride: stride, offset: offset, dtype: dtype) { i in Int64(raw.load(fromByteOffset: i, as: Int8.self)) }
        case .uint8, .bool:
            return intCopy(shape: shape, stride: stride, offset: offset, dtype: dtype) { i in Int64(raw.load(fromByteOffset: i, as: UInt8.self)) }
        }
    }

    @inline(__always) private static func floatCopy(
        shape: [Int], stride: [Int], offset: Int, contiguous: Bool, dtype: CheckpointDType,
        _ read: (Int) -> Float
    ) -> CheckpointTensor {
        let t = Tensor.uninitialized(shape)
        let out = t.mutableData
        if contiguous {
            // The common case (fp16 checkpoints): one tight loop, no index arithmetic.
            for i in 0..<t.count { out[i] = read(offset + i) }
        } else {
            forEachIndex(shape: shape, stride: stride, offset: offset) { s, d in out[d] = read(s) }
        }
        return CheckpointTensor(t, dtype: dtype)
    }

    @inline(__always) private static func intCopy(
        shape: [Int], stride: [Int], offset: Int, dtype: CheckpointDType,
        _ read: (Int) -> Int64
    ) -> CheckpointTensor {
        var values = [Int64](repeating: 0, count: shape.reduce(1, *))
        values.withUnsafeMutableBufferPointer { out in
            forEachIndex(shape: shape, stride: stride, offset: offset) { s, d in out[d] = read(s) }
        }
        return CheckpointTensor(shape: shape, integers: values, dtype: dtype)
    }
}
