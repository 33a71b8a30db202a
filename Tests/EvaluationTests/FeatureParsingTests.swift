import CKernels
import Essentials
import Foundation
import XCTest

@testable import Evaluation

/// The feature-file number parser against `float32(json.loads(text))`, i.e. `Float(strtod(text))` (correctly rounded
/// double, then rounded to float), and the reader's file paths (mapped, streamed, piped) against each other.
final class FeatureParsingTests: XCTestCase {
    var tmp: URL!
    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("feature-parsing-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }
    func path(_ name: String) -> String { tmp.appendingPathComponent(name).path }

    // MARK: numbers

    /// How many bytes Python's number pattern `-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?` matches, and whether the
    /// match is an int to json.loads; nil when it matches nothing.
    func pythonNumberPrefix(_ b: [UInt8]) -> (length: Int, isInteger: Bool)? {
        func digit(_ k: Int) -> Bool { k < b.count && b[k] >= 0x30 && b[k] <= 0x39 }
        var i = 0
        if i < b.count && b[i] == UInt8(ascii: "-") { i += 1 }
        guard digit(i) else { return nil }
        if b[i] == 0x30 { i += 1 } else { while digit(i) { i += 1 } }
        var integer = true
        if i < b.count && b[i] == UInt8(ascii: "."), digit(i + 1) {
            integer = false
            i += 1
            while digit(i) { i += 1 }
        }
        if i < b.count && (b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E")) {
            var j = i + 1
            if j < b.count && (b[j] == UInt8(ascii: "+") || b[j] == UInt8(ascii: "-")) { j += 1 }
            if digit(j) {
                while digit(j) { j += 1 }
                i = j
                integer = false
            }
        }
        return (i, integer)
    }

    /// What the reference makes of `text`: the float and the bytes its number takes; nil when it is no number.
    func expected(_ text: String) -> (Float, Int)? {
        let b = Array(text.utf8)
        for (word, value) in [("NaN", Float.nan), ("Infinity", .infinity), ("-Infinity", -.infinity)] where text.hasPrefix(word) {
            return (value, word.utf8.count)
        }
        guard let (n, integer) = pythonNumberPrefix(b) else { return nil }
        let number = String(decoding: b[0..<n], as: UTF8.self)
        let f = Float(strtod(number, nil))
        // json.loads("-0") is the int 0, which becomes +0.0; "-0.0" is the float -0.0.
        return (integer && f == 0 ? 0 : f, n)
    }

    /// Checks `parseFeatureFloat` on `text` alone (the buffer ends where the text does) and followed by `,`.
    func check(_ text: String, file: StaticString = #filePath, line: UInt = #line) {
        let want = expected(text)
        for suffix in ["", ",", "]}"] {
            let bytes = Array((text + suffix).utf8)
            let buffer = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(bytes.count, 1))
            defer { buffer.deallocate() }
            _ = buffer.initialize(from: bytes)
            let got = parseFeatureFloat(buffer.baseAddress!, from: 0, end: bytes.count)
            guard let want else {
                XCTAssertNil(got, "\(text): no number expected", file: file, line: line)
                continue
            }
            guard let (f, next) = got else { return XCTFail("\(text): no number parsed", file: file, line: line) }
            XCTAssertEqual(next, want.1, "\(text)", file: file, line: line)
            XCTAssertTrue(
                f.bitPattern == want.0.bitPattern || (f.isNaN && want.0.isNaN),
                "\(text): \(f) (0x\(String(f.bitPattern, radix: 16))) vs \(want.0) (0x\(String(want.0.bitPattern, radix: 16)))",
                file: file, line: line)
        }
    }

