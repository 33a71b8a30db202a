// Training from scratch starts where the reference's does: the distributions of `CLIP(**config)`'s constructors.
// PyTorch's defaults (nn.Linear and nn.Conv2d: kaiming_uniform(a=√5), i.e. U(±1/√fan_in) for the weight and the
// bias; nn.MultiheadAttention: xavier_uniform in_proj_weight, zero in_proj_bias and out_proj.bias; norms 1 and
// 0), then the modules' own rules: VisualTransformer's class/positional embeddings and proj ~ N(0, width^-½);
// AttentionPool2d's positional embedding ~ N(0, embed^-½); BertModel's `_init_weights` (Linear and Embedding
// weights ~ N(0, initializer_range), biases 0, LayerNorm 1/0); and `CLIP.initialize_parameters` (logit_scale
// = log(1/0.07), text_projection ~ N(0, hidden^-½), attnpool q/k/v/c weights ~ N(0, c_proj.in_features^-½),
// bottleneck bn3.weight = 0). The same distributions, not torch's random stream. Starting every weight at
// N(0, 0.02) instead left the small synthetic run far behind the reference's recall.

import Essentials
import Foundation
import NeuralNet
import Tensors

extension CLIP {
    /// Initialises every parameter and buffer as the reference's constructors do (see the file header),
    /// deterministically from `seed`.
    package func initializeRandomly(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        let parameters = namedParameters()
        let shapes = Dictionary(parameters.map { ($0.0, $0.1.value.shape) }, uniquingKeysWith: { a, _ in a })
        for (name, p) in parameters {
            p.value = Self.initialValue(
                name: name, shape: p.value.shape, shapes: shapes,
                textInitializerRange: Float(config.textInitializerRange), using: &rng)
        }
    }

    private static func initialValue(
        name: String, shape: [Int], shapes: [String: [Int]], textInitializerRange: Float,
        using rng: inout SplitMix64
    ) -> Tensor {
        let leaf = name.split(separator: ".").last.map(String.init) ?? name
        let owner = String(name.dropLast(leaf.count))  // "…module." with its dot
        func constant(_ v: Float) -> Tensor { Tensor(shape: shape, repeating: v) }
        func normal(_ std: Float) -> Tensor { Tensor.randomNormal(shape, std: std, using: &rng) }
        func uniform(_ bound: Float) -> Tensor { Tensor.randomUniform(shape, bound: bound, using: &rng) }
        /// PyTorch's Linear/Conv default for a weight of `weightShape`: U(±1/√fan_in).
        func defaultBound(_ weightShape: [Int]) -> Float { 1 / Float(weightShape.dropFirst().reduce(1, *)).squareRoot() }

        if name == "logit_scale" { return constant(Float(Foundation.log(1 / 0.07))) }
        if name == "text_projection" { return normal(1 / Float(shape[0]).squareRoot()) }
        if leaf == "running_mean" { return constant(0) }
        if leaf == "running_var" { return constant(1) }
        if name.hasPrefix("bert.") {
            if owner.hasSuffix("LayerNorm.") { return constant(leaf == "weight" ? 1 : 0) }
            return leaf == "bias" ? constant(0) : normal(textInitializerRange)
        }
        // visual.*
        let isNorm =
            owner.contains("ln_") || owner.hasSuffix("bn1.") || owner.hasSuffix("bn2.") || owner.hasSuffix("bn3.")
            || owner.hasSuffix("downsample.1.")
        if isNorm {
            if leaf == "bias" { return constant(0) }
            // Bottlenecks start as identities: the reference zeroes their last BatchNorm's scale.
            return constant(owner.hasSuffix("bn3.") && owner.contains(".layer") ? 0 : 1)
        }
        switch leaf {
        case "class_embedding", "proj":
            return normal(1 / Float(shapes["visual.class_embedding"]?[0] ?? shape[0]).squareRoot())
        case "positional_embedding":
            // ViT: width^-½; AttentionPool2d: embed_dim^-½ — both the row width.
            return normal(1 / Float(shape[1]).squareRoot())
        case "in_proj_weight":
            return uniform((6 / Float(shape[0] + shape[1])).squareRoot())  // xavier_uniform, fan_out = 3·width
        case "in_proj_bias":
            return constant(0)
        default:
            break
        }
        if owner.hasSuffix("attn.out_proj.") {
            return leaf == "bias" ? constant(0) : uniform(defaultBound(shape))
        }
        if owner.contains("attnpool.") && leaf == "weight" {
            return normal(1 / Float(shapes["visual.attnpool.c_proj.weight"]?[1] ?? shape[1]).squareRoot())
        }
        if leaf == "bias" {
            return uniform(defaultBound(shapes[owner + "weight"] ?? [shape[0], shape[0]]))
        }
        return uniform(defaultBound(shape))
    }
}
