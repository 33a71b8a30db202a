// Golden augmentation cases from the reference (Tests/Fixtures/augment, made by
// scripts/reference/make_augment_fixtures.py with timm 1.0.31 and Pillow 13): every AutoAugment op at fixed
// arguments and the whole `--use-augment` pipeline with pinned random choices must equal the reference byte
// for byte (float bits for the normalised tensor); the policy table must be timm's; and our random draws must
// follow the reference's distributions (crop box statistics from timm's own get_params, sub-policy and op
// frequencies from timm's table).
import Essentials
import Foundation
import Imaging
import XCTest

final class AugmentParityTests: XCTestCase {
    struct Source: Decodable { var mode: String; var size: [Int] }
    struct OpCase: Decodable {
        var name: String
        var op: String
        var source: String
        var args: [Double]
        var filter: String?
        var fill: [Int]
    }
    struct PipelineOp: Decodable { var op: String; var magnitude: Double; var negated: Bool }
    struct PipelineCase: Decodable {
        var name: String
        var file: String
        var mode: String
        var box: [Int]
        var flip: Bool
        var resolution: Int
        var tensor: Bool
        var ops: [PipelineOp]
    }
    struct Step: Decodable {
        var op: String
        var probability: Double
        var magnitude: Double
        var args: [Double]
        var negated_args: [Double]
    }
    struct Policy: Decodable {
        var subpolicies: [[Step]]
        var applications_per_image: [String: Double]
        var fillcolor: [Int]
        var resample: Int
        var hflip: Double
        var scale: [Double]
        var ratio: [Double]
    }
    struct CropStats: Decodable {
        var width: Int
        var height: Int
        var draws: Int
        var mean: [Double]
        var std: [Double]
        var min: [Double]
        var max: [Double]
        var fallback_box: [Int]
        var fallback_count: Int
    }
    struct Cases: Decodable {
        var pillow: String
        var timm: String
        var sources: [String: Source]
        var ops: [OpCase]
        var pipeline: [PipelineCase]
        var policy: Policy
        var crop: [CropStats]
    }

    static let directory = fixturesURL.appendingPathComponent("augment")

    func loadCases() throws -> Cases {
        try JSONDecoder().decode(Cases.self, from: Data(contentsOf: Self.directory.appendingPathComponent("cases.json")))
    }

    func loadTensors() throws -> [String: TestTensor] {
        try readSafetensors(Self.directory.appendingPathComponent("expected.safetensors"))
    }

    /// The op a fixture case names, with the case's arguments.
    func operation(_ c: OpCase) throws -> AugmentOperation {
        let a = c.args
        switch c.op {
        case "autocontrast": return .autoContrast
        case "equalize": return .equalize
        case "invert": return .invert
        case "posterize": return .posterize(bits: Int(a[0]))
        case "solarize": return .solarize(threshold: Int(a[0]))
        case "rotate": return .rotate(degrees: a[0])
        case "shearx": return .shearX(factor: a[0])
        case "sheary": return .shearY(factor: a[0])
        case "translatex": return .translateX(pixels: a[0])
        case "translatey": return .translateY(pixels: a[0])
        case "color": return .color(factor: a[0])
        case "contrast": return .contrast(factor: a[0])
        case "brightness": return .brightness(factor: a[0])
        case "sharpness": return .sharpness(factor: a[0])
        default: throw XCTSkip("unknown op \(c.op) in cases.json")
        }
    }

    /// "" when equal, else how many samples differ and where the first few are.
    func difference(_ got: [UInt8], _ want: [UInt8], width: Int, channels: Int) -> String {
        guard got.count == want.count else { return "\(got.count) samples, expected \(want.count)" }
        var diffs: [Int] = []
        for i in 0..<want.count where got[i] != want[i] { diffs.append(i) }
        if diffs.isEmpty { return "" }
        let shown = diffs.prefix(4).map { i -> String in
            let p = i / channels
            return "(x \(p % width), y \(p / width), c \(i % channels)): expected \(want[i]), got \(got[i])"
        }
        return "\(diffs.count) of \(want.count) samples differ; first " + shown.joined(separator: "; ")
    }

