// The ResNet image tower (RN50), mirroring `cn_clip/clip/model.py` (`Bottleneck`, `AttentionPool2d`,
// `ModifiedResNet`): three-conv stem, anti-aliased (avg-pool) strided bottlenecks, attention pooling.
// BatchNorm uses its running statistics (inference).

import NeuralNet
import Tensors

/// A bottleneck block: 1×1, 3×3, avg-pool when strided, 1×1 (×4 channels), plus the (pooled, projected) identity.
package final class Bottleneck: Module {
    let conv1: Conv2d, bn1: BatchNorm2d, conv2: Conv2d, bn2: BatchNorm2d, conv3: Conv2d, bn3: BatchNorm2d
    let downsample: (conv: Conv2d, bn: BatchNorm2d)?
    let stride: Int

    /// A block from `inplanes` to `planes·4` channels.
    package init(inplanes: Int, planes: Int, stride: Int = 1) {
        conv1 = Conv2d(inplanes, planes, kernel: 1)
        bn1 = BatchNorm2d(planes)
        conv2 = Conv2d(planes, planes, kernel: 3, padding: 1)
        bn2 = BatchNorm2d(planes)
        conv3 = Conv2d(planes, planes * 4, kernel: 1)
        bn3 = BatchNorm2d(planes * 4)
        self.stride = stride
        // The reference names the pool "-1" (no parameters), the conv "0" and the norm "1".
        downsample = (stride > 1 || inplanes != planes * 4) ? (Conv2d(inplanes, planes * 4, kernel: 1), BatchNorm2d(planes * 4)) : nil
        super.init()
        register("conv1", conv1); register("bn1", bn1)
        register("conv2", conv2); register("bn2", bn2)
        register("conv3", conv3); register("bn3", bn3)
        if let downsample {
            let d = register("downsample", Module())
            d.register("0", downsample.conv)
            d.register("1", downsample.bn)
        }
    }

    /// `x [n, inplanes, h, w]` → `[n, planes·4, h/stride, w/stride]`.
    package func callAsFunction(_ x: Variable) -> Variable {
        var out = bn1(conv1(x), relu: true)
        out = bn2(conv2(out), relu: true)
        if stride > 1 { out = avgPool2d(out, kernel: stride) }
        out = bn3(conv3(out))
        var identity = x
        if let downsample {
            if stride > 1 { identity = avgPool2d(identity, kernel: stride) }
            identity = downsample.bn(downsample.conv(identity))
        }
        return relu(add(out, identity))
    }
}

/// Attention pooling: the mean token attends over all spatial tokens; only its output is kept.
package final class AttentionPool2d: Module {
    let positionalEmbedding: Parameter
    let kProj: Linear, qProj: Linear, vProj: Linear, cProj: Linear
    let heads: Int

    /// Pooling over a `spacialDim`² grid of `embedDim` features into `outputDim`.
    package init(spacialDim: Int, embedDim: Int, heads: Int, outputDim: Int) {
        positionalEmbedding = Parameter(shape: [spacialDim * spacialDim + 1, embedDim])
        kProj = Linear(embedDim, embedDim)
        qProj = Linear(embedDim, embedDim)
        vProj = Linear(embedDim, embedDim)
        cProj = Linear(embedDim, outputDim)
        self.heads = heads
        super.init()
        register("positional_embedding", positionalEmbedding)
        register("k_proj", kProj); register("q_proj", qProj); register("v_proj", vProj); register("c_proj", cProj)
    }

    /// `x [n, c, h, w]` → `[n, output]`.
    package func callAsFunction(_ x: Variable) -> Variable {
        let (n, c, hw) = (x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        let l = hw + 1
        // NCHW → [n, hw+1, c] with the spatial mean first, then the positional embedding.
        let t = add(spatialTokens(x), positionalEmbedding.variable)
        // Only the mean token's query is used.
        let q = qProj(firstRows(t)), k = kProj(t), v = vProj(t)
        let att = multiHeadAttention(q: q, k: k, v: v, batch: n, lq: 1, lk: l, heads: heads, headDim: c / heads)
        return cProj(att.reshaped([n, c]))
    }
}

/// The ModifiedResNet image tower.
package final class ModifiedResNet: Module, ImageEncoder {
    /// Input side in pixels.
    package let inputResolution: Int
    let conv1: Conv2d, bn1: BatchNorm2d, conv2: Conv2d, bn2: BatchNorm2d, conv3: Conv2d, bn3: BatchNorm2d
    let stages: [ModuleList<Bottleneck>]
    let attnpool: AttentionPool2d

    /// A ResNet with the reference's constructor arguments.
    package init(layers: [Int], outputDim: Int, heads: Int, inputResolution: Int, width: Int) {
        precondition(layers.count == 4, "ModifiedResNet needs four stage depths")
        self.inputResolution = inputResolution
        conv1 = Conv2d(3, width / 2, kernel: 3, stride: 2, padding: 1)
        bn1 = BatchNorm2d(width / 2)
        conv2 = Conv2d(width / 2, width / 2, kernel: 3, padding: 1)
        bn2 = BatchNorm2d(width / 2)
        conv3 = Conv2d(width / 2, width, kernel: 3, padding: 1)
        bn3 = BatchNorm2d(width)
        var inplanes = width
        var stages: [ModuleList<Bottleneck>] = []
        for (i, blocks) in layers.enumerated() {
            let planes = width << i
            var list = [Bottleneck(inplanes: inplanes, planes: planes, stride: i == 0 ? 1 : 2)]
            inplanes = planes * 4
            for _ in 1..<max(blocks, 1) { list.append(Bottleneck(inplanes: inplanes, planes: planes)) }
            stages.append(ModuleList(Array(list.prefix(blocks))))
        }
        self.stages = stages
        attnpool = AttentionPool2d(spacialDim: inputResolution / 32, embedDim: width * 32, heads: heads, outputDim: outputDim)
        super.init()
        register("conv1", conv1); register("bn1", bn1)
        register("conv2", conv2); register("bn2", bn2)
        register("conv3", conv3); register("bn3", bn3)
        for (i, s) in stages.enumerated() { register("layer\(i + 1)", s) }
        register("attnpool", attnpool)
    }

    /// Images `[batch, 3, res, res]` → features `[batch, output]`.
    package func callAsFunction(_ images: Tensor) -> Tensor { forward(Variable(images)).value }

    /// Images `[batch, 3, res, res]` → features `[batch, output]`, recording gradients for parameters that require
    /// them; BatchNorm uses batch statistics (and updates its running ones) in training mode.
    package func forward(_ images: Variable) -> Variable {
        precondition(
            images.rank == 4 && images.shape[1] == 3 && images.shape[2] == inputResolution && images.shape[3] == inputResolution,
            "ModifiedResNet expects [batch, 3, \(inputResolution), \(inputResolution)], got \(images.shape)")
        var x = bn1(conv1(images), relu: true)
        x = bn2(conv2(x), relu: true)
        x = bn3(conv3(x), relu: true)
        x = avgPool2d(x, kernel: 2)
        for stage in stages { for block in stage.items { x = block(x) } }
        return attnpool(x)
    }
}
