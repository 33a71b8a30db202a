// Runs the built `cnclip` binary for end-to-end tests.

import Foundation
import Synchronization

/// What a finished command left: its exit status and everything it printed.
package struct CommandResult: Sendable {
    /// The exit status (0 on success).
    package var status: Int32
    /// Standard output, decoded as UTF-8.
    package var stdout: String
    /// Standard error, decoded as UTF-8.
    package var stderr: String
    /// Whether the command was still running at its timeout and was killed.
    package var timedOut = false
}

/// Runs `executable` with `arguments` and waits for it. Standard error is drained on another thread, so a
/// command that fills one pipe while we read the other cannot deadlock. With a `timeout` (seconds), a command
/// still running then gets SIGTERM (`mpirun` passes it on to its ranks), and SIGKILL 10 s later.
package func runCommand(
    _ executable: URL, _ arguments: [String], environment: [String: String]? = nil,
    timeout: TimeInterval? = nil
) throws -> CommandResult {
    let p = Process()
    p.executableURL = executable
    p.arguments = arguments
    if let environment { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let watchdog = Watchdog()
    if let timeout {
        let pid = p.processIdentifier
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout) {
            guard watchdog.fire() else { return }
            kill(pid, SIGTERM)
            DispatchQueue.global().asyncAfter(deadline: .now() + 10) { if watchdog.stillRunning { kill(pid, SIGKILL) } }
        }
    }
    let errData = Mutex(Data())
    let drained = DispatchSemaphore(value: 0)
    Thread.detachNewThread {
        let data = err.fileHandleForReading.readDataToEndOfFile()
        errData.withLock { $0 = data }
        drained.signal()
    }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    drained.wait()
    p.waitUntilExit()
    let timedOut = watchdog.exited()
    return CommandResult(
        status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
        stderr: String(decoding: errData.withLock { $0 }, as: UTF8.self), timedOut: timedOut)
}

/// Whether a command's timeout fired before it exited, decided under a lock, so that a command seen to have
/// exited is not signalled afterwards (its process id could belong to another process by then).
private final class Watchdog: Sendable {
    private let state = Mutex((done: false, fired: false))

    /// Called at the timeout: true (and the command counts as timed out) when it has not exited yet.
    func fire() -> Bool {
        state.withLock {
            if !$0.done { $0.fired = true }; return !$0.done
        }
    }

    /// Whether the command is still running.
    var stillRunning: Bool { state.withLock { !$0.done } }

    /// Called once the command has exited; returns whether the timeout had fired.
    func exited() -> Bool {
        state.withLock {
            $0.done = true; return $0.fired
        }
    }
}

/// The `cnclip` built beside the running test bundle (`.build/<configuration>/cnclip`).
package var builtCNCLIP: URL { Bundle.main.bundleURL.appendingPathComponent("cnclip") }

/// Runs the built `cnclip` with `arguments`.
package func runCNCLIP(_ arguments: [String], environment: [String: String]? = nil, timeout: TimeInterval? = nil) throws -> CommandResult {
    try runCommand(builtCNCLIP, arguments, environment: environment, timeout: timeout)
}
