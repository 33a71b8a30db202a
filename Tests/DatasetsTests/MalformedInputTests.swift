import Foundation
import XCTest

@testable import Datasets

/// Each malformed input is reported with its file and line (and id), and leaves no LMDB behind.
final class MalformedInputTests: XCTestCase {
    var scratch: URL!
    let png = Data(base64Encoded: "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg==")!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("malformed-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    /// A valid split: three images, two texts.
    var goodTSV: [String] { ["1\t" + png.base64EncodedString(), "2\t" + png.base64EncodedString(), "3\t" + png.base64EncodedString()] }
    var goodJSONL: [String] {
        [#"{"text_id": 10, "text": "红色", "image_ids": [1, 2]}"#, #"{"text_id": 11, "text": "蓝色", "image_ids": [3]}"#]
    }

    func write(_ tsv: [String], _ jsonl: [String], in dir: URL) throws {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data((tsv.joined(separator: "\n") + "\n").utf8).write(to: dir.appendingPathComponent("train_imgs.tsv"))
        try Data((jsonl.joined(separator: "\n") + "\n").utf8).write(to: dir.appendingPathComponent("train_texts.jsonl"))
    }

    func testEachMalformedInputNamesFileAndLine() throws {
        var badBase64 = goodTSV; badBase64[1] = "2\tiVBOR*w0KGgo="
        var noTab = goodTSV; noTab[2] = "3 " + png.base64EncodedString()
        var duplicate = goodTSV; duplicate.append("2\t" + png.base64EncodedString())
        var notImage = goodTSV; notImage[1] = "2\t" + Data("hello world!".utf8).base64EncodedString()
        var noField = goodJSONL; noField[1] = #"{"text_id": 11, "image_ids": [3]}"#
        var badJSON = goodJSONL; badJSON.append(#"{"text_id": 12, "text": "x", "image_ids": [1]"#)
        var missing = goodJSONL; missing[0] = #"{"text_id": 10, "text": "红色", "image_ids": [1, 7]}"#
        var notList = goodJSONL; notList[0] = #"{"text_id": 10, "text": "红色", "image_ids": 1}"#
        let cases: [(String, [String], [String], Bool, String, [String])] = [
            ("base64", badBase64, goodJSONL, false, "train_imgs.tsv:2", ["base64", "2"]),
            ("no tab", noTab, goodJSONL, false, "train_imgs.tsv:3", ["tab"]),
            ("duplicate", duplicate, goodJSONL, false, "train_imgs.tsv:4", ["image id 2", "line 2"]),
            ("not an image", notImage, goodJSONL, true, "train_imgs.tsv:2", ["image id 2"]),
            ("missing field", goodTSV, noField, false, "train_texts.jsonl:2", ["'text'"]),
            ("invalid JSON", goodTSV, badJSON, false, "train_texts.jsonl:3", ["invalid JSON"]),
            ("missing image", goodTSV, missing, false, "train_texts.jsonl:1", ["image id 7", "text_id 10", "train_imgs.tsv"]),
            ("not a list", goodTSV, notList, false, "train_texts.jsonl:1", ["image_ids"]),
        ]
        for (name, tsv, jsonl, check, location, mentions) in cases {
            let dir = scratch.appendingPathComponent(name.replacingOccurrences(of: " ", with: "_"))
            try write(tsv, jsonl, in: dir)
            let builder = LMDBDatasetBuilder(dataDirectory: dir.path)
            builder.checkImages = check
            XCTAssertThrowsError(try builder.build(splits: ["train"]), name) { error in
                let message = "\(error)"
                XCTAssertTrue(message.contains(dir.path + "/" + location), "\(name): '\(message)' should name \(location)")
                for m in mentions { XCTAssertTrue(message.contains(m), "\(name): '\(message)' should mention \(m)") }
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("lmdb").path), "\(name): no LMDB left behind")
        }
    }

    func testFailedRebuildKeepsTheExistingLMDB() throws {
        let dir = scratch.appendingPathComponent("rebuild")
        try write(goodTSV, goodJSONL, in: dir)
        try LMDBDatasetBuilder(dataDirectory: dir.path).build(splits: ["train"])
        let imgs = dir.appendingPathComponent("lmdb/train/imgs").path
        XCTAssertEqual(try ImageStore(path: imgs).count, 3)
        var broken = goodJSONL; broken.append("not json")
        try write(goodTSV + ["4\t" + png.base64EncodedString()], broken, in: dir)
        XCTAssertThrowsError(try LMDBDatasetBuilder(dataDirectory: dir.path).build(splits: ["train"]))
        XCTAssertEqual(try ImageStore(path: imgs).count, 3, "the previous LMDB is untouched")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("lmdb").path), ["train"])
        // A successful rebuild replaces it.
        try write(goodTSV + ["4\t" + png.base64EncodedString()], goodJSONL, in: dir)
        try LMDBDatasetBuilder(dataDirectory: dir.path).build(splits: ["train"])
        XCTAssertEqual(try ImageStore(path: imgs).count, 4)
        XCTAssertEqual(try PairsStore(path: dir.appendingPathComponent("lmdb/train/pairs").path).count, 3)
    }

    func testMissingInputsAreNamedBeforeAnythingIsWritten() throws {
        let dir = scratch.appendingPathComponent("partial")
        try write(goodTSV, goodJSONL, in: dir)
        XCTAssertThrowsError(try LMDBDatasetBuilder(dataDirectory: dir.path).build(splits: ["train", "test"])) {
            XCTAssertTrue("\($0)".contains("test_imgs.tsv"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("lmdb").path))
        XCTAssertThrowsError(try LMDBDatasetBuilder(dataDirectory: scratch.appendingPathComponent("none").path).build(splits: ["train"])) {
            XCTAssertTrue("\($0)".contains("none"), "\($0)")
        }
    }
}