    func testFixtureIsFromTheReferenceVersions() throws {
        let c = try loadCases()
        XCTAssertTrue(c.pillow.hasPrefix("13."), "Pillow \(c.pillow)")
        XCTAssertEqual(c.timm, "1.0.31")
        XCTAssertGreaterThanOrEqual(c.ops.count, 200)
        XCTAssertEqual(Set(c.sources.values.map(\.mode)), ["RGB", "L"])
        XCTAssertEqual(Set(c.pipeline.map(\.mode)), ["RGB", "P", "RGBA", "L", "CMYK"])
    }

    func testEveryOpMatchesPillowExactly() throws {
        let cases = try loadCases()
        let tensors = try loadTensors()
        var failures: [String] = []
        for c in cases.ops {
            let info = try XCTUnwrap(cases.sources[c.source])
            let mode = try XCTUnwrap(Image.Mode(rawValue: info.mode))
            let (w, h) = (info.size[0], info.size[1])
            let src = Image(width: w, height: h, mode: mode, pixels: try XCTUnwrap(tensors["src.\(c.source)"]).uint8)
            let want = try XCTUnwrap(tensors["op.\(c.name)"], c.name).uint8
            let filter: AffineFilter = c.filter == "bilinear" ? .bilinear : .bicubic
            let out = try operation(c).apply(to: src, filter: filter, fill: c.fill.map(UInt8.init))
            XCTAssertEqual(out.mode, mode, c.name)
            let d = difference(out.pixels, want, width: w, channels: mode.channels)
            if !d.isEmpty { failures.append("\(c.name) (\(c.op) \(c.args) on \(info.mode) \(w)x\(h)): \(d)") }
        }
        if !failures.isEmpty {
            XCTFail("\(failures.count) of \(cases.ops.count) op cases differ from Pillow:\n" + failures.joined(separator: "\n"))
        }
    }

    func testPipelineMatchesReferenceExactly() throws {
        let cases = try loadCases()
        let tensors = try loadTensors()
        for c in cases.pipeline {
            let image = try Image(contentsOfFile: fixturesURL.appendingPathComponent("images/\(c.file)").path)
            XCTAssertEqual(image.mode.rawValue, c.mode, c.name)
            let augmentation = TrainingAugmentation(resolution: c.resolution)
            var ops: [AugmentOperation] = []
            for o in c.ops {
                let op = try XCTUnwrap(AutoAugmentOp(rawValue: o.op), "unknown op \(o.op)")
                ops.append(op.operation(magnitude: o.magnitude, negated: o.negated))
            }
            let draw = AugmentationDraw(
                top: c.box[0], left: c.box[1], height: c.box[2], width: c.box[3],
                flip: c.flip, subPolicy: 0, operations: ops)
            let out = augmentation.apply(image, draw)
            XCTAssertEqual(out.mode, .rgb, c.name)
            XCTAssertEqual(out.width, c.resolution, c.name)
            XCTAssertEqual(out.height, c.resolution, c.name)
            let want = try XCTUnwrap(tensors["pipe.\(c.name).rgb"], c.name).uint8
            let d = difference(out.pixels, want, width: c.resolution, channels: 3)
            XCTAssertTrue(d.isEmpty, "\(c.name) (\(c.mode) \(c.file), box \(c.box), flip \(c.flip), ops \(ops)): \(d)")
            if c.tensor {
                let wantT = try XCTUnwrap(tensors["pipe.\(c.name).tensor"], c.name).float32
                let gotT = Image.normalizedCHW(out)
                XCTAssertEqual(gotT.count, wantT.count, c.name)
                let bad = zip(gotT, wantT).enumerated().first { $0.element.0.bitPattern != $0.element.1.bitPattern }
                XCTAssertNil(bad, "\(c.name): tensor element \(bad?.offset ?? -1) is \(bad?.element.0 ?? 0), expected \(bad?.element.1 ?? 0)")
            }
        }
    }

