import ChineseCLIP
import Foundation
import Tensors
import XCTest

@testable import Evaluation

/// Zero-shot classification against `Fixtures/zeroshot` (made by running the reference's zeroshot_evaluation.py
/// with vit-tiny lent the names ViT-B-32 / RBT3-chinese).
final class ZeroShotTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    var zeroshot: URL { Self.fixtures.appendingPathComponent("zeroshot") }

    /// Predictions may differ from the reference's by two units of the 6th decimal after both are rounded.
    /// The fixtures README asks for 1e-6, which the reference itself does not meet: the same reference maths
    /// with image batch 1 instead of 4 moves two predictions by 2e-6 (scripts/reference/probe_zeroshot_reproducibility.py).
    /// Probabilities are softmax(100 · cosine): a cosine change of one fp32 ulp moves them by ~2e-6.
    /// The tiny slack only absorbs the binary representation of 2e-6 between two 6-decimal numbers.
    static let tolerance = 2e-6 + 1e-12

    func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("zs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    func touch(_ dir: URL, _ relative: String, _ contents: Data = Data()) throws {
        let url = dir.appendingPathComponent(relative)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try contents.write(to: url)
    }

    // MARK: Templates

    func testBundledTemplatesAreTheReferenceSets() throws {
        let data = try Data(contentsOf: zeroshot.appendingPathComponent("templates.json"))
        let expected = try JSONDecoder().decode([String: [String]].self, from: data)
        XCTAssertEqual(try ZeroShotTemplates.all(), expected)
    }

    func testDatasetNamePicksTheReferenceSet() throws {
        XCTAssertEqual(ZeroShotTemplates.setName(forDataset: "food-101"), "food_templates")
        XCTAssertEqual(ZeroShotTemplates.setName(forDataset: "fgvc-aircraft-2013b-variants102"), "aircraft_templates")
        XCTAssertEqual(ZeroShotTemplates.setName(forDataset: "oxford-flower-102"), "flower_templates")
        XCTAssertEqual(ZeroShotTemplates.setName(forDataset: "eurosat_clip"), "eurosat_templates")
        XCTAssertEqual(ZeroShotTemplates.setName(forDataset: "resisc45_clip"), "eurosat_templates")
        XCTAssertEqual(ZeroShotTemplates.setName(forDataset: "country211"), "country211_templates")
        // Exact names only; the other sets exist but the script never picks them.
        for name in ["Food-101", "imagenet", "cifar-100", "oxford-iiit-pets", "fixture-objects", "openai"] {
            XCTAssertEqual(ZeroShotTemplates.setName(forDataset: name), "openai_templates", name)
        }
        XCTAssertEqual(try ZeroShotTemplates.templates(forDataset: "food-101").count, 21)
        XCTAssertEqual(try ZeroShotTemplates.templates(forDataset: "x").count, 183)
    }

    func testPromptFillsThePlaceholderOnce() {
        XCTAssertEqual(ZeroShotTemplates.prompt("{}的照片", label: "猫"), "猫的照片")
        XCTAssertEqual(ZeroShotTemplates.prompt("一张{}的照片。", label: "a{}b"), "一张a{}b的照片。")
    }

    // MARK: Folder reader

    func testFixtureFolderOrder() throws {
        let ds = try ZeroShotDataset(imageFolder: zeroshot.appendingPathComponent("test").path)
        XCTAssertEqual(ds.classFolders, ["000", "001", "002"])
        let names = ds.samples.map { "\($0.classIndex) " + ($0.path as NSString).lastPathComponent }
        XCTAssertEqual(
            names,
            [
                "0 big.jpg", "0 cmyk.jpg", "0 palette.png", "0 rgb.jpg", "0 wide.png",
                "1 gray.png", "1 lossy.webp", "1 progressive.jpg", "1 rgb.png",
                "2 gray.jpg", "2 lossless.webp", "2 rgba.png", "2 tiny.png",
            ])
    }

    func testImageFolderOrderingRules() throws {
        let dir = try tempDir()
        // Code-point order ("B" < "a" < "b"), sub-folders walked after their parent's files, sorted by path,
        // extensions matched case-insensitively, other files skipped, hidden folders are classes too.
        // (Expected order checked against torchvision 0.29's ImageFolder on the same tree.)
        for f in [
            "b/z.JPG", "b/a.txt", "b/sub/a.png", "b/sub-x/c.webp", "b/sub/deep/d.png", "b/a.jpeg", "B/x.png",
            "a/1.tiff", ".h/k.bmp",
        ] {
            try touch(dir, f)
        }
        let ds = try ZeroShotDataset(imageFolder: dir.path)
        XCTAssertEqual(ds.classFolders, [".h", "B", "a", "b"])
        let rel = ds.samples.map { String($0.path.dropFirst(dir.path.count + 1)) }
        XCTAssertEqual(
            rel,
            [
                ".h/k.bmp", "B/x.png", "a/1.tiff", "b/a.jpeg", "b/z.JPG", "b/sub/a.png", "b/sub-x/c.webp",
                "b/sub/deep/d.png",
            ])
        XCTAssertEqual(ds.samples.map(\.classIndex), [0, 1, 2, 3, 3, 3, 3, 3])
    }

    func testLabelFileIsReadLikeReadlinesStrip() throws {
        let dir = try tempDir()
        let url = dir.appendingPathComponent("labels.txt")
        try Data(" 猫 \r\n汽车\t\n\n红色的花\r".utf8).write(to: url)
        XCTAssertEqual(try ZeroShotDataset.readLabels(contentsOfFile: url.path), ["猫", "汽车", "", "红色的花"])
        XCTAssertEqual(
            try ZeroShotDataset.readLabels(contentsOfFile: zeroshot.appendingPathComponent("label_cn.txt").path),
            ["猫", "汽车", "红色的花"])
    }

    // MARK: Errors

    func testMissingLabelFileNamesIt() {
        let path = zeroshot.appendingPathComponent("no_such_labels.txt").path
        XCTAssertThrowsError(try ZeroShotDataset.readLabels(contentsOfFile: path)) { e in
            XCTAssertEqual(e as? ZeroShotError, .labelFile(path: path, reason: "no such file"))
            XCTAssertTrue("\(e)".contains(path))
        }
    }

    func testLabelCountMustMatchFolderCount() throws {
        let ds = try ZeroShotDataset(imageFolder: zeroshot.appendingPathComponent("test").path)
        XCTAssertNoThrow(try ds.checkLabels(["a", "b", "c"], labelFile: "l.txt"))
        for labels in [["a", "b"], ["a", "b", "c", "d"]] {
            XCTAssertThrowsError(try ds.checkLabels(labels, labelFile: "l.txt")) { e in
                XCTAssertEqual(
                    e as? ZeroShotError,
                    .classCountMismatch(
                        labelFile: "l.txt", labels: labels.count,
                        datapath: ds.root, folders: 3))
                XCTAssertTrue("\(e)".contains("l.txt"))
            }
        }
    }

    func testEmptyClassFolderAndNoClassFolder() throws {
        let dir = try tempDir()
        try touch(dir, "000/a.jpg")
        try touch(dir, "001/readme.txt")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("002"), withIntermediateDirectories: true)
        XCTAssertThrowsError(try ZeroShotDataset(imageFolder: dir.path)) { e in
            XCTAssertEqual(e as? ZeroShotError, .emptyClasses(path: dir.path, classes: ["001", "002"]))
        }
        let flat = try tempDir()
        try touch(flat, "a.jpg")
        XCTAssertThrowsError(try ZeroShotDataset(imageFolder: flat.path)) { e in
            XCTAssertEqual(e as? ZeroShotError, .noClassFolders(path: flat.path))
        }
    }

    func testUnreadableImageNamesTheFile() throws {
        let dir = try tempDir()
        try touch(dir, "000/broken.jpg", Data("not an image".utf8))
        let path = dir.appendingPathComponent("000/broken.jpg").path
        XCTAssertThrowsError(try ZeroShotDataset.loadImage(path: path)) { e in
            guard case .image(let p, _)? = e as? ZeroShotError else { return XCTFail("\(e)") }
            XCTAssertEqual(p, path)
            XCTAssertTrue("\(e)".contains("broken.jpg"))
        }
    }

    func testIndexFile() throws {
        let dir = try tempDir()
        let good = dir.appendingPathComponent("i.json"), bad = dir.appendingPathComponent("b.json")
        try Data("[2, -1, 0]".utf8).write(to: good)
        try Data("[1.5]".utf8).write(to: bad)
        XCTAssertEqual(try ZeroShotEvaluation.readIndex(contentsOfFile: good.path), [2, -1, 0])
        XCTAssertThrowsError(try ZeroShotEvaluation.readIndex(contentsOfFile: bad.path))
        let r = ZeroShotResult(
            probabilities: Tensor(shape: [3, 2], scalars: [1, 0, 0, 1, 0.5, 0.5]), targets: [0, 1, 1],
            correct: 2, total: 3)
        let o = try r.reordered(by: [2, -1, 0], indexFile: "i.json")
        XCTAssertEqual(o.probabilities.scalars, [0.5, 0.5, 0.5, 0.5, 1, 0])
        XCTAssertEqual(o.targets, [1, 1, 0])
        XCTAssertEqual(o.top1, 2.0 / 3.0)
        XCTAssertThrowsError(try r.reordered(by: [3], indexFile: "i.json"))
    }

    // MARK: Python formatting

    func testPythonFloatRepr() {
        let cases: [(Double, String)] = [
            (0.0, "0.0"), (-0.0, "-0.0"), (1.0, "1.0"), (0.5, "0.5"), (0.1, "0.1"), (1.0 / 3.0, "0.3333333333333333"),
            (4.0 / 13.0, "0.3076923076923077"), (0.0001, "0.0001"), (1e-05, "1e-05"), (1.5e-05, "1.5e-05"),
            (123456789.0, "123456789.0"), (1e16, "1e+16"), (1.2345e16, "1.2345e+16"), (1e15, "1000000000000000.0"),
            (5e-324, "5e-324"), (0.000123, "0.000123"), (100.0, "100.0"), (-0.25, "-0.25"), (1e22, "1e+22"),
            (9007199254740992.0, "9007199254740992.0"),
        ]
        for (x, s) in cases { XCTAssertEqual(PythonFormat.repr(x), s, "\(x)") }
        XCTAssertEqual(zeroShotResultLine(top1: 7.0 / 13.0), "zeroshot-top1: 0.5384615384615384")
    }

    func testPythonRoundAndJSONString() {
        let cases: [(Double, Double)] = [
            (0.1234565, 0.123456), (0.3179825, 0.317983), (2.5e-07, 0), (0.9999996, 1),
            (5e-07, 0), (1.5e-06, 2e-06),
        ]
        for (x, r) in cases { XCTAssertEqual(PythonFormat.round(x, digits: 6), r, "\(x)") }
        XCTAssertEqual(
            PythonFormat.jsonString("a\"b\\c\n\t\u{01}\u{7f}猫😀/"),
            #""a\"b\\c\n\t\u0001\u007f\u732b\ud83d\ude00/""#)
    }

    // MARK: End to end with vit-tiny

    /// The reference counts `numel()` of every parameter; the int8 path holds its linear weights without an fp32
    /// value, and its counts must not change (they did: int8 submissions reported the weights' released values).
    func testTheInt8ModelReportsTheSameParameterCounts() throws {
        let models = Self.fixtures.appendingPathComponent("models")
        let config = try CLIPConfig.load(contentsOf: models.appendingPathComponent("vit-tiny.json"))
        let int8 = try ChineseCLIPModel(checkpoint: models.appendingPathComponent("vit-tiny.pt"), config: config, precision: .int8)
        let submission = ElevaterSubmission(model: int8, visionModelName: "ViT-B-32", datasetName: "food-101", predictions: Tensor(shape: [0, 3]))
        XCTAssertEqual(submission.numParams, 863297)
        XCTAssertEqual(submission.numVisualParams, 152576)
    }

    func loadTiny() throws -> ChineseCLIPModel {
        let models = Self.fixtures.appendingPathComponent("models")
        let config = try CLIPConfig.load(contentsOf: models.appendingPathComponent("vit-tiny.json"))
        return try ChineseCLIPModel(checkpoint: models.appendingPathComponent("vit-tiny.pt"), config: config)
    }

    /// Checks a submission's text against the reference's: identical up to the predictions, which must have the
    /// same shape and agree within ``tolerance``.
    static func assertSubmission(_ text: String, matches expected: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let marker = "\"predictions\": "
        let (a, e) = (text.components(separatedBy: marker), expected.components(separatedBy: marker))
        XCTAssertEqual(a.count, 2, file: file, line: line)
        XCTAssertEqual(a.first, e.first, "everything before the predictions is identical", file: file, line: line)
        let pa = try JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
        let pe = try JSONSerialization.jsonObject(with: Data(expected.utf8)) as! [String: Any]
        XCTAssertEqual(Set(pa.keys), Set(pe.keys), file: file, line: line)
        let ra = (pa["predictions"] as! [[[Double]]]), re = (pe["predictions"] as! [[[Double]]])
        XCTAssertEqual(ra.count, 1, file: file, line: line)
        XCTAssertEqual(ra[0].map(\.count), re[0].map(\.count), "shape", file: file, line: line)
        var worst = 0.0
        for (x, y) in zip(ra[0], re[0]) { for (u, v) in zip(x, y) { worst = max(worst, abs(u - v)) } }
        XCTAssertLessThanOrEqual(worst, tolerance, "largest prediction difference", file: file, line: line)
        // Every number is written as Python writes round(x, 6): at most 6 decimals.
        for number in a[1].split(whereSeparator: { "[], }".contains($0) }) {
            if let dot = number.firstIndex(of: ".") { XCTAssertLessThanOrEqual(number[dot...].count - 1, 6, String(number)) }
        }
        XCTAssertTrue(text.hasSuffix("]]]}"), file: file, line: line)
    }

    func testEvaluationMatchesTheReference() throws {
        let clip = try loadTiny()
        let data = try ZeroShotDataset(imageFolder: zeroshot.appendingPathComponent("test").path)
        let labels = try ZeroShotDataset.readLabels(contentsOfFile: zeroshot.appendingPathComponent("label_cn.txt").path)
        try data.checkLabels(labels, labelFile: "label_cn.txt")
        for (dataset, batch) in [("fixture-objects", 4), ("food-101", 4)] {  // the fixture's --img-batch-size
            let classifier = ZeroShotClassifier(
                model: clip, classNames: labels,
                templates: try ZeroShotTemplates.templates(forDataset: dataset))
            let result = try ZeroShotEvaluation.run(model: clip, dataset: data, classifier: classifier, batchSize: batch)
            let printed = try String(contentsOf: zeroshot.appendingPathComponent("\(dataset).stdout.txt"), encoding: .utf8)
            XCTAssertEqual(zeroShotResultLine(top1: result.top1) + "\nFinished.\n", printed, dataset)
            let submission = ElevaterSubmission(
                model: clip, visionModelName: "ViT-B-32", datasetName: dataset,
                predictions: result.probabilities)
            XCTAssertEqual(submission.numParams, 863297)
            XCTAssertEqual(submission.numVisualParams, 152576)
            let expected = try String(contentsOf: zeroshot.appendingPathComponent("\(dataset).json"), encoding: .utf8)
            try Self.assertSubmission(submission.jsonString(), matches: expected)

            let dir = try tempDir()
            let path = ElevaterSubmission.path(saveDir: dir.appendingPathComponent("new").path, dataset: dataset)
            try submission.write(to: path)
            try submission.write(to: path)  // replacing an existing file
            XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), submission.jsonString())
            XCTAssertEqual(
                try FileManager.default.contentsOfDirectory(atPath: dir.appendingPathComponent("new").path),
                ["\(dataset).json"], "no temporary file left")
        }
    }

    func testClassWeightsAreUnitMeansOfNormalisedPrompts() throws {
        let clip = try loadTiny()
        let templates = ["{}的照片", "一张{}的图片"]
        let classifier = ZeroShotClassifier(model: clip, classNames: ["猫"], templates: templates)
        let f = clip.encodeTexts(["猫的照片", "一张猫的图片"], normalized: true).scalars
        let d = clip.config.embedDim
        var mean = (0..<d).map { (f[$0] + f[d + $0]) / 2 }
        let norm = mean.map { $0 * $0 }.reduce(0, +).squareRoot()
        mean = mean.map { $0 / norm }
        for (a, b) in zip(classifier.weights.scalars, mean) { XCTAssertEqual(a, b, accuracy: 1e-6) }
        // Prompts are lower-cased as the reference's _preprocess_text does before tokenising.
        let upper = ZeroShotClassifier(model: clip, classNames: ["CAT"], templates: templates)
        let lower = ZeroShotClassifier(model: clip, classNames: ["cat"], templates: templates)
        XCTAssertEqual(upper.weights.scalars, lower.weights.scalars)
    }
}
