// The model as two ONNX graphs, built from the loaded modules so that every weight is the one our own forward uses:
// `vision.onnx` (cn-clip's `encode_image`) and `text.onnx` (`encode_text`), each with a dynamic batch (and, for
// text, a dynamic sequence length), input and output names as cn-clip's `deploy/pytorch_to_onnx.py` names them.
//
// The graphs follow the reference's arithmetic, op for op where ONNX has the op: the patch embedding is a Conv,
// attention is MatMul-scale-Softmax-MatMul per head (keys of padding biased by -10000, `(1 - mask) * -10000` as
// cn-clip's BERT computes it), the ViT MLP's QuickGELU is `x * sigmoid(1.702 x)` and BERT's GELU the exact erf form,
// LayerNormalization from opset 17 (below it, its definition in Reduce/Sub/Div ops). The half-precision graph keeps
// float32 inputs and outputs, as onnxmltools' `convert_float_to_float16(keep_io_types=True)` that cn-clip uses does,
// and its layer norms in float32.

import Essentials
import Foundation
import Imaging
import NeuralNet
import Tensors

/// Writes a model as ONNX graphs (`cnclip export onnx`).
package enum ONNXExport {
    /// The opsets the graphs are written for.
    package static let opsets = 13...21
    /// The default opset: the first with LayerNormalization.
    package static let defaultOpset = 17

    /// The vision graph: `image` `[batch, 3, R, R]` float32 → `unnorm_image_features` `[batch, embed]`.
    package static func visionGraph(_ clip: CLIP, opset: Int, half: Bool) -> ONNXGraph {
        let b = Builder(name: "cnclip_vision", opset: opset, half: half)
        let r = clip.config.imageResolution
        let image = b.graph.input("image", .float, [.symbolic("batch"), .fixed(3), .fixed(r), .fixed(r)])
        let x = b.toCompute(image)
        let features: String
        if let vit = clip.visual as? VisualTransformer {
            features = b.visualTransformer(vit, x)
        } else {
            features = b.modifiedResNet(clip.visual as! ModifiedResNet, x)
        }
        b.graph.output(b.toFloat(features), as: "unnorm_image_features", .float, [.symbolic("batch"), .fixed(clip.config.embedDim)])
        return b.graph
    }

    /// The text graph: `text` (token ids) and `attention_mask` (1 for tokens, 0 for padding), int64 `[batch, seq]` →
    /// `unnorm_text_features` `[batch, embed]`.
    package static func textGraph(_ clip: CLIP, opset: Int, half: Bool) -> ONNXGraph {
        let b = Builder(name: "cnclip_text", opset: opset, half: half)
        let ids = b.graph.input("text", .int64, [.symbolic("batch"), .symbolic("sequence")])
        let mask = b.graph.input("attention_mask", .int64, [.symbolic("batch"), .symbolic("sequence")])
        let hidden = b.bert(clip.bert, ids: ids, mask: mask)
        let cls = b.graph.node("Gather", [hidden, b.graph.int64s([0], shape: [])], scope: "bert", attributes: [("axis", .int(1))])
        let features = b.graph.node("MatMul", [cls, b.weight("text_projection", clip.textProjection)], scope: "text_projection")
        b.graph.output(b.toFloat(features), as: "unnorm_text_features", .float, [.symbolic("batch"), .fixed(clip.config.embedDim)])
        return b.graph
    }

    /// Writes `vision.onnx`, `text.onnx`, `preprocessing.json` and the vocabulary into the existing folder `folder`.
    package static func write(
        _ clip: CLIP, vocabulary: URL, contextLength: Int, opset: Int, half: Bool, source: String, producerVersion: String, into folder: URL
    ) throws {
        let precision = half ? "fp16" : "fp32"
        let metadata = [("config", try clip.config.canonicalJSON()), ("precision", precision), ("source", source)]
        try withFileErrors {
            for (file, graph) in [("vision.onnx", visionGraph), ("text.onnx", textGraph)] {
                try graph(clip, opset, half).write(
                    to: folder.appendingPathComponent(file), opset: opset, producerVersion: producerVersion, metadata: metadata)
            }
            try AtomicOutput.write(
                try preprocessingJSON(clip, contextLength: contextLength, opset: opset, precision: precision),
                to: folder.appendingPathComponent("preprocessing.json").path)
            try copyVocabulary(vocabulary, into: folder)
        }
    }

    /// What a client must do around the graphs: cn-clip's `image_transform` and `tokenize`, and the similarity scale.
    static func preprocessingJSON(_ clip: CLIP, contextLength: Int, opset: Int, precision: String) throws -> String {
        let r = clip.config.imageResolution
        let object: [String: Any] = [
            "image": [
                "input": "image", "layout": "NCHW float32 [batch, 3, \(r), \(r)]", "resolution": r,
                "resize": "bicubic straight to \(r)x\(r), no crop (PIL Image.resize, as cn-clip's image_transform)",
                "color": "RGB", "rescale_factor": 1.0 / 255.0, "mean": CLIPNormalization.meanAsWritten,
                "std": CLIPNormalization.stdAsWritten, "output": "unnorm_image_features",
            ],
            "text": [
                "inputs": ["text", "attention_mask"], "dtype": "int64 [batch, sequence]", "vocab_file": "vocab.txt",
                "context_length": contextLength, "do_lower_case": true, "cls_id": 101, "sep_id": 102, "pad_id": 0,
                "rule":
                    "[CLS] + WordPiece ids[:context_length - 2] + [SEP], padded with [PAD] (cn_clip.clip.tokenize); attention_mask = 1 where text != [PAD]",
                "output": "unnorm_text_features",
            ],
            "features": "unnormalised (encode_image / encode_text); L2-normalise them before taking cosine similarities",
            "logit_scale": Double(clip.logitScale.value.scalars.first ?? 0),
            "embed_dim": clip.config.embedDim, "opset": opset, "precision": precision,
        ]
        return String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self) + "\n"
    }

    /// The value of a parameter as our forward computes with it (an int8 weight dequantized).
    static func value(_ p: Parameter) -> Tensor { p.fp32Value }
}

