// The text tower, mirroring `cn_clip/clip/modeling_bert.py` (`BertModel` without the pooler) so that
// parameter names are the checkpoint keys under `bert.`. Exact erf GELU, LayerNorm eps 1e-12,
// token type 0, masked keys biased by -10000 as the reference does.

import NeuralNet
import Tensors

/// Word + position + token-type embeddings, then LayerNorm.
package final class BertEmbeddings: Module {
    let wordEmbeddings: Embedding, positionEmbeddings: Embedding, tokenTypeEmbeddings: Embedding
    let layerNorm: LayerNorm

    /// Embedding tables for `config`.
    package init(_ config: CLIPConfig) {
        wordEmbeddings = Embedding(config.vocabSize, config.textHiddenSize)
        positionEmbeddings = Embedding(config.textMaxPositionEmbeddings, config.textHiddenSize)
        tokenTypeEmbeddings = Embedding(config.textTypeVocabSize, config.textHiddenSize)
        layerNorm = LayerNorm(config.textHiddenSize, eps: 1e-12)
        dropout = Dropout(Float(config.textHiddenDropoutProb), seed: 0x6E6D)
        super.init()
        register("word_embeddings", wordEmbeddings)
        register("position_embeddings", positionEmbeddings)
        register("token_type_embeddings", tokenTypeEmbeddings)
        register("LayerNorm", layerNorm)
        register("dropout", dropout)  // no parameters; registered so that `train()` reaches it
    }

    /// Dropout after the LayerNorm (`hidden_dropout_prob`; active in training mode only).
    let dropout: Dropout

    /// `ids` (`[batch, seq]`, flat) → `[batch, seq, hidden]`.
    package func callAsFunction(_ ids: [Int32], batch: Int, seq: Int) -> Variable {
        let w = wordEmbeddings.weight.value.lastDim
        let words: Variable = wordEmbeddings(ids)
        let pos = positionEmbeddings.weight.variable.rows(0..<seq)  // position ids 0..<seq
        let type0 = tokenTypeEmbeddings.weight.variable.rows(0..<1).reshaped([w])  // token type 0 everywhere
        let x = add(add(words.reshaped([batch, seq, w]), pos), type0)
        return dropout(layerNorm(x))
    }

    /// Packed `ids` (`[texts.totalRows]`, each text's tokens in order) → `[texts.totalRows, hidden]`: each row the
    /// bits of its position in the padded call (the same sums, position ids counted from each text's start).
    package func callAsFunction(_ ids: [Int32], texts: RaggedBatch) -> Variable {
        precondition(ids.count == texts.totalRows, "BertEmbeddings: \(ids.count) ids for \(texts.totalRows) packed rows")
        let w = wordEmbeddings.weight.value.lastDim
        let words: Variable = wordEmbeddings(ids)
        let pos: Variable = positionEmbeddings(texts.positions.map { Int32($0) })
        let type0 = tokenTypeEmbeddings.weight.variable.rows(0..<1).reshaped([w])
        return dropout(layerNorm(add(add(words, pos), type0)))
    }
}

/// One encoder layer: self-attention with output LayerNorm, then the GELU feed-forward with output LayerNorm.
package final class BertLayer: Module {
    let query: Linear, key: Linear, value: Linear
    let attentionOutput: Linear, attentionNorm: LayerNorm
    let intermediate: Linear, output: Linear, outputNorm: LayerNorm
    let heads: Int
    /// Dropout after the attention output and after the feed-forward output (`hidden_dropout_prob`).
    let attentionDropout: Dropout, outputDropout: Dropout
    /// `attention_probs_dropout_prob`, applied to attention probabilities in training mode (its generator seeds each call's masks).
    let attentionProbsDropout: Dropout

    /// A layer for `config`.
    package init(_ config: CLIPConfig) {
        let h = config.textHiddenSize
        query = Linear(h, h); key = Linear(h, h); value = Linear(h, h)
        attentionOutput = Linear(h, h); attentionNorm = LayerNorm(h, eps: 1e-12)
        intermediate = Linear(h, config.textIntermediateSize)
        output = Linear(config.textIntermediateSize, h); outputNorm = LayerNorm(h, eps: 1e-12)
        heads = config.textNumAttentionHeads
        attentionDropout = Dropout(Float(config.textHiddenDropoutProb), seed: 0xA77E)
        outputDropout = Dropout(Float(config.textHiddenDropoutProb), seed: 0x0B7)
        attentionProbsDropout = Dropout(Float(config.textAttentionProbsDropoutProb), seed: 0xA7B5)
        super.init()
        let attention = register("attention", Module())
        let selfAttention = attention.register("self", Module())
        selfAttention.register("query", query)
        selfAttention.register("key", key)
        selfAttention.register("value", value)
        selfAttention.register("dropout", attentionProbsDropout)
        let attOut = attention.register("output", Module())
        attOut.register("dense", attentionOutput)
        attOut.register("LayerNorm", attentionNorm)
        attOut.register("dropout", attentionDropout)
        register("intermediate", Module()).register("dense", intermediate)
        let out = register("output", Module())
        out.register("dense", output)
        out.register("LayerNorm", outputNorm)
        out.register("dropout", outputDropout)
    }

    /// `x [batch, seq, hidden]`, `keyBias [batch, seq]` → `[batch, seq, hidden]`; with `firstTokenOnly`,
    /// `[batch, 1, hidden]` for `[CLS]` alone (rows are independent after attention, so it is the same value).
    package func callAsFunction(_ x: Variable, keyBias: Tensor, firstTokenOnly: Bool = false) -> Variable {
        let (b, l, w) = (x.shape[0], x.shape[1], x.shape[2])
        let q = query(firstTokenOnly ? firstRows(x) : x)
        let probsDropout =
            isTraining && attentionProbsDropout.p > 0
            ? AttentionDropout(p: attentionProbsDropout.p, seed: attentionProbsDropout.nextSeed()) : nil
        let ctx = multiHeadAttention(
            q: q, k: key(x), v: value(x), batch: b, lq: q.shape[1], lk: l,
            heads: heads, headDim: w / heads, keyBias: keyBias, dropout: probsDropout)
        let a = attentionNorm(add(attentionDropout(attentionOutput(ctx)), firstTokenOnly ? firstRows(x) : x))
        return outputNorm(add(outputDropout(output(intermediate(a), after: .gelu)), a))
    }

    /// Packed texts: `x [texts.totalRows, hidden]`, `keyBias [texts.totalRows]` → `[texts.totalRows, hidden]`, each
    /// text attending over its own rows alone; with `firstTokenOnly`, `[texts.count, hidden]` for each text's
    /// `[CLS]`. Every step but attention is per row, and attention per text, so each row is the bits of the padded
    /// call's row (whose padded keys were masked to exact zeros).
    package func callAsFunction(_ x: Variable, texts: RaggedBatch, keyBias: Tensor, firstTokenOnly: Bool = false) -> Variable {
        let w = x.shape[1]
        let queries = firstTokenOnly ? RaggedBatch(singleRows: texts.count) : texts
        // The [CLS] rows, as `gatherRows` picks them from a batch of one packed sequence.
        let residual =
            firstTokenOnly
            ? gatherRows(x.reshaped([1, texts.totalRows, w]), indices: texts.firstRows, keep: texts.count).reshaped([texts.count, w]) : x
        let ctx = multiHeadAttention(
            q: query(residual), queries: queries, k: key(x), v: value(x), keys: texts, heads: heads, headDim: w / heads,
            keyBias: keyBias)
        let a = attentionNorm(add(attentionDropout(attentionOutput(ctx)), residual))
        return outputNorm(add(outputDropout(output(intermediate(a), after: .gelu)), a))
    }
}

