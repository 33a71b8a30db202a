// A small wrapper over the LMDB C API (liblmdb through the CLMDB module map): environments, transactions,
// cursor iteration in key byte order, and a batched writer whose map grows when it fills.
//
// Why a wrapper of our own: the dataset layout of cn-clip is plain LMDB (one unnamed database per environment
// directory, `data.mdb` + `lock.mdb`), and the few calls we need are easier to audit than a dependency.

import CLMDB
import Essentials
import Foundation
import Synchronization

/// An LMDB environment: one directory holding `data.mdb` and `lock.mdb`, with a single unnamed database.
package final class LMDBEnvironment: @unchecked Sendable {  // sound: LMDB lets threads share an environment, each with its own transactions
    /// The environment directory.
    package let path: String
    /// Whether the environment was opened read-only.
    package let readOnly: Bool
    /// The current map size in bytes (grows when a write fills it).
    package private(set) var mapSize: Int
    let env: OpaquePointer

    /// Opens an existing environment directory for reading, as the reference's readers do (no lock file, no read-ahead).
    package convenience init(readingAt path: String) throws {
        try self.init(path: path, readOnly: true, mapSize: 0, durable: true)
    }

    /// Opens (creating the directory if needed) an environment for writing, starting with `mapSize` bytes.
    ///
    /// With `durable` false, commits are not flushed to disk one by one (`MDB_NOSYNC`); call ``sync()`` before
    /// relying on the data (for scratch environments that are discarded on failure anyway).
    package convenience init(creatingAt path: String, mapSize: Int = 256 << 20, durable: Bool = true) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw FileError(path: path, reason: "cannot create the LMDB directory: \(error.localizedDescription)")
        }
        try self.init(path: path, readOnly: false, mapSize: mapSize, durable: durable)
    }

    private init(path: String, readOnly: Bool, mapSize: Int, durable: Bool) throws {
        self.path = path
        self.readOnly = readOnly
        var e: OpaquePointer?
        try LMDBEnvironment.check(mdb_env_create(&e), path, "mdb_env_create")
        env = e!
        var flags = UInt32(MDB_NORDAHEAD)
        if readOnly {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else {
                mdb_env_close(env)
                throw FileError(path: path, reason: "no such LMDB directory")
            }
            flags |= UInt32(MDB_RDONLY) | UInt32(MDB_NOLOCK)
        }
        if !durable { flags |= UInt32(MDB_NOSYNC) }
        if mapSize > 0 {
            let rc = mdb_env_set_mapsize(env, mapSize)
            if rc != 0 { mdb_env_close(env); try LMDBEnvironment.check(rc, path, "mdb_env_set_mapsize") }
        }
        let rc = mdb_env_open(env, path, flags, 0o644)
        if rc != 0 { mdb_env_close(env); try LMDBEnvironment.check(rc, path, "mdb_env_open") }
        var info = MDB_envinfo()
        mdb_env_info(env, &info)
        self.mapSize = info.me_mapsize
    }

    deinit { mdb_env_close(env) }

    /// Flushes written data to disk (`mdb_env_sync` with force).
    package func sync() throws {
        try LMDBEnvironment.check(mdb_env_sync(env, 1), path, "mdb_env_sync")
    }

    /// Runs `body` in a read-only transaction.
    package func read<T>(_ body: (LMDBTransaction) throws -> T) throws -> T {
        let txn = try LMDBTransaction(self, write: false)
        defer { txn.abort() }
        return try body(txn)
    }

    /// Runs `body` in a write transaction and commits it; when the map fills, grows it and runs `body` again.
    ///
    /// `body` may therefore run more than once: it must write the same entries each time.
    package func write<T>(_ body: (LMDBTransaction) throws -> T) throws -> T {
        while true {
            let txn = try LMDBTransaction(self, write: true)
            do {
                let result = try body(txn)
                try txn.commit()
                return result
            } catch DatasetError.lmdb(_, _, MDB_MAP_FULL, _) {
                txn.abort()
                try grow()
            } catch {
                txn.abort()
                throw error
            }
        }
    }

    /// Doubles the map size; only valid while no transaction is open.
    func grow() throws {
        let next = max(mapSize * 2, 1 << 24)
        try LMDBEnvironment.check(mdb_env_set_mapsize(env, next), path, "mdb_env_set_mapsize(\(next))")
        mapSize = next
    }

    /// The number of entries in the database.
    package var count: Int {
        get throws {
            try read { txn in
                var stat = MDB_stat()
                try LMDBEnvironment.check(mdb_stat(txn.txn, txn.dbi, &stat), path, "mdb_stat")
                return stat.ms_entries
            }
        }
    }

    static func check(_ rc: Int32, _ path: String, _ operation: String) throws {
        guard rc != 0 else { return }
        var message = String(cString: mdb_strerror(rc))
        // LMDB reports a short write as EIO: on a full file system, say so.
        if rc == EIO || rc == ENOSPC, isFull(path) { message = "No space left on device (\(message))" }
        throw DatasetError.lmdb(path: path, operation: operation, code: rc, message: message)
    }

    /// True when the file system holding `path` has less than 1 MiB free.
    private static func isFull(_ path: String) -> Bool {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return false }
        return UInt64(info.f_bavail) * UInt64(info.f_frsize) < 1 << 20
    }
}

