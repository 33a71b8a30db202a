import ArgumentParser
import Distributed

/// `--comm-timeout`: how long a rank of an `mpirun` job waits in one exchange with the others before ending the job.
struct CommunicationOptions: ParsableArguments {
    @Option(
        name: .customLong("comm-timeout"),
        help: ArgumentHelp(
            """
            Under mpirun: the seconds one exchange between the processes may wait for the others before this process \
            ends the whole job with an error (a process died, or the network between the hosts is down). Default \
            \(Int(defaultCommunicationTimeout)), torch.distributed's; raise it if one process can be busy alone \
            for longer (0: wait forever).
            """, valueName: "seconds"))
    var commTimeout: Double = defaultCommunicationTimeout

    func validate() throws {
        if !(commTimeout >= 0) || !commTimeout.isFinite {
            throw ValidationError("--comm-timeout must be 0 (wait forever) or a positive number of seconds")
        }
    }

    /// The communicator of this process, its waits bounded by `--comm-timeout`.
    func communicator() throws -> Communicator { try makeCommunicator(timeout: commTimeout > 0 ? commTimeout : nil) }
}
