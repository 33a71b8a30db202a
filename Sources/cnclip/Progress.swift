import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A one-line progress display (count, rate, ETA) on a terminal; silent when standard error is not a terminal.
final class ProgressLine: Sendable {
    private let label: String
    private let start = Date()
    private let last = Mutex(Date.distantPast)
    private let enabled = isatty(2) == 1

    init(label: String) { self.label = label }

    /// Shows `done` of `total` (bytes or items), at most ten times a second.
    func update(_ done: Int64, _ total: Int64?, unit: String = "B") {
        guard enabled else { return }
        let due = last.withLock { last in
            let now = Date()
            if now.timeIntervalSince(last) <= 0.1 { return false }
            last = now
            return true
        }
        guard due else { return }
        let elapsed = max(Date().timeIntervalSince(start), 1e-3)
        let rate = Double(done) / elapsed
        var line = "\r\(label): \(format(Double(done), unit))"
        if let total, total > 0 {
            let eta = rate > 0 ? Double(total - done) / rate : 0
            line += " / \(format(Double(total), unit)) (\(Int(100 * Double(done) / Double(total)))%), ETA \(Int(eta)) s"
        }
        line += ", \(format(rate, unit))/s   "
        FileHandle.standardError.write(Data(line.utf8))
    }

    /// Ends the line.
    func finish() { if enabled { FileHandle.standardError.write(Data("\n".utf8)) } }

    private func format(_ v: Double, _ unit: String) -> String {
        guard unit == "B" else { return String(format: "%.0f %@", v, unit) }
        if v >= 1_073_741_824 { return String(format: "%.2f GiB", v / 1_073_741_824) }
        if v >= 1_048_576 { return String(format: "%.1f MiB", v / 1_048_576) }
        return String(format: "%.0f KiB", v / 1024)
    }
}
