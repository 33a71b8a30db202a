// The inference forms of a whole model's linear weights (int8, or fp32 packed for the GEMM kernel) and the int8
// model file.
//
// Which weights go to int8: every `Linear` layer (BERT's attention, intermediate and output layers, ViT's attention
// output projections and MLPs, the ResNet attention pool's projections) and ViT attention's stacked input projection:
// the products that hold nearly all of a transformer's arithmetic. What stays fp32, and why (BENCHMARKS.md has the
// figures): the patch embedding and the ResNet convolutions (the convolution engine is fp32, and for RN50 the
// convolutions are the work, so its image tower keeps its fp32 speed), the attention products (activations on both
// sides, re-quantizing them per call costs about what it saves), layer norms and embeddings (no products), and the
// final projections `visual.proj` / `text_projection` (small, and the last rounding before the features).
//
// The quantized file is a safetensors file: the int8 weights as `I8` under their checkpoint keys with their
// per-row scales as `F32 [rows]` under `KEY_scale`, every other tensor as `F32` under its key, and in the metadata
// the format, its version and the model's config (the reference's keyword arguments as JSON), so that it loads
// with no model flags.

import Checkpoints
import Essentials
import Foundation
import NeuralNet
import Tensors

/// How a model computes.
public enum Precision: String, Sendable, CaseIterable, CustomStringConvertible {
    /// fp32 throughout: what the reference's `amp`, `fp16` and `fp32` all compute as on the CPU.
    case fp32
    /// The linear layers' weights in int8 per output channel, activations quantized per row at each call.
    case int8

    /// Parses a `--precision` value: `fp32` or `int8`, and the reference's `amp` and `fp16`, which mean fp32 here.
    public init?(argument: String) {
        switch argument {
        case "fp32", "fp16", "amp": self = .fp32
        case "int8": self = .int8
        default: return nil
        }
    }

    /// The name, as `--precision` spells it.
    public var description: String { rawValue }
}

extension CLIP {
    /// The weights of the models' linear products, by checkpoint key: every `Linear` layer's weight and ViT attention's
    /// `in_proj_weight`. The int8 path holds them in int8 (the rest stays fp32; see this file's header for why), fp32
    /// inference holds them packed.
    package func linearWeights() -> [(String, Parameter)] {
        namedModules().flatMap { name, module -> [(String, Parameter)] in
            let prefix = name.isEmpty ? "" : name + "."
            if let linear = module as? Linear { return [(prefix + "weight", linear.weight)] }
            if let attention = module as? MultiheadAttention { return [(prefix + "in_proj_weight", attention.inProjWeight)] }
            return []
        }
    }

    /// True once the model's weights are held in int8.
    package var isQuantized: Bool { linearWeights().contains { $0.1.int8 != nil } }

    /// Moves the model to the int8 path, for inference only: quantizes `linearWeights()` and lets their fp32 values
    /// go, then copies what still borrows a checkpoint's memory map so that the map goes too.
    package func quantize() {
        for (_, p) in linearWeights() where p.int8 == nil { p.quantize() }
        releaseMappings()
        TensorStorage.releaseKeptBuffers()  // the released fp32 weights' buffers would crowd the activations' out
    }

    /// Moves the model to fp32 inference with its linear weights packed for the GEMM kernel (`PackedWeight`): the same
    /// numbers in the layout the products read, so features keep their bits, and no weight is transposed per call.
    /// Each weight's pages of a checkpoint's memory map are released as soon as it is packed (so the peak memory is
    /// about one copy of the weights, not two), then what still borrows the map is copied so that the map goes too.
    package func pack() {
        for (_, p) in linearWeights() where !p.isHeldForInference {
            let source = p.value
            p.pack()
            if let map = source.storage.owner as? MappedFile {
                map.releasePages(UnsafeRawPointer(source.data), byteCount: source.count * MemoryLayout<Float>.stride)
            }
        }
        releaseMappings()
        TensorStorage.releaseKeptBuffers()  // the released weights' buffers would crowd the activations' out
    }

    /// Moves the model to the inference form of `precision`: int8 (`quantize()`), or fp32 with packed weights (`pack()`)
    /// for fp32 and nil (as stored).
    package func prepareForInference(_ precision: Precision?) {
        if precision == .int8 { quantize() } else { pack() }
    }

    /// Holds the packed linear weights as plain values again, one weight at a time (so that memory never holds both
    /// forms of all of them): for the commands that write every weight out as stored (convert, export).
    package func unpack() {
        for (_, p) in linearWeights() { p.unpack() }
    }

    /// Copies every fp32 value that borrows another object's memory (a checkpoint's map) into its own storage.
    package func releaseMappings() {
        for (_, p) in namedParameters() where !p.isHeldForInference && p.value.storage.isBorrowed { p.value = p.value.copy() }
    }
}

