import Foundation
import Tensors
import XCTest

extension GradientParityTests {
    /// `torch.gather(x, 1, idx.unsqueeze(-1).repeat(1, 1, w))` picks whole rows: the forward is exact copying,
    /// the backward adds each output row's gradient to its source row (checked by finite differences).
    func testGatherRows() {
        let x = Tensor(shape: [2, 5, 3], scalars: (0..<30).map { Float($0) * 0.1 - 1.3 })
        let indices = [0, 4, 2, 0, 3, 1]  // keep 3 rows of each item, in this order
        let y = gatherRows(Variable(x), indices: indices, keep: 3).value
        XCTAssertEqual(y.shape, [2, 3, 3])
        for i in 0..<2 {
            for k in 0..<3 {
                for c in 0..<3 {
                    XCTAssertEqual(y.data[(i * 3 + k) * 3 + c], x.data[(i * 5 + indices[i * 3 + k]) * 3 + c])
                }
            }
        }
        let g = Tensor(shape: [2, 3, 3], scalars: (0..<18).map { Float(($0 * 7) % 11) * 0.2 - 1 })
        finiteDifferences("gather_rows", inputs: [x], names: ["x"], g: g, kink: false, file: #filePath, line: #line) {
            gatherRows($0[0], indices: indices, keep: 3)
        }
    }

    /// A checkpointed computation gives the gradients of the plain one, bit for bit, for its input and for the
    /// parameters it uses; its randomness is replayed by `prepare`.
    func testCheckpointedMatchesPlainComputation() {
        let x = Tensor(shape: [4, 6], scalars: (0..<24).map { sin(Float($0)) })
        let w1 = Tensor(shape: [8, 6], scalars: (0..<48).map { cos(Float($0) * 0.7) * 0.4 })
        let w2 = Tensor(shape: [3, 8], scalars: (0..<24).map { sin(Float($0) * 1.3) * 0.5 })
        var generator = LCG(state: 0)
        func body(_ v: Variable, _ p1: Variable, _ p2: Variable) -> Variable {
            // Dropout driven by mutable state, as the model's layers are.
            linear(dropout(gelu(linear(v, weight: p1, bias: nil)), p: 0.5, training: true, using: &generator), weight: p2, bias: nil)
        }
        func run(checkpointing: Bool) -> (Tensor, [Tensor]) {
            generator = LCG(state: 42)
            let (xv, p1, p2) = (Variable.leaf(x), Variable.leaf(w1), Variable.leaf(w2))
            let h = scaled(xv, by: 1.5)
            var saved: LCG?
            let y =
                checkpointing
                ? checkpointed(h, prepare: { if let s = saved { generator = s } else { saved = generator } }) { body($0, p1, p2) }
                : body(h, p1, p2)
            let loss = crossEntropy(y, targets: [0, 2, 1, 1])
            loss.backward()
            return (loss.value, [xv.grad!, p1.grad!, p2.grad!])
        }
        let plain = run(checkpointing: false), recomputed = run(checkpointing: true)
        XCTAssertEqual(plain.0.scalars, recomputed.0.scalars)
        for (a, b) in zip(plain.1, recomputed.1) { XCTAssertEqual(a.scalars, b.scalars) }
    }

    /// Inside `withoutRecording`, operations on leaves record nothing (`torch.no_grad()`).
    func testWithoutRecordingRecordsNothing() {
        let leaf = Variable.leaf(Tensor(shape: [2], scalars: [1, 2]))
        XCTAssertFalse(GradientRecording.withoutRecording { scaled(leaf, by: 2) }.requiresGrad)
        XCTAssertTrue(scaled(leaf, by: 2).requiresGrad)
    }
}

/// A small deterministic generator for the tests' dropout masks.
struct LCG: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return state ^ (state >> 29)
    }
}
