import Essentials
import Foundation
import Tensors
import XCTest

@testable import Evaluation

/// Parity of the Retrieval library with the reference eval scripts (fixtures in Tests/Fixtures/eval and eval-errors).
final class RetrievalTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    func eval(_ name: String) -> String { Self.fixtures.appendingPathComponent("eval/\(name)").path }

    var tmp: URL!
    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("retrieval-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }
    func path(_ name: String) -> String { tmp.appendingPathComponent(name).path }
    func bytes(_ p: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: p)) }

    // MARK: top-k

    func testTopKBothDirectionsMatchReferenceFiles() throws {
        for (dir, expected) in [(RetrievalDirection.textToImage, "valid_predictions.jsonl"), (.imageToText, "valid_tr_predictions.jsonl")] {
            let out = path("p.jsonl")
            try TopKPredictions.run(
                imageFeatures: eval("valid_imgs.img_feat.jsonl"), textFeatures: eval("valid_texts.txt_feat.jsonl"),
                direction: dir, options: TopKOptions(k: 10, galleryBlockRows: 128), output: out)
            XCTAssertEqual(try bytes(out), try bytes(eval(expected)), expected)
        }
    }

    func testGallerySplitIntoManyBlocksGivesTheSameFile() throws {
        let expected = try bytes(eval("valid_predictions.jsonl"))
        for (g, q) in [(1, nil), (7, 3), (16, 1), (33, 500), (299, nil), (300, 17), (100_000, nil)] as [(Int, Int?)] {
            let out = path("p.jsonl")
            try TopKPredictions.run(
                imageFeatures: eval("valid_imgs.img_feat.jsonl"), textFeatures: eval("valid_texts.txt_feat.jsonl"),
                direction: .textToImage, options: TopKOptions(k: 10, galleryBlockRows: g, queryBlockRows: q), output: out)
            XCTAssertEqual(try bytes(out), expected, "gallery block \(g), query block \(String(describing: q))")
        }
    }

    /// Exact ties keep file order only if equal features always give bit-equal scores, wherever the row sits in a
    /// block and however the product is split across threads.
    func testEqualFeaturesGiveEqualScoresAtEveryPositionBlockAndThreadCount() throws {
        var rng = SystemRandomNumberGenerator()
        let dim = 512, n = 97, nq = 37
        let dup = (0..<dim).map { _ in Float.random(in: -1...1, using: &rng) }
        var gallery = [Float]()
        var dupRows = [Int]()
        for r in 0..<n {
            if r % 3 == 1 || r < 20 {
                gallery += dup; dupRows.append(r)
            } else {
                gallery += (0..<dim).map { _ in Float.random(in: -1...1, using: &rng) }
            }
        }
        let queries = (0..<(dim * nq)).map { _ in Float.random(in: -1...1, using: &rng) }
        let saved = ComputeThreads.count
        defer { ComputeThreads.set(saved) }
        var reference: [[Int]]?
        for threads in [1, 2] {
            ComputeThreads.set(threads)
            for g in [1, 2, 3, 5, 8, 13, 16, 31, 64, 97] {
                for q in [1, 4, nq] {
                    let opts = TopKOptions(k: n, galleryBlockRows: g, queryBlockRows: q)
                    var acc = TopKAccumulator(queries: nq, k: n)
                    queries.withUnsafeBufferPointer { qp in
                        gallery.withUnsafeBufferPointer { gp in
                            var g0 = 0
                            while g0 < n {
                                let c = min(g, n - g0)
                                TopKSearch.accumulate(
                                    queries: qp, queryCount: nq, dim: dim,
                                    gallery: UnsafeBufferPointer(rebasing: gp[(g0 * dim)..<((g0 + c) * dim)]),
                                    galleryCount: c, g0: g0, options: opts, into: &acc)
                                g0 += c
                            }
                        }
                    }
                    var ranks = [[Int]]()
                    for query in 0..<nq {
                        let order = acc.ranked(query), scores = acc.rankedScores(query)
                        // The duplicates sit together, in file order, all with one score.
                        let positions = order.enumerated().filter { dupRows.contains($0.element) }
                        XCTAssertEqual(positions.map { $0.element }, dupRows)
                        XCTAssertEqual(positions.last!.offset - positions.first!.offset, dupRows.count - 1)
                        XCTAssertEqual(Set(positions.map { scores[$0.offset] }).count, 1, "threads \(threads) block \(g)×\(q)")
                        ranks.append(order)
                    }
                    if let reference { XCTAssertEqual(ranks, reference, "threads \(threads) block \(g)×\(q)") } else { reference = ranks }
                }
            }
        }
    }

    /// The bounded heap selects what Python's stable `sorted(..., reverse=True)[:k]` selects, ties included.
    func testHeapSelectionEqualsStableSortWithTies() {
        var rng = SystemRandomNumberGenerator()
        for trial in 0..<200 {
            let n = Int.random(in: 0...60, using: &rng), rows = 3
            let scores = (0..<(rows * n)).map { _ in Float(Int.random(in: -4...4, using: &rng)) * 0.25 }
            for k in [0, 1, 5, n, n + 3, -1, -n - 2] {
                let opts = TopKOptions(k: k, galleryBlockRows: 7)
                var acc = TopKAccumulator(queries: rows, k: opts.keep(of: n))
                var g0 = 0
                scores.withUnsafeBufferPointer { sp in
                    while g0 < n {
                        let c = min(7, n - g0)
                        let block = (0..<rows).flatMap { r in sp[(r * n + g0)..<(r * n + g0 + c)] }
                        block.withUnsafeBufferPointer { acc.offer(scores: $0.baseAddress!, ldc: c, rows: rows, cols: c, q0: 0, g0: g0) }
                        g0 += c
                    }
                }
                for r in 0..<rows {
                    // What a stable descending sort gives: score descending, then index ascending.
                    let expected = (0..<n).sorted { a, b in scores[r * n + a] != scores[r * n + b] ? scores[r * n + a] > scores[r * n + b] : a < b }
                    XCTAssertEqual(acc.ranked(r), Array(expected.prefix(opts.keep(of: n))), "trial \(trial) k \(k)")
                }
            }
        }
    }

    func testNegativeAndZeroTopKBehaveAsPythonSlices() throws {
        for (k, count) in [(0, 0), (-1, 299), (-300, 0), (400, 300)] {
            let out = path("p.jsonl")
            try TopKPredictions.run(
                imageFeatures: eval("valid_imgs.img_feat.jsonl"), textFeatures: eval("valid_texts.txt_feat.jsonl"),
                direction: .textToImage, options: TopKOptions(k: k, galleryBlockRows: 64), output: out)
            let first = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")[0]
            let obj = try JSONSerialization.jsonObject(with: Data(first.utf8)) as! [String: Any]
            XCTAssertEqual((obj["image_ids"] as! [Int]).count, count, "k \(k)")
        }
    }

    // MARK: feature files

    func testFloatParserGivesFloatOfCorrectlyRoundedDouble() {
        var rng = SystemRandomNumberGenerator()
        var texts: [String] = [
            "0", "-0.0", "1", "1e5", "1E-5", "123456789012345678901234567890", "0.000001234", "3.4028235e38", "3.5e38",
            "1e-46", "1.4e-45", "7e-46", "2.5e-45", "-1.17549435e-38", "0.1", "0.30000000000000004", "9007199254740993",
            "1.00000005960464477539062", "1.000000059604644775390625", "1.0000000596046447753906251", "NaN", "Infinity", "-Infinity",
        ]
        for _ in 0..<20000 {
            let f = Float(bitPattern: UInt32.random(in: 0...0x7F7F_FFFF, using: &rng))
            texts.append(PythonJSON.repr(Double(f)))
            // Midpoints between neighbouring floats, printed to 17 digits and nudged: the hard cases for the fast path.
            let mid = (Double(f) + Double(f.nextUp)) / 2
            texts.append(String(format: "%.16e", mid))
            texts.append(String(format: "%.16e", mid.nextUp))
            texts.append(String(format: "%.16e", mid.nextDown))
            texts.append(String(format: "%.*e", Int.random(in: 0...20, using: &rng), Double.random(in: -1...1, using: &rng)))
        }
        for t in texts {
            let expected = Float(strtod(t, nil))
            var u = Array(t.utf8)
            u.withUnsafeMutableBufferPointer { p in
                guard let (f, next) = parseFeatureFloat(p.baseAddress!, from: 0, end: p.count) else { return XCTFail(t) }
                XCTAssertEqual(next, p.count, t)
                XCTAssertTrue(f.bitPattern == expected.bitPattern || (f.isNaN && expected.isNaN), "\(t): \(f) vs \(expected)")
            }
        }
    }

    func testPythonFloatRepr() {
        let cases: [(Double, String)] = [
            (1e16, "1e+16"), (1234567890123456.0, "1234567890123456.0"), (0.0001, "0.0001"), (0.00001, "1e-05"),
            (41.266666666666666, "41.266666666666666"), (5e-324, "5e-324"), (1.7976931348623157e308, "1.7976931348623157e+308"),
            (100, "100.0"), (0, "0.0"), (-0.0, "-0.0"), (1.5e-7, "1.5e-07"), (-0.12426838278770447, "-0.12426838278770447"),
            (39.800000000000004, "39.800000000000004"), (123456789.0, "123456789.0"), (1e22, "1e+22"), (2.5e15, "2500000000000000.0"),
        ]
        for (d, s) in cases { XCTAssertEqual(PythonJSON.repr(d), s) }
        XCTAssertEqual(
            pythonDumps(.array([.float(.nan), .float(.infinity), .float(-.infinity), .string("查\"\n\u{7f}😀"), .bool(true), .null])),
            "[NaN, Infinity, -Infinity, \"\\u67e5\\\"\\n\\u007f\\ud83d\\ude00\", true, null]")
    }

    /// Reading the reference's feature file and writing it back gives the same bytes (Python's float repr and layout).
    func testFeatureFileRoundTripsByteForByte() throws {
        for (file, key) in [("valid_imgs.img_feat.jsonl", "image_id"), ("valid_texts.txt_feat.jsonl", "text_id")] {
            let block = try FeatureFileReader(path: eval(file), idKey: key).readAll()
            let ids = try block.ids.map { try PyJSONParser.parse($0) }
            let out = path("f.jsonl")
            try FeatureFileWriter.write(path: out, idKey: key, ids: ids, features: block.values, dim: block.dim)
            XCTAssertEqual(try bytes(out), try bytes(eval(file)), file)
        }
    }

    func testFeatureReaderErrorsNameFileAndLine() throws {
        let p = path("f.jsonl")
        func check(_ text: String, _ expected: RetrievalError, file: StaticString = #filePath, line: UInt = #line) throws {
            try text.write(toFile: p, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try FeatureFileReader(path: p, idKey: "image_id").readAll(), file: file, line: line) {
                XCTAssertEqual($0 as? RetrievalError, expected, file: file, line: line)
            }
        }
        let ok = "{\"image_id\": 1, \"feature\": [0.5, 1]}\n"
        try check(ok + "{\"image_id\": 2, \"feature\": [0.5, 1, 2]}\n", .dimensionMismatch(path: p, line: 2, id: "2", expected: 2, found: 3))
        try check(
            ok + ok + "{\"image_id\": 3, \"feature\": [0.5, 1}\n",
            .malformedLine(path: p, line: 3, reason: "invalid JSON: Expecting ',' delimiter at column 35"))
        try check(ok + "\n", .malformedLine(path: p, line: 2, reason: "not a JSON object"))
        try check(ok + "{\"feature\": [1, 2]}\n", .malformedLine(path: p, line: 2, reason: "no \"image_id\" key"))
        try check("{\"image_id\": \"x\"}\n", .malformedLine(path: p, line: 1, reason: "no \"feature\" key (id x)"))
        try check(
            "{\"image_id\": 1, \"feature\": [1, \"2\"]}\n", .malformedLine(path: p, line: 1, reason: "\"feature\" holds a non-number at column 32"))
        XCTAssertThrowsError(try FeatureFileReader(path: path("missing.jsonl"), idKey: "image_id")) {
            XCTAssertEqual($0 as? FileError, FileError(path: self.path("missing.jsonl"), reason: "no such file"))
        }
    }

    func testFailedRunLeavesNoOutput() throws {
        let bad = path("bad.jsonl")
        try "{\"text_id\": 1, \"feature\": [1, 2]}\n{oops\n".write(toFile: bad, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(
            try TopKPredictions.run(
                imageFeatures: eval("valid_imgs.img_feat.jsonl"), textFeatures: bad, direction: .textToImage,
                options: TopKOptions(), output: path("out.jsonl")))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: tmp.path), ["bad.jsonl"])
    }

    // MARK: evaluation

    func testEvaluationOutputsMatchReferenceFiles() throws {
        try RecallEvaluation.run(
            groundTruth: eval("valid_texts.jsonl"), predictions: eval("valid_predictions.jsonl"), output: path("o.json"), direction: .textToImage)
        XCTAssertEqual(try bytes(path("o.json")), try bytes(eval("output.json")))
        try RecallEvaluation.run(
            groundTruth: eval("valid_texts.tr.jsonl"), predictions: eval("valid_tr_predictions.jsonl"), output: path("o.json"),
            direction: .imageToText)
        XCTAssertEqual(try bytes(path("o.json")), try bytes(eval("output_tr.json")))
    }

    /// Every malformed-input case the reference reports (Tests/Fixtures/eval-errors, from
    /// scripts/reference/make_eval_error_cases.py): the same output JSON and the same last printed line.
    func testEvaluationReportsEveryReferenceErrorCase() throws {
        let data = try Data(contentsOf: Self.fixtures.appendingPathComponent("eval-errors/cases.json"))
        let cases = try JSONSerialization.jsonObject(with: data) as! [[String: Any]]
        XCTAssertGreaterThan(cases.count, 40)
        for c in cases {
            let name = c["name"] as! String
            let gt = path("gt.jsonl"), pred = path("pred.jsonl"), out = path("out.json")
            for p in [gt, pred, out] { try? FileManager.default.removeItem(atPath: p) }
            func put(_ key: String, _ p: String) throws {
                guard let text = c[key] as? String else { return }
                let raw = (c[key + "_bytes_latin1"] as? Bool) == true ? Data(text.unicodeScalars.map { UInt8($0.value) }) : Data(text.utf8)
                try raw.write(to: URL(fileURLWithPath: p))
            }
            try put("gt", gt)
            try put("pred", pred)
            let direction: RetrievalDirection = c["script"] as! String == "evaluation" ? .textToImage : .imageToText
            let outcome = try RecallEvaluation.run(groundTruth: gt, predictions: pred, output: out, direction: direction)
            XCTAssertEqual(String(decoding: try bytes(out), as: UTF8.self), c["output"] as! String, name)
            let stdout = (c["stdout"] as! String).split(separator: "\n")
            XCTAssertEqual(RecallEvaluation.summaryLine(outcome), String(stdout.last!), name)
        }
    }

    func testAnnotationTransform() throws {
        let input = path("valid_texts.jsonl")
        try FileManager.default.copyItem(atPath: eval("valid_texts.jsonl"), toPath: input)
        let out = try AnnotationTransform.run(input: input)
        XCTAssertEqual(out, path("valid_texts.tr.jsonl"))
        XCTAssertEqual(try bytes(out), try bytes(eval("valid_texts.tr.jsonl")))
        // Python's str.replace replaces every occurrence.
        XCTAssertEqual(AnnotationTransform.outputPath(forInput: "/d/a.jsonl.bak/x.jsonl"), "/d/a.bak/x.tr.jsonl")
    }

    /// Ids past 64 bits: Python's `hash()` is the value modulo 2^61 − 1 (values from CPython 3.11.7), and the
    /// missing-id message lists them in the order of the reference's `", ".join(str(i) for i in ref_ids - pred_ids)`
    /// as CPython 3.11.7 prints it. A 20-digit id once overflowed our hash (a fuzzing finding).
    func testIdsBeyond64BitsHashAndOrderAsPython() throws {
        let ids = [
            "99999999999999999999", "3", "12345678901234567890123456789", "18446744073709551616", "2305843009213693951",
            "2305843009213693952", "9223372036854775808", "7", "4611686018427387904123", "100000000000000000000000000000000000000",
        ]
        let pythonHashes: [Int64] = [
            848_750_603_811_160_106, 3, 486_047_579_052_333_735, 8, 0, 1, 4, 7, 2123, 244_469_275_760_665_571,
        ]
        let keys = try ids.map { try XCTUnwrap(PyJSONParser.parse($0).pythonKey) }
        XCTAssertEqual(keys.map(CPythonSet.hash), pythonHashes)
        XCTAssertEqual(CPythonSet.hash(try XCTUnwrap(PyJSONParser.parse("-99999999999999999999").pythonKey)), -848_750_603_811_160_106)

        let gt = path("gt.jsonl"), pred = path("pred.jsonl")
        try ids.map { "{\"text_id\": \($0), \"image_ids\": [1]}\n" }.joined().write(toFile: gt, atomically: true, encoding: .utf8)
        try ["3", "99999999999999999999"].map { "{\"text_id\": \($0), \"image_ids\": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}\n" }.joined()
            .write(toFile: pred, atomically: true, encoding: .utf8)
        XCTAssertEqual(
            RecallEvaluation.evaluate(groundTruth: gt, predictions: pred, direction: .textToImage),
            .failure(
                .string(
                    "The following text_ids have no prediction in your submission, please check again: 2305843009213693951, "
                        + "2305843009213693952, 100000000000000000000000000000000000000, 9223372036854775808, "
                        + "12345678901234567890123456789, 18446744073709551616, 7, 4611686018427387904123")))
    }
}
