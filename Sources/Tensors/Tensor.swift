// The tensor type: a shape over contiguous, row-major fp32 storage.
//
// Storage is a reference type so that views (reshape) and memory-mapped checkpoint weights share bytes
// without copying; a `Tensor` value never changes the storage it was handed except through the explicit
// `withUnsafeMutableBufferPointer`, which only code that just allocated the tensor calls.

import Foundation
import Synchronization

/// Contiguous fp32 memory owned by the tensor library or borrowed from an owner (a memory map) kept alive with it.
public final class TensorStorage: @unchecked Sendable {  // sound: buffers are written only while their tensor is being computed, before it is shared
    /// First element.
    public let pointer: UnsafeMutablePointer<Float>
    /// Number of elements.
    public let count: Int
    /// The object whose memory a borrowing storage lives in (a checkpoint's memory map); nil for the library's own.
    public let owner: AnyObject?
    private let release: Release

    /// How the memory goes back when the storage ends.
    private enum Release { case pool, unmap, owner }

    /// Allocates `count` zeroed elements, 64-byte aligned.
    public init(count: Int) {
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        let raw = StoragePool.allocate(bytes)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
        self.pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        self.count = count
        self.owner = nil
        self.release = .pool
    }

    /// Allocates `count` elements without zeroing them; the caller writes every element before reading.
    public init(uninitializedCount count: Int) {
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        let raw = StoragePool.allocate(bytes)
        self.pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        self.count = count
        self.owner = nil
        self.release = .pool
    }

    /// Borrows `count` elements at `pointer`; `owner` (for example a memory map) is retained as long as the storage.
    public init(borrowing pointer: UnsafeMutablePointer<Float>, count: Int, owner: AnyObject) {
        self.pointer = pointer
        self.count = count
        self.owner = owner
        self.release = .owner
    }

    /// `count` zeroed elements whose pages the kernel provides on first touch, so that memory never written or read
    /// costs nothing: a model's parameters before its checkpoint replaces them (or its int8 weights do).
    public init(zeroedPagesCount count: Int) {
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        let raw: UnsafeMutableRawPointer
        if bytes >= StoragePool.minimumBytes {
            let mapped = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            precondition(mapped != MAP_FAILED, "TensorStorage: cannot map \(bytes) bytes")
            raw = mapped!
            release = .unmap
        } else {  // a page or less: not worth a mapping of its own
            raw = StoragePool.allocate(bytes)
            raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
            release = .pool
        }
        self.pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        self.count = count
        self.owner = nil
    }

    /// Frees the buffers the library keeps for reuse. A model that lets its fp32 weights go (packing or quantizing
    /// them after a random initialisation) would otherwise fill the pool with buffers of the weights' sizes, which
    /// the forward passes never ask for, and leave no room for theirs: int8 inference then faulted in 52,000 fresh
    /// pages per batch.
    public static func releaseKeptBuffers() { StoragePool.drain() }

    /// True when the elements live in another object's memory (a checkpoint's memory map).
    public var isBorrowed: Bool { release == .owner }

    deinit {
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        switch release {
        case .pool: StoragePool.release(UnsafeMutableRawPointer(pointer), bytes: bytes)
        case .unmap: munmap(UnsafeMutableRawPointer(pointer), bytes)
        case .owner: break
        }
    }
}

/// Reuses large buffers: a forward pass frees and allocates the same sizes over and over, and fresh large
/// allocations come from the kernel as zeroed pages, whose faults cost more than the arithmetic of small layers.
enum StoragePool {
    /// Free buffers by size (their addresses, as plain integers: the cache's state is then `Sendable` and hands
    /// each buffer to one caller), and their total size.
    private static let cache = Mutex<(free: [Int: [UInt]], bytes: Int)>(([:], 0))
    /// Buffers smaller than this go straight to malloc, which handles them well.
    static let minimumBytes = 1 << 16
    /// At most this much memory is kept for reuse.
    static let limitBytes = 1 << 28
    // Other sizes come from malloc, whose heap reuses freed memory whatever its size. Mapping large buffers from the
    // kernel and unmapping them on release instead was measured (2026-12-07): 0.12 GB less at the peak of a
    // ViT-B-16@RoBERTa-base finetuning step, but int8 inference 30–40% slower, paying page faults on every call.

    static func allocate(_ bytes: Int) -> UnsafeMutableRawPointer {
        if bytes >= minimumBytes,
            let address = cache.withLock({ cache -> UInt? in
                guard let address = cache.free[bytes]?.popLast() else { return nil }
                cache.bytes -= bytes
                return address
            })
        {
            return UnsafeMutableRawPointer(bitPattern: address)!
        }
        return UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
    }

    /// Bytes of the buffers kept now.
    static var keptBytes: Int { cache.withLock { $0.bytes } }

    /// Frees every kept buffer.
    static func drain() {
        let addresses = cache.withLock { cache -> [UInt] in
            let all = cache.free.values.flatMap { $0 }
            cache = ([:], 0)
            return all
        }
        for address in addresses { UnsafeMutableRawPointer(bitPattern: address)!.deallocate() }
    }

