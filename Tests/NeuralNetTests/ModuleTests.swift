// The module tree (names and order are the reference checkpoint's keys), strict loading, and the layers'
// forward passes against the PyTorch golden cases of `Tests/Fixtures/primitives/forward.safetensors`.

import Checkpoints
import Foundation
import NeuralNet
import Tensors
import TestSupport
import XCTest

/// A block as the reference nests them: `ln_1`, `fc`.
private final class Block: Module {
    let ln1 = LayerNorm(4)
    let fc = Linear(4, 3)
    override init() {
        super.init()
        register("ln_1", ln1)
        register("fc", fc)
    }
}

/// A tower with a convolution, a batch norm (parameters then buffers) and a bias-free projection.
private final class Tower: Module {
    override init() {
        super.init()
        register("conv1", Conv2d(3, 2, kernel: 3))
        register("bn1", BatchNorm2d(2))
        register("proj", Linear(2, 5, bias: false))
    }
}

/// The root registers a child before its own scalar parameter: PyTorch still lists own parameters first.
private final class Root: Module {
    let logitScale = Parameter(shape: [])
    override init() {
        super.init()
        register("visual", Tower())
        register("logit_scale", logitScale)
        register("blocks", ModuleList([Block(), Block()]))
    }
}

final class ModuleTests: XCTestCase {
    /// The golden cases, found from this file's path.
    static let golden: StateDict = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/primitives/forward.safetensors")
        do { return try SafeTensors.read(url) } catch { fatalError("cannot read \(url.path): \(error)") }
    }()

    private func input(_ c: String, _ name: String) throws -> Tensor { try Self.golden.tensor("\(c).in.\(name)") }
    private func output(_ c: String) throws -> Tensor { try Self.golden.tensor("\(c).out") }

    // MARK: - The parameter tree

    /// The order `state_dict()` gives for the same tree in PyTorch 2 (less BatchNorm's `num_batches_tracked`, which loading drops).
    static let rootKeys = [
        "logit_scale",
        "visual.conv1.weight", "visual.bn1.weight", "visual.bn1.bias", "visual.bn1.running_mean", "visual.bn1.running_var",
        "visual.proj.weight",
        "blocks.0.ln_1.weight", "blocks.0.ln_1.bias", "blocks.0.fc.weight", "blocks.0.fc.bias",
        "blocks.1.ln_1.weight", "blocks.1.ln_1.bias", "blocks.1.fc.weight", "blocks.1.fc.bias",
    ]

    func testParameterNamesAndOrder() {
        let named = Root().namedParameters()
        XCTAssertEqual(named.map(\.0), Self.rootKeys)
        XCTAssertEqual(named.filter { $0.1.isBuffer }.map(\.0), ["visual.bn1.running_mean", "visual.bn1.running_var"])
        XCTAssertEqual(Root().namedParameters(prefix: "module.").first?.0, "module.logit_scale")
        let shapes = Dictionary(uniqueKeysWithValues: named.map { ($0.0, $0.1.value.shape) })
        XCTAssertEqual(shapes["logit_scale"], [])
        XCTAssertEqual(shapes["visual.conv1.weight"], [2, 3, 3, 3])
        XCTAssertEqual(shapes["visual.proj.weight"], [5, 2])
        XCTAssertEqual(shapes["blocks.1.fc.weight"], [3, 4])
    }

    /// A full state dict for `Root`, each tensor filled with its index so a misplaced value shows.
    private func fullStateDict() -> [String: Tensor] {
        var d: [String: Tensor] = [:]
        for (i, (name, p)) in Root().namedParameters().enumerated() { d[name] = Tensor(shape: p.value.shape, repeating: Float(i + 1)) }
        return d
    }

    func testLoadFillsEveryParameter() throws {
        let root = Root()
        try root.load(stateDict: fullStateDict())
        for (i, (name, p)) in root.namedParameters().enumerated() {
            XCTAssertEqual(Set(p.value.scalars), [Float(i + 1)], name)
        }
        XCTAssertEqual(root.stateDict().keys.sorted(), Self.rootKeys.sorted())
    }

    func testLoadRejectsMissingKey() {
        var d = fullStateDict()
        d["blocks.1.fc.bias"] = nil
        XCTAssertThrowsError(try Root().load(stateDict: d)) { error in
            XCTAssertEqual(error as? StateDictError, .missingKey("blocks.1.fc.bias"))
            XCTAssertTrue("\(error)".contains("blocks.1.fc.bias"), "\(error)")
        }
    }

    func testLoadRejectsUnexpectedKey() {
        var d = fullStateDict()
        d["visual.bn1.extra"] = Tensor(shape: [2])
        XCTAssertThrowsError(try Root().load(stateDict: d)) { error in
            XCTAssertEqual(error as? StateDictError, .unexpectedKey("visual.bn1.extra"))
            XCTAssertTrue("\(error)".contains("visual.bn1.extra"), "\(error)")
        }
    }

    func testLoadRejectsShapeMismatch() {
        var d = fullStateDict()
        d["visual.proj.weight"] = Tensor(shape: [2, 5])
        XCTAssertThrowsError(try Root().load(stateDict: d)) { error in
            XCTAssertEqual(error as? StateDictError, .shapeMismatch(key: "visual.proj.weight", expected: [5, 2], found: [2, 5]))
            XCTAssertTrue("\(error)".contains("visual.proj.weight"), "\(error)")
        }
        // The same number of elements in another shape is still a mismatch.
        d["visual.proj.weight"] = Tensor(shape: [10])
        XCTAssertThrowsError(try Root().load(stateDict: d)) { error in
            XCTAssertEqual(error as? StateDictError, .shapeMismatch(key: "visual.proj.weight", expected: [5, 2], found: [10]))
        }
    }

    /// `logit_scale` is saved as a 0-d tensor by the reference and as `[1]` by some converters: both load, in the parameter's shape.
    func testScalarAcceptsZeroDimensionalAndOneElement() throws {
        for shape in [[], [1], [1, 1]] as [[Int]] {
            var d = fullStateDict()
            d["logit_scale"] = Tensor(shape: shape, repeating: 4.6052)
            let root = Root()
            try root.load(stateDict: d)
            XCTAssertEqual(root.logitScale.value.shape, [], "from \(shape)")
            XCTAssertEqual(root.logitScale.value.scalars, [4.6052], "from \(shape)")
        }
        let vector = Linear(1, 1)
        var d = ["weight": Tensor(shape: [1, 1], repeating: 2), "bias": Tensor(shape: [], repeating: 3)]
        try vector.load(stateDict: d)
        XCTAssertEqual(vector.bias?.value.shape, [1])
        XCTAssertEqual(vector.bias?.value.scalars, [3])
        d["bias"] = Tensor(shape: [2], repeating: 3)
        XCTAssertThrowsError(try vector.load(stateDict: d)) { error in
            XCTAssertEqual(error as? StateDictError, .shapeMismatch(key: "bias", expected: [1], found: [2]))
        }
    }

    // MARK: - Layers against the golden cases

    func testLinearLayer() throws {
        let layer = Linear(7, 4)
        try layer.load(stateDict: ["weight": input("linear", "weight"), "bias": input("linear", "bias")])
        assertClose(layer(try input("linear", "x")), try output("linear"), "Linear")
    }

    func testLinearLayerWithoutBias() throws {
        let layer = Linear(7, 4, bias: false)
        XCTAssertEqual(layer.namedParameters().map(\.0), ["weight"])
        try layer.load(stateDict: ["weight": input("linear_no_bias", "weight")])
        assertClose(layer(try input("linear_no_bias", "x")), try output("linear_no_bias"), "Linear(bias: false)")
    }

    func testLayerNormLayer() throws {
        for (c, eps) in [("layer_norm", Float(1e-5)), ("layer_norm_bert", 1e-12)] {
            let layer = LayerNorm(16, eps: eps)
            try layer.load(stateDict: ["weight": input(c, "weight"), "bias": input(c, "bias")])
            assertClose(layer(try input(c, "x")), try output(c), "LayerNorm \(c)")
        }
    }

    func testConv2dLayer() throws {
        for (c, oc, k, stride, padding) in [
            ("conv3x3_s2_p1", 5, 3, 2, 1), ("conv3x3_s1_p1", 5, 3, 1, 1), ("conv1x1", 4, 1, 1, 0),
            ("conv_patch4", 6, 4, 4, 0),
        ] {
            let layer = Conv2d(3, oc, kernel: k, stride: stride, padding: padding)
            try layer.load(stateDict: ["weight": input(c, "weight")])
            assertClose(layer(try input(c, "x")), try output(c), "Conv2d \(c)")
        }
    }

    func testBatchNorm2dLayer() throws {
        let c = "batch_norm"
        let layer = BatchNorm2d(3)
        try layer.load(stateDict: [
            "weight": input(c, "weight"), "bias": input(c, "bias"),
            "running_mean": input(c, "running_mean"), "running_var": input(c, "running_var"),
        ])
        let expected = try output(c)
        assertClose(layer(try input(c, "x")), expected, "BatchNorm2d")
        assertClose(layer(try input(c, "x"), relu: true), relu(expected), "BatchNorm2d + ReLU")
    }

    func testEmbeddingLayer() throws {
        let c = "embedding"
        let layer = Embedding(10, 6)
        try layer.load(stateDict: ["weight": input(c, "table")])
        let ids = try XCTUnwrap(Self.golden["\(c).in.ids"]?.integers).map { Int32($0) }
        assertClose(layer(ids), try output(c), "Embedding")
    }
}
