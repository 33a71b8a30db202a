// Model configurations: the reference's `CLIP(**kwargs)` keyword arguments, its nine `model_configs`
// presets, and the released checkpoints (`cn_clip/clip/utils.py`'s `_MODELS` / `_MODEL_INFO`).

import Foundation
import Tokenization

/// The vision tower's depth: a layer count for a ViT, four stage depths for a ModifiedResNet.
public enum VisionLayers: Codable, Sendable, Equatable {
    /// A VisualTransformer with this many residual attention blocks.
    case transformer(Int)
    /// A ModifiedResNet with these bottleneck counts per stage.
    case resnet([Int])

    /// Decodes an integer, a list, or a string holding a list (`"[3,4,6,3]"`, as the reference's RN50.json has it).
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let n = try? c.decode(Int.self) { self = .transformer(n); return }
        if let list = try? c.decode([Int].self) { self = .resnet(list); return }
        let text = try c.decode(String.self)
        let parts = text.trimmingCharacters(in: CharacterSet(charactersIn: "[] ")).split(separator: ",")
        let list = parts.compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard list.count == 4, list.count == parts.count else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "vision_layers '\(text)' is not a list of four integers")
        }
        self = .resnet(list)
    }

    /// Encodes as the reference writes it: an integer or a list.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .transformer(let n): try c.encode(n)
        case .resnet(let l): try c.encode(l)
        }
    }
}

/// Every keyword argument of the reference `CLIP` constructor, with its JSON key.
public struct CLIPConfig: Codable, Sendable, Equatable {
    /// Width of the joint embedding.
    public var embedDim: Int
    /// Input image side in pixels.
    public var imageResolution: Int
    /// Vision depth (ViT or ResNet).
    public var visionLayers: VisionLayers
    /// ViT width, or the ResNet stem width.
    public var visionWidth: Int
    /// ViT patch side; `nil` for a ResNet.
    public var visionPatchSize: Int?
    /// Width of one attention head in the vision tower (64; 80 for ViT-H).
    public var visionHeadWidth: Int
    /// Text vocabulary size.
    public var vocabSize: Int
    /// BERT attention-probability dropout (training only).
    public var textAttentionProbsDropoutProb: Double
    /// BERT activation (`gelu`).
    public var textHiddenAct: String
    /// BERT hidden dropout (training only).
    public var textHiddenDropoutProb: Double
    /// BERT width.
    public var textHiddenSize: Int
    /// BERT init standard deviation.
    public var textInitializerRange: Double
    /// BERT feed-forward width.
    public var textIntermediateSize: Int
    /// BERT position table size.
    public var textMaxPositionEmbeddings: Int
    /// BERT attention heads.
    public var textNumAttentionHeads: Int
    /// BERT layers.
    public var textNumHiddenLayers: Int
    /// BERT token-type table size.
    public var textTypeVocabSize: Int

    enum CodingKeys: String, CodingKey {
        case embedDim = "embed_dim", imageResolution = "image_resolution", visionLayers = "vision_layers"
        case visionWidth = "vision_width", visionPatchSize = "vision_patch_size", visionHeadWidth = "vision_head_width"
        case vocabSize = "vocab_size", textAttentionProbsDropoutProb = "text_attention_probs_dropout_prob"
        case textHiddenAct = "text_hidden_act", textHiddenDropoutProb = "text_hidden_dropout_prob"
        case textHiddenSize = "text_hidden_size", textInitializerRange = "text_initializer_range"
        case textIntermediateSize = "text_intermediate_size", textMaxPositionEmbeddings = "text_max_position_embeddings"
        case textNumAttentionHeads = "text_num_attention_heads", textNumHiddenLayers = "text_num_hidden_layers"
        case textTypeVocabSize = "text_type_vocab_size"
    }

