// Modules with a dotted parameter tree, so that parameter names are the reference checkpoint keys
// (`visual.transformer.resblocks.0.attn.in_proj_weight`) and loading can be strict.

import Tensors

/// A named tensor owned by a module: a learnable parameter or a buffer (BatchNorm running statistics).
package final class Parameter {
    /// The current value, shaped `shape`; empty while the parameter is held in int8 (`int8`) or packed (`packed`).
    package var value: Tensor {
        didSet {
            int8 = nil
            packed = nil
        }
    }
    /// The shape, fixed at construction (what a checkpoint's tensor must have).
    package let shape: [Int]
    /// True for buffers: saved and loaded like parameters, never trained.
    package let isBuffer: Bool
    /// The value in int8, one scale per row, once `quantize()` or `setInt8(_:)` has run (inference only). The fp32
    /// value is then released, so that a quantized model holds one byte per weight; assigning `value` ends it.
    package private(set) var int8: Int8Weight?
    /// The value packed for the GEMM kernel once `pack()` has run (fp32 inference only): the same numbers, laid out
    /// as the products read them. The unpacked value is then released; assigning `value` ends it.
    package private(set) var packed: PackedWeight?

    /// The autograd leaf while the parameter requires a gradient (training); nil in inference.
    package private(set) var node: GradNode?

    /// A parameter of `shape`, zero-filled until loaded or initialised.
    package init(shape: [Int], isBuffer: Bool = false) {
        // Zero pages untouched until used: a checkpoint or int8 weights usually replace them first.
        self.value = Tensor(shape: shape, storage: TensorStorage(zeroedPagesCount: shape.reduce(1, *)))
        self.shape = shape
        self.isBuffer = isBuffer
    }

    /// Quantizes a matrix `[rows, columns]` to int8 per row (`Int8Weight`) and releases the fp32 value.
    package func quantize() {
        precondition(!requiresGrad, "Parameter.quantize: a trained parameter cannot take the int8 path")
        setInt8(Int8Weight(quantizing: fp32Value))
    }

    /// Holds `weight` (shaped as this parameter) instead of an fp32 value: a quantized model file's weight.
    package func setInt8(_ weight: Int8Weight) {
        precondition([weight.rows, weight.columns] == shape, "Parameter.setInt8: [\(weight.rows), \(weight.columns)] for \(shape)")
        value = Tensor(shape: [0])
        int8 = weight
    }

    /// Packs a matrix `[rows, columns]` for the GEMM kernel (`PackedWeight`) and releases the unpacked value.
    package func pack() {
        precondition(!requiresGrad && int8 == nil, "Parameter.pack: only an fp32 parameter out of training can be packed")
        let weight = PackedWeight(packing: value)
        value = Tensor(shape: [0])
        packed = weight
    }

    /// Holds the value as a plain fp32 tensor again, read back from its packed form (nothing happens otherwise).
    package func unpack() {
        if let packed { value = packed.unpacked() }
    }

    /// Whether an inference model holds this weight in int8 or packed, its plain value released.
    package var isHeldForInference: Bool { int8 != nil || packed != nil }

    /// The value in fp32 whatever form it is held in: as stored, read back from its packed form, or dequantized.
    package var fp32Value: Tensor {
        if let packed { return packed.unpacked() }
        if let int8 { return int8.dequantized().reshaped(shape) }
        return value
    }

    /// `x @ value.T + bias` (`x [..., in]` → `[..., out]`) on the form an inference model holds this weight in
    /// (int8 or packed); nil while it is held as a plain value.
    package func heldLinear(_ x: Tensor, bias: Tensor?) -> Tensor? {
        if let packed { return linear(x, weight: packed, bias: bias) }
        if let int8 { return linear(x, weight: int8, bias: bias) }
        return nil
    }

    /// Whether forwards record operations on this parameter so that `backward()` fills `grad` (never for buffers).
    package var requiresGrad: Bool {
        get { node != nil }
        set {
            precondition(!newValue || !isBuffer, "a buffer cannot require a gradient")
            precondition(!newValue || (int8 == nil && packed == nil), "a parameter held in int8 or packed cannot require a gradient")
            if newValue != (node != nil) { node = newValue ? GradNode(leafShape: shape) : nil }
        }
    }

    /// The value as an autograd variable: a leaf when the parameter requires a gradient, else a constant
    /// (so inference records nothing).
    package var variable: Variable { Variable(value, node: node) }

    /// The gradient accumulated by `backward()` since the last `zeroGrad()`, shaped as `value`.
    package var grad: Tensor? { node?.grad }

    /// Forgets the accumulated gradient.
    package func zeroGrad() { node?.zeroGrad() }

    /// Replaces the accumulated gradient (shaped as `value`); nothing happens unless the parameter requires one.
    package func setGrad(_ g: Tensor?) { node?.setGrad(g) }
}

