// The training step against the reference (`Tests/Fixtures/training/`, made by `make_fixtures.py`): vit-tiny in
// train mode on one batch of 8 images and 8 texts — the loss, every parameter's gradient, then five AdamW
// steps with the reference's two parameter groups and cosine schedule. Tolerances are the fixtures README's:
// loss ≤ 1e-5 relative, gradients ≤ 1e-4 × max(1, max |expected|), weights after five steps ≤ 1e-4 (same rule).

import Checkpoints
import ChineseCLIP
import Foundation
import NeuralNet
import Tensors
import TestSupport
import XCTest

final class TrainingStepParityTests: XCTestCase {
    struct Expected: Decodable {
        struct Optimizer: Decodable { let lr: Double; let betas: [Double]; let eps: Double; let wd: Double; let warmup: Int; let total_steps: Int }
        let first_loss: Double
        let losses: [Double]
        let lrs: [Double]
        let optimizer: Optimizer
        let no_decay: [String]
    }

    let expected: Expected = {
        let url = fixtures.appendingPathComponent("training/expected.json")
        return try! JSONDecoder().decode(Expected.self, from: Data(contentsOf: url))
    }()

    /// vit-tiny with the fixture's initial weights, in training mode, every parameter requiring a gradient.
    func makeModel() throws -> CLIP {
        let config = try CLIPConfig.load(contentsOf: fixtures.appendingPathComponent("models/vit-tiny.json"))
        let model = CLIP(config)
        let initial = try loadFixture("training/init.safetensors")
        try model.load(stateDict: Dictionary(uniqueKeysWithValues: initial.entries.map { ($0.key, $0.value.tensor.copy()) }))
        model.train()
        model.requireGradients()
        return model
    }

    /// The batch: images `[8, 3, 64, 64]` and token ids `[8, 24]` (flat).
    func batch() throws -> (images: Tensor, tokens: [Int32], count: Int) {
        let b = try loadFixture("training/batch.safetensors")
        let ids = try XCTUnwrap(b["tokens"]?.integers).map { Int32($0) }
        let images = try b.tensor("images")
        return (images, ids, images.shape[0])
    }

    /// The reference's `loss_fn`: forward in train mode, mean of the two cross-entropies.
    func loss(_ model: CLIP, _ batch: (images: Tensor, tokens: [Int32], count: Int)) -> Variable {
        let (img, txt, scale) = model.forward(images: Variable(batch.images), texts: batch.tokens, textBatch: batch.count)
        return CLIP.contrastiveLoss(imageFeatures: img, textFeatures: txt, logitScale: scale)
    }

    func testFirstLossAndGradients() throws {
        let model = try makeModel(), data = try batch()
        let l = loss(model, data)
        let value = Double(l.value.data[0])
        XCTAssertLessThanOrEqual(
            abs(value - expected.first_loss), 1e-5 * abs(expected.first_loss),
            "first loss \(value), expected \(expected.first_loss)")
        l.backward()
        let grads = try loadFixture("training/grads.safetensors")
        let named = model.trainableParameters()
        XCTAssertEqual(Set(named.map(\.0)), Set(grads.entries.map(\.key)), "parameters with gradients")
        for (name, p) in named {
            guard let g = p.grad else { XCTFail("no gradient for \(name)"); continue }
            assertClose(g, try grads.tensor(name).reshaped(g.shape), tolerance: 1e-4, "grad \(name)")
        }
    }

    /// The no-decay group is exactly the reference's list (BERT's `LayerNorm.weight` is decayed; its biases are not).
    func testParameterGroups() throws {
        let model = try makeModel()
        let groups = AdamW.referenceGroups(model, weightDecay: expected.optimizer.wd, learningRate: expected.optimizer.lr)
        XCTAssertEqual(groups[0].weightDecay, 0)
        XCTAssertEqual(groups[0].parameters.map(\.0), expected.no_decay)
        XCTAssertEqual(groups[1].weightDecay, 0.2)
        XCTAssertTrue(groups[1].parameters.map(\.0).contains("bert.embeddings.LayerNorm.weight"))
        XCTAssertEqual(groups[0].parameters.count + groups[1].parameters.count, model.trainableParameters().count)
    }

    /// With BERT dropout on, training-mode forwards are random (and differ from evaluation), evaluation mode is
    /// exactly inference, and every parameter still gets a gradient.
    func testDropoutOnlyInTraining() throws {
        var config = try CLIPConfig.load(contentsOf: fixtures.appendingPathComponent("models/vit-tiny.json"))
        config.textHiddenDropoutProb = 0.1
        config.textAttentionProbsDropoutProb = 0.1
        let model = CLIP(config)
        let initial = try loadFixture("training/init.safetensors")
        try model.load(stateDict: Dictionary(uniqueKeysWithValues: initial.entries.map { ($0.key, $0.value.tensor.copy()) }))
        let data = try batch()
        let inference = model.encodeText(data.tokens, batch: data.count)
        model.train()
        model.requireGradients()
        let first = model.textFeatures(data.tokens, batch: data.count), second = model.textFeatures(data.tokens, batch: data.count)
        XCTAssertNotEqual(first.value.scalars, second.value.scalars)
        XCTAssertNotEqual(first.value.scalars, inference.scalars)
        let l = loss(model, data)
        l.backward()
        for (name, p) in model.trainableParameters() { XCTAssertNotNil(p.grad, "no gradient for \(name)") }
        model.eval()
        model.requireGradients(false)
        XCTAssertEqual(model.encodeText(data.tokens, batch: data.count).scalars, inference.scalars)
    }

    func testCosineSchedule() {
        let o = expected.optimizer
        let schedule = CosineSchedule(baseLearningRate: o.lr, warmupSteps: o.warmup, totalSteps: o.total_steps)
        for (step, lr) in expected.lrs.enumerated() {
            XCTAssertEqual(schedule.learningRate(at: step), lr, accuracy: 1e-15, "lr of step \(step)")
        }
    }

    func testFiveAdamWSteps() throws {
        let model = try makeModel(), data = try batch()
        let o = expected.optimizer
        let optimizer = AdamW(
            groups: AdamW.referenceGroups(model, weightDecay: o.wd, learningRate: o.lr),
            betas: (o.betas[0], o.betas[1]), eps: o.eps)
        let schedule = CosineSchedule(baseLearningRate: o.lr, warmupSteps: o.warmup, totalSteps: o.total_steps)
        for step in 0..<expected.losses.count {
            let lr = schedule.learningRate(at: step)
            XCTAssertEqual(lr, expected.lrs[step], accuracy: 1e-15)
            optimizer.setLearningRate(lr)
            model.zeroGrad()
            let l = loss(model, data)
            l.backward()
            optimizer.step()
            let value = Double(l.value.data[0]), want = expected.losses[step]
            XCTAssertLessThanOrEqual(abs(value - want), 1e-5 * abs(want), "loss of step \(step): \(value), expected \(want)")
        }
        let after = try loadFixture("training/after5.safetensors")
        let state = model.stateDict()
        XCTAssertEqual(Set(state.keys), Set(after.entries.map(\.key)))
        for (name, value) in state.sorted(by: { $0.key < $1.key }) {
            assertClose(value, try after.tensor(name).reshaped(value.shape), tolerance: 1e-4, "after 5 steps: \(name)")
        }
    }
}