    /// Decodes the reference's keyword arguments; `vision_head_width` defaults to 64 as in `CLIP.__init__`.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        embedDim = try c.decode(Int.self, forKey: .embedDim)
        imageResolution = try c.decode(Int.self, forKey: .imageResolution)
        visionLayers = try c.decode(VisionLayers.self, forKey: .visionLayers)
        visionWidth = try c.decode(Int.self, forKey: .visionWidth)
        visionPatchSize = try c.decodeIfPresent(Int.self, forKey: .visionPatchSize)
        visionHeadWidth = try c.decodeIfPresent(Int.self, forKey: .visionHeadWidth) ?? 64
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        textAttentionProbsDropoutProb = try c.decode(Double.self, forKey: .textAttentionProbsDropoutProb)
        textHiddenAct = try c.decode(String.self, forKey: .textHiddenAct)
        textHiddenDropoutProb = try c.decode(Double.self, forKey: .textHiddenDropoutProb)
        textHiddenSize = try c.decode(Int.self, forKey: .textHiddenSize)
        textInitializerRange = try c.decode(Double.self, forKey: .textInitializerRange)
        textIntermediateSize = try c.decode(Int.self, forKey: .textIntermediateSize)
        textMaxPositionEmbeddings = try c.decode(Int.self, forKey: .textMaxPositionEmbeddings)
        textNumAttentionHeads = try c.decode(Int.self, forKey: .textNumAttentionHeads)
        textNumHiddenLayers = try c.decode(Int.self, forKey: .textNumHiddenLayers)
        textTypeVocabSize = try c.decode(Int.self, forKey: .textTypeVocabSize)
        if case .transformer = visionLayers, visionPatchSize == nil {
            throw DecodingError.keyNotFound(
                CodingKeys.visionPatchSize,
                .init(
                    codingPath: c.codingPath,
                    debugDescription: "a ViT config needs vision_patch_size"))
        }
        if let problem = sizeProblem { throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath, debugDescription: problem)) }
    }

    /// Why a model cannot be built from these sizes (a size below 1, a width that does not split into its heads), or
    /// nil. Checked whenever a config is read, so a bad or hostile file is an error, not a crash.
    package var sizeProblem: String? {
        let positive: [(String, Int)] = [
            ("embed_dim", embedDim), ("image_resolution", imageResolution), ("vision_width", visionWidth),
            ("vision_head_width", visionHeadWidth), ("vocab_size", vocabSize), ("text_hidden_size", textHiddenSize),
            ("text_intermediate_size", textIntermediateSize), ("text_max_position_embeddings", textMaxPositionEmbeddings),
            ("text_num_attention_heads", textNumAttentionHeads), ("text_num_hidden_layers", textNumHiddenLayers),
            ("text_type_vocab_size", textTypeVocabSize),
        ]
        if let (key, value) = positive.first(where: { $0.1 < 1 }) { return "\(key) is \(value); it must be at least 1" }
        if textHiddenSize % textNumAttentionHeads != 0 {
            return "text_hidden_size \(textHiddenSize) is not divisible by text_num_attention_heads \(textNumAttentionHeads)"
        }
        switch visionLayers {
        case .transformer(let layers):
            if layers < 1 { return "vision_layers is \(layers); it must be at least 1" }
            let patch = visionPatchSize ?? 0
            if patch < 1 || patch > imageResolution { return "vision_patch_size \(patch) must be between 1 and image_resolution \(imageResolution)" }
            let heads = visionWidth / visionHeadWidth
            if heads < 1 || visionWidth % heads != 0 {
                return "vision_width \(visionWidth) does not split into heads of vision_head_width \(visionHeadWidth)"
            }
        case .resnet(let stages):
            if stages.contains(where: { $0 < 1 }) { return "vision_layers \(stages) must be four counts of at least 1" }
            if imageResolution % 32 != 0 { return "image_resolution \(imageResolution) of a ResNet must be a multiple of 32" }
            let heads = visionWidth * 32 / visionHeadWidth
            if heads < 1 || (visionWidth * 32) % heads != 0 {
                return "vision_width × 32 = \(visionWidth * 32) does not split into heads of vision_head_width \(visionHeadWidth)"
            }
        }
        let limit = 1 << 20  // no real size is near it; larger ones would only overflow the products below
        let sizes = [embedDim, imageResolution, visionWidth, visionHeadWidth, vocabSize, textHiddenSize, textIntermediateSize]
        if sizes.contains(where: { $0 > limit }) { return "a size above \(limit)" }
        // ViT-H-14@RoBERTa-large, the largest released model, has about a billion.
        if parameterLowerBound > 2e10 { return "the sizes describe more than 20 billion parameters" }
        return nil
    }

    /// A lower bound of the parameter count: the large matrices of both towers (in Double: nothing overflows).
    package var parameterLowerBound: Double {
        let h = Double(textHiddenSize), w = Double(visionWidth)
        var count = Double(vocabSize + textMaxPositionEmbeddings + textTypeVocabSize) * h
        count += Double(textNumHiddenLayers) * (4 * h * h + 2 * h * Double(textIntermediateSize))
        switch visionLayers {
        case .transformer(let layers):
            let patch = Double(visionPatchSize ?? 1)
            count += Double(layers) * 12 * w * w + 3 * patch * patch * w
        case .resnet:
            count += 4 * (32 * w) * (32 * w)  // the attention pool's four projections
        }
        return count + Double(embedDim) * (h + w)
    }

    /// Reads a JSON file of keyword arguments (like the fixtures' `NAME.json`).
    public static func load(contentsOf url: URL) throws -> CLIPConfig {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw CLIPError.io(path: url.path, reason: "cannot read config: \(error.localizedDescription)")
        }
        do { return try JSONDecoder().decode(CLIPConfig.self, from: data) } catch {
            throw CLIPError.badConfig(path: url.path, reason: describe(error))
        }
    }
}

