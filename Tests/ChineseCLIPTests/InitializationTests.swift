import ChineseCLIP
import Foundation
import NeuralNet
import Tensors
import XCTest

/// From-scratch initialisation against the reference's (`CLIP(**config)`), compared as distributions per
/// parameter: the statistics in Fixtures/init/init_stats.json come from scripts/reference/make_init_stats.py.
final class InitializationTests: XCTestCase {
    private struct Stats: Decodable { let shape: [Int]; let mean, std, min, max: Double }

    func testViTInitializationMatchesReferenceDistributions() throws { try compare("vit-tiny") }

    func testResNetInitializationMatchesReferenceDistributions() throws { try compare("rn-tiny") }

    private func compare(_ model: String) throws {
        let data = try Data(contentsOf: fixtures.appendingPathComponent("init/init_stats.json"))
        let root = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        let seeds = root["seeds"] as! Int
        let reference = try JSONDecoder().decode(
            [String: Stats].self,
            from: JSONSerialization.data(withJSONObject: root[model]!))
        let config = try JSONDecoder().decode(CLIPConfig.self, from: Data(contentsOf: fixtures.appendingPathComponent("models/\(model).json")))
        var pooled: [String: [Double]] = [:]
        for seed in 0..<seeds {
            let clip = CLIP(config)
            clip.initializeRandomly(seed: UInt64(seed))
            for (name, p) in clip.namedParameters() { pooled[name, default: []] += p.value.scalars.map(Double.init) }
            if seed == 0 {
                let ours = Set(clip.namedParameters().map(\.0))
                XCTAssertEqual(ours, Set(reference.keys), "parameter names differ from the reference's state dict")
                for (name, p) in clip.namedParameters() {
                    XCTAssertEqual(p.value.shape, reference[name]?.shape, "\(name): shape")
                }
            }
        }
        for (name, ref) in reference.sorted(by: { $0.key < $1.key }) {
            guard let values = pooled[name] else { continue }
            let n = Double(values.count)
            let mean = values.reduce(0, +) / n
            let std = (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / n).squareRoot()
            let lo = values.min()!, hi = values.max()!
            let summary =
                "\(name): ours mean \(mean) std \(std) range [\(lo), \(hi)]; reference mean \(ref.mean) std \(ref.std) range [\(ref.min), \(ref.max)]"
            if ref.std == 0 {
                XCTAssertTrue(lo == Double(Float(ref.mean)) && hi == lo, "constant expected: \(summary)")
                continue
            }
            // Both sides are samples: allow six standard errors of each statistic.
            XCTAssertEqual(mean, ref.mean, accuracy: 6 * ref.std * (2 / n).squareRoot(), summary)
            XCTAssertEqual(std / ref.std, 1, accuracy: 6 * (1 / n).squareRoot() + 0.01, summary)
            if n >= 2000 {
                // Uniform samples span 2√3 standard deviations; normal ones, thousands of them, over 6.
                let refUniform = (ref.max - ref.min) / ref.std < 3.6
                XCTAssertEqual((hi - lo) / std < 3.6, refUniform, "\(refUniform ? "uniform" : "normal") expected: \(summary)")
                if refUniform { XCTAssertEqual(hi, ref.max, accuracy: 0.01 * ref.max, summary) }
            }
        }
    }
}