/// The ops of the export, in the graph's compute type.
private final class Builder {
    let graph: ONNXGraph
    let opset: Int
    let half: Bool

    init(name: String, opset: Int, half: Bool) {
        graph = ONNXGraph(name: name, computeType: half ? .float16 : .float)
        self.opset = opset
        self.half = half
    }

    /// A graph input in float32, cast to the compute type.
    func toCompute(_ x: String) -> String {
        half ? graph.node("Cast", [x], scope: "input", attributes: [("to", .int(Int(ONNXGraph.ElementType.float16.rawValue)))]) : x
    }

    /// A value in the compute type, cast to float32 for a graph output.
    func toFloat(_ x: String) -> String {
        half ? graph.node("Cast", [x], scope: "output", attributes: [("to", .int(Int(ONNXGraph.ElementType.float.rawValue)))]) : x
    }

    func weight(_ name: String, _ p: Parameter) -> String { graph.weight(name, ONNXExport.value(p)) }

    /// `x [..., in] · W^T + b` for a `Linear` named `name` (its weight stored transposed, `[in, out]`).
    func linear(_ x: String, _ l: Linear, _ name: String) -> String {
        let w = graph.weight(name + ".weight^T", transposed(ONNXExport.value(l.weight)))
        let y = graph.node("MatMul", [x, w], scope: name)
        guard let bias = l.bias else { return y }
        return graph.node("Add", [y, weight(name + ".bias", bias)], scope: name)
    }

    /// LayerNorm over the last axis.
    func layerNorm(_ x: String, _ ln: LayerNorm, _ name: String) -> String {
        // A half-precision graph normalises in float32: the mean and variance of hundreds of halves lose the most (on
        // ViT-B-16@RoBERTa-base, text features within 1.4e-3 of fp32 with half-precision layer norms, 0.95e-3 without).
        let type: ONNXGraph.ElementType = .float
        let x32 = half ? graph.node("Cast", [x], scope: name, attributes: [("to", .int(Int(type.rawValue)))]) : x
        let w = graph.weight(name + ".weight", ONNXExport.value(ln.weight), type: type)
        let bias = graph.weight(name + ".bias", ONNXExport.value(ln.bias), type: type)
        let y: String
        if opset >= 17 {
            y = graph.node("LayerNormalization", [x32, w, bias], scope: name, attributes: [("axis", .int(-1)), ("epsilon", .float(ln.eps))])
        } else {
            let mean = reduceMean(x32, axis: -1, name)
            let d = graph.node("Sub", [x32, mean], scope: name)
            let variance = reduceMean(graph.node("Mul", [d, d], scope: name), axis: -1, name)
            let std = graph.node("Sqrt", [graph.node("Add", [variance, graph.scalar(ln.eps, type: type)], scope: name)], scope: name)
            y = graph.node("Add", [graph.node("Mul", [graph.node("Div", [d, std], scope: name), w], scope: name), bias], scope: name)
        }
        return half ? graph.node("Cast", [y], scope: name, attributes: [("to", .int(Int(ONNXGraph.ElementType.float16.rawValue)))]) : y
    }

