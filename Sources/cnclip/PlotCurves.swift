import ArgumentParser
import Essentials
import Foundation
import Training

/// `cnclip plot-curves`: an SVG of the loss and validation curves in a run's `out_*.log` files.
struct PlotCurves: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plot-curves",
        abstract: "Plot the training loss and the validation loss and accuracy of a run's logs as one SVG.",
        discussion: """
            Reads the training lines (Global Steps: … | Loss: …) and validation lines (Validation Result (epoch E @ S \
            steps) | …) that cnclip train and cn-clip's train.py write to {logs}/{name}/out_*.log. A LOG folder means \
            every out_*.log in it, in name (so start time) order; a resumed run's later lines replace earlier ones at \
            the same step. The SVG (900×600, no external fonts or scripts) has the loss by global step above and the \
            validation Image2Text / Text2Image accuracy (%) below, with the training batch accuracies as faint lines \
            when the run had --report-training-batch-acc. NaN or infinite losses are left out and counted on the plot.
            Example: cnclip plot-curves logs/muge_finetune --output curves.svg --title "MUGE finetune"
            """)

    @Argument(help: "Log files (out_*.log), or run folders ({logs}/{name}) whose out_*.log files are all read.")
    var logs: [String]

    @Option(name: .customLong("output"), help: "The SVG file to write (replaced atomically if it exists).")
    var output: String

    @Option(name: .customLong("title"), help: "The plot's title (default: \"Training curves: {run name}\").")
    var title: String?

    func validate() throws {
        if logs.isEmpty { throw ValidationError("give at least one log file or run folder") }
    }

    func run() throws {
        try reported {
            var files: [String] = []
            for log in logs {
                var isFolder: ObjCBool = false
                guard FileManager.default.fileExists(atPath: log, isDirectory: &isFolder) else {
                    throw FileError(path: log, reason: "no such file or folder")
                }
                if isFolder.boolValue { files += try TrainingCurves.logFiles(in: log) } else { files.append(log) }
            }
            let resolved = URL(fileURLWithPath: output).standardizedFileURL.resolvingSymlinksInPath().path
            if files.contains(where: { URL(fileURLWithPath: $0).standardizedFileURL.resolvingSymlinksInPath().path == resolved }) {
                throw FileError(path: output, reason: "is one of the logs being read; write the SVG elsewhere")
            }
            let curves = try TrainingCurves(logFiles: files, source: logs.joined(separator: ", "))
            try AtomicOutput.write(curves.svg(title: title ?? defaultTitle), to: output)
            let steps = curves.stepRange.map { " (steps \($0.lowerBound)–\($0.upperBound))" } ?? ""
            printError("wrote \(output): \(curves.training.count) training points, \(curves.validation.count) validation results\(steps)")
        }
    }

    /// "Training curves: NAME", NAME being the run folder's name (the folder given, or the first log's folder).
    var defaultTitle: String {
        let first = URL(fileURLWithPath: logs[0]).standardizedFileURL
        var isFolder: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: first.path, isDirectory: &isFolder)
        let name = (isFolder.boolValue ? first : first.deletingLastPathComponent()).lastPathComponent
        return name.isEmpty || name == "/" ? "Training curves" : "Training curves: \(name)"
    }
}