    func testPolicyTableAndConstantsAreTimms() throws {
        let p = try loadCases().policy
        let ours = AutoAugmentPolicy.original
        XCTAssertEqual(ours.count, p.subpolicies.count)
        for (i, (row, refRow)) in zip(ours, p.subpolicies).enumerated() {
            XCTAssertEqual(row.count, refRow.count, "sub-policy \(i)")
            for (step, ref) in zip(row, refRow) {
                XCTAssertEqual(step.op.rawValue, ref.op, "sub-policy \(i)")
                XCTAssertEqual(step.probability, ref.probability, "sub-policy \(i) \(ref.op)")
                XCTAssertEqual(step.magnitude, ref.magnitude, "sub-policy \(i) \(ref.op)")
                for (negated, args) in [(false, ref.args), (true, ref.negated_args)] {
                    let got = step.op.operation(magnitude: step.magnitude, negated: negated)
                    XCTAssertEqual(got, expected(ref.op, args), "sub-policy \(i) \(ref.op) negated \(negated)")
                    if !step.op.randomlyNegated { XCTAssertEqual(ref.args, ref.negated_args, "\(ref.op) is never negated") }
                }
            }
        }
        XCTAssertEqual(TrainingAugmentation.fill.map(Int.init), p.fillcolor)
        XCTAssertEqual(p.resample, 3, "Pillow's BICUBIC")
        XCTAssertEqual(TrainingAugmentation.flipProbability, p.hflip)
        XCTAssertEqual([TrainingAugmentation.cropScale.lower, TrainingAugmentation.cropScale.upper], p.scale)
        XCTAssertEqual([TrainingAugmentation.cropRatio.lower, TrainingAugmentation.cropRatio.upper], p.ratio)
    }

    /// The operation timm's level function gives for `name` with arguments `args`.
    func expected(_ name: String, _ args: [Double]) -> AugmentOperation? {
        switch name {
        case "PosterizeOriginal": return .posterize(bits: Int(args[0]))
        case "Rotate": return .rotate(degrees: args[0])
        case "Solarize": return .solarize(threshold: Int(args[0]))
        case "AutoContrast": return .autoContrast
        case "Equalize": return .equalize
        case "Invert": return .invert
        case "Color": return .color(factor: args[0])
        case "Contrast": return .contrast(factor: args[0])
        case "Sharpness": return .sharpness(factor: args[0])
        case "ShearX": return .shearX(factor: args[0])
        default: return nil
        }
    }