    /// The mean over `axis`, kept as a size-1 axis (ReduceMean's axes became an input in opset 18).
    func reduceMean(_ x: String, axis: Int, _ scope: String) -> String {
        if opset >= 18 { return graph.node("ReduceMean", [x, graph.int64s([axis])], scope: scope, attributes: [("keepdims", .int(1))]) }
        return graph.node("ReduceMean", [x], scope: scope, attributes: [("axes", .ints([axis])), ("keepdims", .int(1))])
    }

    /// `[b, l, heads·d]` → `[b, heads, l, d]` (or `[b, heads, d, l]` for keys).
    func splitHeads(_ x: String, heads: Int, keys: Bool, _ scope: String) -> String {
        let r = graph.node("Reshape", [x, graph.int64s([0, 0, heads, -1])], scope: scope)
        return graph.node("Transpose", [r], scope: scope, attributes: [("perm", .ints(keys ? [0, 2, 3, 1] : [0, 2, 1, 3]))])
    }

    /// Scaled dot-product attention over heads: q `[b, lq, w]`, k and v `[b, lk, w]`, an additive key bias
    /// broadcastable to `[b, heads, lq, lk]` → `[b, lq, w]`.
    func attention(q: String, k: String, v: String, heads: Int, headDim: Int, keyBias: String?, _ scope: String) -> String {
        let qh = splitHeads(q, heads: heads, keys: false, scope), kh = splitHeads(k, heads: heads, keys: true, scope)
        let vh = splitHeads(v, heads: heads, keys: false, scope)
        var scores = graph.node("MatMul", [qh, kh], scope: scope)
        scores = graph.node("Mul", [scores, graph.scalar(1 / Float(headDim).squareRoot())], scope: scope)
        if let keyBias { scores = graph.node("Add", [scores, keyBias], scope: scope) }
        let probabilities = graph.node("Softmax", [scores], scope: scope, attributes: [("axis", .int(-1))])
        let context = graph.node(
            "Transpose", [graph.node("MatMul", [probabilities, vh], scope: scope)], scope: scope, attributes: [("perm", .ints([0, 2, 1, 3]))])
        return graph.node("Reshape", [context, graph.int64s([0, 0, -1])], scope: scope)
    }

    // MARK: ViT

    func visualTransformer(_ vit: VisualTransformer, _ image: String) -> String {
        let p = vit.patchSize, w = vit.width
        let conv = graph.node(
            "Conv", [image, weight("visual.conv1.weight", vit.conv1.weight)], scope: "visual.conv1",
            attributes: [("kernel_shape", .ints([p, p])), ("strides", .ints([p, p]))])  // [b, w, g, g]
        let flat = graph.node("Reshape", [conv, graph.int64s([0, w, -1])], scope: "visual")
        let patches = graph.node("Transpose", [flat], scope: "visual", attributes: [("perm", .ints([0, 2, 1]))])  // [b, g², w]
        let cls = graph.weight("visual.class_embedding", ONNXExport.value(vit.classEmbedding).reshaped([1, 1, w]))
        let x0 = graph.node("Concat", [expandBatch(cls, like: patches, "visual"), patches], scope: "visual", attributes: [("axis", .int(1))])
        var x = graph.node("Add", [x0, weight("visual.positional_embedding", vit.positionalEmbedding)], scope: "visual")
        x = layerNorm(x, vit.lnPre, "visual.ln_pre")
        for (i, block) in vit.blocks.items.enumerated() { x = residualBlock(block, x, "visual.transformer.resblocks.\(i)") }
        let first = graph.node("Gather", [x, graph.int64s([0], shape: [])], scope: "visual", attributes: [("axis", .int(1))])
        return graph.node("MatMul", [layerNorm(first, vit.lnPost, "visual.ln_post"), weight("visual.proj", vit.proj)], scope: "visual.proj")
    }

    /// `value` `[1, 1, w]` repeated along a batch axis as long as `like`'s (`[b, …]`) → `[b, 1, w]`.
    func expandBatch(_ value: String, like: String, _ scope: String) -> String {
        let batch = graph.node("Slice", [graph.node("Shape", [like], scope: scope), graph.int64s([0]), graph.int64s([1])], scope: scope)
        let shape = graph.node("Concat", [batch, graph.int64s([1, 1])], scope: scope, attributes: [("axis", .int(0))])
        return graph.node("Expand", [value, shape], scope: scope)
    }

