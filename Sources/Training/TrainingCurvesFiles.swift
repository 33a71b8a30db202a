// The file side of TrainingCurves (kept apart so TrainingCurves.swift needs only Foundation): its error, and reading
// a run's logs. A resumed run writes a new `out_{timestamp}.log` beside the old ones (the timestamp sorts by time), or
// a user points at one file that a resumed run appended to; either way later lines win.

import Essentials
import Foundation

/// A log that holds none of the training or validation lines `cnclip plot-curves` reads.
package struct TrainingCurvesError: UserFacingError, Equatable, Sendable {
    /// The file (or files, or folder) that was read.
    package var source: String

    /// An error about `source`.
    package init(source: String) { self.source = source }

    /// `SOURCE: no training or validation lines of cn-clip's log format`.
    package var description: String { "\(source): no training or validation lines of cn-clip's log format" }
}

extension TrainingCurves {
    /// The `out_*.log` files of a run's `{logs}/{name}` folder, sorted by name (so by start time).
    package static func logFiles(in folder: String) throws -> [String] {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: folder) } catch {
            throw FileError(path: folder, reason: "cannot list the folder: \(error.localizedDescription)")
        }
        let logs = names.filter { $0.hasPrefix("out_") && $0.hasSuffix(".log") }.sorted()
        guard !logs.isEmpty else { throw FileError(path: folder, reason: "no out_*.log files in it") }
        return logs.map { (folder as NSString).appendingPathComponent($0) }
    }

    /// The curves of several logs in the order given, a later file's point replacing an earlier one at the same step.
    /// Throws ``TrainingCurvesError`` naming `source` (default: the files, comma-separated) when none holds a line.
    package init(logFiles paths: [String], source: String? = nil) throws {
        var curves = TrainingCurves()
        for path in paths {
            let data: Data
            do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
                throw FileError(path: path, reason: "cannot read: \(error.localizedDescription)")
            }
            // Lenient decoding: a byte cut in half by a killed writer must not hide the rest of the log.
            curves = curves.merged(with: Self.parse(String(decoding: data, as: UTF8.self)))
        }
        if curves.isEmpty { throw TrainingCurvesError(source: source ?? paths.joined(separator: ", ")) }
        self = curves
    }
}