/// BERT without the pooler: embeddings and encoder layers.
package final class BertModel: Module {
    let embeddings: BertEmbeddings
    let layers: ModuleList<BertLayer>
    /// Recompute each encoder layer in the backward pass instead of keeping its activations
    /// (`set_grad_checkpointing`; training only).
    package var gradientCheckpointing = false

    /// A BERT for `config`.
    package init(_ config: CLIPConfig) {
        embeddings = BertEmbeddings(config)
        layers = ModuleList((0..<config.textNumHiddenLayers).map { _ in BertLayer(config) })
        super.init()
        register("embeddings", embeddings)
        register("encoder", Module()).register("layer", layers)
    }

    /// Token ids (flat `[batch, seq]`) with attention on ids ≠ `padId` → last hidden states `[batch, seq, hidden]`,
    /// or `[batch, 1, hidden]` (the `[CLS]` position) with `clsOnly`, skipping the last layer's other rows.
    package func callAsFunction(_ ids: [Int32], batch: Int, seq: Int, padId: Int32 = 0, clsOnly: Bool = false) -> Variable {
        precondition(ids.count == batch * seq, "BertModel: \(ids.count) ids for [\(batch), \(seq)]")
        let bias = Tensor(shape: [batch, seq], scalars: ids.map { $0 == padId ? -10000 : 0 })
        var x = embeddings(ids, batch: batch, seq: seq)
        for (i, layer) in layers.items.enumerated() {
            let firstTokenOnly = clsOnly && i == layers.items.count - 1
            if gradientCheckpointing && isTraining {
                x = checkpointed(x, prepare: layer.randomStateRestorer()) { layer($0, keyBias: bias, firstTokenOnly: firstTokenOnly) }
            } else {
                x = layer(x, keyBias: bias, firstTokenOnly: firstTokenOnly)
            }
        }
        return clsOnly && layers.items.isEmpty ? firstRows(x) : x
    }

    /// Packed token ids (`[texts.totalRows]`, each text's tokens in order, no padding after a text needed) with
    /// attention on ids ≠ `padId` within each text → last hidden states `[texts.totalRows, hidden]`, or
    /// `[texts.count, hidden]` (each text's `[CLS]`) with `clsOnly`, skipping the last layer's other rows.
    /// Each text costs its own length rather than the batch's longest, and its rows are the bits of the padded
    /// call's. Inference only: training keeps the padded layout, where the reference draws its dropout masks.
    package func callAsFunction(packed ids: [Int32], texts: RaggedBatch, padId: Int32 = 0, clsOnly: Bool = false) -> Variable {
        precondition(!isTraining, "BertModel: packed texts are for inference; training takes the padded batch")
        precondition(texts.lengths.allSatisfy { $0 > 0 }, "BertModel: an empty text (a text keeps at least its first position)")
        let bias = Tensor(shape: [ids.count], scalars: ids.map { $0 == padId ? -10000 : 0 })
        var x = embeddings(ids, texts: texts)
        for (i, layer) in layers.items.enumerated() {
            x = layer(x, texts: texts, keyBias: bias, firstTokenOnly: clsOnly && i == layers.items.count - 1)
        }
        guard clsOnly && layers.items.isEmpty else { return x }
        return gatherRows(x.reshaped([1, texts.totalRows, x.shape[1]]), indices: texts.firstRows, keep: texts.count)
            .reshaped([texts.count, x.shape[1]])
    }
}