    func testHandPickedNumbers() {
        let texts = [
            "0", "-0", "0.0", "-0.0", "-0e0", "0e-7", "1", "-1", "16777216", "16777217", "16777219", "9007199254740993",
            "123456789012345678901234567890", "-123456789012345678901234567890.5", "1e5", "1E5", "1e+5", "1E-5", "1e-05",
            "1.5e-07", "-2.5E-3", "1e+16", "1e22", "1e23", "1e38", "1e39", "3.4028235e38", "3.4028234663852886e+38",
            "3.4028235677973366e38", "3.4028235677973362e38", "3.4028236e38", "3.5e38", "1.1754943508222875e-38",
            "1.1754942e-38", "1.401298464324817e-45", "1.4e-45", "7.006492321624085e-46", "7.006492321624087e-46",
            "1e-45", "1e-46", "2.5e-45", "2.1019476964872256e-45", "1e-400", "1e400", "-1e400", "1e-99999999999",
            "0.1", "0.30000000000000004", "0.000001234", "0.00000000000000000000001", "0.03169155493378639",
            "-0.12426838278770447", "0.005670519545674324", "1.00000005960464477539062", "1.000000059604644775390625",
            "1.0000000596046447753906251", "1.0000000596046447753906249", "1.0000001788139343", "1.00000017881393432617187500",
            "0.000000000000000000000000000000000000000000000000001", "00", "01", "-01", "1.", "1.e5", ".5", "-.5", "+1",
            "-", "", "e5", "1e", "1e+", "1e-", "1ee5", "1.5.5", "--1", "NaN", "Infinity", "-Infinity", "-NaN", "Nan",
            "Infinit", "-Inf", "inf", "nan", "1_000", "０", "1,5", "12345678901234567890", "1234567890123456789",
            "12345678901234567890e-20", "0.12345678901234567890123", "99999999999999999999999999e-26",
        ]
        for t in texts {
            check(t)
            check("-" + t)
        }
    }

    /// The shortest repr of every kind of float (what extract_features.py writes), normals, subnormals and both signs.
    func testShortestReprsOfRandomFloatsRoundTrip() {
        var rng = SplitMix64(seed: 20_261_207)
        for _ in 0..<60_000 {
            let f = Float(bitPattern: UInt32.random(in: 0...0x7F7F_FFFF, using: &rng) | (Bool.random(using: &rng) ? 0x8000_0000 : 0))
            let text = PythonJSON.repr(Double(f))
            check(text)
            let bytes = Array(text.utf8)
            bytes.withUnsafeBufferPointer {
                XCTAssertEqual(parseFeatureFloat($0.baseAddress!, from: 0, end: $0.count)?.0.bitPattern, f.bitPattern, text)
            }
        }
        // A dense stretch, as features of a unit vector are: every 61st float in [2^-6, 2^-4).
        var bits = Float(0.015625).bitPattern
        while bits < Float(0.0625).bitPattern {
            check(PythonJSON.repr(Double(Float(bitPattern: bits))))
            bits += 61
        }
        // Doubles between floats: the general case of rounding.
        for _ in 0..<20_000 {
            let d = Double(bitPattern: UInt64.random(in: 0x3690_0000_0000_0000...0x47F0_0000_0000_0000, using: &rng))
            check(PythonJSON.repr(d))
        }
    }

    /// Decimals at and near the midpoints between neighbouring floats, where rounding to double first can change the
    /// float (the midpoint is a double; a decimal within half a double ulp of it rounds to it, then to even).
    func testMidpointsAndDoubleRounding() {
        var rng = SplitMix64(seed: 7)
        for _ in 0..<6_000 {
            let f = Float(bitPattern: UInt32.random(in: 0...0x7F7F_FFFE, using: &rng))
            let mid = (Double(f) + Double(f.nextUp)) / 2
            for x in [mid, mid.nextUp, mid.nextDown, mid.nextUp.nextUp, mid.nextDown.nextDown] {
                for digits in 14...21 { check(String(format: "%.*e", digits - 1, x)) }
            }
            // The midpoint's exact decimal expansion, and decimals just above and below it (closer than half a
            // double ulp, so the double is the midpoint itself).
            let exact = String(format: "%.160e", mid)
            let parts = exact.split(separator: "e")
            var mantissa = String(parts[0])
            while mantissa.hasSuffix("0") { mantissa.removeLast() }
            let exponent = "e" + parts[1]
            check(mantissa + exponent)
            check(mantissa + "000000000001" + exponent)
            var below = Array(mantissa)
            if let last = below.last, let d = last.wholeNumberValue, d > 0 {
                below[below.count - 1] = Character(String(d - 1))
                check(String(below) + "999999999999" + exponent)
            }
        }
    }

