// The whole model, mirroring `cn_clip/clip/model.py`'s `CLIP`: `visual`, `bert`, `text_projection`, `logit_scale`.

import Foundation
import NeuralNet
import Tensors

/// Chinese-CLIP: an image tower and a BERT text tower projected into one embedding space.
package final class CLIP: Module {
    /// The configuration it was built from.
    package let config: CLIPConfig
    /// The image tower (`visual.*`).
    package let visual: any ImageEncoder
    /// The text tower (`bert.*`).
    package let bert: BertModel
    /// `[text_hidden, embed]`.
    package let textProjection: Parameter
    /// Scalar; the similarity scale is its exponential.
    package let logitScale: Parameter

    /// A model of `config` with zeroed weights (load a checkpoint next).
    package init(_ config: CLIPConfig) {
        self.config = config
        switch config.visionLayers {
        case .resnet(let layers):
            visual = ModifiedResNet(
                layers: layers, outputDim: config.embedDim, heads: config.visionWidth * 32 / config.visionHeadWidth,
                inputResolution: config.imageResolution, width: config.visionWidth)
        case .transformer(let layers):
            let patch = config.visionPatchSize ?? 16
            visual = VisualTransformer(
                inputResolution: config.imageResolution, patchSize: patch, width: config.visionWidth,
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
    package func encodeImage(_ images: Tensor) -> Tensor { visual(images) }

    /// Unnormalised text features: token ids `[batch, context]` (flat, 0 = padding) → `[batch, embed]` (`encode_text`).
    package func encodeText(_ ids: [Int32], batch: Int) -> Tensor { textFeatures(ids, batch: batch).value }

    /// `encode_image` on variables: images `[batch, 3, res, res]` → `[batch, embed]`, recording gradients for
    /// parameters that require them (training).
    package func imageFeatures(_ images: Variable) -> Variable { visual.forward(images) }

    /// `encode_text` on variables: token ids `[batch, context]` (flat, 0 = padding) → `[batch, embed]`; the
    /// `[CLS]` output of BERT (its last layer computed for that row alone) @ `text_projection`.
    ///
    /// Outside training, padding is not computed (`layout`, `.packed` by default): each text's tokens up to its
    /// last non-padding id are packed with the other texts' into one matrix, and each text attends over its own
    /// tokens alone. Padded keys are masked to exact zeros and every kernel rounds a row the same whatever the
    /// other rows, so the features are the same bits as over the whole context (tested) at the cost of the real
    /// tokens only. In training the full context is kept so that dropout draws stay where they were.
    package func textFeatures(_ ids: [Int32], batch: Int, layout: TextLayout = .packed) -> Variable {
        guard batch > 0 else { return Variable(Tensor(shape: [0, config.embedDim])) }
        let context = ids.count / batch
        let cls: Variable  // [batch, hidden]
        switch isTraining ? .padded : layout {
        case .packed:
            let lengths = Self.textLengths(ids, batch: batch)
            var packed: [Int32] = []
            packed.reserveCapacity(lengths.reduce(0, +))
            for (b, n) in lengths.enumerated() { packed += ids[(b * context)..<(b * context + n)] }
            cls = bert(packed: packed, texts: RaggedBatch(lengths: lengths), clsOnly: true)
        case .trimmed:
            let seq = Self.usedLength(ids, batch: batch)
            let trimmed = seq < context ? (0..<batch).flatMap { ids[($0 * context)..<($0 * context + seq)] } : ids
            cls = bert(trimmed, batch: batch, seq: seq, clsOnly: true).reshaped([batch, config.textHiddenSize])
        case .padded:
            cls = bert(ids, batch: batch, seq: context, clsOnly: true).reshaped([batch, config.textHiddenSize])
        }
        return matmul(cls, textProjection.variable)
    }

    /// How `textFeatures` lays out a batch of padded texts outside training (all give the same bits; training
    /// always takes `.padded`).
    package enum TextLayout: Sendable, CaseIterable {
        /// Every text over the whole context (the reference's computation).
        case padded
        /// Every text up to the batch's longest text.
        case trimmed
        /// Each text over its own tokens, the texts' rows packed into one matrix.
        case packed
    }

    /// Each text's length in a padded batch `[batch, context]` (flat): one past its last non-padding id (at
    /// least 1, so that an all-padding text still has its first position).
    package static func textLengths(_ ids: [Int32], batch: Int) -> [Int] {
        let context = ids.count / batch
        return (0..<batch).map { b in
            var end = context
            while end > 1 && ids[b * context + end - 1] == 0 { end -= 1 }
            return end
        }
    }

    /// The longest text's length in a padded batch `[batch, context]` (flat): one past its last non-padding id
    /// (at least 1).
    package static func usedLength(_ ids: [Int32], batch: Int) -> Int { textLengths(ids, batch: batch).max() ?? 1 }

    /// The reference's `forward(image, text)`: L2-normalised image features `[batch, embed]`, L2-normalised text
    /// features `[batch, embed]` (token ids flat `[batch, context]`), and `logit_scale.exp()` `[]`.
    package func forward(images: Variable, texts ids: [Int32], textBatch: Int)
        -> (imageFeatures: Variable, textFeatures: Variable, logitScale: Variable)
    {
        (l2Normalized(imageFeatures(images)), l2Normalized(textFeatures(ids, batch: textBatch)), exp(logitScale.variable))
    }

    /// The contrastive loss of the reference's training step on one process: the mean of the image→text and
    /// text→image cross-entropies over `scale · img @ txt.T` (`[batch, batch]`), pairs on the diagonal.
    package static func contrastiveLoss(imageFeatures: Variable, textFeatures: Variable, logitScale: Variable) -> Variable {
        let perImage = scaled(matmulTransposed(imageFeatures, textFeatures), by: logitScale)  // [images, texts]
        let perText = scaled(matmulTransposed(textFeatures, imageFeatures), by: logitScale)  // [texts, images]
        let targets = Array(0..<imageFeatures.shape[0])
        // The text term first: the same sum, but the backward pass (which visits an operation's last input first)
        // then back-propagates through the image tower before the text tower, so that the vision transformer's
        // activations, the larger, are freed before the text tower's gradients are made (ViT-B-16@RoBERTa-base at
        // batch 8: 0.3 GB less at the peak).
        return scaled(add(crossEntropy(perText, targets: targets), crossEntropy(perImage, targets: targets)), by: 0.5)
    }

    /// `exp(logit_scale)`.
    package var similarityScale: Float { logitScale.value.data[0].exp() }

    /// `logit_scale.exp() * normalize(image) @ normalize(text).T` → `[images, texts]` (`get_similarity`'s `logits_per_image`;
    /// its transpose is `logits_per_text`). Features are `[n, embed]`, normalised or not.
    package func similarity(imageFeatures: Tensor, textFeatures: Tensor) -> Tensor {
        scaled(matmulTransposed(l2Normalized(imageFeatures), l2Normalized(textFeatures)), by: similarityScale)
    }
}

extension Float {
    /// e raised to this value.
    fileprivate func exp() -> Float { Float(Foundation.exp(Double(self))) }
}
