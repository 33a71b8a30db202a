// What zero-shot evaluation writes and prints, byte for byte as the reference does: the ELEVATER submission
// (`json.dumps` with every float rounded to 6 decimals, default separators, ASCII escapes) and the
// `zeroshot-top1: <Python float repr>` result line. Python's float repr and `round` are reproduced here because
// the files are compared as text by users' tooling.

import ChineseCLIP
import Essentials
import Foundation
import NeuralNet
import Tensors

#if canImport(Glibc)
    import Glibc
#endif

/// The ELEVATER benchmark submission `zeroshot_evaluation.py` writes to `{save_dir}/{dataset}.json`.
package struct ElevaterSubmission: Sendable {
    /// `"CN-CLIP-" + vision model name`.
    package var modelName: String
    /// The `--dataset` name.
    package var datasetName: String
    /// Always 0 for zero-shot.
    package var numTrainableParams = 0
    /// Parameters of the whole model (buffers excluded, as `model.parameters()`).
    package var numParams: Int
    /// Parameters of the image tower.
    package var numVisualParams: Int
    /// Same as ``numParams`` in the reference.
    package var numBackboneParams: Int
    /// Always 0 (zero-shot).
    package var nShot = 0
    /// Always `[123]` in the reference.
    package var rndSeeds = [123]
    /// Class probabilities `[images, classes]`.
    package var predictions: Tensor

    /// A submission for `model` on `dataset` with `predictions` `[images, classes]`.
    package init(model: ChineseCLIPModel, visionModelName: String, datasetName: String, predictions: Tensor) {
        let counts = Self.parameterCounts(model.clip)
        self.modelName = "CN-CLIP-" + visionModelName
        self.datasetName = datasetName
        self.numParams = counts.total
        self.numVisualParams = counts.visual
        self.numBackboneParams = counts.total
        self.predictions = predictions
    }

    /// Learnable parameter counts (all, and under `visual.`), as `sum(x.numel() for x in m.parameters())`.
    package static func parameterCounts(_ clip: CLIP) -> (total: Int, visual: Int) {
        var total = 0, visual = 0
        for (name, p) in clip.namedParameters() where !p.isBuffer {
            let count = p.shape.reduce(1, *)  // the value itself is released once the weight is held in int8 or packed
            total += count
            if name.hasPrefix("visual.") { visual += count }
        }
        return (total, visual)
    }

    /// The file's text: `json.dumps` of the dict in the reference's key order, floats rounded to 6 decimals.
    package func jsonString() -> String {
        let n = predictions.rank == 2 ? predictions.shape[0] : 0, k = predictions.rank == 2 ? predictions.shape[1] : 0
        let p = predictions.data
        var rows: [String] = []
        rows.reserveCapacity(n)
        for r in 0..<n {
            let values = (0..<k).map { PythonFormat.jsonFloat(PythonFormat.round(Double(p[r * k + $0]), digits: 6)) }
            rows.append("[" + values.joined(separator: ", ") + "]")
        }
        let fields: [(String, String)] = [
            ("model_name", PythonFormat.jsonString(modelName)),
            ("dataset_name", PythonFormat.jsonString(datasetName)),
            ("num_trainable_params", String(numTrainableParams)),
            ("num_params", String(numParams)),
            ("num_visual_params", String(numVisualParams)),
            ("num_backbone_params", String(numBackboneParams)),
            ("n_shot", String(nShot)),
            ("rnd_seeds", "[" + rndSeeds.map(String.init).joined(separator: ", ") + "]"),
            ("predictions", "[[" + rows.joined(separator: ", ") + "]]"),
        ]
        return "{" + fields.map { "\"\($0.0)\": \($0.1)" }.joined(separator: ", ") + "}"
    }

    /// Where the reference writes it: `os.path.join(saveDir, dataset + ".json")`.
    package static func path(saveDir: String, dataset: String) -> String {
        saveDir.isEmpty ? dataset + ".json" : joinPath(saveDir, dataset + ".json")
    }

    /// Writes ``jsonString()`` to `path` through the one safe writer, creating missing folders, so a failed run
    /// never leaves a partial file.
    package func write(to path: String) throws {
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent()
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try AtomicOutput.write(jsonString(), to: path)
        } catch let e as FileError {
            throw e
        } catch {
            throw FileError(path: path, reason: "cannot write: \(error.localizedDescription)")
        }
    }
}

/// The reference's printed result: `zeroshot-top1: <repr of the fraction>`.
package func zeroShotResultLine(top1: Double) -> String {
    "zeroshot-top1: " + PythonFormat.repr(top1)
}

/// Python's float formatting and rounding, for outputs that must match the reference as text.
package enum PythonFormat {
    /// `repr(x)` / `str(x)`: the shortest digits that round-trip, in fixed notation when the decimal exponent is
    /// in [-4, 16), else `d.ddde±XX`.
    package static func repr(_ x: Double) -> String { PythonJSON.repr(x) }

    /// A float as `json.dumps` writes it (`NaN`, `Infinity`, `-Infinity` for the non-finite).
    package static func jsonFloat(_ x: Double) -> String { PythonJSON.number(x) }

    /// `round(x, digits)`: correctly rounded to the nearest multiple of 10^-digits, ties to even on the exact
    /// binary value (glibc's printf rounds the exact value the same way).
    package static func round(_ x: Double, digits: Int) -> Double {
        guard x.isFinite else { return x }
        return Double(String(format: "%.\(digits)f", x)) ?? x
    }

    /// A JSON string literal as `json.dumps` writes it with `ensure_ascii=True`.
    package static func jsonString(_ s: String) -> String { PythonJSON.string(s) }
}
