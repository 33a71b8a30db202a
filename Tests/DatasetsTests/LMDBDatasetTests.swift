import Checkpoints
import Essentials
import Foundation
import XCTest

@testable import Datasets

/// The LMDB layout against the reference: what `build_lmdb_dataset.py` built from the fixture dataset.
final class LMDBDatasetTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/dataset")
    var fixtures: URL { Self.fixtures }
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("datasets-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    /// `lmdb_expected.json`: "split/db" → [(key, value)] in cursor order.
    func expected() throws -> [String: [(String, Any)]] {
        let json =
            try JSONSerialization.jsonObject(with: Data(contentsOf: fixtures.appendingPathComponent("lmdb_expected.json"))) as! [String: [[Any]]]
        return json.mapValues { $0.map { ($0[0] as! String, $0[1]) } }
    }

    /// Every key and decoded value of the LMDBs under `root`, in the shape of `lmdb_expected.json`.
    func dump(_ root: URL, split: String) throws -> (pairs: [(String, Any)], imgs: [(String, Any)]) {
        var pairs: [(String, Any)] = []
        let p = try PairsStore(path: root.appendingPathComponent("\(split)/pairs").path)
        try p.forEach { key, pair in pairs.append((key, [pair.imageID.intValue!, pair.textID.intValue!, pair.text.stringValue!])) }
        pairs.append(("num_samples", String(p.count)))
        var imgs: [(String, Any)] = []
        let i = try ImageStore(path: root.appendingPathComponent("\(split)/imgs").path)
        try i.forEachBase64 { id, b64 in imgs.append((id, String(decoding: b64.prefix(32), as: UTF8.self))) }
        imgs.append(("num_images", String(i.count)))
        return (pairs, imgs)
    }

    func assertMatchesExpected(_ root: URL, file: StaticString = #filePath, line: UInt = #line) throws {
        let exp = try expected()
        for split in ["train", "valid"] {
            let got = try dump(root, split: split)
            for (name, rows) in [("pairs", got.pairs), ("imgs", got.imgs)] {
                let want = exp["\(split)/\(name)"]!
                XCTAssertEqual(rows.map(\.0), want.map(\.0), "\(split)/\(name) keys", file: file, line: line)
                for (g, w) in zip(rows, want) {
                    XCTAssertEqual(try canonical(g.1), try canonical(w.1), "\(split)/\(name) key \(g.0): \(g.1) vs \(w.1)", file: file, line: line)
                }
            }
        }
    }

    /// A JSON text of `value`, to compare decoded values with the expectation's whatever their Swift types.
    func canonical(_ value: Any) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: [value], options: [.sortedKeys]), as: UTF8.self)
    }

    /// The raw key/value bytes of one LMDB in cursor order (the `num_*` keys included).
    func rawEntries(_ path: String) throws -> [([UInt8], [UInt8])] {
        var out: [([UInt8], [UInt8])] = []
        try LMDBEnvironment(readingAt: path).read { txn in
            try txn.forEach { k, v in
                out.append((Array(k), Array(v))); return true
            }
        }
        return out
    }

    func testReadsReferenceBuiltLMDB() throws {
        try assertMatchesExpected(fixtures.appendingPathComponent("lmdb"))
        let imgs = try ImageStore(path: fixtures.appendingPathComponent("lmdb/valid/imgs").path)
        XCTAssertEqual(imgs.count, 4)
        let webp = try XCTUnwrap(imgs.imageData(id: "1000072"))
        XCTAssertEqual(String(decoding: webp.prefix(4), as: UTF8.self), "RIFF")
        XCTAssertNil(try imgs.imageData(id: "42"))
        let pairs = try PairsStore(path: fixtures.appendingPathComponent("lmdb/train/pairs").path)
        XCTAssertEqual(try pairs.pair(at: 12), PairRecord(imageID: .int(1000002), textID: .int(509), text: .string("A photo of a dog 一张狗的照片")))
    }

    func testBuildGivesTheReferenceKeysAndValues() throws {
        let data = scratch.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        for f in ["train_imgs.tsv", "train_texts.jsonl", "valid_imgs.tsv", "valid_texts.jsonl"] {
            try FileManager.default.copyItem(at: fixtures.appendingPathComponent(f), to: data.appendingPathComponent(f))
        }
        let builder = LMDBDatasetBuilder(dataDirectory: data.path)
        builder.checkImages = true
        let summaries = try builder.build(splits: LMDBDatasetBuilder.parseSplits("train,valid,train"))
        XCTAssertEqual(summaries.map(\.split), ["train", "valid"])
        XCTAssertEqual(summaries.map(\.pairs), [15, 8])
        XCTAssertEqual(summaries.map(\.images), [9, 4])
        let root = data.appendingPathComponent("lmdb")
        try assertMatchesExpected(root)
        // Byte for byte: the pickles (protocol 4 framing included), the base64 text and the counts.
        for split in ["train", "valid"] {
            for db in ["pairs", "imgs"] {
                let ours = try rawEntries(root.appendingPathComponent("\(split)/\(db)").path)
                let theirs = try rawEntries(fixtures.appendingPathComponent("lmdb/\(split)/\(db)").path)
                XCTAssertEqual(ours.map(\.0), theirs.map(\.0), "\(split)/\(db) keys")
                XCTAssertTrue(ours.map(\.1) == theirs.map(\.1), "\(split)/\(db) values differ")
            }
        }
        // Nothing but the splits is left in the LMDB directory (the temporary build directory is gone).
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: root.path).sorted(), ["train", "valid"])
    }

    func testMapGrowsWhenFull() throws {
        let path = scratch.appendingPathComponent("grow").path
        let env = try LMDBEnvironment(creatingAt: path, mapSize: 1 << 16, durable: false)
        let start = env.mapSize
        let writer = LMDBBatchWriter(env, maxEntries: 50)
        let value = [UInt8](repeating: 7, count: 10_000)
        for i in 0..<400 { try writer.put(String(format: "%05d", i), value + [UInt8(i & 255)]) }
        try writer.flush()
        try env.sync()
        XCTAssertGreaterThan(env.mapSize, start)
        let reread = try LMDBEnvironment(readingAt: path)
        XCTAssertEqual(try reread.count, 400)
        var n = 0
        try reread.read { txn in
            try txn.forEach { k, v in
                XCTAssertEqual(String(decoding: k, as: UTF8.self), String(format: "%05d", n))
                XCTAssertEqual(v.count, 10_001)
                XCTAssertEqual(v.last, UInt8(n & 255))
                n += 1
                return true
            }
        }
        XCTAssertEqual(n, 400)
    }

    func testLMDBErrorsNameThePath() throws {
        let missing = scratch.appendingPathComponent("nope").path
        XCTAssertThrowsError(try LMDBEnvironment(readingAt: missing)) { XCTAssertTrue("\($0)".contains(missing), "\($0)") }
        let file = scratch.appendingPathComponent("file")
        try Data("x".utf8).write(to: file)
        XCTAssertThrowsError(try LMDBEnvironment(creatingAt: file.path)) { XCTAssertTrue("\($0)".contains(file.path), "\($0)") }
        // An empty directory is no dataset LMDB: the message names the path and the missing key.
        let empty = scratch.appendingPathComponent("empty").path
        _ = try LMDBEnvironment(creatingAt: empty)
        XCTAssertThrowsError(try ImageStore(path: empty)) { XCTAssertTrue("\($0)".contains(empty) && "\($0)".contains("num_images"), "\($0)") }
    }

    func testBase64EitherAlphabet() throws {
        let bytes: [UInt8] = [0xfb, 0xff, 0xbf, 0x00, 0x01]
        let standard = Data(bytes).base64EncodedString()
        XCTAssertEqual(standard, "+/+/AAE=")
        XCTAssertEqual(try Base64.decode(Array(standard.utf8)), bytes)
        XCTAssertEqual(try Base64.decode(Array("-_-_AAE=".utf8)), bytes)
        XCTAssertEqual(try Base64.decode(Array("AAEC".utf8)), [0, 1, 2])
        XCTAssertEqual(try Base64.decode(Array("AA==".utf8)), [0])
        for bad in ["AAE", "A=AA", "AA*A", "AA=A", ""] { XCTAssertNotNil(Base64.firstInvalidOffset(Array(bad.utf8)), bad) }
    }

    func testLineReaderStreamsLongAndCRLFLines() throws {
        let file = scratch.appendingPathComponent("lines.txt")
        let long = String(repeating: "x", count: 5000)
        try Data("a\r\n\(long)\nlast".utf8).write(to: file)
        var reader = LineReader(path: file.path)
        reader.chunkSize = 64
        var got: [(String, Int)] = []
        try reader.forEachLine { line, n, _ in got.append((String(decoding: line, as: UTF8.self), n)) }
        XCTAssertEqual(got.map(\.0), ["a", long, "last"])
        XCTAssertEqual(got.map(\.1), [1, 2, 3])
    }
}