    func residualBlock(_ block: ResidualAttentionBlock, _ x: String, _ name: String) -> String {
        let a = block.attn, w = a.inProjWeight.shape[1]
        let inProj = ONNXExport.value(a.inProjWeight), inBias = ONNXExport.value(a.inProjBias)
        let h = layerNorm(x, block.ln1, name + ".ln_1")
        var qkv: [String] = []
        for (k, part) in ["q", "k", "v"].enumerated() {
            let rows = (k * w)..<((k + 1) * w)
            let wt = graph.weight("\(name).attn.in_proj_weight[\(part)]^T", transposed(inProj.rows(rows).copy()))
            let bias = graph.weight("\(name).attn.in_proj_bias[\(part)]", inBias.reshaped([3 * w, 1]).rows(rows).copy().reshaped([w]))
            qkv.append(graph.node("Add", [graph.node("MatMul", [h, wt], scope: name + ".attn"), bias], scope: name + ".attn"))
        }
        let context = attention(q: qkv[0], k: qkv[1], v: qkv[2], heads: a.heads, headDim: w / a.heads, keyBias: nil, name + ".attn")
        let x1 = graph.node("Add", [x, linear(context, a.outProj, name + ".attn.out_proj")], scope: name)
        let fc = linear(layerNorm(x1, block.ln2, name + ".ln_2"), block.cFc, name + ".mlp.c_fc")
        let gelu = graph.node(
            "Mul", [fc, graph.node("Sigmoid", [graph.node("Mul", [fc, graph.scalar(1.702)], scope: name + ".mlp")], scope: name + ".mlp")],
            scope: name + ".mlp")
        return graph.node("Add", [x1, linear(gelu, block.cProj, name + ".mlp.c_proj")], scope: name)
    }

    // MARK: BERT

    func bert(_ bert: BertModel, ids: String, mask: String) -> String {
        let e = bert.embeddings, scope = "bert.embeddings"
        let words = graph.node("Gather", [weight(scope + ".word_embeddings.weight", e.wordEmbeddings.weight), ids], scope: scope)
        let seq = graph.node("Slice", [graph.node("Shape", [ids], scope: scope), graph.int64s([1]), graph.int64s([2])], scope: scope)
        let positions = graph.node(
            "Slice", [weight(scope + ".position_embeddings.weight", e.positionEmbeddings.weight), graph.int64s([0]), seq, graph.int64s([0])],
            scope: scope)  // rows 0..<seq: position ids 0, 1, …
        let type0 = graph.weight(scope + ".token_type_embeddings.weight[0]", ONNXExport.value(e.tokenTypeEmbeddings.weight).rows(0..<1).copy())
        var x = graph.node("Add", [graph.node("Add", [words, positions], scope: scope), type0], scope: scope)
        x = layerNorm(x, e.layerNorm, scope + ".LayerNorm")
        // cn-clip's extended attention mask: (1 - mask) * -10000, broadcast over heads and queries → [b, 1, 1, seq].
        let m = graph.node("Cast", [mask], scope: "bert", attributes: [("to", .int(Int(graph.computeType.rawValue)))])
        let inverted = graph.node("Sub", [graph.scalar(1), m], scope: "bert")
        let bias = graph.node(
            "Unsqueeze", [graph.node("Mul", [inverted, graph.scalar(-10000)], scope: "bert"), graph.int64s([1, 2])], scope: "bert")
        for (i, layer) in bert.layers.items.enumerated() { x = bertLayer(layer, x, keyBias: bias, "bert.encoder.layer.\(i)") }
        return x
    }

    func bertLayer(_ l: BertLayer, _ x: String, keyBias: String, _ name: String) -> String {
        let s = name + ".attention.self"
        let w = l.query.weight.shape[0]
        let context = attention(
            q: linear(x, l.query, s + ".query"), k: linear(x, l.key, s + ".key"), v: linear(x, l.value, s + ".value"),
            heads: l.heads, headDim: w / l.heads, keyBias: keyBias, s)
        let attended = graph.node("Add", [linear(context, l.attentionOutput, name + ".attention.output.dense"), x], scope: name)
        let a = layerNorm(attended, l.attentionNorm, name + ".attention.output.LayerNorm")
        let hidden = gelu(linear(a, l.intermediate, name + ".intermediate.dense"), name + ".intermediate")
        let out = graph.node("Add", [linear(hidden, l.output, name + ".output.dense"), a], scope: name)
        return layerNorm(out, l.outputNorm, name + ".output.LayerNorm")
    }