/// Describes a decoding error by the key path it concerns.
func describe(_ error: Error) -> String {
    guard let e = error as? DecodingError else { return "\(error)" }
    func path(_ c: DecodingError.Context) -> String { c.codingPath.map(\.stringValue).joined(separator: ".") }
    switch e {
    case .keyNotFound(let k, let c):
        return
            "missing key '\(([path(c)] + [k.stringValue]).filter { !$0.isEmpty }.joined(separator: "."))'\(c.debugDescription.isEmpty ? "" : ": " + c.debugDescription)"
    case .typeMismatch(_, let c), .valueNotFound(_, let c): return "bad value at '\(path(c))': \(c.debugDescription)"
    case .dataCorrupted(let c): return "\(path(c).isEmpty ? "" : "'\(path(c))': ")\(c.debugDescription)"
    @unknown default: return "\(error)"
    }
}

/// The reference's model presets (`cn_clip/clip/model_configs/*.json`) and released checkpoints.
public enum ModelPresets {
    /// Vision presets: name → (embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size, vision_head_width).
    public static let vision: [String: (embedDim: Int, resolution: Int, layers: VisionLayers, width: Int, patch: Int?, headWidth: Int)] = [
        "ViT-B-32": (512, 224, .transformer(12), 768, 32, 64),
        "ViT-B-16": (512, 224, .transformer(12), 768, 16, 64),
        "ViT-L-14": (768, 224, .transformer(24), 1024, 14, 64),
        "ViT-L-14-336": (768, 336, .transformer(24), 1024, 14, 64),
        "ViT-H-14": (1024, 224, .transformer(32), 1280, 14, 80),
        "RN50": (1024, 224, .resnet([3, 4, 6, 3]), 64, nil, 64),
    ]

    /// Text presets: name → (hidden, layers, heads, intermediate). All share vocab 21128, gelu, dropout 0.1,
    /// init range 0.02, 512 positions and 2 token types.
    public static let text: [String: (hidden: Int, layers: Int, heads: Int, intermediate: Int)] = [
        "RoBERTa-wwm-ext-base-chinese": (768, 12, 12, 3072),
        "RoBERTa-wwm-ext-large-chinese": (1024, 24, 16, 4096),
        "RBT3-chinese": (768, 3, 12, 3072),
    ]

    /// A released checkpoint: its structure (`VISION@TEXT`) and download address.
    public struct Released: Sendable {
        /// The released name (`ViT-B-16`).
        public let name: String
        /// `VISION@TEXT`.
        public let structure: String
        /// Input resolution.
        public let resolution: Int
        /// Public download address.
        public let url: String
        /// File name in the download cache.
        public var fileName: String { (url as NSString).lastPathComponent }
    }

    /// The five released models, in the reference's order.
    public static let released: [Released] = [
        .init(
            name: "ViT-B-16", structure: "ViT-B-16@RoBERTa-wwm-ext-base-chinese", resolution: 224,
            url: "https://clip-cn-beijing.oss-cn-beijing.aliyuncs.com/checkpoints/clip_cn_vit-b-16.pt"),
        .init(
            name: "ViT-L-14", structure: "ViT-L-14@RoBERTa-wwm-ext-base-chinese", resolution: 224,
            url: "https://clip-cn-beijing.oss-cn-beijing.aliyuncs.com/checkpoints/clip_cn_vit-l-14.pt"),
        .init(
            name: "ViT-L-14-336", structure: "ViT-L-14-336@RoBERTa-wwm-ext-base-chinese", resolution: 336,
            url: "https://clip-cn-beijing.oss-cn-beijing.aliyuncs.com/checkpoints/clip_cn_vit-l-14-336.pt"),
        .init(
            name: "ViT-H-14", structure: "ViT-H-14@RoBERTa-wwm-ext-large-chinese", resolution: 224,
            url: "https://clip-cn-beijing.oss-cn-beijing.aliyuncs.com/checkpoints/clip_cn_vit-h-14.pt"),
        .init(
            name: "RN50", structure: "RN50@RBT3-chinese", resolution: 224,
            url: "https://clip-cn-beijing.oss-cn-beijing.aliyuncs.com/checkpoints/clip_cn_rn50.pt"),
    ]