/// A model file whose linear layers are stored in int8 (`cnclip quantize` writes it), loadable with no model flags.
package enum QuantizedModelFile {
    /// The metadata's `format`.
    package static let format = "cnclip-int8"
    /// The layout version this code writes and reads.
    package static let version = "1"
    /// The suffix of the key holding a weight's per-row scales.
    package static let scaleSuffix = "_scale"

    /// The file's config if `url` is a quantized model file (a safetensors file whose metadata says so), else nil.
    /// A file that claims the format but whose config is unreadable is an error naming it.
    package static func config(ifQuantized url: URL) throws -> CLIPConfig? {
        try recordedConfig(at: url, format: format, version: version)
    }

    static func config(of file: SafeTensorsFile) throws -> CLIPConfig { try recordedConfig(of: file, version: version) }

    /// Writes `clip`, quantizing the weights that are not yet in int8 (the model is left as it was), atomically.
    /// `source` (the checkpoint it came from) is recorded in the metadata.
    package static func write(_ clip: CLIP, source: String, to url: URL) throws {
        let int8 = Dictionary(uniqueKeysWithValues: clip.linearWeights().map { ($0.0, $0.1) })
        var tensors: [(String, SafeTensors.StoredTensor)] = []
        for (key, p) in clip.namedParameters() {
            guard int8[key] != nil else {
                tensors.append((key, SafeTensors.StoredTensor(CheckpointTensor(p.value))))
                continue
            }
            let weight = p.int8 ?? Int8Weight(quantizing: p.fp32Value)
            tensors.append((key, SafeTensors.StoredTensor(shape: p.shape, int8: weight.values)))
            tensors.append((key + scaleSuffix, SafeTensors.StoredTensor(CheckpointTensor(Tensor(shape: [weight.rows], scalars: weight.scales)))))
        }
        let config = try clip.config.canonicalJSON()
        let metadata = [
            "format": format, "format_version": version, "config": config, "source": source,
            "quantization": "int8 weights, symmetric per output row (scale = max|w| / 127); activations per row at run time",
        ]
        try withFileErrors { try SafeTensors.write(stored: tensors, metadata: metadata, to: url) }
    }

    /// Loads a quantized model file strictly: every parameter present with its shape and dtype (`I8` with its
    /// `_scale` for the int8 weights, `F32` for the rest), no key left over. The model holds no fp32 copy of the int8
    /// weights and nothing of the file's map once it returns.
    package static func load(_ url: URL) throws -> CLIP {
        let path = url.path
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(url: url) } catch let error as CheckpointError {
            throw CLIPError.invalidInput(error.description)
        } catch let error as FileError { throw CLIPError.io(path: error.path, reason: error.reason) }
        guard file.metadata?["format"] == format else {
            throw CLIPError.checkpoint(path: path, reason: "not a quantized model file (its metadata has no format \"\(format)\")")
        }
        let recorded = try config(of: file)
        try recorded.checkFits(url, bytesPerParameter: 1)
        let clip = CLIP(recorded)
        let int8 = Set(clip.linearWeights().map(\.0))
        var used = Set<String>()
        func info(_ key: String, _ dtype: CheckpointDType, _ shape: [Int]) throws {
            guard let info = file.infos[key] else { throw CLIPError.checkpoint(path: path, reason: "missing key '\(key)'") }
            guard info.dtype == dtype else {
                throw CLIPError.checkpoint(path: path, reason: "key '\(key)' holds \(info.dtype.safetensorsName), expected \(dtype.safetensorsName)")
            }
            // A 0-d scalar and a 1-element vector are the same value (`logit_scale`), as in `Module.load`.
            guard info.shape == shape || (info.shape.reduce(1, *) == 1 && shape.reduce(1, *) == 1) else {
                throw CLIPError.checkpoint(path: path, reason: "key '\(key)' has shape \(info.shape), the model expects \(shape)")
            }
            used.insert(key)
        }
        var assignments: [() -> Void] = []  // nothing changes until every key has been checked
        do {
            for (key, p) in clip.namedParameters() {
                if int8.contains(key) {
                    try info(key, .int8, p.shape)
                    try info(key + scaleSuffix, .float32, [p.shape[0]])
                    let values = try file.int8Values(key), scales = try file.tensor(key + scaleSuffix).tensor.scalars
                    guard scales.allSatisfy({ $0.isFinite && $0 > 0 }) else {
                        throw CLIPError.checkpoint(path: path, reason: "key '\(key + scaleSuffix)' holds a scale that is not a positive number")
                    }
                    let weight = Int8Weight(rows: p.shape[0], columns: p.shape[1], values: values, scales: scales)
                    assignments.append { p.setInt8(weight) }
                } else {
                    try info(key, .float32, p.shape)
                    let value = try file.tensor(key).tensor.copy()  // its own memory, so the map can go
                    assignments.append { p.value = value.shape == p.shape ? value : value.reshaped(p.shape) }
                }
            }
        } catch let error as CheckpointError { throw CLIPError.invalidInput(error.description) }
        if let extra = file.keys.sorted().first(where: { !used.contains($0) }) {
            throw CLIPError.checkpoint(path: path, reason: "unexpected key '\(extra)' (the model has no such parameter)")
        }
        for assign in assignments { assign() }
        return clip
    }
}
