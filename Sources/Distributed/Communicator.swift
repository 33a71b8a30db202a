// The processes of a job and the collectives among them — torch.distributed's role in the reference, on Open MPI
// (started with `mpirun`, across hosts with a hostfile). One process without `mpirun` is a world of one, with no
// MPI at all, so nothing changes for users who never launch through it.

import CMPI
import Foundation
import Synchronization

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

/// How long one collective may wait for the other ranks before this rank ends itself: torch.distributed's default
/// process-group timeout, 30 minutes, which the reference's `init_process_group` keeps.
package let defaultCommunicationTimeout: Double = 1800

/// Ends this process when an MPI call has waited longer than its limit, so that a dead rank or a cut network ends
/// the job instead of leaving every other rank blocked forever (MPI's own calls never time out).
final class CollectiveWatchdog: Sendable {
    /// The call under way: its name and when it began (monotonic nanoseconds).
    private let current = Mutex<(what: String, since: UInt64)?>(nil)
    private let limit: Double
    private let rank: Int
    private let worldSize: Int

    /// Starts a watchdog thread checking every collective against `limit` seconds.
    init(limit: Double, rank: Int, worldSize: Int) {
        self.limit = limit
        self.rank = rank
        self.worldSize = worldSize
        let period = min(1, max(0.05, limit / 10))
        let thread = Thread { [self] in
            while true {
                Thread.sleep(forTimeInterval: period)
                check()
            }
        }
        thread.name = "cnclip collective watchdog"
        thread.start()
    }

    /// Runs the MPI call `body`, named `what` in the message if it outlasts the limit.
    func watch<T>(_ what: String, _ body: () throws -> T) rethrows -> T {
        current.withLock { $0 = (what, DispatchTime.now().uptimeNanoseconds) }
        defer { current.withLock { $0 = nil } }
        return try body()
    }

    private func check() {
        guard let (what, since) = current.withLock({ $0 }) else { return }
        let waited = Double(DispatchTime.now().uptimeNanoseconds &- since) / 1e9
        guard waited > limit else { return }
        // MPI is busy on the main thread and may never return, so nothing here calls it: the message, then _exit.
        // mpirun ends the job when a rank exits non-zero; the ranks on the far side of a cut link time out alike.
        // Outputs are written through temporaries, so nothing half-written is left; the next run removes them.
        let message =
            "error: rank \(rank) of \(worldSize): \(what) has waited \(Int(waited.rounded())) s for the other ranks "
            + "(--comm-timeout \(limit.secondsText)): a rank has died or the network between the hosts is down. "
            + "Ending this rank, and with it the job; a training run resumes exactly from its last checkpoint "
            + "(--resume …/checkpoints/epoch_latest.pt).\n"
        message.utf8CString.withUnsafeBufferPointer { _ = write(2, $0.baseAddress, $0.count - 1) }
        _exit(1)
    }
}

extension Double {
    /// A number of seconds as the flag was written: `10` rather than `10.0` (not Foundation's `formatted()`).
    fileprivate var secondsText: String { self == rounded() && abs(self) < 1e15 ? String(Int(self)) : String(self) }
}

