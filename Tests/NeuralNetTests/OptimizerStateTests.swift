// Resuming training restores AdamW exactly: 3 steps, checkpoint (TrainingCheckpoint + AdamW.StateDict through
// a real file, as training saves and resumes), a fresh model and optimiser loaded from it, 2 more steps
// == 5 uninterrupted steps, bit for bit. And `load` refuses what torch's `load_state_dict` refuses, changing nothing.

import Checkpoints
import Foundation
import NeuralNet
import Tensors
import TestSupport
import XCTest

/// A small model with a decayed (`fc.weight`) and an exempt group (`ln_1.*`, `fc.bias`), as the reference groups them.
private final class Tiny: Module {
    let ln1 = LayerNorm(4)
    let fc = Linear(4, 3)
    override init() {
        super.init()
        register("ln_1", ln1)
        register("fc", fc)
        // Deterministic, non-trivial starting values.
        for (i, (_, p)) in namedParameters().enumerated() {
            p.value = Tensor(
                shape: p.value.shape, scalars: (0..<p.value.count).map { Float(sin(Double($0 * 7 + i * 3 + 1))) * 0.5 + (i == 0 ? 1 : 0) })
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
            opt.setLearningRate(0.05 / Double(s + 1))  // a changing learning rate, as the cosine schedule gives
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
        try TrainingCheckpoint(
            epoch: 1, step: 3, name: "tiny", stateDict: first.namedParameters().map { ($0.0, $0.1.value) },
            optimizer: opt1.stateDict().pickleValue
        ).write(to: url)

        let loaded = try TrainingCheckpoint(contentsOf: url)
        XCTAssertEqual(loaded.step, 3)
        let resumed = Tiny()
        for (_, p) in resumed.namedParameters() { p.value = Tensor(shape: p.value.shape) }  // forget the init
        try resumed.load(stateDict: Dictionary(uniqueKeysWithValues: loaded.stateDict))
        let opt2 = makeOptimizer(resumed)
        try opt2.load(AdamW.StateDict(loaded.optimizer, source: url.path))
        XCTAssertEqual(opt2.stateDict().state.keys.sorted(), [0, 1, 2, 3])
        XCTAssertEqual(opt2.stateDict().state[0]?.step, 3)
        train(resumed, opt2, steps: 3..<5)

        // The steps did move every parameter (so the comparison below is not vacuous).
        for ((name, a), (_, b)) in zip(straight.namedParameters(), Tiny().namedParameters()) {
            XCTAssertNotEqual(a.value.scalars, b.value.scalars, name)
        }
        for ((name, a), (_, b)) in zip(straight.namedParameters(), resumed.namedParameters()) {
            XCTAssertEqual(a.value.scalars.map(\.bitPattern), b.value.scalars.map(\.bitPattern), name)
        }
    }

    func testLoadRejectsMismatchesAndChangesNothing() throws {
        let m = Tiny()
        let opt = makeOptimizer(m)
        train(m, opt, steps: 0..<1)
        let saved = opt.stateDict()
        let before = saved.state.mapValues { ($0.step, $0.expAvg.scalars, $0.expAvgSq.scalars) }
        func assertRefused(_ edit: (inout AdamW.StateDict) -> Void, _ expected: OptimizerStateError, line: UInt = #line) {
            var bad = saved
            edit(&bad)
            XCTAssertThrowsError(try opt.load(bad), line: line) { XCTAssertEqual($0 as? OptimizerStateError, expected, line: line) }
            let after = opt.stateDict()
            XCTAssertEqual(after.groups.map(\.learningRate), saved.groups.map(\.learningRate), line: line)
            XCTAssertEqual(after.state.keys.sorted(), before.keys.sorted(), line: line)
            for (i, s) in after.state {
                XCTAssertEqual(s.step, before[i]?.0, line: line)
                XCTAssertEqual(s.expAvg.scalars, before[i]?.1, line: line)
                XCTAssertEqual(s.expAvgSq.scalars, before[i]?.2, line: line)
            }
        }
        let misshapen = AdamW.StateDict.ParameterState(step: 7, expAvg: Tensor(shape: [3]), expAvgSq: Tensor(shape: [4]))
        assertRefused({ $0.groups.removeLast() }, .groupCount(saved: 1, optimizer: 2))
        assertRefused({ $0.groups[1].parameterIndices.append(9) }, .groupSize(group: 1, saved: 2, optimizer: 1))
        assertRefused(
            {
                $0.groups[0].learningRate = 1; $0.state[0] = misshapen
            },
            .shapeMismatch(index: 0, name: "ln_1.weight", field: "exp_avg", expected: [4], found: [3]))
        assertRefused({ $0.groups[1].eps = 1e-8 }, .differentBetasOrEps)
    }
}