    /// Every decimal exponent the power-of-five table covers (and beyond), with mantissas of 1 to 19 digits and longer,
    /// with and without a decimal point.
    func testEveryDecimalExponentAndLongMantissas() {
        var rng = SplitMix64(seed: 11)
        for q in -75...50 {
            for _ in 0..<60 {
                let length = Int.random(in: 1...24, using: &rng)
                var digits = String(Int.random(in: 1...9, using: &rng))
                for _ in 1..<length { digits += String(Int.random(in: 0...9, using: &rng)) }
                check("\(digits)e\(q)")
                let point = Int.random(in: 1...length, using: &rng)
                let withPoint = point == length ? digits : String(digits.prefix(point)) + "." + String(digits.dropFirst(point))
                check("\(withPoint)e\(q - (length - point))")
                check("0.\(String(repeating: "0", count: Int.random(in: 0...3, using: &rng)))\(digits)e\(q + length)")
            }
        }
        for _ in 0..<2_000 {
            let length = Int.random(in: 20...60, using: &rng)
            var digits = String(Int.random(in: 1...9, using: &rng))
            for _ in 1..<length { digits += String(Int.random(in: 0...9, using: &rng)) }
            check("0.\(digits)")
            check("\(digits)e-\(length + Int.random(in: 0...40, using: &rng))")
        }
    }

    /// Each power-of-five entry is 5^q's top 64 bits, checked with schoolbook big integers (independent of the
    /// table's own 128-bit division): a wrong low bit would only show on rare inputs.
    func testPowersOfFiveTableIsExact() {
        typealias Big = [UInt32]  // little-endian limbs
        func trimmed(_ a: Big) -> Big {
            var a = a
            while a.count > 1 && a.last == 0 { a.removeLast() }
            return a
        }
        func product(_ a: Big, _ b: Big) -> Big {
            var out = [UInt64](repeating: 0, count: a.count + b.count + 1)
            for (i, x) in a.enumerated() {
                var carry: UInt64 = 0
                for (j, y) in b.enumerated() {
                    let v = out[i + j] + UInt64(x) * UInt64(y) + carry
                    out[i + j] = v & 0xFFFF_FFFF
                    carry = v >> 32
                }
                out[i + b.count] += carry
            }
            return trimmed(out.map { UInt32($0) })
        }
        func big(_ v: UInt64) -> Big { trimmed([UInt32(truncatingIfNeeded: v), UInt32(v >> 32)]) }
        func plusOne(_ v: UInt64) -> Big { v == .max ? [0, 0, 1] : big(v + 1) }
        func twoTo(_ n: Int) -> Big { Big(repeating: 0, count: n / 32) + [1 << UInt32(n % 32)] }
        func less(_ a: Big, _ b: Big) -> Bool {
            if a.count != b.count { return a.count < b.count }
            for k in stride(from: a.count - 1, through: 0, by: -1) where a[k] != b[k] { return a[k] < b[k] }
            return false
        }
        let table = PowersOfFive.shared
        for q in PowersOfFive.minExponent...PowersOfFive.maxExponent {
            let t = table.significands[q - PowersOfFive.minExponent], e = Int(table.exponents[q - PowersOfFive.minExponent])
            XCTAssertGreaterThanOrEqual(t, 1 << 63, "q \(q)")
            let five = (0..<abs(q)).reduce(Big([1])) { v, _ in product(v, [5]) }
            // 5^q = (t + δ) · 2^e with 0 ≤ δ < 1, i.e. low ≤ middle < high once the powers are whole numbers.
            let (low, middle, high): (Big, Big, Big)
            if q >= 0 && e >= 0 {
                (low, middle, high) = (product(big(t), twoTo(e)), five, product(plusOne(t), twoTo(e)))
            } else if q >= 0 {
                (low, middle, high) = (big(t), product(five, twoTo(-e)), plusOne(t))
            } else {
                (low, middle, high) = (product(big(t), five), twoTo(-e), product(plusOne(t), five))
            }
            XCTAssertTrue(!less(middle, low) && less(middle, high), "q \(q): \(t) · 2^\(e)")
        }
    }

    // MARK: arrays