    static func release(_ p: UnsafeMutableRawPointer, bytes: Int) {
        let kept =
            bytes >= minimumBytes
            && cache.withLock { cache in
                guard cache.bytes + bytes <= limitBytes else { return false }
                cache.free[bytes, default: []].append(UInt(bitPattern: p))
                cache.bytes += bytes
                return true
            }
        if !kept { p.deallocate() }
    }
}

/// An fp32 tensor: `shape` over row-major contiguous `storage` starting at `offset`.
public struct Tensor: Sendable, CustomStringConvertible {
    /// Dimensions, outermost first (`[batch, seq, width]`).
    public let shape: [Int]
    /// The memory the elements live in.
    public private(set) var storage: TensorStorage
    /// Index of the first element in `storage`.
    public let offset: Int

    /// Whether the elements may be updated in place unseen: this value is the only holder of its storage, and the
    /// storage is the library's own memory (not a view of a checkpoint's memory map).
    public mutating func isUniquelyOwned() -> Bool { !storage.isBorrowed && isKnownUniquelyReferenced(&storage) }

    /// Number of elements (product of `shape`; 1 for a scalar).
    public var count: Int { shape.reduce(1, *) }
    /// Number of dimensions.
    public var rank: Int { shape.count }

    /// Wraps existing storage; `offset + count` must not exceed the storage.
    public init(shape: [Int], storage: TensorStorage, offset: Int = 0) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        precondition(offset + shape.reduce(1, *) <= storage.count, "shape \(shape) exceeds storage of \(storage.count)")
        self.shape = shape
        self.storage = storage
        self.offset = offset
    }

    /// A tensor of `shape` filled with `value`.
    public init(shape: [Int], repeating value: Float = 0) {
        let n = shape.reduce(1, *)
        let s = TensorStorage(count: n)
        if value != 0 { s.pointer.update(repeating: value, count: n) }
        self.init(shape: shape, storage: s)
    }

    /// A tensor of `shape` holding `scalars` in row-major order.
    public init(shape: [Int], scalars: [Float]) {
        precondition(shape.reduce(1, *) == scalars.count, "shape \(shape) needs \(shape.reduce(1, *)) values, got \(scalars.count)")
        let s = TensorStorage(uninitializedCount: scalars.count)
        scalars.withUnsafeBufferPointer { s.pointer.update(from: $0.baseAddress!, count: scalars.count) }
        self.init(shape: shape, storage: s)
    }

    /// An uninitialised tensor of `shape`; the caller fills every element.
    public static func uninitialized(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, storage: TensorStorage(uninitializedCount: shape.reduce(1, *)))
    }

    /// The elements in row-major order.
    public var scalars: [Float] { Array(UnsafeBufferPointer(start: storage.pointer + offset, count: count)) }

    /// Pointer to the first element (read-only by convention).
    public var data: UnsafePointer<Float> { UnsafePointer(storage.pointer + offset) }

    /// Mutable pointer to the first element; only for tensors the caller just allocated.
    public var mutableData: UnsafeMutablePointer<Float> { storage.pointer + offset }

    /// Calls `body` with the elements.
    public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: storage.pointer + offset, count: count))
    }

    /// Calls `body` with the elements, writable; only for tensors the caller just allocated.
    public func withUnsafeMutableBufferPointer<R>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeMutableBufferPointer(start: storage.pointer + offset, count: count))
    }

    /// The same elements under another shape (no copy); one dimension may be -1.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var s = newShape
        if let i = s.firstIndex(of: -1) {
            let known = s.enumerated().filter { $0.offset != i }.map(\.element).reduce(1, *)
            s[i] = known == 0 ? 0 : count / known
        }
        precondition(s.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        return Tensor(shape: s, storage: storage, offset: offset)
    }

    /// Rows `start..<end` along the first dimension (no copy).
    public func rows(_ range: Range<Int>) -> Tensor {
        precondition(rank >= 1 && range.lowerBound >= 0 && range.upperBound <= shape[0], "rows \(range) out of \(shape)")
        let inner = shape.dropFirst().reduce(1, *)
        return Tensor(shape: [range.count] + shape.dropFirst(), storage: storage, offset: offset + range.lowerBound * inner)
    }

    /// Element at a multi-index (slow; for tests and small reads).
    public subscript(_ index: Int...) -> Float {
        precondition(index.count == rank, "index \(index) for shape \(shape)")
        var flat = 0
        for (i, d) in zip(index, shape) { precondition(i >= 0 && i < d, "index \(index) out of \(shape)"); flat = flat * d + i }
        return storage.pointer[offset + flat]
    }

    /// A fresh copy with its own storage.
    public func copy() -> Tensor {
        let t = Tensor.uninitialized(shape)
        t.mutableData.update(from: data, count: count)
        return t
    }

    /// Short description: the shape and the first values.
    public var description: String {
        let head = withUnsafeBufferPointer { Array($0.prefix(6)) }
        return "Tensor\(shape) \(head)\(count > 6 ? "…" : "")"
    }
}
