// The reference's outputs besides checkpoints: `out_{timestamp}.log` lines as its logging setup formats them
// (`'%(asctime)s | %(levelname)s | %(message)s'`, datefmt `%Y-%m-%d,%H:%M:%S` in local time, and the worker
// filter's `Rank 0 | ` prefix), the training and validation lines of `train.py`, and `params_{timestamp}.txt`
// (`{name}: {str(value)}` per argument, sorted by name).

import Essentials
import Foundation

/// Writes log lines to `out_{timestamp}.log` (appending, as Python's FileHandler does) and optionally to stderr.
package final class TrainingLogger {
    /// The log file, or nil when outputs are off.
    package let path: String?
    private let handle: FileHandle?
    private let echo: Bool
    private let formatter: DateFormatter

    /// A logger appending to `path` (created if needed), echoing to standard error when `echo`.
    package init(path: String?, echo: Bool) throws {
        self.path = path
        self.echo = echo
        formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = .current
        formatter.dateFormat = "yyyy-MM-dd,HH:mm:ss"
        if let path {
            handle = try openForAppending(path)
        } else {
            handle = nil
        }
    }

    deinit { try? handle?.close() }

    /// One INFO line: `{asctime} | INFO | Rank 0 | {message}`.
    package func info(_ message: String) {
        let line = "\(formatter.string(from: Date())) | INFO | Rank 0 | \(message)\n"
        handle?.write(Data(line.utf8))
        if echo { FileHandle.standardError.write(Data(line.utf8)) }
    }
}

/// The message formats of the reference's `train.py` and `main.py`.
package enum TrainingLogFormat {
    /// `str(value)` of a Python float (shortest round-trip digits, `1e-06` style below 1e-4).
    package static func pythonFloat(_ value: Double) -> String {
        if value.isNaN { return "nan" }
        if value.isInfinite { return value < 0 ? "-inf" : "inf" }
        return value.description  // Swift and Python agree on shortest repr and on the exponent style in this range
    }

    /// Python's `f"{x:.{digits}f}"`.
    static func fixed(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }

    /// The training line (`train.py`, every `--log-interval` steps).
    package static func trainingLine(
        step: Int, maxSteps: Int, epoch: Int, samples: Int, samplesPerEpoch: Int, percent: Double,
        loss: Float, accuracy: (i2t: Double, t2i: Double)?, dataTime: Double, batchTime: Double,
        lr: Double, logitScale: Float, globalBatchSize: Int
    ) -> String {
        var s = "Global Steps: \(step)/\(maxSteps) | Train Epoch: \(epoch) [\(samples)/\(samplesPerEpoch) (\(fixed(percent, 0))%)] | "
        s += "Loss: \(fixed(Double(loss), 6)) | "
        if let a = accuracy {
            s += "Image2Text Acc: \(fixed(a.i2t * 100, 2)) | Text2Image Acc: \(fixed(a.t2i * 100, 2)) | "
        }
        s += "Data Time: \(fixed(dataTime, 3))s | Batch Time: \(fixed(batchTime, 3))s | "
        s += "LR: \(String(format: "%5f", lr)) | logit_scale: \(fixed(Double(logitScale), 3)) | Global Batch Size: \(globalBatchSize)"
        return s
    }

    /// The validation result line (`evaluate()`).
    package static func validationLine(epoch: Int, steps: Int, loss: Float, i2t: Float, t2i: Float, logitScale: Float, batchSize: Int) -> String {
        "Validation Result (epoch \(epoch) @ \(steps) steps) | Valid Loss: \(fixed(Double(loss), 6)) | "
            + "Image2Text Acc: \(fixed(Double(i2t) * 100, 2)) | Text2Image Acc: \(fixed(Double(t2i) * 100, 2)) | "
            + "logit_scale: \(fixed(Double(logitScale), 3)) | Valid Batch Size: \(batchSize)"
    }

    /// The checkpoint line (`main.py` / `train.py`).
    package static func savedLine(path: String, epoch: Int, steps: Int, seconds: Double) -> String {
        "Saved checkpoint \(path) (epoch \(epoch) @ \(steps) steps) (writing took \(pythonFloat(seconds)) seconds)"
    }

    /// `os.path.join(a, b, …)` for relative components.
    package static func join(_ parts: String...) -> String {
        var out = ""
        for p in parts {
            if p.hasPrefix("/") { out = p; continue }
            if out.isEmpty || out.hasSuffix("/") { out += p } else { out += "/" + p }
        }
        return out
    }

    /// The params file: `name: value` lines sorted by name, as `main.py` writes `vars(args)`.
    package static func paramsFile(_ values: [(String, String)]) -> String {
        values.sorted { $0.0 < $1.0 }.map { "\($0.0): \($0.1)\n" }.joined()
    }

    /// `str(x)` for an optional Python value.
    static func py(_ x: String?) -> String { x ?? "None" }
    static func py(_ x: Int?) -> String { x.map(String.init) ?? "None" }
    static func py(_ x: Bool) -> String { x ? "True" : "False" }
    static func py(_ x: Double) -> String { pythonFloat(x) }
}