    /// The C loop over an array accepts exactly what the careful Swift loop accepts, with the same values.
    func testArrayLoopAgreesWithCarefulLoop() {
        var rng = SplitMix64(seed: 3)
        let tokens = [
            "1", "-0.5", "0.03169155493378639", "1e5", "-1.5e-07", "NaN", "-Infinity", "Infinity", "0", "-0", "00", "1.", "-",
            "1e", ".5", "+1", "x", "\"a\"", "[", "]", ",", ", ", ",,", " ", "\t", "\r", "\n", "", "123456789012345678901234",
        ]
        for _ in 0..<30_000 {
            var text = "["
            for _ in 0..<Int.random(in: 0...6, using: &rng) { text += tokens.randomElement(using: &rng)! }
            if Bool.random(using: &rng) { text += "]" }
            if Bool.random(using: &rng) { text += tokens.randomElement(using: &rng)! }
            let bytes = Array(text.utf8)
            bytes.withUnsafeBufferPointer { p in
                let capacity = Int.random(in: 0...4, using: &rng)
                let a = UnsafeMutablePointer<Float>.allocate(capacity: 8), b = UnsafeMutablePointer<Float>.allocate(capacity: 8)
                defer { a.deallocate(); b.deallocate() }
                let powers = PowersOfFive.shared
                var next = 0
                let count = cnclip_parse_feature_array(p.baseAddress!, 0, p.count, a, capacity, powers.significands, powers.exponents, &next)
                do {
                    let careful = try parseFeatureArrayCarefully(p.baseAddress!, from: 0, end: p.count, into: b, capacity: capacity)
                    XCTAssertEqual(count, careful.count, text)
                    XCTAssertEqual(next, careful.next, text)
                    for k in 0..<min(count, capacity) where !(a[k].isNaN && b[k].isNaN) { XCTAssertEqual(a[k].bitPattern, b[k].bitPattern, text) }
                } catch {
                    XCTAssertEqual(count, -1, "\(text): the careful loop says \(error)")
                }
            }
        }
    }

    // MARK: files

    /// A feature file whose lines vary in layout (spaces, key order, extra keys, CRLF, exponents, ints) and the
    /// ids and values it must give.
    func sampleFile(rows: Int, dim: Int, seed: UInt64) -> (text: String, ids: [String], values: [Float]) {
        var rng = SplitMix64(seed: seed)
        var text = "", ids: [String] = [], values: [Float] = []
        for r in 0..<rows {
            let row = (0..<dim).map { _ in Float(bitPattern: UInt32.random(in: 0...0x7F7F_FFFF, using: &rng)) * (Bool.random(using: &rng) ? 1 : -1) }
            let numbers = row.map { PythonJSON.repr(Double($0)) }
            let id = r % 3 == 0 ? "\"img-\(r)\"" : "\(1_000_000 + r)"
            switch r % 3 {
            case 0: text += "{\"image_id\": \(id), \"feature\": [\(numbers.joined(separator: ", "))]}"
            case 1: text += "  {\"feature\" :[ \(numbers.joined(separator: " ,\t")) ] , \"x\": [1, {\"y\": null}], \"image_id\":\(id)}"
            default: text += "{\"image_id\": \(id), \"feature\": [\(numbers.joined(separator: ","))]}"
            }
            text += r % 2 == 0 ? "\n" : "\r\n"
            ids.append(id)
            values += row
        }
        return (text, ids, values)
    }

    func assertBlock(_ block: FeatureBlock, ids: [String], values: [Float], dim: Int, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(block.ids, ids, file: file, line: line)
        XCTAssertEqual(block.dim, dim, file: file, line: line)
        XCTAssertEqual(block.lines, Array(1..<(ids.count + 1)), file: file, line: line)
        XCTAssertEqual(block.values.map(\.bitPattern), values.map(\.bitPattern), file: file, line: line)
    }

