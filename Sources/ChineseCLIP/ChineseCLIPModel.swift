// The library's front door: a loaded model with its tokenizer and preprocessing, giving the reference's
// features and similarities for images and texts. Thread-safe: encoding reads the weights and never writes them.

import Foundation
import Imaging
import Tensors
import Tokenization

/// A Chinese-CLIP model ready to encode images and texts as `cn_clip` does.
public final class ChineseCLIPModel: @unchecked Sendable {  // sound: its Module tree is only read once init returns
    /// The network.
    package let clip: CLIP
    /// The reference tokenizer.
    package let tokenizer: Tokenizer

    /// The configuration.
    public var config: CLIPConfig { clip.config }
    /// Input image side (the model's `image_resolution`).
    public var resolution: Int { config.imageResolution }
    /// How it computes: `.int8` once its linear layers are quantized.
    public var precision: Precision { clip.isQuantized ? .int8 : .fp32 }

    /// Wraps a built model and a tokenizer whose ids its token embedding covers (`CLIPConfig.check(vocabulary:)`).
    package init(clip: CLIP, tokenizer: Tokenizer) throws {
        try clip.config.check(vocabulary: tokenizer)
        self.clip = clip
        self.tokenizer = tokenizer
    }

    /// Loads `checkpoint` (`.pt`, `.safetensors`, or a Hugging Face directory) into a model of `config`, computing
    /// in `precision` (`.int8` quantizes the linear layers at load and keeps no fp32 copy of them; fp32, or nil: as
    /// stored, the linear weights packed once for the GEMM kernel, the same values in the order its products read). A
    /// quantized model file (`cnclip quantize`) loads too, when `config` is the one recorded in it.
    /// The vocabulary is the bundled one unless `vocabularyPath` is given.
    public convenience init(checkpoint: URL, config: CLIPConfig, precision: Precision? = nil, vocabularyPath: String? = nil) throws {
        if let recorded = try QuantizedModelFile.config(ifQuantized: checkpoint) {
            guard recorded == config else {
                throw CLIPError.checkpoint(
                    path: checkpoint.path,
                    reason:
                        "holds a quantized model of another architecture than the one asked for (the file records its own; load it without model flags)"
                )
            }
            try self.init(quantizedModel: checkpoint, precision: precision, vocabularyPath: vocabularyPath)
            return
        }
        let clip = try CLIP.load(checkpoint: checkpoint, config: config)
        clip.prepareForInference(precision)
        try self.init(clip: clip, tokenizer: Self.tokenizer(vocabularyPath))
    }

    /// Loads a quantized model file (`cnclip quantize` writes it; its architecture is recorded in it). Its weights
    /// exist only in int8, so `precision` is `.int8` or nil.
    public convenience init(quantizedModel file: URL, precision: Precision? = nil, vocabularyPath: String? = nil) throws {
        guard precision != .fp32 else {
            throw CLIPError.invalidInput(
                "\(file.path) holds int8 weights, not the fp32 ones precision fp32 needs: load the checkpoint it was quantized from")
        }
        try self.init(clip: QuantizedModelFile.load(file), tokenizer: Self.tokenizer(vocabularyPath))
    }

    /// Whether `url` is a quantized model file (`cnclip quantize`), whose architecture is recorded in it.
    public static func isQuantizedModel(_ url: URL) throws -> Bool { try QuantizedModelFile.config(ifQuantized: url) != nil }

    /// Loads a checkpoint with the `VISION@TEXT` preset pair (the reference's `--vision-model` / `--text-model`).
    public convenience init(
        checkpoint: URL, visionModel: String, textModel: String, precision: Precision? = nil, vocabularyPath: String? = nil
    ) throws {
        try self.init(
            checkpoint: checkpoint, config: ModelPresets.config(vision: visionModel, text: textModel), precision: precision,
            vocabularyPath: vocabularyPath)
    }

    /// Loads a Hugging Face `ChineseCLIPModel` directory, its config taken from its `config.json`.
    public convenience init(huggingFaceDirectory dir: URL, precision: Precision? = nil, vocabularyPath: String? = nil) throws {
        let config = try CLIPConfig.huggingFace(contentsOf: dir.appendingPathComponent("config.json"))
        try self.init(checkpoint: dir, config: config, precision: precision, vocabularyPath: vocabularyPath)
    }

