import Essentials
import Foundation
import Imaging
import XCTest

@testable import Datasets

/// `make-dataset`: captions + images → the reference's TSV/JSONL layout, deterministic, validated, atomic.
final class DatasetMakerTests: XCTestCase {
    static let images = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/images")
    var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("maker-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: scratch) }

    func captions(_ text: String, name: String = "captions.csv") throws -> String {
        let url = scratch.appendingPathComponent(name)
        try Data(text.utf8).write(to: url)
        return url.path
    }

    func testCSVWithSeveralCaptionsPerImage() throws {
        let file = try captions(
            #"""
            image_path,caption
            rgb.jpg,一只猫
            rgb.png,"红色的, 圆形"
            rgb.jpg,"他说""你好"""
            gray.png,一只猫
            """#)
        var maker = DatasetMaker(imagesDirectory: Self.images.path, captionsFile: file, outputDirectory: scratch.appendingPathComponent("out").path)
        let made = try maker.make()
        XCTAssertEqual(made, [MadeSplit(split: "train", images: 3, texts: 3)])
        let jsonl = try String(contentsOf: scratch.appendingPathComponent("out/train_texts.jsonl"), encoding: .utf8)
        XCTAssertEqual(
            jsonl,
            #"""
            {"text_id": 1, "text": "一只猫", "image_ids": [1, 3]}
            {"text_id": 2, "text": "红色的, 圆形", "image_ids": [2]}
            {"text_id": 3, "text": "他说\"你好\"", "image_ids": [1]}

            """#)
        let tsv = try String(contentsOf: scratch.appendingPathComponent("out/train_imgs.tsv"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(tsv.map { $0.split(separator: "\t")[0] }, ["1", "2", "3"])
        let original = try Data(contentsOf: Self.images.appendingPathComponent("rgb.jpg"))
        XCTAssertEqual(tsv[0].split(separator: "\t")[1], Substring(original.base64EncodedString()))
        // The output is what build-lmdb reads.
        try LMDBDatasetBuilder(dataDirectory: scratch.appendingPathComponent("out").path).build(splits: ["train"])
        XCTAssertEqual(try PairsStore(path: scratch.appendingPathComponent("out/lmdb/train/pairs").path).count, 4)
        maker.resize = 32
        try maker.make()
        let resized = try String(contentsOf: scratch.appendingPathComponent("out/train_imgs.tsv"), encoding: .utf8).split(separator: "\n")
        let image = try Image(data: Data(Base64.decode(Array(resized[0].split(separator: "\t")[1].utf8))))
        XCTAssertEqual(min(image.width, image.height), 32)
        XCTAssertEqual(image.mode, .rgb)
    }

    func testSplitsAreDeterministicAndDisjoint() throws {
        let names = ["rgb.jpg", "rgb.png", "gray.png", "gray.jpg", "palette.png", "rgba.png", "tiny.png", "wide.png", "lossy.webp", "lossless.webp"]
        let file = try captions(
            names.enumerated().map { #"{"image": "\#($1)", "caption": "caption \#($0)"}"# }.joined(separator: "\n"), name: "c.jsonl")
        func run(_ seed: UInt64, _ out: String) throws -> [String: [String]] {
            var maker = DatasetMaker(imagesDirectory: Self.images.path, captionsFile: file, outputDirectory: scratch.appendingPathComponent(out).path)
            maker.splits = try DatasetMaker.parseRatios("6:2:2")
            maker.seed = seed
            let made = try maker.make()
            XCTAssertEqual(made.map(\.images), [6, 2, 2])
            var ids: [String: [String]] = [:]
            for s in ["train", "valid", "test"] {
                ids[s] = try String(contentsOf: scratch.appendingPathComponent("\(out)/\(s)_imgs.tsv"), encoding: .utf8)
                    .split(separator: "\n").map { String($0.split(separator: "\t")[0]) }
            }
            return ids
        }
        let a = try run(7, "a"), b = try run(7, "b"), c = try run(8, "c")
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, c)
        XCTAssertEqual(Set(a.values.flatMap { $0 }).count, 10)
    }

    func testErrorsNameFileAndLineAndLeaveNothing() throws {
        let out = scratch.appendingPathComponent("out")
        let cases: [(String, String, [String])] = [
            ("image_path,caption\nrgb.jpg,猫\nmissing.jpg,狗\n", "captions.csv:3", ["missing.jpg"]),
            ("path,text\nrgb.jpg,猫\n", "captions.csv:1", ["image_path"]),
            ("image_path,caption\nrgb.jpg,猫,多余\n", "captions.csv:2", ["fields"]),
            ("image_path,caption\nrgb.jpg,\"猫\n", "captions.csv:2", ["quoted"]),
            ("image_path,caption\n../dataset/train_texts.jsonl,猫\n", "captions.csv:2", ["train_texts.jsonl"]),
        ]
        for (text, location, mentions) in cases {
            let file = try captions(text)
            let maker = DatasetMaker(imagesDirectory: Self.images.path, captionsFile: file, outputDirectory: out.path)
            XCTAssertThrowsError(try maker.make(), text) { error in
                XCTAssertTrue("\(error)".contains(scratch.appendingPathComponent(location).path), "'\(error)' should name \(location)")
                for m in mentions { XCTAssertTrue("\(error)".contains(m), "'\(error)' should mention \(m)") }
            }
            XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: out.path)) ?? [], [], "nothing left behind")
        }
    }
}
