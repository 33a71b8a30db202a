// The whole model, mirroring `cn_clip/clip/model.py`'s `CLIP`: `visual`, `bert`, `text_projection`, `logit_scale`.

import Foundation
import NeuralNet
import Tensors

/// Chinese-CLIP: an image tower and a BERT text tower projected into one embedding space.
public final class CLIP: Module, @unchecked Sendable {
    /// The configuration it was built from.
    public let config: CLIPConfig
    /// The image tower (`visual.*`).
    public let visual: any ImageEncoder
    /// The text tower (`bert.*`).
    public let bert: BertModel
    /// `[text_hidden, embed]`.
    public let textProjection: Parameter
    /// Scalar; the similarity scale is its exponential.
    public let logitScale: Parameter

    /// A model of `config` with zeroed weights (load a checkpoint next).
    public init(_ config: CLIPConfig) {
        self.config = config
        switch config.visionLayers {
        case .resnet(let layers):
            visual = ModifiedResNet(layers: layers, outputDim: config.embedDim, heads: config.visionWidth * 32 / config.visionHeadWidth,
                                    inputResolution: config.imageResolution, width: config.visionWidth)
        case .transformer(let layers):
            let patch = config.visionPatchSize ?? 16
            visual = VisualTransformer(inputResolution: config.imageResolution, patchSize: patch, width: config.visionWidth,
                                       layers: layers, heads: config.visionWidth / config.visionHeadWidth, outputDim: config.embedDim)
        }
        bert = BertModel(config)
        textProjection = Parameter(shape: [config.textHiddenSize, config.embedDim])
        logitScale = Parameter(shape: [])
        super.init()
        register("text_projection", textProjection)
        register("logit_scale", logitScale)
        register("visual", visual)
        register("bert", bert)
    }

    /// Unnormalised image features: images `[batch, 3, res, res]` → `[batch, embed]` (`encode_image`).
    public func encodeImage(_ images: Tensor) -> Tensor { visual(images) }

    /// Unnormalised text features: token ids `[batch, context]` (flat, 0 = padding) → `[batch, embed]` (`encode_text`).
    public func encodeText(_ ids: [Int32], batch: Int) -> Tensor {
        guard batch > 0 else { return Tensor(shape: [0, config.embedDim]) }
        let seq = ids.count / batch
        let cls = bert(ids, batch: batch, seq: seq, clsOnly: true)  // [batch, 1, hidden]
        return matmul(cls.reshaped([batch, cls.lastDim]), textProjection.value)
    }

    /// `exp(logit_scale)`.
    public var similarityScale: Float { logitScale.value.data[0].exp() }

    /// `logit_scale.exp() * normalize(image) @ normalize(text).T` → `[images, texts]` (`get_similarity`'s `logits_per_image`;
    /// its transpose is `logits_per_text`). Features are `[n, embed]`, normalised or not.
    public func similarity(imageFeatures: Tensor, textFeatures: Tensor) -> Tensor {
        scaled(matmulTransposed(l2Normalized(imageFeatures), l2Normalized(textFeatures)), by: similarityScale)
    }
}

extension Float {
    /// e raised to this value.
    fileprivate func exp() -> Float { Float(Foundation.exp(Double(self))) }
}


extension CLIP {
    /// Fills every weight with deterministic random values (normal, std 0.02; norms' scales 1, biases and means 0,
    /// variances 1; `logit_scale` = log(1/0.07) as the reference initialises it) — for benchmarks and smoke tests.
    public func initializeRandomly(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        for (name, p) in namedParameters() {
            let shape = p.value.shape
            let leaf = name.split(separator: ".").last.map(String.init) ?? name
            let isNorm = name.contains("ln_") || name.contains("LayerNorm") || name.contains(".bn") || name.hasPrefix("bn")
                || name.contains("downsample.1")
            if name == "logit_scale" {
                p.value = Tensor(shape: shape, repeating: Float(Foundation.log(1 / 0.07)))
            } else if leaf == "running_var" || (isNorm && leaf == "weight") {
                p.value = Tensor(shape: shape, repeating: 1)
            } else if leaf == "bias" || leaf == "running_mean" || leaf.hasSuffix("_bias") {
                p.value = Tensor(shape: shape)
            } else {
                p.value = Tensor.randomNormal(shape, std: 0.02, using: &rng)
            }
        }
    }
}