    func testCropBoxesFollowTimmsDistribution() throws {
        for s in try loadCases().crop {
            var rng = SplitMix64(seed: UInt64(s.width * 1000 + s.height))
            let n = s.draws
            var boxes: [[Double]] = []
            var fallbacks = 0
            for _ in 0..<n {
                let b = TrainingAugmentation.cropBox(width: s.width, height: s.height, using: &rng)
                XCTAssertTrue(
                    b.top >= 0 && b.left >= 0 && b.top + b.height <= s.height && b.left + b.width <= s.width,
                    "\(s.width)x\(s.height): box \(b) outside the image")
                boxes.append([Double(b.top), Double(b.left), Double(b.height), Double(b.width)])
                if [b.top, b.left, b.height, b.width] == s.fallback_box { fallbacks += 1 }
            }
            let label = "\(s.width)x\(s.height)"
            for k in 0..<4 {
                let column = boxes.map { $0[k] }
                let mean = column.reduce(0, +) / Double(n)
                let std = (column.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n)).squareRoot()
                let field = ["i", "j", "h", "w"][k]
                if s.std[k] == 0 {
                    XCTAssertEqual(mean, s.mean[k], "\(label) \(field) is fixed in the reference")
                    XCTAssertEqual(std, 0, "\(label) \(field) is fixed in the reference")
                    continue
                }
                // Two independent samples of n: their means differ by N(0, 2 std²/n); allow 6 standard errors.
                let tolerance = 6 * (2 * s.std[k] * s.std[k] / Double(n)).squareRoot()
                XCTAssertEqual(mean, s.mean[k], accuracy: tolerance, "\(label) mean of \(field)")
                XCTAssertEqual(std, s.std[k], accuracy: 0.06 * s.std[k], "\(label) spread of \(field)")
                XCTAssertGreaterThanOrEqual(column.min()!, s.min[k] - 1, "\(label) smallest \(field)")
                XCTAssertLessThanOrEqual(column.max()!, s.max[k] + 1, "\(label) largest \(field)")
            }
            let p = Double(s.fallback_count) / Double(n)
            let tolerance = 6 * (2 * max(p * (1 - p), 1e-4) / Double(n)).squareRoot()
            XCTAssertEqual(Double(fallbacks) / Double(n), p, accuracy: tolerance, "\(label) rate of the centred fallback box")
        }
    }

    func testPolicyDrawsFollowTimmsDistribution() throws {
        let p = try loadCases().policy
        let augmentation = TrainingAugmentation(resolution: 224)
        var rng = SplitMix64(seed: 7)
        let n = 50_000
        let rows = augmentation.policy.count
        var chosen = [Int](repeating: 0, count: rows)
        var applied = [[Int]](repeating: [0, 0], count: rows)
        var flips = 0, signed = 0, negative = 0
        var perOp: [String: Int] = [:]
        for _ in 0..<n {
            let d = augmentation.draw(sourceWidth: 320, sourceHeight: 240, using: &rng)
            chosen[d.subPolicy] += 1
            if d.flip { flips += 1 }
            XCTAssertEqual(d.steps.count, d.operations.count)
            XCTAssertEqual(d.steps, d.steps.sorted(), "steps apply in the sub-policy's order")
            for (s, op) in zip(d.steps, d.operations) {
                let step = augmentation.policy[d.subPolicy][s]
                let plus = step.op.operation(magnitude: step.magnitude), minus = step.op.operation(magnitude: step.magnitude, negated: true)
                XCTAssertTrue(op == plus || op == minus, "\(op) is not step \(s) of sub-policy \(d.subPolicy)")
                applied[d.subPolicy][s] += 1
                perOp[step.op.rawValue, default: 0] += 1
                if step.op.randomlyNegated {
                    signed += 1
                    if op == minus && plus != minus { negative += 1 }
                }
            }
        }
        let se = (1.0 / Double(rows) * (1 - 1.0 / Double(rows)) / Double(n)).squareRoot()
        for (i, count) in chosen.enumerated() {
            XCTAssertEqual(Double(count) / Double(n), 1.0 / Double(rows), accuracy: 6 * se, "sub-policy \(i) is chosen uniformly")
        }
        for (i, row) in p.subpolicies.enumerated() {
            for (s, step) in row.enumerated() {
                let rate = Double(applied[i][s]) / Double(max(chosen[i], 1))
                let tol = 6 * (max(step.probability * (1 - step.probability), 1e-3) / Double(max(chosen[i], 1))).squareRoot()
                XCTAssertEqual(rate, step.probability, accuracy: tol, "sub-policy \(i) step \(s) \(step.op)")
            }
        }
        for (name, rate) in p.applications_per_image {
            let got = Double(perOp[name, default: 0]) / Double(n)
            XCTAssertEqual(got, rate, accuracy: 6 * (max(rate, 0.01) / Double(n)).squareRoot(), "\(name) applications per image")
        }
        XCTAssertEqual(Double(flips) / Double(n), p.hflip, accuracy: 6 * (0.25 / Double(n)).squareRoot(), "flip rate")
        XCTAssertGreaterThan(signed, 1000)
        XCTAssertEqual(Double(negative) / Double(signed), 0.5, accuracy: 6 * (0.25 / Double(signed)).squareRoot(), "negation rate")
    }

    func testSameGeneratorSameAugmentation() throws {
        let image = try Image(contentsOfFile: fixturesURL.appendingPathComponent("images/rgb.jpg").path)
        let augmentation = TrainingAugmentation(resolution: 48)
        var a = SplitMix64(seed: 42), b = SplitMix64(seed: 42), c = SplitMix64(seed: 43)
        let x = augmentation.tensor(image, using: &a), y = augmentation.tensor(image, using: &b)
        XCTAssertEqual(x, y)
        XCTAssertEqual(x.count, 3 * 48 * 48)
        XCTAssertNotEqual(x, augmentation.tensor(image, using: &c))
    }
}
