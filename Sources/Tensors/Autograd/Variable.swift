// Tape autograd: a `Variable` is a tensor value plus, when some input requires a gradient, the node that
// records how it was made. Nothing is recorded when no input requires a gradient, so inference (whose
// parameters are constants) allocates no nodes, shares nothing mutable and runs the same kernels as before.
//
// The "tape" is the graph itself: each node keeps its parents and a closure that maps the gradient of its
// output to gradients of its inputs. `backward()` orders the nodes reachable from the root topologically
// (depth-first) and runs the closures in reverse, summing gradients of values used more than once.

import Foundation

/// A node of the autograd graph: a leaf that accumulates a gradient, or the record of one operation.
package final class GradNode {
    /// The nodes of the inputs that require a gradient (nil for constant inputs), in the operation's input order;
    /// emptied once the backward pass has used them.
    private(set) var parents: [GradNode?]
    /// Maps the gradient of the output to one gradient per input (nil where not needed); nil for leaves, and
    /// dropped once run so that the values it saved are freed as the backward pass goes (PyTorch's default,
    /// `retain_graph=False`): the activations then never coexist with all the gradients.
    private(set) var backwardRule: ((Tensor) -> [Tensor?])?
    /// True for leaves (nodes not produced by an operation).
    package let isLeaf: Bool
    /// Shape of the value this node stands for; a gradient always has it.
    let shape: [Int]
    /// The accumulated gradient: kept on leaves after `backward()`, dropped from intermediate nodes once used.
    package internal(set) var grad: Tensor?

    /// A leaf of `shape` (a trainable tensor) with no gradient yet.
    package init(leafShape shape: [Int]) {
        self.parents = []
        self.backwardRule = nil
        self.shape = shape
        self.isLeaf = true
    }

    init(shape: [Int], parents: [GradNode?], rule: @escaping (Tensor) -> [Tensor?]) {
        self.shape = shape
        self.parents = parents
        self.backwardRule = rule
        self.isLeaf = false
    }

    /// Runs the rule on the accumulated gradient and passes the results to the parents, then forgets the
    /// gradient, the rule and the parents: a graph is back-propagated once.
    fileprivate func propagate() {
        guard let rule = backwardRule, let g = grad else { return }
        grad = nil
        backwardRule = nil
        let grads = rule(g)
        precondition(grads.count == parents.count, "backward rule returned \(grads.count) gradients for \(parents.count) inputs")
        for (p, pg) in zip(parents, grads) { if let p, let pg { p.accumulate(pg) } }
        parents = []
    }

    /// Forgets the accumulated gradient.
    package func zeroGrad() { grad = nil }

    /// Replaces the accumulated gradient (data-parallel training writes the ranks' average back).
    package func setGrad(_ g: Tensor?) {
        precondition(g == nil || g!.count == shape.reduce(1, *), "gradient \(g!.shape) for a value of \(shape)")
        grad = g.map { $0.shape == shape ? $0 : $0.reshaped(shape) }
    }

    /// Adds `g` to the accumulated gradient (a new tensor: a gradient handed out by a rule may be shared).
    func accumulate(_ g: Tensor) {
        precondition(g.shape == shape || g.count == shape.reduce(1, *), "gradient \(g.shape) for a value of \(shape)")
        let g = g.shape == shape ? g : g.reshaped(shape)
        grad = grad.map { add($0, g) } ?? g
    }
}

