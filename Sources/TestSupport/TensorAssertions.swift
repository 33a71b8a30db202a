// Comparing tensors with golden values the way every parity test does (llm.c style: on failure, the first
// values and the largest difference with its index).

import Tensors
import XCTest

/// Asserts every element of `actual` is within `tolerance × max(1, max |expected|)` of `expected`; on failure
/// reports the first values and the largest difference with its index.
package func assertClose(
    _ actual: Tensor, _ expected: Tensor, tolerance: Float = 1e-5, _ name: String,
    file: StaticString = #filePath, line: UInt = #line
) {
    XCTAssertEqual(actual.shape, expected.shape, "\(name): shape", file: file, line: line)
    guard actual.shape == expected.shape else { return }
    let a = actual.scalars, e = expected.scalars
    let scale = max(1, e.lazy.map(abs).max() ?? 0)
    var worst: Float = 0, at = -1
    // `!(d <= worst)` also catches NaN.
    for i in 0..<e.count where a[i] != e[i] {
        let d = abs(a[i] - e[i])
        if !(d <= worst) { worst = d; at = i }
    }
    if at >= 0 && !(worst <= tolerance * scale) {
        XCTFail(
            """
            \(name): max |diff| \(worst) at \(at) (expected \(e[at]), got \(a[at])) exceeds \(tolerance) × \(scale)
              expected first: \(e.prefix(8))
              actual first:   \(a.prefix(8))
            """, file: file, line: line)
    }
}
