// The processes of a job and the collectives among them — torch.distributed's role in the reference, on Open MPI
// (started with `mpirun`, across hosts with a hostfile). One process without `mpirun` is a world of one, with no
// MPI at all, so nothing changes for users who never launch through it.

import CMPI
import Foundation

/// A failed collective operation.
package struct CommunicationError: Error, CustomStringConvertible {
    /// What failed, with MPI's own words.
    package let description: String

    /// An error saying `description`.
    package init(description: String) { self.description = description }
}

/// The processes of a job and the collective operations among them.
package protocol Communicator: AnyObject, Sendable {
    /// This process's index, 0..<worldSize (rank 0 logs and saves, as in the reference).
    var rank: Int { get }
    /// Number of processes.
    var worldSize: Int { get }
    /// Sums `buffer` element-wise over all ranks, in place (every rank ends with the sum).
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws
    /// The element-wise sums of `values` over all ranks.
    func allReduceSum(_ values: [Double]) throws -> [Double]
    /// Every rank's `local` (the same count on every rank), concatenated in rank order.
    func allGather(_ local: [Float]) throws -> [Float]
    /// Every rank's `local` integers (the same count on every rank), concatenated in rank order.
    func allGather(_ local: [Int32]) throws -> [Int32]
    /// On `root`: every rank's bytes, in rank order (counts may differ); nil on the other ranks.
    func gather(_ bytes: [UInt8], root: Int) throws -> [[UInt8]]?
    /// `root`'s bytes, on every rank.
    func broadcast(_ bytes: [UInt8], root: Int) throws -> [UInt8]
    /// Waits until every rank has arrived.
    func barrier() throws
    /// Ends the whole job with `code`: every rank stops, none is left waiting in a collective.
    func abort(code: Int32) -> Never
    /// Leaves the job cleanly (MPI_Finalize); call once, at the end of a successful run.
    func finish()
}

extension Communicator {
    /// True on the rank that logs and writes outputs.
    package var isMain: Bool { rank == 0 }
}

/// A job of one process: every collective is the identity.
package final class SingleProcessCommunicator: Communicator {
    /// The world of one.
    package init() {}
    package var rank: Int { 0 }
    package var worldSize: Int { 1 }
    package func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {}
    package func allReduceSum(_ values: [Double]) throws -> [Double] { values }
    package func allGather(_ local: [Float]) throws -> [Float] { local }
    package func allGather(_ local: [Int32]) throws -> [Int32] { local }
    package func gather(_ bytes: [UInt8], root: Int) throws -> [[UInt8]]? { [bytes] }
    package func broadcast(_ bytes: [UInt8], root: Int) throws -> [UInt8] { bytes }
    package func barrier() throws {}
    package func abort(code: Int32) -> Never { exit(code) }
    package func finish() {}
}

/// The ranks of an `mpirun` job (MPI_COMM_WORLD).
package final class MPICommunicator: Communicator, Sendable {
    package let rank: Int
    package let worldSize: Int

    /// Joins the job `mpirun` started (MPI_Init_thread, funneled: only the calling thread talks to MPI).
    package init() throws {
        if cnclip_mpi_initialized() == 0 {
            let rc = cnclip_mpi_init()
            guard rc == MPI_SUCCESS else { throw CommunicationError(description: "MPI_Init failed: \(Self.text(rc))") }
        }
        rank = Int(cnclip_mpi_rank())
        worldSize = Int(cnclip_mpi_size())
    }

    /// Whether this process was started by `mpirun`/`mpiexec` (Open MPI's or PMIx's environment variables).
    package static var isLaunchedByMPI: Bool {
        let env = ProcessInfo.processInfo.environment
        return env["OMPI_COMM_WORLD_SIZE"] != nil || env["PMIX_RANK"] != nil || env["PMI_SIZE"] != nil
    }

    static func text(_ code: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: 512)
        cnclip_mpi_error_string(code, &buffer, Int32(buffer.count))
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func check(_ rc: Int32, _ what: String) throws {
        guard rc == MPI_SUCCESS else {
            throw CommunicationError(description: "rank \(rank) of \(worldSize): \(what) failed: \(Self.text(rc))")
        }
    }

    static func count(_ n: Int, _ what: String) throws -> Int32 {
        guard let c = Int32(exactly: n) else { throw CommunicationError(description: "\(what): \(n) elements exceed MPI's int count") }
        return c
    }

    package func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) throws {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        try check(cnclip_mpi_allreduce_sum_float(base, try Self.count(buffer.count, "all-reduce")), "MPI_Allreduce")
    }

    package func allReduceSum(_ values: [Double]) throws -> [Double] {
        var v = values
        guard !v.isEmpty else { return v }
        try check(cnclip_mpi_allreduce_sum_double(&v, try Self.count(v.count, "all-reduce")), "MPI_Allreduce")
        return v
    }

    package func allGather(_ local: [Float]) throws -> [Float] {
        var out = [Float](repeating: 0, count: local.count * worldSize)
        guard !local.isEmpty else { return out }
        try check(cnclip_mpi_allgather_float(local, try Self.count(local.count, "all-gather"), &out), "MPI_Allgather")
        return out
    }

    package func allGather(_ local: [Int32]) throws -> [Int32] {
        var out = [Int32](repeating: 0, count: local.count * worldSize)
        guard !local.isEmpty else { return out }
        try check(cnclip_mpi_allgather_int(local, try Self.count(local.count, "all-gather"), &out), "MPI_Allgather")
        return out
    }

    package func gather(_ bytes: [UInt8], root: Int) throws -> [[UInt8]]? {
        let counts = try allGather([Int32(try Self.count(bytes.count, "gather"))]).map(Int.init)
        var displacements: [Int32] = []
        var total = 0
        for c in counts { displacements.append(try Self.count(total, "gather")); total += c }
        var receive = [UInt8](repeating: 0, count: rank == root ? max(total, 1) : 1)
        let counts32 = counts.map { Int32($0) }
        try check(cnclip_mpi_gatherv_bytes(bytes, Int32(bytes.count), &receive, counts32, displacements, Int32(root)), "MPI_Gatherv")
        guard rank == root else { return nil }
        return counts.indices.map { Array(receive[Int(displacements[$0])..<Int(displacements[$0]) + counts[$0]]) }
    }

    package func broadcast(_ bytes: [UInt8], root: Int) throws -> [UInt8] {
        var count = [Int32(rank == root ? try Self.count(bytes.count, "broadcast") : 0)]
        try count.withUnsafeMutableBytes { try check(cnclip_mpi_bcast_bytes($0.baseAddress, 4, Int32(root)), "MPI_Bcast") }
        var buffer = rank == root ? bytes : [UInt8](repeating: 0, count: Int(count[0]))
        if count[0] > 0 { try check(cnclip_mpi_bcast_bytes(&buffer, count[0], Int32(root)), "MPI_Bcast") }
        return buffer
    }

    package func barrier() throws { try check(cnclip_mpi_barrier(), "MPI_Barrier") }

    package func abort(code: Int32) -> Never {
        cnclip_mpi_abort(code)
        exit(code)
    }

    package func finish() { _ = cnclip_mpi_finalize() }
}

/// The communicator of this process: MPI's world when started by `mpirun`, else a world of one.
package func makeCommunicator() throws -> Communicator {
    MPICommunicator.isLaunchedByMPI ? try MPICommunicator() : SingleProcessCommunicator()
}
