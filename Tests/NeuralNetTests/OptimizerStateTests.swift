// Resuming training restores AdamW exactly: 3 steps, checkpoint (TrainingCheckpoint + AdamWStateDict through
// a real file), a fresh model and optimiser loaded from it, 2 more steps == 5 uninterrupted steps, bit for bit.
// The helpers at the bottom are the glue between NeuralNet's AdamW and Checkpoints' AdamWStateDict (the
// targets do not import each other).

import Checkpoints
import Foundation
import NeuralNet
import Tensors
import XCTest

/// A small model with a decayed (`fc.weight`) and an exempt group (`ln_1.*`, `fc.bias`), as the reference groups them.
private final class Tiny: Module, @unchecked Sendable {
    let ln1 = LayerNorm(4)
    let fc = Linear(4, 3)
    override init() {
        super.init()
        register("ln_1", ln1)
        register("fc", fc)
        // Deterministic, non-trivial starting values.
        for (i, (_, p)) in namedParameters().enumerated() {
            p.value = Tensor(shape: p.value.shape, scalars: (0..<p.value.count).map { Float(sin(Double($0 * 7 + i * 3 + 1))) * 0.5 + (i == 0 ? 1 : 0) })
        }
    }
    func loss(_ x: Tensor, _ targets: [Int]) -> Variable {
        crossEntropy(fc(ln1(Variable(x))), targets: targets)
    }
}

final class OptimizerStateTests: XCTestCase {
    private let x = Tensor(shape: [5, 4], scalars: (0..<20).map { Float(cos(Double($0) * 1.3)) * 2 })
    private let targets = [0, 2, 1, 1, 0]

    private func makeOptimizer(_ m: Tiny) -> AdamW {
        AdamW(groups: AdamW.referenceGroups(m, weightDecay: 0.2, learningRate: 0.05), betas: (0.9, 0.98), eps: 1e-6)
    }

    private func train(_ m: Tiny, _ opt: AdamW, steps: Range<Int>) {
        m.requireGradients()
        for s in steps {
            opt.setLearningRate(0.05 / Double(s + 1)) // a changing learning rate, as the cosine schedule gives
            m.zeroGrad()
            m.loss(x, targets).backward()
            opt.step()
        }
    }

    func testResumeFromCheckpointIsBitExact() throws {
        let straight = Tiny()
        train(straight, makeOptimizer(straight), steps: 0..<5)

        let first = Tiny()
        let opt1 = makeOptimizer(first)
        train(first, opt1, steps: 0..<3)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("optstate-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("epoch_latest.pt")
        try TrainingCheckpoint(epoch: 1, step: 3, name: "tiny", stateDict: first.namedParameters().map { ($0.0, $0.1.value) },
                               optimizer: Self.stateDict(of: opt1).pickleValue).write(to: url)

        let loaded = try TrainingCheckpoint(contentsOf: url)
        XCTAssertEqual(loaded.step, 3)
        let resumed = Tiny()
        for (_, p) in resumed.namedParameters() { p.value = Tensor(shape: p.value.shape) } // forget the init
        try resumed.load(stateDict: Dictionary(uniqueKeysWithValues: loaded.stateDict))
        let opt2 = makeOptimizer(resumed)
        try Self.restore(opt2, from: AdamWStateDict(loaded.optimizer, source: url.path))
        XCTAssertEqual(opt2.exportState().keys.sorted(), [0, 1, 2, 3])
        XCTAssertEqual(opt2.exportState()[0]?.step, 3)
        train(resumed, opt2, steps: 3..<5)

        // The steps did move every parameter (so the comparison below is not vacuous).
        for ((name, a), (_, b)) in zip(straight.namedParameters(), Tiny().namedParameters()) {
            XCTAssertNotEqual(a.value.scalars, b.value.scalars, name)
        }
        for ((name, a), (_, b)) in zip(straight.namedParameters(), resumed.namedParameters()) {
            XCTAssertEqual(a.value.scalars.map(\.bitPattern), b.value.scalars.map(\.bitPattern), name)
        }
    }

    func testImportStateRejectsMismatches() throws {
        let m = Tiny()
        let opt = makeOptimizer(m)
        XCTAssertThrowsError(try opt.importState([9: .init(step: 1, expAvg: Tensor(shape: [1]), expAvgSq: Tensor(shape: [1]))])) {
            XCTAssertEqual($0 as? OptimizerStateError, .unknownParameterIndex(9, parameterCount: 4))
        }
        XCTAssertThrowsError(try opt.importState([0: .init(step: 1, expAvg: Tensor(shape: [3]), expAvgSq: Tensor(shape: [4]))])) {
            XCTAssertEqual($0 as? OptimizerStateError, .shapeMismatch(index: 0, name: "ln_1.weight", field: "exp_avg", expected: [4], found: [3]))
        }
    }

    // MARK: glue between AdamW and AdamWStateDict

    /// `optimizer.state_dict()` of `opt`, as torch.optim.AdamW would give it.
    static func stateDict(of opt: AdamW) -> AdamWStateDict {
        var next = 0
        let groups = opt.groups.map { g -> AdamWStateDict.Group in
            defer { next += g.parameters.count }
            return .init(learningRate: g.learningRate, betas: opt.betas, eps: opt.eps, weightDecay: g.weightDecay,
                         parameterIndices: Array(next..<(next + g.parameters.count)))
        }
        return AdamWStateDict(state: opt.exportState().mapValues { .init(step: $0.step, expAvg: $0.expAvg, expAvgSq: $0.expAvgSq) },
                              groups: groups)
    }

    /// Restores `opt` from a saved state dict (its learning rates too, as torch's load_state_dict does).
    static func restore(_ opt: AdamW, from saved: AdamWStateDict) throws {
        try opt.importState(saved.state.mapValues { .init(step: $0.step, expAvg: $0.expAvg, expAvgSq: $0.expAvgSq) })
        for (i, g) in saved.groups.enumerated() where i < opt.groups.count { opt.groups[i].learningRate = g.learningRate }
    }
}
