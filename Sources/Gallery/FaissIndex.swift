// A Swift handle on a FAISS inner-product index (through our CFaiss C interface): the approximate half of a gallery,
// for galleries too large to scan exactly on every query. FAISS ids are gallery rows: vectors are only ever appended.

import CFaiss
import Essentials
import Foundation

/// An approximate inner-product index (IVF, HNSW, PQ, … — whatever a FAISS factory string names).
package final class FaissIndex: @unchecked Sendable {  // sound: FAISS indexes are safe for concurrent searches; adds and writes happen on one thread
    private let handle: OpaquePointer

    private init(handle: OpaquePointer) { self.handle = handle }

    /// An empty index of vectors of length `dim` built from a FAISS factory string (`"IVF1024,Flat"`, `"HNSW32"`).
    package convenience init(dim: Int, factory: String) throws {
        var out: OpaquePointer?
        try Self.check(cfaiss_new(Int64(dim), factory, &out), "cannot build a FAISS index from \"\(factory)\"")
        self.init(handle: out!)
    }

    /// Reads an index written by ``write(to:)``.
    package convenience init(contentsOf path: String) throws {
        var out: OpaquePointer?
        try Self.check(cfaiss_read(path, &out), "\(path): cannot read the FAISS index")
        self.init(handle: out!)
    }

    deinit { cfaiss_free(handle) }

    /// Vectors held (their ids are 0..<count).
    package var count: Int { Int(cfaiss_ntotal(handle)) }
    /// Vector length.
    package var dim: Int { Int(cfaiss_dim(handle)) }
    /// Whether vectors can be added (IVF and PQ indexes need ``train(_:count:)`` first).
    package var isTrained: Bool { cfaiss_is_trained(handle) != 0 }

    /// Trains the index on `count` vectors `[count, dim]` (a sample of the gallery is enough).
    package func train(_ vectors: UnsafePointer<Float>, count: Int) throws {
        try Self.check(cfaiss_train(handle, Int64(count), vectors), "FAISS training failed")
    }

    /// Appends `count` vectors `[count, dim]`; they get the next ids.
    package func add(_ vectors: UnsafePointer<Float>, count: Int) throws {
        try Self.check(cfaiss_add(handle, Int64(count), vectors), "adding to the FAISS index failed")
    }

    /// Sets a search parameter by FAISS's name for it (`nprobe` for IVF, `efSearch` for HNSW).
    package func setParameter(_ name: String, _ value: Double) throws {
        try Self.check(cfaiss_set_parameter(handle, name, value), "cannot set \(name) = \(value)")
    }

    /// The `k` best ids of each of `count` queries `[count, dim]` with FAISS's inner products, best first;
    /// fewer than `k` where the probed lists held fewer vectors.
    package func search(_ queries: UnsafePointer<Float>, count: Int, k: Int) throws -> [[(id: Int, score: Float)]] {
        guard count > 0, k > 0 else { return Array(repeating: [], count: count) }
        var distances = [Float](repeating: 0, count: count * k)
        var labels = [Int64](repeating: -1, count: count * k)
        try Self.check(cfaiss_search(handle, Int64(count), queries, Int64(k), &distances, &labels), "FAISS search failed")
        return (0..<count).map { q in
            (0..<k).compactMap { j in labels[q * k + j] < 0 ? nil : (Int(labels[q * k + j]), distances[q * k + j]) }
        }
    }

    /// Writes the index to `path` (through a temporary file renamed into place).
    package func write(to path: String) throws {
        try AtomicOutput.writeNamed(path: path) { tmp in try Self.check(cfaiss_write(handle, tmp), "\(path): cannot write the FAISS index") }
    }

    /// Sets how many OpenMP threads FAISS may use.
    package static func setThreads(_ n: Int) { cfaiss_set_threads(Int32(n)) }

    private static func check(_ rc: Int32, _ what: String) throws {
        if rc != 0 { throw GalleryError.faiss("\(what): \(String(cString: cfaiss_last_error()))") }
    }
}