    /// The exact GELU: `0.5 · x · (1 + erf(x / √2))`.
    func gelu(_ x: String, _ scope: String) -> String {
        let erf = graph.node("Erf", [graph.node("Div", [x, graph.scalar(Float(2).squareRoot())], scope: scope)], scope: scope)
        let y = graph.node("Mul", [x, graph.node("Add", [erf, graph.scalar(1)], scope: scope)], scope: scope)
        return graph.node("Mul", [y, graph.scalar(0.5)], scope: scope)
    }

    // MARK: ResNet

    func conv(_ x: String, _ c: Conv2d, _ name: String) -> String {
        let k = c.weight.shape[2]
        return graph.node(
            "Conv", [x, weight(name + ".weight", c.weight)], scope: name,
            attributes: [
                ("kernel_shape", .ints([k, k])), ("strides", .ints([c.stride, c.stride])),
                ("pads", .ints([c.padding, c.padding, c.padding, c.padding])),
            ])
    }

    func batchNorm(_ x: String, _ bn: BatchNorm2d, _ name: String, relu: Bool) -> String {
        let y = graph.node(
            "BatchNormalization",
            [
                x, weight(name + ".weight", bn.weight), weight(name + ".bias", bn.bias), weight(name + ".running_mean", bn.runningMean),
                weight(name + ".running_var", bn.runningVar),
            ],
            scope: name, attributes: [("epsilon", .float(bn.eps))])
        return relu ? graph.node("Relu", [y], scope: name) : y
    }

    func avgPool(_ x: String, _ k: Int, _ scope: String) -> String {
        graph.node("AveragePool", [x], scope: scope, attributes: [("kernel_shape", .ints([k, k])), ("strides", .ints([k, k]))])
    }

    func modifiedResNet(_ net: ModifiedResNet, _ image: String) -> String {
        var x = batchNorm(conv(image, net.conv1, "visual.conv1"), net.bn1, "visual.bn1", relu: true)
        x = batchNorm(conv(x, net.conv2, "visual.conv2"), net.bn2, "visual.bn2", relu: true)
        x = batchNorm(conv(x, net.conv3, "visual.conv3"), net.bn3, "visual.bn3", relu: true)
        x = avgPool(x, 2, "visual.avgpool")
        for (s, stage) in net.stages.enumerated() {
            for (i, block) in stage.items.enumerated() { x = bottleneck(block, x, "visual.layer\(s + 1).\(i)") }
        }
        return attentionPool(net.attnpool, x, "visual.attnpool")
    }

    func bottleneck(_ b: Bottleneck, _ x: String, _ name: String) -> String {
        var out = batchNorm(conv(x, b.conv1, name + ".conv1"), b.bn1, name + ".bn1", relu: true)
        out = batchNorm(conv(out, b.conv2, name + ".conv2"), b.bn2, name + ".bn2", relu: true)
        if b.stride > 1 { out = avgPool(out, b.stride, name + ".avgpool") }
        out = batchNorm(conv(out, b.conv3, name + ".conv3"), b.bn3, name + ".bn3", relu: false)
        var identity = x
        if let d = b.downsample {
            if b.stride > 1 { identity = avgPool(identity, b.stride, name + ".downsample.-1") }
            identity = batchNorm(conv(identity, d.conv, name + ".downsample.0"), d.bn, name + ".downsample.1", relu: false)
        }
        return graph.node("Relu", [graph.node("Add", [out, identity], scope: name)], scope: name)
    }

    func attentionPool(_ pool: AttentionPool2d, _ x: String, _ name: String) -> String {
        let c = pool.kProj.weight.shape[1]
        let tokens = graph.node(
            "Transpose", [graph.node("Reshape", [x, graph.int64s([0, c, -1])], scope: name)], scope: name, attributes: [("perm", .ints([0, 2, 1]))])
        let mean = reduceMean(tokens, axis: 1, name)  // [n, 1, c]
        let t = graph.node(
            "Add",
            [
                graph.node("Concat", [mean, tokens], scope: name, attributes: [("axis", .int(1))]),
                weight(name + ".positional_embedding", pool.positionalEmbedding),
            ],
            scope: name)
        let first = graph.node("Slice", [t, graph.int64s([0]), graph.int64s([1]), graph.int64s([1])], scope: name)  // the mean token's query
        let context = attention(
            q: linear(first, pool.qProj, name + ".q_proj"), k: linear(t, pool.kProj, name + ".k_proj"), v: linear(t, pool.vProj, name + ".v_proj"),
            heads: pool.heads, headDim: c / pool.heads, keyBias: nil, name)
        return graph.node("Reshape", [linear(context, pool.cProj, name + ".c_proj"), graph.int64s([0, -1])], scope: name)
    }
}