/// Why a state dict does not fit a module.
package enum StateDictError: Error, CustomStringConvertible, Equatable {
    /// The module has a parameter the state dict lacks.
    case missingKey(String)
    /// The state dict has a key the module does not know.
    case unexpectedKey(String)
    /// The key exists with another shape.
    case shapeMismatch(key: String, expected: [Int], found: [Int])

    /// A message naming the key at fault.
    package var description: String {
        switch self {
        case .missingKey(let k): return "missing key '\(k)' in the checkpoint"
        case .unexpectedKey(let k): return "unexpected key '\(k)' in the checkpoint (the model has no such parameter)"
        case .shapeMismatch(let k, let e, let f): return "key '\(k)' has shape \(f), the model expects \(e)"
        }
    }
}

/// Base class of every layer: registers parameters and children under the reference's names.
// `open`: the model targets subclass it (a `package` class cannot be subclassed outside its module).
open class Module {
    private var ownParameters: [(String, Parameter)] = []
    private var children: [(String, Module)] = []

    /// True in training mode (batch statistics in BatchNorm, active dropout); false (evaluation) by default.
    package private(set) var isTraining = false

    /// An empty module.
    package init() {}

    /// Switches this module and every descendant to training (`true`) or evaluation mode, as PyTorch's `train()`.
    package func train(_ on: Bool = true) {
        isTraining = on
        for (_, child) in children { child.train(on) }
    }

    /// Switches to evaluation mode (PyTorch's `eval()`).
    package func eval() { train(false) }

    /// The learnable parameters (buffers excluded) with their dotted names, in registration order
    /// (PyTorch's `named_parameters`).
    package func trainableParameters() -> [(String, Parameter)] { namedParameters().filter { !$0.1.isBuffer } }

    /// Makes every learnable parameter require (or stop requiring) a gradient.
    package func requireGradients(_ on: Bool = true) {
        for (_, p) in trainableParameters() { p.requiresGrad = on }
    }

    /// Forgets every accumulated gradient (PyTorch's `zero_grad(set_to_none=True)`).
    package func zeroGrad() {
        for (_, p) in trainableParameters() { p.zeroGrad() }
    }

    /// Registers `child` under `name` and returns it.
    @discardableResult
    package func register<M: Module>(_ name: String, _ child: M) -> M {
        children.append((name, child))
        return child
    }

    /// Registers an existing parameter or buffer under `name` and returns it.
    @discardableResult
    package func register(_ name: String, _ p: Parameter) -> Parameter {
        ownParameters.append((name, p))
        return p
    }

    /// Creates and registers a parameter of `shape` under `name`.
    package func parameter(_ name: String, _ shape: [Int]) -> Parameter {
        let p = Parameter(shape: shape)
        ownParameters.append((name, p))
        return p
    }

    /// Creates and registers a buffer of `shape` under `name`.
    package func buffer(_ name: String, _ shape: [Int]) -> Parameter {
        let p = Parameter(shape: shape, isBuffer: true)
        ownParameters.append((name, p))
        return p
    }

    /// This module and every descendant with its dotted name ("" for this one), depth first in registration order
    /// (PyTorch's `named_modules`) — how a trainer finds the dropout layers to reseed.
    package func namedModules(prefix: String = "") -> [(String, Module)] {
        var all: [(String, Module)] = [(prefix, self)]
        for (name, child) in children {
            all += child.namedModules(prefix: prefix.isEmpty ? name : prefix + "." + name)
        }
        return all
    }

    /// Every parameter and buffer with its dotted name, in registration order (PyTorch's `state_dict` order).
    package func namedParameters(prefix: String = "") -> [(String, Parameter)] {
        var all = ownParameters.map { (prefix + $0.0, $0.1) }
        for (name, child) in children { all += child.namedParameters(prefix: prefix + name + ".") }
        return all
    }

    /// Fills every parameter from `stateDict`, strictly: every parameter present with its shape, no key left over.
    /// Nothing is assigned unless everything fits, so a failed load leaves the module as it was.
    package func load(stateDict: [String: Tensor]) throws {
        let named = namedParameters()
        var values: [Tensor] = []
        values.reserveCapacity(named.count)
        for (name, p) in named {
            guard let t = stateDict[name] else { throw StateDictError.missingKey(name) }
            // A 0-d scalar and a 1-element vector are the same value (`logit_scale` is saved as either).
            let sameShape = t.shape == p.shape || (t.count == 1 && p.shape.reduce(1, *) == 1)
            guard sameShape else { throw StateDictError.shapeMismatch(key: name, expected: p.shape, found: t.shape) }
            values.append(t.shape == p.shape ? t : t.reshaped(p.shape))
        }
        let known = Set(named.map(\.0))
        if let extra = stateDict.keys.sorted().first(where: { !known.contains($0) }) {
            throw StateDictError.unexpectedKey(extra)
        }
        for ((_, p), v) in zip(named, values) { p.value = v }
    }

    /// The current values by dotted name.
    package func stateDict() -> [String: Tensor] {
        Dictionary(uniqueKeysWithValues: namedParameters().map { ($0.0, $0.1.fp32Value) })
    }
}

/// A container whose children are named `0`, `1`, … (PyTorch's `nn.Sequential` / `nn.ModuleList`).
package final class ModuleList<Element: Module>: Module {
    /// The children in order.
    package let items: [Element]

    /// Registers `items` under their indices.
    package init(_ items: [Element]) {
        self.items = items
        super.init()
        for (i, m) in items.enumerated() { register(String(i), m) }
    }
}