/// A tensor in an autograd computation: its value and, if it requires a gradient, its graph node.
package struct Variable: CustomStringConvertible {
    /// The value.
    package let value: Tensor
    /// The graph node; nil for constants (nothing upstream requires a gradient).
    package let node: GradNode?

    /// A constant: operations on constants alone record nothing.
    package init(_ value: Tensor) {
        self.value = value
        self.node = nil
    }

    /// `value` standing for `node` (a leaf or an operation's output).
    package init(_ value: Tensor, node: GradNode?) {
        self.value = value
        self.node = node
    }

    /// A new trainable leaf holding `value`; after `backward()` its gradient is in `grad`.
    package static func leaf(_ value: Tensor) -> Variable { Variable(value, node: GradNode(leafShape: value.shape)) }

    /// Whether a gradient flows to this value.
    package var requiresGrad: Bool { node != nil }

    /// The accumulated gradient (leaves, after `backward()`), same shape as `value`.
    package var grad: Tensor? { node?.grad }

    /// Dimensions of the value.
    package var shape: [Int] { value.shape }

    /// Number of dimensions of the value.
    package var rank: Int { value.rank }

    /// The value without its graph (PyTorch's `detach`).
    package var detached: Variable { Variable(value) }

    /// Short description: the value and whether it requires a gradient.
    package var description: String { "Variable(\(value)\(requiresGrad ? ", requires grad" : ""))" }

    /// The output of an operation on `inputs`: recorded with `rule` only when some input requires a gradient.
    /// `rule` receives the output's gradient and returns one gradient per input (nil for inputs without one).
    package static func record(_ value: Tensor, inputs: [Variable], rule: @escaping (Tensor) -> [Tensor?]) -> Variable {
        guard !GradientRecording.isPaused, inputs.contains(where: { $0.node != nil }) else { return Variable(value) }
        return Variable(value, node: GradNode(shape: value.shape, parents: inputs.map(\.node), rule: rule))
    }

    /// Back-propagates from this scalar (one element) with seed gradient 1, accumulating into every leaf reached.
    package func backward() {
        precondition(value.count == 1, "backward() needs a scalar, got \(value.shape); use backward(seed:)")
        backward(seed: Tensor(shape: value.shape, repeating: 1))
    }

    /// Back-propagates `seed` (the gradient of some scalar w.r.t. this value, same shape) through the graph.
    package func backward(seed: Tensor) {
        guard let root = node else { return }
        precondition(seed.count == value.count, "backward: seed \(seed.shape) for \(value.shape)")
        // Reverse topological order by an iterative depth-first search (models are deep enough to make
        // recursion a risk), visiting each node once.
        var order: [GradNode] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(GradNode, Bool)] = [(root, false)]
        while let (n, expanded) = stack.popLast() {
            if expanded { order.append(n); continue }
            if !visited.insert(ObjectIdentifier(n)).inserted { continue }
            stack.append((n, true))
            for p in n.parents { if let p, !visited.contains(ObjectIdentifier(p)) { stack.append((p, false)) } }
        }
        root.accumulate(seed)
        for n in order.reversed() { n.propagate() }
    }
}

/// Whether operations record graph nodes on the current thread (PyTorch's `torch.no_grad()` when paused).
package enum GradientRecording {
    @TaskLocal static var paused = false

    /// True inside `withoutRecording`: operations return constants.
    package static var isPaused: Bool { paused }

    /// Runs `body` with recording paused: values only, no graph (activations are freed as soon as they are used).
    package static func withoutRecording<T>(_ body: () throws -> T) rethrows -> T {
        try $paused.withValue(true, operation: body)
    }
}

/// Gradient checkpointing (`torch.utils.checkpoint.checkpoint`): `body(x)` is computed without keeping its
/// intermediate values, and recomputed with recording when the backward pass reaches it. `prepare` runs before
/// the forward and again before the recomputation and must put any randomness `body` uses (dropout
/// generators) into the same state, so that both computations are the same (torch's `preserve_rng_state`).
/// Parameters used by `body` receive their gradients during the recomputation.
package func checkpointed(_ x: Variable, prepare: @escaping () -> Void, _ body: @escaping (Variable) -> Variable) -> Variable {
    prepare()
    let y = GradientRecording.withoutRecording { body(x.detached) }
    // Recorded even when `x` is a constant: the parameters inside `body` still need their gradients.
    let input = x.value
    let node = GradNode(shape: y.shape, parents: [x.node]) { g in
        prepare()
        let leaf = Variable.leaf(input)
        body(leaf).backward(seed: g)
        return [x.node == nil ? nil : leaf.grad]
    }
    return Variable(y.value, node: node)
}
