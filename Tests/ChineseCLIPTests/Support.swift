import Checkpoints
import Foundation
import Tensors
import XCTest

/// `Tests/Fixtures`, found from this file's path so tests run from any directory.
let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures")

/// Asserts `actual` matches `expected` within `tolerance × max(1, max |expected|)` (the fixtures' README rule);
/// on failure prints the first values and the largest difference with its index.
func assertClose(_ actual: Tensor, _ expected: Tensor, relativeTo tolerance: Float, _ name: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.shape, expected.shape, "\(name): shape", file: file, line: line)
    guard actual.shape == expected.shape else { return }
    let a = actual.scalars, e = expected.scalars
    let scale = max(1, e.map(abs).max() ?? 0)
    var worst: Float = 0, at = 0
    for i in 0..<e.count where !(abs(a[i] - e[i]) <= worst) { worst = abs(a[i] - e[i]); at = i }
    if !(worst <= tolerance * scale) {
        XCTFail("""
            \(name): max |diff| \(worst) at \(at) (expected \(e[at]), got \(a[at])) exceeds \(tolerance) × \(scale)
              expected first: \(e.prefix(6))
              actual first:   \(a.prefix(6))
            """, file: file, line: line)
    }
}

/// The tensors of a safetensors fixture by name.
func loadFixture(_ relativePath: String) throws -> StateDict {
    try SafeTensors.read(fixtures.appendingPathComponent(relativePath))
}
