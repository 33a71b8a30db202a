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

/// The parser gives what Python's `json.loads` gives: its types, its key order, its error messages.
final class PyJSONParserTests: XCTestCase {
    func testParsesAsPythonJSONLoads() throws {
        let v = try PyJSONParser.parse(
            #" {"a": [1, -2, 1.0, 2.5e3, true, false, null], "s": "x\"\\\/\n\u4e2d\ud83d\ude00", "e": {}, "l": [], "a": 7} "#)
        // A repeated key keeps its first position and its last value, as a Python dict does.
        XCTAssertEqual(
            v,
            .object([
                (key: "a", value: .int(7)), (key: "s", value: .string("x\"\\/\n中😀")),
                (key: "e", value: .object([])), (key: "l", value: .array([])),
            ]))
        XCTAssertEqual(
            try PyJSONParser.parse("[1, -2, 1.0, 2.5e3, true, null, 123456789012345678901234567890]"),
            .array([.int(1), .int(-2), .float(1), .float(2500), .bool(true), .null, .bigInt("123456789012345678901234567890")]))
        XCTAssertEqual(try PyJSONParser.parse("\"皮卡丘\""), .string("皮卡丘"))
        XCTAssertEqual(try PyJSONParser.parse("[NaN, -Infinity]"), .array([.float(.nan), .float(-.infinity)]))
    }

    /// `json.loads(text)` raises JSONDecodeError with these messages (CPython 3.11).
    func testSyntaxErrorsReadAsPythonsMessages() {
        let cases = [
            ("{\"a\": 1", "Expecting ',' delimiter: line 1 column 8 (char 7)"),
            ("{\"a\" 1}", "Expecting ':' delimiter: line 1 column 6 (char 5)"),
            ("[1, 2,]", "Expecting value: line 1 column 7 (char 6)"),
            ("01", "Extra data: line 1 column 2 (char 1)"),
            ("{\"a\": tru}", "Expecting value: line 1 column 7 (char 6)"),
            ("\"abc", "Unterminated string starting at: line 1 column 1 (char 0)"),
            ("1 2", "Extra data: line 1 column 3 (char 2)"),
            ("", "Expecting value: line 1 column 1 (char 0)"),
            ("{\"名\": x}", "Expecting value: line 1 column 7 (char 6)"),
        ]
        for (text, python) in cases {
            XCTAssertThrowsError(try PyJSONParser.parse(text), text) { error in
                XCTAssertEqual((error as? PyJSONSyntaxError)?.pythonMessage(in: text), python, text)
            }
        }
    }

    /// Deep nesting is Python's `RecursionError` (CPython 3.11 decodes 994 levels at a script's top level, fewer below
    /// it), never a stack overflow: the fuzzer's first finding was 4,000 `[` overflowing the stack.
    func testNestingBeyondPythonsRecursionLimitIsAnErrorNotACrash() throws {
        let n = PyJSONParser.maxDepth
        var value = try PyJSONParser.parse(String(repeating: "[", count: n) + String(repeating: "]", count: n))
        var levels = 0
        while case .array(let items) = value {
            levels += 1
            guard let first = items.first else { break }
            value = first
        }
        XCTAssertEqual(levels, n)
        XCTAssertNotNil(try? PyJSONParser.parse(String(repeating: "{\"a\": ", count: n) + "1" + String(repeating: "}", count: n)))
        let cases = [
            (String(repeating: "[", count: n + 1) + String(repeating: "]", count: n + 1), "array"),
            (String(repeating: "{\"a\": ", count: n + 1) + "1" + String(repeating: "}", count: n + 1), "object"),
            (String(repeating: "[", count: 200_000), "array"),
            ("[" + String(repeating: "{\"k\": [", count: 100_000), "array"),
        ]
        for (text, kind) in cases {
            XCTAssertThrowsError(try PyJSONParser.parse(text)) { error in
                XCTAssertEqual(
                    (error as? PyJSONSyntaxError)?.pythonMessage(in: text),
                    "maximum recursion depth exceeded while decoding a JSON \(kind) from a unicode string")
            }
        }
    }
}