/// An open LMDB transaction on an environment's unnamed database; valid only inside the closure that received it.
package final class LMDBTransaction {
    let environment: LMDBEnvironment
    let txn: OpaquePointer
    let dbi: MDB_dbi
    private var open = true

    init(_ environment: LMDBEnvironment, write: Bool) throws {
        self.environment = environment
        var t: OpaquePointer?
        try LMDBEnvironment.check(
            mdb_txn_begin(environment.env, nil, write ? 0 : UInt32(MDB_RDONLY), &t),
            environment.path, "mdb_txn_begin")
        txn = t!
        var d: MDB_dbi = 0
        let rc = mdb_dbi_open(txn, nil, 0, &d)
        if rc != 0 { mdb_txn_abort(txn); open = false; try LMDBEnvironment.check(rc, environment.path, "mdb_dbi_open") }
        dbi = d
    }

    func commit() throws {
        guard open else { return }
        open = false
        try LMDBEnvironment.check(mdb_txn_commit(txn), environment.path, "mdb_txn_commit")
    }

    func abort() {
        guard open else { return }
        open = false
        mdb_txn_abort(txn)
    }

    /// Stores `value` under `key` (both raw bytes), replacing any previous value.
    package func put(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val(mv_size: value.count, mv_data: UnsafeMutableRawPointer(mutating: value.baseAddress))
        let rc = mdb_put(txn, dbi, &k, &v, 0)
        if rc != 0 {
            let name = String(decoding: key.prefix(64), as: UTF8.self)
            try LMDBEnvironment.check(rc, environment.path, "mdb_put(key '\(name)')")
        }
    }

    /// Stores `value` under `key`.
    package func put<K: ContiguousBytes, V: ContiguousBytes>(_ key: K, _ value: V) throws {
        try key.withUnsafeBytes { k in try value.withUnsafeBytes { v in try put(k, v) } }
    }

    /// Stores `value` under the UTF-8 bytes of `key`.
    package func put<V: ContiguousBytes>(_ key: String, _ value: V) throws {
        try put(Array(key.utf8), value)
    }

    /// Calls `body` with the value stored under `key` (valid only during the call), or nil when absent.
    package func withValue<T>(_ key: UnsafeRawBufferPointer, _ body: (UnsafeRawBufferPointer?) throws -> T) throws -> T {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val()
        let rc = mdb_get(txn, dbi, &k, &v)
        if rc == MDB_NOTFOUND { return try body(nil) }
        try LMDBEnvironment.check(rc, environment.path, "mdb_get")
        return try body(UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
    }

    /// The bytes stored under the UTF-8 bytes of `key`, or nil when absent.
    package func get(_ key: String) throws -> [UInt8]? {
        try Array(key.utf8).withUnsafeBytes { k in try withValue(k) { $0.map { Array($0) } } }
    }

    /// Walks every entry in key byte order (an LMDB cursor from first to last); return false from `body` to stop.
    package func forEach(_ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool) throws {
        var c: OpaquePointer?
        try LMDBEnvironment.check(mdb_cursor_open(txn, dbi, &c), environment.path, "mdb_cursor_open")
        defer { mdb_cursor_close(c) }
        var k = MDB_val(), v = MDB_val()
        var op = MDB_FIRST
        while true {
            let rc = mdb_cursor_get(c, &k, &v, op)
            if rc == MDB_NOTFOUND { return }
            try LMDBEnvironment.check(rc, environment.path, "mdb_cursor_get")
            op = MDB_NEXT
            let go = try body(
                UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size),
                UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
            if !go { return }
        }
    }
}

/// Buffers key/value pairs and writes them in batches, one transaction each, so a map that fills mid-batch
/// can be grown and the whole batch replayed (a failed LMDB transaction cannot be resumed).
///
/// When `pipelined`, full batches are committed on a background thread while the caller fills the next one (at
/// most two batches in flight): parsing and validating input then overlaps with LMDB's copying and writing, which
/// is what bounds a dataset build. Errors from the background surface at the next `put`, `flush` or `finish`.
package final class LMDBBatchWriter {
    /// The environment written to.
    package let environment: LMDBEnvironment
    /// Entries per transaction.
    package let maxEntries: Int
    /// Buffered bytes that force a commit, whatever the entry count.
    package let maxBytes: Int
    /// Whether batches are committed on a background thread.
    package let pipelined: Bool

    /// Keys and values of one transaction, back to back in `bytes`.
    private struct Batch: Sendable {
        var bytes: [UInt8] = []
        var entries: [(keyStart: Int, keyCount: Int, valueCount: Int)] = []
        mutating func clear() {
            bytes.removeAll(keepingCapacity: true)
            entries.removeAll(keepingCapacity: true)
        }
    }
    /// What the caller and the background commits share: batches handed over (in order), emptied batches whose
    /// buffers are reused, and the first failure.
    private struct Shared: Sendable {
        var handedOver: [Batch] = []
        var spare: [Batch] = []
        var failure: Error?
    }
    /// `Shared` under a lock, in a box that the background commits keep alive.
    private final class SharedBox: Sendable {
        let state = Mutex(Shared())
    }
    /// The batch being filled, on the caller's thread.
    private var current = Batch()
    private let box = SharedBox()
    private let queue = DispatchQueue(label: "cnclip.lmdb-writer")
    private let slots = DispatchSemaphore(value: 2)

    /// A writer committing every `maxEntries` entries or `maxBytes` buffered bytes.
    package init(_ environment: LMDBEnvironment, maxEntries: Int = 1000, maxBytes: Int = 64 << 20, pipelined: Bool = false) {
        self.environment = environment
        self.maxEntries = maxEntries
        self.maxBytes = maxBytes
        self.pipelined = pipelined
    }

    /// Queues `value` under `key`; commits when the batch is full.
    package func put(_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws {
        current.entries.append((current.bytes.count, key.count, value.count))
        current.bytes.append(contentsOf: key)
        current.bytes.append(contentsOf: value)
        if current.entries.count >= maxEntries || current.bytes.count >= maxBytes { try flush() }
    }

    /// Queues `value` under the UTF-8 bytes of `key`.
    package func put<V: ContiguousBytes>(_ key: String, _ value: V) throws {
        try Array(key.utf8).withUnsafeBytes { k in try value.withUnsafeBytes { v in try put(k, v) } }
    }

    /// Commits the queued entries (hands them to the background thread when pipelined).
    package func flush() throws {
        try rethrowFailure()
        guard !current.entries.isEmpty else { return }
        if !pipelined {
            try Self.write(current, to: environment)
            current.clear()
            return
        }
        slots.wait()
        current = box.state.withLock { shared in
            shared.handedOver.append(current)
            return shared.spare.popLast() ?? Batch()
        }
        let environment = environment, box = box, slots = slots
        queue.async {
            // The serial queue takes the batches in the order they were handed over; the buffer is then ours alone.
            var batch = box.state.withLock { $0.handedOver.removeFirst() }
            if box.state.withLock({ $0.failure == nil }) {
                do { try Self.write(batch, to: environment) } catch { box.state.withLock { $0.failure = $0.failure ?? error } }
            }
            batch.clear()
            box.state.withLock { $0.spare.append(batch) }
            slots.signal()
        }
    }

    /// Commits everything queued and waits until it is written; throws the first error of any batch.
    package func finish() throws {
        try flush()
        queue.sync {}
        try rethrowFailure()
    }

    private func rethrowFailure() throws {
        if let f = box.state.withLock({ $0.failure }) { throw f }
    }

    private static func write(_ b: Batch, to environment: LMDBEnvironment) throws {
        try b.bytes.withUnsafeBytes { all in
            try environment.write { txn in
                for e in b.entries {
                    let k = UnsafeRawBufferPointer(rebasing: all[e.keyStart..<e.keyStart + e.keyCount])
                    let vs = e.keyStart + e.keyCount
                    try txn.put(k, UnsafeRawBufferPointer(rebasing: all[vs..<vs + e.valueCount]))
                }
            }
        }
    }

    deinit { queue.sync {} }
}
