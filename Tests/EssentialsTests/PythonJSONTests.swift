// Python's json.dumps and repr, as CPython 3.11 prints them for the same inputs.

import Essentials
import XCTest

final class PythonJSONTests: XCTestCase {
    let tricky = "a\"b\\c\n\r\t\u{08}\u{0C}\u{01}\u{1F}\u{7F}/猫😀é"

    func testStringsAsJsonDumpsWritesThem() {
        // json.dumps(s)
        XCTAssertEqual(PythonJSON.string(tricky), #""a\"b\\c\n\r\t\b\f\u0001\u001f\u007f/\u732b\ud83d\ude00\u00e9""#)
        // json.dumps(s, ensure_ascii=False): DEL and non-ASCII stay as they are
        XCTAssertEqual(PythonJSON.string(tricky, ensureASCII: false), "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f\u{7F}/猫😀é\"")
    }

    func testFloatsAsReprAndJsonDumpsWriteThem() {
        let cases: [(Double, String)] = [
            (1e-5, "1e-05"), (0.0001, "0.0001"), (1234567890123456.0, "1234567890123456.0"), (1e16, "1e+16"),
            (12345678901234567.0, "1.2345678901234568e+16"), (-0.0, "-0.0"), (0.1, "0.1"), (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"), (2.5, "2.5"), (100, "100.0"),
        ]
        for (d, python) in cases {
            XCTAssertEqual(PythonJSON.repr(d), python, "\(d)")
            XCTAssertEqual(PythonJSON.number(d), python, "\(d)")
        }
        XCTAssertEqual([Double.nan, .infinity, -.infinity].map(PythonJSON.repr), ["nan", "inf", "-inf"])
        XCTAssertEqual([Double.nan, .infinity, -.infinity].map(PythonJSON.number), ["NaN", "Infinity", "-Infinity"])
    }
}