    /// The released model called `name`, if any.
    public static func released(named name: String) -> Released? { released.first { $0.name == name } }

    /// The config for `vision` + `text` preset names (the reference's `create_model("VISION@TEXT")`).
    public static func config(vision: String, text: String) throws -> CLIPConfig {
        guard let v = Self.vision[vision] else {
            throw CLIPError.unknownModel(name: vision, known: Self.vision.keys.sorted())
        }
        guard let t = Self.text[text] else {
            throw CLIPError.unknownModel(name: text, known: Self.text.keys.sorted())
        }
        return CLIPConfig(
            embedDim: v.embedDim, imageResolution: v.resolution, visionLayers: v.layers, visionWidth: v.width,
            visionPatchSize: v.patch, visionHeadWidth: v.headWidth, vocabSize: 21128,
            textAttentionProbsDropoutProb: 0.1, textHiddenAct: "gelu", textHiddenDropoutProb: 0.1,
            textHiddenSize: t.hidden, textInitializerRange: 0.02, textIntermediateSize: t.intermediate,
            textMaxPositionEmbeddings: 512, textNumAttentionHeads: t.heads, textNumHiddenLayers: t.layers,
            textTypeVocabSize: 2)
    }

    /// The config for `"VISION@TEXT"` or a released name (`ViT-B-16`).
    public static func config(named name: String) throws -> CLIPConfig {
        if let r = released(named: name) { return try config(named: r.structure) }
        let parts = name.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2 else {
            throw CLIPError.unknownModel(name: name, known: released.map(\.name) + ["VISION@TEXT"])
        }
        return try config(vision: String(parts[0]), text: String(parts[1]))
    }
}

extension CLIPConfig {
    /// A config from its fields (memberwise).
    public init(
        embedDim: Int, imageResolution: Int, visionLayers: VisionLayers, visionWidth: Int, visionPatchSize: Int?,
        visionHeadWidth: Int, vocabSize: Int, textAttentionProbsDropoutProb: Double, textHiddenAct: String,
        textHiddenDropoutProb: Double, textHiddenSize: Int, textInitializerRange: Double, textIntermediateSize: Int,
        textMaxPositionEmbeddings: Int, textNumAttentionHeads: Int, textNumHiddenLayers: Int, textTypeVocabSize: Int
    ) {
        self.embedDim = embedDim; self.imageResolution = imageResolution; self.visionLayers = visionLayers
        self.visionWidth = visionWidth; self.visionPatchSize = visionPatchSize; self.visionHeadWidth = visionHeadWidth
        self.vocabSize = vocabSize; self.textAttentionProbsDropoutProb = textAttentionProbsDropoutProb
        self.textHiddenAct = textHiddenAct; self.textHiddenDropoutProb = textHiddenDropoutProb
        self.textHiddenSize = textHiddenSize; self.textInitializerRange = textInitializerRange
        self.textIntermediateSize = textIntermediateSize; self.textMaxPositionEmbeddings = textMaxPositionEmbeddings
        self.textNumAttentionHeads = textNumAttentionHeads; self.textNumHiddenLayers = textNumHiddenLayers
        self.textTypeVocabSize = textTypeVocabSize
    }
}

extension CLIPConfig {
    /// Refuses a vocabulary with more tokens than the model's token embedding has rows (`vocab_size`). The reference
    /// fails on the first such id mid-run (an IndexError in `nn.Embedding`); this refuses the pair before any work.
    package func check(vocabulary tokenizer: Tokenizer) throws {
        guard tokenizer.vocabularySize <= vocabSize else {
            throw CLIPError.invalidInput(
                "the vocabulary \(tokenizer.vocabularyPath) has \(tokenizer.vocabularySize) tokens but the model's vocab_size is "
                    + "\(vocabSize): ids from \(vocabSize) on would have no embedding row")
        }
    }
}
