// The `cnclip` command line: one file per subcommand, flags spelled as the reference scripts spell them.

import ArgumentParser
import ChineseCLIP
import Essentials
import Foundation

@main
struct CNCLIP: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cnclip",
        abstract: "Chinese-CLIP in Swift: the same features as cn-clip from its own checkpoints, without Python.",
        discussion: """
            Start with `cnclip models` to see the model names, `cnclip download ViT-B-16` to fetch a released
            checkpoint, then `cnclip similarity --model ViT-B-16 --image cat.jpg --text 猫 --text 狗`.
            """,
        version: cnclipVersion,
        subcommands: [
            Models.self, Download.self, Encode.self, Similarity.self, Bench.self, Quantize.self, Convert.self, Export.self,
            BuildLMDB.self, MakeDataset.self, SynthDataset.self, ExtractFeatures.self,
            MakeTopKPredictions.self, MakeTopKPredictionsTR.self, TransformIRAnnotationToTR.self,
            Evaluation.self, EvaluationTR.self, ZeroShotEval.self, Train.self, PlotCurves.self, Index.self, Serve.self,
        ])
}

/// This tool's version, written into the files it produces for other tools (ONNX's producer_version).
let cnclipVersion = "0.1.0"

/// Writes `message` to standard error.
func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// The one CLI reporter: any library error (`UserFacingError`) becomes `error: <its message>` and exit status 1.
func reported<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as UserFacingError {
        printError("error: \(e.description)")
        throw ExitCode.failure
    }
}