    /// Loads a released model (`ViT-B-16`, …) from the download cache (`cnclip download NAME` puts it there).
    public convenience init(
        released name: String, cacheDirectory: URL = CheckpointDownloader.defaultCacheDirectory, precision: Precision? = nil,
        vocabularyPath: String? = nil
    ) throws {
        guard let model = ModelPresets.released(named: name) else {
            throw CLIPError.unknownModel(name: name, known: ModelPresets.released.map(\.name))
        }
        let path = CheckpointDownloader(cacheDirectory: cacheDirectory).cachedPath(for: model)
        guard FileManager.default.fileExists(atPath: path.path) else {
            throw CLIPError.io(path: path.path, reason: "checkpoint of \(name) not downloaded; run `cnclip download \(name)` first")
        }
        try self.init(
            checkpoint: path, config: ModelPresets.config(named: model.structure), precision: precision, vocabularyPath: vocabularyPath)
    }

    /// The bundled reference vocabulary's tokenizer.
    package static func bundledTokenizer() throws -> Tokenizer { try tokenizer(nil) }

    static func tokenizer(_ path: String?) throws -> Tokenizer {
        do { return try path.map { try Tokenizer(vocabularyPath: $0) } ?? Tokenizer.bundled() } catch {
            throw CLIPError.invalidInput("\(error)")  // a TokenizerError's message names the vocabulary file
        }
    }

    // MARK: Images

    /// Preprocesses images as `image_transform(resolution)` does → `[n, 3, res, res]`.
    public func preprocess(_ images: [Image]) -> Tensor {
        Tensor(shape: [images.count, 3, resolution, resolution], scalars: Image.preprocessBatch(images, resolution: resolution))
    }

    /// Image features `[n, embed]` for decoded images, L2-normalised unless `normalized` is false.
    public func encodeImages(_ images: [Image], normalized: Bool = true, batchSize: Int = 8) -> Tensor {
        encodeInBatches(images.count, batchSize: batchSize, normalized: normalized) { range in
            clip.encodeImage(preprocess(Array(images[range])))
        }
    }

    /// Image features `[n, embed]` for image files; a file that cannot be read or decoded is an error naming it.
    public func encodeImageFiles(_ paths: [String], normalized: Bool = true, batchSize: Int = 8) throws -> Tensor {
        let images = try paths.map { path -> Image in
            // An ImageError's message already names the file.
            do { return try Image(contentsOfFile: path) } catch { throw CLIPError.invalidInput("\(error)") }
        }
        return encodeImages(images, normalized: normalized, batchSize: batchSize)
    }

    /// Image features `[n, embed]` for already preprocessed images `[n, 3, res, res]`.
    public func encodeImages(preprocessed: Tensor, normalized: Bool = true) -> Tensor {
        let f = clip.encodeImage(preprocessed)
        return normalized ? l2Normalized(f) : f
    }

    // MARK: Texts

    /// Token ids `[n, contextLength]` as `clip.tokenize` makes them.
    public func tokenize(_ texts: [String], contextLength: Int = 52) -> [Int32] {
        tokenizer.tokenizeFlat(texts, contextLength: contextLength)
    }

    /// Text features `[n, embed]`, L2-normalised unless `normalized` is false.
    public func encodeTexts(_ texts: [String], contextLength: Int = 52, normalized: Bool = true, batchSize: Int = 32) -> Tensor {
        encodeInBatches(texts.count, batchSize: batchSize, normalized: normalized) { range in
            clip.encodeText(tokenize(Array(texts[range]), contextLength: contextLength), batch: range.count)
        }
    }

    /// Text features `[n, embed]` for token ids (flat `[n, context]`, 0 = padding).
    public func encodeTexts(tokens: [Int32], count: Int, normalized: Bool = true) -> Tensor {
        let f = clip.encodeText(tokens, batch: count)
        return normalized ? l2Normalized(f) : f
    }

    // MARK: Similarity

    /// `get_similarity`: `logits_per_image [images, texts]` and `logits_per_text [texts, images]`.
    public func similarity(imageFeatures: Tensor, textFeatures: Tensor) -> (logitsPerImage: Tensor, logitsPerText: Tensor) {
        let perImage = clip.similarity(imageFeatures: imageFeatures, textFeatures: textFeatures)
        return (perImage, transposed(perImage))
    }

    private func encodeInBatches(_ n: Int, batchSize: Int, normalized: Bool, _ encode: (Range<Int>) -> Tensor) -> Tensor {
        guard n > 0 else { return Tensor(shape: [0, config.embedDim]) }
        var parts: [Tensor] = []
        var start = 0
        while start < n {
            let end = min(n, start + max(1, batchSize))
            parts.append(encode(start..<end))
            start = end
        }
        let all = parts.count == 1 ? parts[0] : concatenateRows(parts)
        return normalized ? l2Normalized(all) : all
    }
}
