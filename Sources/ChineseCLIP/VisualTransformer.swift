// The ViT image tower, mirroring `cn_clip/clip/model.py` (`VisualTransformer`, `Transformer`,
// `ResidualAttentionBlock`) so that parameter names are the checkpoint keys under `visual.`.

import Essentials
import NeuralNet
import Tensors

/// An image tower: images `[batch, 3, res, res]` → features `[batch, embed]` (unnormalised).
package protocol ImageEncoder: Module {
    /// Input side in pixels.
    var inputResolution: Int { get }
    /// Encodes preprocessed images `[batch, 3, res, res]` → `[batch, embed]`.
    func callAsFunction(_ images: Tensor) -> Tensor
    /// Encodes images `[batch, 3, res, res]` → `[batch, embed]`, recording gradients for parameters that require them.
    func forward(_ images: Variable) -> Variable
}

/// `nn.MultiheadAttention` with packed input projection: `in_proj_weight [3w, w]`, `in_proj_bias [3w]`, `out_proj`.
package final class MultiheadAttention: Module {
    /// `[3·width, width]`: query, key, value projections stacked.
    package let inProjWeight: Parameter
    /// `[3·width]`.
    package let inProjBias: Parameter
    /// `width → width`.
    package let outProj: Linear
    /// Number of heads.
    package let heads: Int
    /// Attention over `width` features split into `heads` heads.
    package init(width: Int, heads: Int) {
        inProjWeight = Parameter(shape: [3 * width, width])
        inProjBias = Parameter(shape: [3 * width])
        outProj = Linear(width, width)
        self.heads = heads
        super.init()
        register("in_proj_weight", inProjWeight)
        register("in_proj_bias", inProjBias)
        register("out_proj", outProj)
    }

    /// Self-attention: `x [batch, seq, width]` → `[batch, seq, width]`, or `[batch, 1, width]` for the first
    /// query only when `firstQueryOnly` (rows are independent, so the result for it is the same).
    package func callAsFunction(_ x: Variable, firstQueryOnly: Bool = false) -> Variable {
        let (b, l, w) = (x.shape[0], x.shape[1], x.shape[2])
        let qkv =
            inProjWeight.heldLinear(x.value, bias: inProjBias.value).map { Variable($0) }
            ?? linear(x, weight: inProjWeight.variable, bias: inProjBias.variable)  // [b, l, 3w]
        let att: Variable
        if firstQueryOnly {
            let q = firstRows(qkv)  // [b, 1, 3w]: its first w columns are the query
            att = multiHeadAttention(
                q: q, qOffset: 0, k: qkv, kOffset: w, v: qkv, vOffset: 2 * w,
                batch: b, lq: 1, lk: l, heads: heads, headDim: w / heads)
        } else {
            att = multiHeadAttention(
                q: qkv, qOffset: 0, k: qkv, kOffset: w, v: qkv, vOffset: 2 * w,
                batch: b, lq: l, lk: l, heads: heads, headDim: w / heads)
        }
        return outProj(att)
    }
}

/// `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))` with a QuickGELU MLP of 4× width.
package final class ResidualAttentionBlock: Module {
    /// Self-attention.
    package let attn: MultiheadAttention
    /// Pre-attention norm.
    package let ln1: LayerNorm
    /// `c_fc`: width → 4·width.
    package let cFc: Linear
    /// `c_proj`: 4·width → width.
    package let cProj: Linear
    /// Pre-MLP norm.
    package let ln2: LayerNorm

    /// A block of `width` with `heads` heads.
    package init(width: Int, heads: Int) {
        attn = MultiheadAttention(width: width, heads: heads)
        ln1 = LayerNorm(width)
        cFc = Linear(width, 4 * width)
        cProj = Linear(4 * width, width)
        ln2 = LayerNorm(width)
        super.init()
        register("attn", attn)
        register("ln_1", ln1)
        let mlp = register("mlp", Module())
        mlp.register("c_fc", cFc)
        mlp.register("c_proj", cProj)
        register("ln_2", ln2)
    }

    /// `x [batch, seq, width]` → `[batch, seq, width]`; with `firstTokenOnly`, `[batch, 1, width]` for the
    /// class token alone (what the last block of an encoder needs).
    package func callAsFunction(_ x: Variable, firstTokenOnly: Bool = false) -> Variable {
        let h = add(firstTokenOnly ? firstRows(x) : x, attn(ln1(x), firstQueryOnly: firstTokenOnly))
        return add(h, cProj(cFc(ln2(h)), after: .quickGelu))
    }
}