/// The ranks of an `mpirun` job (MPI_COMM_WORLD).
package final class MPICommunicator: Communicator, Sendable {
    package let rank: Int
    package let worldSize: Int
    private let watchdog: CollectiveWatchdog?

    /// Joins the job `mpirun` started (MPI_Init_thread, funneled: only the calling thread talks to MPI). A call that
    /// waits more than `timeout` seconds for the other ranks ends this process with an error (none: wait forever).
    package init(timeout: Double? = defaultCommunicationTimeout) throws {
        if cnclip_mpi_initialized() == 0 {
            let rc = cnclip_mpi_init()
            guard rc == MPI_SUCCESS else { throw CommunicationError(description: "MPI_Init failed: \(Self.text(rc))") }
        }
        let rank = Int(cnclip_mpi_rank()), worldSize = Int(cnclip_mpi_size())
        self.rank = rank
        self.worldSize = worldSize
        watchdog = timeout.flatMap { $0 > 0 && worldSize > 1 ? CollectiveWatchdog(limit: $0, rank: rank, worldSize: worldSize) : nil }
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

    /// Runs the MPI call `body` under the watchdog and turns its failure into an error naming `what`.
    func call(_ what: String, _ body: () -> Int32) throws {
        let rc = watchdog.map { $0.watch(what, body) } ?? body()
        try check(rc, what)
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
        let n = try Self.count(buffer.count, "all-reduce")
        try call("MPI_Allreduce") { cnclip_mpi_allreduce_sum_float(base, n) }
    }

    package func allReduceSum(_ values: [Double]) throws -> [Double] {
        var v = values
        guard !v.isEmpty else { return v }
        let n = try Self.count(v.count, "all-reduce")
        try call("MPI_Allreduce") { cnclip_mpi_allreduce_sum_double(&v, n) }
        return v
    }

    package func allGather(_ local: [Float]) throws -> [Float] {
        var out = [Float](repeating: 0, count: local.count * worldSize)
        guard !local.isEmpty else { return out }
        let n = try Self.count(local.count, "all-gather")
        try call("MPI_Allgather") { cnclip_mpi_allgather_float(local, n, &out) }
        return out
    }

    package func allGather(_ local: [Int32]) throws -> [Int32] {
        var out = [Int32](repeating: 0, count: local.count * worldSize)
        guard !local.isEmpty else { return out }
        let n = try Self.count(local.count, "all-gather")
        try call("MPI_Allgather") { cnclip_mpi_allgather_int(local, n, &out) }
        return out
    }

    package func gather(_ bytes: [UInt8], root: Int) throws -> [[UInt8]]? {
        let counts = try allGather([Int32(try Self.count(bytes.count, "gather"))]).map(Int.init)
        var displacements: [Int32] = []
        var total = 0
        for c in counts { displacements.append(try Self.count(total, "gather")); total += c }
        var receive = [UInt8](repeating: 0, count: rank == root ? max(total, 1) : 1)
        let counts32 = counts.map { Int32($0) }
        try call("MPI_Gatherv") { cnclip_mpi_gatherv_bytes(bytes, Int32(bytes.count), &receive, counts32, displacements, Int32(root)) }
        guard rank == root else { return nil }
        return counts.indices.map { Array(receive[Int(displacements[$0])..<Int(displacements[$0]) + counts[$0]]) }
    }

    package func broadcast(_ bytes: [UInt8], root: Int) throws -> [UInt8] {
        var count = [Int32(rank == root ? try Self.count(bytes.count, "broadcast") : 0)]
        try count.withUnsafeMutableBytes { p in try call("MPI_Bcast") { cnclip_mpi_bcast_bytes(p.baseAddress, 4, Int32(root)) } }
        var buffer = rank == root ? bytes : [UInt8](repeating: 0, count: Int(count[0]))
        if count[0] > 0 { try call("MPI_Bcast") { cnclip_mpi_bcast_bytes(&buffer, count[0], Int32(root)) } }
        return buffer
    }

    package func barrier() throws { try call("MPI_Barrier") { cnclip_mpi_barrier() } }

    package func abort(code: Int32) -> Never {
        // MPI_Abort reaches the other hosts through mpirun; over a cut link it may wait as long as a collective.
        if let watchdog { watchdog.watch("MPI_Abort") { cnclip_mpi_abort(code) } } else { cnclip_mpi_abort(code) }
        exit(code)
    }

    package func finish() { _ = watchdog.map { $0.watch("MPI_Finalize", cnclip_mpi_finalize) } ?? cnclip_mpi_finalize() }
}

/// The communicator of this process: MPI's world when started by `mpirun` (each call waiting at most `timeout`
/// seconds for the other ranks; nil: forever), else a world of one.
package func makeCommunicator(timeout: Double? = defaultCommunicationTimeout) throws -> Communicator {
    MPICommunicator.isLaunchedByMPI ? try MPICommunicator(timeout: timeout) : SingleProcessCommunicator()
}
