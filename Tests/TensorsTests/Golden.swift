// Reading the PyTorch golden cases of `Tests/Fixtures/primitives/forward.safetensors` and comparing with them.
// The file is made by `scripts/reference/make_primitive_fixtures.py`: case NAME has inputs `NAME.in.*`, output `NAME.out`.

import Checkpoints
import Foundation
import Tensors
import TestSupport
import XCTest

/// The golden primitive cases, read once.
enum Golden {
    /// `Tests/Fixtures`, found from this file's path so tests run from any directory.
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    /// Every tensor of the primitives fixture.
    static let file: StateDict = {
        do { return try SafeTensors.read(fixtures.appendingPathComponent("primitives/forward.safetensors")) } catch {
            fatalError("cannot read the primitives fixture: \(error)")
        }
    }()

    /// Input `name` of case `c` as fp32.
    static func input(_ c: String, _ name: String) throws -> Tensor { try file.tensor("\(c).in.\(name)") }

    /// Integer input `name` of case `c` (int64 in the file).
    static func ids(_ c: String, _ name: String) throws -> [Int32] {
        let key = "\(c).in.\(name)"
        guard let v = file[key]?.integers else { throw CheckpointError.missingKey(file: "primitives/forward.safetensors", key: key) }
        return v.map { Int32($0) }
    }

    /// The expected output of case `c`.
    static func output(_ c: String) throws -> Tensor { try file.tensor("\(c).out") }
}

/// Asserts every element of `actual` is within `relative × max(|expected|, Float.leastNormalMagnitude)` of
/// `expected` (infinities must match exactly), for values spanning many orders of magnitude.
func assertRelativelyClose(
    _ actual: [Float], _ expected: [Float], relative: Float, _ name: String,
    file: StaticString = #filePath, line: UInt = #line
) {
    XCTAssertEqual(actual.count, expected.count, "\(name): count", file: file, line: line)
    var worst: Float = 0, at = -1
    for i in 0..<min(actual.count, expected.count) where actual[i] != expected[i] {
        // An infinity on one side only is an infinite error (inf - inf / inf would read as NaN).
        let ratio =
            actual[i].isInfinite || expected[i].isInfinite
            ? Float.infinity
            : abs(actual[i] - expected[i]) / max(abs(expected[i]), Float.leastNormalMagnitude)
        if !(ratio <= worst) { worst = ratio; at = i }
    }
    if at >= 0 && !(worst <= relative) {
        XCTFail(
            """
            \(name): max relative diff \(worst) at \(at) (expected \(expected[at]), got \(actual[at])) exceeds \(relative)
              expected first: \(expected.prefix(8))
              actual first:   \(actual.prefix(8))
            """, file: file, line: line)
    }
}

/// Runs `body` with `ComputeThreads` set to `n`, then restores the previous count.
func withComputeThreads<R>(_ n: Int, _ body: () throws -> R) rethrows -> R {
    let saved = ComputeThreads.count
    ComputeThreads.set(n)
    defer { ComputeThreads.set(saved) }
    return try body()
}
