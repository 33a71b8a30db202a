// How many compute threads one process of a job should use. Every process of an `mpirun` job on a host would
// otherwise start one thread per core, so N processes on C cores would run N×C threads fighting for C cores (on
// this 2-core machine, two ranks of 2 threads each ran slower than one).

import Foundation

/// Where this process sits among the job's processes on its host, and the compute threads that leaves it.
package struct ProcessPlacement: Sendable, Equatable {
    /// Processes of the job on this host (Open MPI's `OMPI_COMM_WORLD_LOCAL_SIZE`; 1 outside `mpirun`).
    package let localProcesses: Int
    /// Cores this process may run on (its affinity mask: `mpirun` binds each rank to a core or socket).
    package let availableCores: Int
    /// Cores of the host.
    package let hostCores: Int

    /// The placement of this process, read from `environment` and the operating system.
    package init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        self.init(
            localProcesses: Int(environment["OMPI_COMM_WORLD_LOCAL_SIZE"] ?? "") ?? 1,
            availableCores: status.flatMap { Self.allowedCores(procStatus: $0) } ?? ProcessInfo.processInfo.activeProcessorCount,
            hostCores: ProcessInfo.processInfo.processorCount)
    }

    /// The number of cores in the `Cpus_allowed:` mask of a Linux `/proc/<pid>/status` text (hex words separated
    /// by commas); nil when there is none. Foundation's `activeProcessorCount` ignores the affinity mask `mpirun`
    /// sets, and Swift cannot see glibc's `sched_getaffinity`, so the mask is read where Linux publishes it.
    package static func allowedCores(procStatus: String) -> Int? {
        for line in procStatus.split(separator: "\n") where line.hasPrefix("Cpus_allowed:") {
            var bits = 0
            for c in line.dropFirst("Cpus_allowed:".count) where c != "," && !c.isWhitespace {
                guard let nibble = c.hexDigitValue else { return nil }
                bits += nibble.nonzeroBitCount
            }
            return bits > 0 ? bits : nil
        }
        return nil
    }

    /// A placement given by its numbers (values below 1 count as 1).
    package init(localProcesses: Int, availableCores: Int, hostCores: Int) {
        self.localProcesses = max(1, localProcesses)
        self.availableCores = max(1, availableCores)
        self.hostCores = max(self.availableCores, hostCores)
    }

    /// Compute threads for this process: its cores, divided among the local processes that share them.
    ///
    /// Unbound ranks share all the host's cores; ranks bound to one core each see one core; ranks bound to a
    /// socket share it with the ranks placed on the same socket. Assuming `mpirun` spreads ranks evenly, the
    /// processes sharing this process's cores number `ceil(localProcesses × availableCores / hostCores)`.
    package var computeThreads: Int {
        let sharing = (localProcesses * availableCores + hostCores - 1) / hostCores
        return max(1, availableCores / max(1, sharing))
    }
}