    /// Mapped and streamed reading, in blocks of every size, give the same rows.
    func testMappedAndStreamedReadingGiveTheSameRows() throws {
        let (full, ids, values) = sampleFile(rows: 23, dim: 37, seed: 5)
        let p = path("f.jsonl")
        for text in [full, String(full.dropLast(1))] {  // with and without the last line's newline
            try text.write(toFile: p, atomically: true, encoding: .utf8)
            for chunk in [nil, 1, 7, 100, 4096] {
                for maxRows in [1, 4, 23, 1000] {
                    let reader = try FeatureFileReader(path: p, idKey: "image_id", dim: nil, streamChunkBytes: chunk)
                    var all = FeatureBlock(ids: [], values: [], dim: 0, lines: [])
                    while let b = try reader.nextBlock(maxRows: maxRows) {
                        XCTAssertLessThanOrEqual(b.count, maxRows)
                        all.ids += b.ids; all.values += b.values; all.lines += b.lines; all.dim = b.dim
                    }
                    assertBlock(all, ids: ids, values: values, dim: 37)
                    XCTAssertEqual(reader.bytesRead, Int64(text.utf8.count), "chunk \(String(describing: chunk)), maxRows \(maxRows)")
                }
            }
        }
        // An empty file has no rows.
        try "".write(toFile: p, atomically: true, encoding: .utf8)
        XCTAssertEqual(try FeatureFileReader(path: p, idKey: "image_id").readAll().count, 0)
    }

    /// A file that cannot be mapped (a pipe) is streamed.
    func testReadingFromAPipe() throws {
        let (text, ids, values) = sampleFile(rows: 9, dim: 300, seed: 8)
        let p = path("fifo")
        XCTAssertEqual(mkfifo(p, 0o600), 0)
        let writer = Thread {
            let h = FileHandle(forWritingAtPath: p)!
            h.write(Data(text.utf8))
            try? h.close()
        }
        writer.start()
        let block = try FeatureFileReader(path: p, idKey: "image_id").readAll()
        assertBlock(block, ids: ids, values: values, dim: 300)
    }

    /// Errors name the right line whichever block and read chunk the line falls in.
    func testErrorsNameTheirLineInEveryBlockAndChunk() throws {
        let ok = "{\"image_id\": 1, \"feature\": [0.5, 1]}\n"
        let p = path("f.jsonl")
        let cases: [(String, String)] = [
            ("{\"image_id\": 9, \"feature\": [0.5, 1,]}", "\"feature\" holds a non-number at column 36"),
            ("{\"image_id\": 9, \"feature\": [0.5 1]}", "invalid JSON: Expecting ',' delimiter at column 33"),
            ("{\"image_id\": 9, \"feature\": [0.5,, 1]}", "\"feature\" holds a non-number at column 33"),
            ("{\"image_id\": 9, \"feature\": [0.5, 1", "invalid JSON: Expecting ',' delimiter at column 35"),
            ("{\"image_id\": 9, \"feature\": [[0.5], 1]}", "\"feature\" holds a non-number at column 29"),
            ("{\"image_id\": 9, \"feature\": [0.5, 1e]}", "invalid JSON: Expecting ',' delimiter at column 35"),
            ("{\"image_id\": 9, \"feature\": 0.5}", "\"feature\" is not a list of numbers"),
        ]
        for (bad, reason) in cases {
            try (ok + ok + ok + ok + bad + "\n" + ok).write(toFile: p, atomically: true, encoding: .utf8)
            for chunk in [nil, 3, 50] {
                for maxRows in [1, 2, 10] {
                    let reader = try FeatureFileReader(path: p, idKey: "image_id", dim: nil, streamChunkBytes: chunk)
                    XCTAssertThrowsError(try { while try reader.nextBlock(maxRows: maxRows) != nil {} }()) {
                        XCTAssertEqual($0 as? RetrievalError, .malformedLine(path: p, line: 5, reason: reason), bad)
                    }
                }
            }
        }
        // A wrong width on a later row, and a wrong width that also has an unhashable id (the width is reported first).
        try (ok + "{\"image_id\": 2, \"feature\": [1]}\n").write(toFile: p, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try FeatureFileReader(path: p, idKey: "image_id").readAll()) {
            XCTAssertEqual($0 as? RetrievalError, .dimensionMismatch(path: p, line: 2, id: "2", expected: 2, found: 1))
        }
        try (ok + "{\"image_id\": [2], \"feature\": [1, 2, 3]}\n").write(toFile: p, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try FeatureFileReader(path: p, idKey: "image_id").readAll()) {
            XCTAssertEqual($0 as? RetrievalError, .dimensionMismatch(path: p, line: 2, id: "[2]", expected: 2, found: 3))
        }
    }
}