/// The vision transformer: patch embedding, class token, positional embedding, blocks, `ln_post`, `proj`.
package final class VisualTransformer: Module, ImageEncoder {
    /// Input side in pixels.
    package let inputResolution: Int
    /// Patch side.
    package let patchSize: Int
    /// Token width.
    package let width: Int
    /// `[width, 3, patch, patch]`, no bias.
    package let conv1: Conv2d
    /// `[width]`.
    package let classEmbedding: Parameter
    /// `[grid² + 1, width]`.
    package let positionalEmbedding: Parameter
    /// Norm before the blocks.
    package let lnPre: LayerNorm
    /// The residual blocks (`transformer.resblocks.N`).
    package let blocks: ModuleList<ResidualAttentionBlock>
    /// Norm of the class token.
    package let lnPost: LayerNorm
    /// `[width, output]`.
    package let proj: Parameter
    /// FLIP's random patch dropping (`mask_ratio`; training only).
    package let patchMasking = PatchMasking()
    /// Recompute each block in the backward pass instead of keeping its activations
    /// (`set_grad_checkpointing`; training only).
    package var gradientCheckpointing = false

    /// A ViT with the reference's constructor arguments.
    package init(inputResolution: Int, patchSize: Int, width: Int, layers: Int, heads: Int, outputDim: Int) {
        self.inputResolution = inputResolution
        self.patchSize = patchSize
        self.width = width
        let grid = inputResolution / patchSize
        conv1 = Conv2d(3, width, kernel: patchSize, stride: patchSize)
        classEmbedding = Parameter(shape: [width])
        positionalEmbedding = Parameter(shape: [grid * grid + 1, width])
        lnPre = LayerNorm(width)
        blocks = ModuleList((0..<layers).map { _ in ResidualAttentionBlock(width: width, heads: heads) })
        lnPost = LayerNorm(width)
        proj = Parameter(shape: [width, outputDim])
        super.init()
        register("class_embedding", classEmbedding)
        register("positional_embedding", positionalEmbedding)
        register("proj", proj)
        register("conv1", conv1)
        register("ln_pre", lnPre)
        register("transformer", Module()).register("resblocks", blocks)
        register("ln_post", lnPost)
        register("patch_masking", patchMasking)  // no parameters; registered so that `train()` and reseeding reach it
    }

    /// Images `[batch, 3, res, res]` → features `[batch, output]`.
    package func callAsFunction(_ images: Tensor) -> Tensor { forward(Variable(images)).value }

    /// Images `[batch, 3, res, res]` → features `[batch, output]`, recording gradients for parameters that require them.
    /// The last block computes the class token alone: no other row of it reaches the output, in training or not.
    package func forward(_ images: Variable) -> Variable {
        precondition(
            images.rank == 4 && images.shape[1] == 3 && images.shape[2] == inputResolution && images.shape[3] == inputResolution,
            "VisualTransformer expects [batch, 3, \(inputResolution), \(inputResolution)], got \(images.shape)")
        let b = images.shape[0]
        // The stride-p convolution as patch rows @ the flattened kernel (same products, no column buffer).
        let p = patches(images, size: patchSize)  // [b, grid², 3·p·p]
        let emb = linear(p, weight: conv1.weight.variable.reshaped([width, -1]), bias: nil)  // [b, grid², width]
        let cls = repeated(classEmbedding.variable.reshaped([1, width]), count: b)  // [b, 1, width]
        let tokens = concatenate([cls, emb], axis: 1)  // [b, grid² + 1, width]
        var x = lnPre(patchMasking(add(tokens, positionalEmbedding.variable)))
        for (i, block) in blocks.items.enumerated() {
            let last = i == blocks.items.count - 1
            if gradientCheckpointing && isTraining {
                x = checkpointed(x, prepare: block.randomStateRestorer()) { block($0, firstTokenOnly: last) }
            } else {
                x = block(x, firstTokenOnly: last)
            }
        }
        let first = firstRows(x).reshaped([b, width])
        return matmul(lnPost(first), proj.variable)
    }
}

/// FLIP's token dropping (`VisualTransformer.random_masking`): in training with `ratio` > 0, each image keeps its
/// class token and `int((L - 1) · (1 - ratio))` of its `L - 1` patch tokens, chosen uniformly at random.
/// The reference draws the choice from `torch.rand`; ours comes from a seedable generator (reseeded each step
/// by the trainer, like dropout), so runs are reproducible — the same distribution, not torch's stream.
package final class PatchMasking: Module, RandomizedModule {
    /// Fraction of patch tokens dropped (`--mask-ratio`); 0 keeps them all.
    package var ratio: Float = 0
    /// The generator the choices come from.
    package var generator = SplitMix64(seed: 0xF11D)

    /// Tokens `[batch, 1 + patches, width]` (class token first, positional embedding added) → the kept tokens
    /// `[batch, 1 + keep, width]`, or `tokens` unchanged outside training or with `ratio` 0.
    package func callAsFunction(_ tokens: Variable) -> Variable {
        guard isTraining && ratio > 0 else { return tokens }
        let (b, l) = (tokens.shape[0], tokens.shape[1])
        let keep = Int(Double(l - 1) * (1 - Double(ratio)))  // Python's int(): toward zero
        var indices: [Int] = []
        indices.reserveCapacity(b * (keep + 1))
        for _ in 0..<b {
            var order = Array(1..<l)
            order.shuffle(using: &generator)
            indices.append(0)
            indices += order.prefix(keep)
        }
        return gatherRows(tokens, indices: indices, keep: keep + 1)
    }
}
