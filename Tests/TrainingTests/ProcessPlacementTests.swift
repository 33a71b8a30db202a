import Distributed
import XCTest

/// Compute threads per process of an `mpirun` job (`ProcessPlacement`), which `cnclip extract-features` uses.
final class ProcessPlacementTests: XCTestCase {
    func testThreadsShareTheCoresAmongTheHostsRanks() {
        // One process, unbound: every core.
        XCTAssertEqual(ProcessPlacement(localProcesses: 1, availableCores: 8, hostCores: 8).computeThreads, 8)
        // Unbound ranks share the host.
        XCTAssertEqual(ProcessPlacement(localProcesses: 2, availableCores: 8, hostCores: 8).computeThreads, 4)
        XCTAssertEqual(ProcessPlacement(localProcesses: 3, availableCores: 2, hostCores: 2).computeThreads, 1)
        // Bound to one core each (mpirun's default for 2 ranks).
        XCTAssertEqual(ProcessPlacement(localProcesses: 2, availableCores: 1, hostCores: 2).computeThreads, 1)
        // Bound to a socket of 8 cores of 16, 4 ranks on the host: 2 ranks per socket.
        XCTAssertEqual(ProcessPlacement(localProcesses: 4, availableCores: 8, hostCores: 16).computeThreads, 4)
        // Never fewer than one.
        XCTAssertEqual(ProcessPlacement(localProcesses: 0, availableCores: 0, hostCores: 0).computeThreads, 1)
    }

    func testReadsTheAffinityMaskAndTheLocalRankCount() {
        XCTAssertEqual(ProcessPlacement.allowedCores(procStatus: "Name:\tcnclip\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\n"), 2)
        XCTAssertEqual(ProcessPlacement.allowedCores(procStatus: "Cpus_allowed:\tffffffff,00000001\n"), 33)
        XCTAssertEqual(ProcessPlacement.allowedCores(procStatus: "Cpus_allowed:\t2\n"), 1)
        XCTAssertNil(ProcessPlacement.allowedCores(procStatus: "Name:\tcnclip\n"))
        XCTAssertNil(ProcessPlacement.allowedCores(procStatus: "Cpus_allowed:\tzz\n"))
        XCTAssertEqual(ProcessPlacement(environment: ["OMPI_COMM_WORLD_LOCAL_SIZE": "3"]).localProcesses, 3)
        XCTAssertEqual(ProcessPlacement(environment: [:]).localProcesses, 1)
        let here = ProcessPlacement(environment: [:])
        XCTAssertGreaterThanOrEqual(here.hostCores, here.availableCores)
        XCTAssertEqual(here.computeThreads, here.availableCores, "a process outside mpirun uses every core it may run on")
    }
}
