import XCTest

@testable import ChineseCLIP

/// `floatToHalfBits`, which writes the weights of a half-precision ONNX graph, against the platform's own
/// round-to-nearest-even conversion.
final class HalfConversionTests: XCTestCase {
    func testMatchesTheHardwareConversionOnEveryExponentAndTie() throws {
        #if arch(x86_64) || arch(arm64)
            var checked = 0
            // Every exponent and sign, with mantissas that include exact ties, just-below and just-above ties.
            for bits in stride(from: UInt32(0), to: UInt32.max - 4099, by: 4099) {
                for tweak: UInt32 in [0, 0x0fff, 0x1000, 0x1001, 0x3000, 0x2000] {
                    let x = Float(bitPattern: bits & ~UInt32(0x1fff) | tweak)
                    let expected = Float16(x).bitPattern
                    let got = floatToHalfBits(x)
                    if x.isNaN {
                        XCTAssertEqual(got & 0x7c00, 0x7c00, "NaN stays NaN")
                        XCTAssertNotEqual(got & 0x3ff, 0, "NaN stays NaN")
                    } else if got != expected {
                        return XCTFail(
                            "\(x) (bits \(String(x.bitPattern, radix: 16))): \(String(got, radix: 16)), expected \(String(expected, radix: 16))")
                    }
                    checked += 1
                }
            }
            XCTAssertGreaterThan(checked, 6_000_000)
        #endif
    }
}
