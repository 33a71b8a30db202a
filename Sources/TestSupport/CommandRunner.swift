// Runs the built `cnclip` binary for end-to-end tests.

import Foundation

/// What a finished command left: its exit status and everything it printed.
public struct CommandResult: Sendable {
    /// The exit status (0 on success).
    public var status: Int32
    /// Standard output, decoded as UTF-8.
    public var stdout: String
    /// Standard error, decoded as UTF-8.
    public var stderr: String
}

/// Runs `executable` with `arguments` and waits for it. Standard error is drained on another thread, so a
/// command that fills one pipe while we read the other cannot deadlock.
public func runCommand(_ executable: URL, _ arguments: [String], environment: [String: String]? = nil) throws -> CommandResult {
    let p = Process()
    p.executableURL = executable
    p.arguments = arguments
    if let environment { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    nonisolated(unsafe) var errData = Data()
    let drained = DispatchSemaphore(value: 0)
    Thread.detachNewThread {
        errData = err.fileHandleForReading.readDataToEndOfFile()
        drained.signal()
    }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    drained.wait()
    p.waitUntilExit()
    return CommandResult(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self))
}

/// The `cnclip` built beside the running test bundle (`.build/<configuration>/cnclip`).
public var builtCNCLIP: URL { Bundle.main.bundleURL.appendingPathComponent("cnclip") }

/// Runs the built `cnclip` with `arguments`.
public func runCNCLIP(_ arguments: [String], environment: [String: String]? = nil) throws -> CommandResult {
    try runCommand(builtCNCLIP, arguments, environment: environment)
}
