// An ONNX graph under construction and its file, written with Essentials' protobuf wire format (onnx.proto3 field
// numbers: ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto, ValueInfoProto, TypeProto).
//
// Weights stream straight from the model's tensors into the file: a message's length is known before its bytes are
// written, so no copy of a 600 MB graph is made in memory. Past `externalDataThreshold` the weights go to a
// `NAME.data` file beside the model (ONNX's external data), since a protobuf message cannot exceed 2 GB; small
// tensors stay inline (onnxruntime's shape inference reads shape constants only from the model itself).

import Essentials
import Foundation
import Tensors

/// An ONNX graph being built: nodes in execution order, initializers, typed inputs and outputs.
package final class ONNXGraph {
    /// ONNX `TensorProto.DataType` values used here.
    package enum ElementType: Int64, Sendable {
        /// 32-bit float.
        case float = 1
        /// 64-bit signed integer.
        case int64 = 7
        /// IEEE half.
        case float16 = 10
    }

    /// A dimension of a graph input or output: fixed, or named and chosen at run time.
    package enum Dimension: Equatable, Sendable {
        /// A fixed size.
        case fixed(Int)
        /// A symbolic size (`dim_param`), e.g. `batch`.
        case symbolic(String)
    }

    /// A node attribute value.
    package enum Attribute {
        /// An `INT` attribute.
        case int(Int)
        /// An `INTS` attribute.
        case ints([Int])
        /// A `FLOAT` attribute.
        case float(Float)
    }

    struct Node {
        var op: String, inputs: [String], outputs: [String], name: String, attributes: [(String, Attribute)]
    }

    enum Payload {
        case floats(Tensor)
        case halves([UInt16])
        case int64s([Int64])

        var byteCount: Int {
            switch self {
            case .floats(let t): return t.count * 4
            case .halves(let h): return h.count * 2
            case .int64s(let v): return v.count * 8
            }
        }

        func write(_ out: AtomicOutputFile) throws {
            switch self {
            case .floats(let t): try t.withUnsafeBufferPointer { try out.write(bytes: UnsafeRawBufferPointer($0)) }
            case .halves(let h): try h.map { $0.littleEndian }.withUnsafeBytes { try out.write(bytes: $0) }
            case .int64s(let v): try v.map { $0.littleEndian }.withUnsafeBytes { try out.write(bytes: $0) }
            }
        }
    }

    struct Initializer {
        var name: String, type: ElementType, shape: [Int], payload: Payload
    }

    /// The element type of the weights and activations: `.float`, or `.float16` for a half-precision graph.
    package let computeType: ElementType
    /// The graph's name.
    package let name: String
    private(set) var nodes: [Node] = []
    private(set) var initializers: [Initializer] = []
    private(set) var inputs: [(String, ElementType, [Dimension])] = []
    private(set) var outputs: [(String, ElementType, [Dimension])] = []
    private var counter = 0
    private var constants: [String: String] = [:]

    /// An empty graph computing in `computeType`.
    package init(name: String, computeType: ElementType) {
        self.name = name
        self.computeType = computeType
    }

    /// Declares a graph input.
    package func input(_ name: String, _ type: ElementType, _ shape: [Dimension]) -> String {
        inputs.append((name, type, shape))
        return name
    }

    /// Declares `value` a graph output named `name` (through an Identity node when the names differ).
    package func output(_ value: String, as name: String, _ type: ElementType, _ shape: [Dimension]) {
        if value != name { nodes.append(Node(op: "Identity", inputs: [value], outputs: [name], name: "\(name)/Identity", attributes: [])) }
        outputs.append((name, type, shape))
    }

    /// A weight initializer named `name` holding `tensor` in `type` (default: the compute type).
    package func weight(_ name: String, _ tensor: Tensor, type: ElementType? = nil) -> String {
        let type = type ?? computeType
        let payload: Payload = type == .float16 ? .halves(tensor.withUnsafeBufferPointer { $0.map(floatToHalfBits) }) : .floats(tensor)
        initializers.append(Initializer(name: name, type: type, shape: tensor.shape, payload: payload))
        return name
    }

    /// A scalar constant in `type` (default: the compute type), shared between uses of the same value.
    package func scalar(_ value: Float, type: ElementType? = nil) -> String {
        let type = type ?? computeType
        let key = "f\(type.rawValue):\(value.bitPattern)"
        if let existing = constants[key] { return existing }
        let name = type == computeType ? "const/\(value)" : "const/\(value):\(type)"
        constants[key] = weight(name, Tensor(shape: [], scalars: [value]), type: type)
        return name
    }

    /// An int64 constant (shapes, axes, indices) of `shape` (default: a vector of the values).
    package func int64s(_ values: [Int], shape: [Int]? = nil) -> String {
        let key = "i\(shape ?? [-1]):\(values)"
        if let existing = constants[key] { return existing }
        let name = "const/int64_\(constants.count)"
        initializers.append(Initializer(name: name, type: .int64, shape: shape ?? [values.count], payload: .int64s(values.map(Int64.init))))
        constants[key] = name
        return name
    }

    /// Appends a node `op(inputs)` named under `scope` and returns its output's name.
    package func node(_ op: String, _ inputs: [String], scope: String, attributes: [(String, Attribute)] = []) -> String {
        counter += 1
        let name = "\(scope)/\(op)_\(counter)"
        nodes.append(Node(op: op, inputs: inputs, outputs: [name], name: name, attributes: attributes))
        return name
    }

    /// Total weight bytes.
    package var weightBytes: Int { initializers.reduce(0) { $0 + $1.payload.byteCount } }

    // MARK: Writing

    /// Writes the model file at `url` atomically (and `url.data` for external weights when the weights exceed
    /// `externalDataThreshold` bytes): `opset` of the default domain, the IR version that goes with it, and
    /// `metadata` as `metadata_props`.
    package func write(
        to url: URL, opset: Int, producerVersion: String, metadata: [(String, String)], externalDataThreshold: Int = 1_800_000_000
    ) throws {
        let useExternalData = weightBytes > externalDataThreshold
        // Which initializers move out: weights of 1 KiB or more (onnx's own `size_threshold` default), never shapes.
        let external = initializers.map { useExternalData && $0.type != .int64 && $0.payload.byteCount >= 1024 }
        let dataName = url.lastPathComponent + ".data"
        if useExternalData {
            try AtomicOutput.write(path: url.appendingPathExtension("data").path) { file in
                for (i, out) in zip(initializers, external) where out { try i.payload.write(file) }
            }
        }
        var offset = 0
        var tensorHeaders: [ProtobufWriter] = []  // each initializer's TensorProto without its raw bytes
        for (i, external) in zip(initializers, external) {
            var t = ProtobufWriter()
            t.field(1, packed: i.shape.map(Int64.init))
            t.field(2, varint: i.type.rawValue)
            t.field(8, string: i.name)
            if external {
                for (key, value) in [("location", dataName), ("offset", String(offset)), ("length", String(i.payload.byteCount))] {
                    var entry = ProtobufWriter()
                    entry.field(1, string: key)
                    entry.field(2, string: value)
                    t.field(13, message: entry)
                }
                t.field(14, varint: 1)  // data_location: EXTERNAL
                offset += i.payload.byteCount
            } else {
                t.lengthDelimitedHeader(9, length: i.payload.byteCount)  // raw_data, streamed after
            }
            tensorHeaders.append(t)
        }
        func tensorLength(_ k: Int) -> Int { tensorHeaders[k].bytes.count + (external[k] ? 0 : initializers[k].payload.byteCount) }

        var head = ProtobufWriter()  // graph fields before the initializers
        for n in nodes { head.field(1, message: encode(n)) }
        head.field(2, string: name)
        var tail = ProtobufWriter()  // graph fields after them
        for (n, t, s) in inputs { tail.field(11, message: valueInfo(n, t, s)) }
        for (n, t, s) in outputs { tail.field(12, message: valueInfo(n, t, s)) }
        var initializerFieldHeaders: [ProtobufWriter] = []
        var graphLength = head.bytes.count + tail.bytes.count
        for k in initializers.indices {
            var h = ProtobufWriter()
            h.lengthDelimitedHeader(5, length: tensorLength(k))
            initializerFieldHeaders.append(h)
            graphLength += h.bytes.count + tensorLength(k)
        }

        var model = ProtobufWriter()
        model.field(1, varint: Int64(Self.irVersion(opset: opset)))
        model.field(2, string: "cnclip")
        model.field(3, string: producerVersion)
        model.lengthDelimitedHeader(7, length: graphLength)
        var after = ProtobufWriter()
        var opsetID = ProtobufWriter()
        opsetID.field(1, string: "")
        opsetID.field(2, varint: Int64(opset))
        after.field(8, message: opsetID)
        for (key, value) in metadata {
            var entry = ProtobufWriter()
            entry.field(1, string: key)
            entry.field(2, string: value)
            after.field(14, message: entry)
        }
        try AtomicOutput.write(path: url.path) { file in
            try file.write(model.bytes)
            try file.write(head.bytes)
            for k in initializers.indices {
                try file.write(initializerFieldHeaders[k].bytes)
                try file.write(tensorHeaders[k].bytes)
                if !external[k] { try initializers[k].payload.write(file) }
            }
            try file.write(tail.bytes)
            try file.write(after.bytes)
        }
    }

    /// The IR version of a model importing `opset` (onnx's `VERSION_TABLE`).
    package static func irVersion(opset: Int) -> Int {
        switch opset {
        case ...14: return 7
        case 15...18: return 8
        case 19...20: return 9
        default: return 10
        }
    }

    private func encode(_ n: Node) -> ProtobufWriter {
        var w = ProtobufWriter()
        for i in n.inputs { w.field(1, string: i) }
        for o in n.outputs { w.field(2, string: o) }
        w.field(3, string: n.name)
        w.field(4, string: n.op)
        for (name, value) in n.attributes {
            var a = ProtobufWriter()
            a.field(1, string: name)
            switch value {
            case .float(let f):
                a.field(2, float: f)
                a.field(20, varint: 1)
            case .int(let i):
                a.field(3, varint: Int64(i))
                a.field(20, varint: 2)
            case .ints(let v):
                a.field(8, packed: v.map(Int64.init))
                a.field(20, varint: 7)
            }
            w.field(5, message: a)
        }
        return w
    }

    private func valueInfo(_ name: String, _ type: ElementType, _ shape: [Dimension]) -> ProtobufWriter {
        var dims = ProtobufWriter()
        for d in shape {
            var dim = ProtobufWriter()
            switch d {
            case .fixed(let n): dim.field(1, varint: Int64(n))
            case .symbolic(let s): dim.field(2, string: s)
            }
            dims.field(1, message: dim)
        }
        var tensorType = ProtobufWriter()
        tensorType.field(1, varint: type.rawValue)
        tensorType.field(2, message: dims)
        var typeProto = ProtobufWriter()
        typeProto.field(1, message: tensorType)
        var info = ProtobufWriter()
        info.field(1, string: name)
        info.field(2, message: typeProto)
        return info
    }
}

/// The IEEE half nearest to `value` (ties to even; overflow to infinity), as bits.
package func floatToHalfBits(_ value: Float) -> UInt16 {
    let x = value.bitPattern
    let sign = UInt16(truncatingIfNeeded: (x >> 16) & 0x8000)
    let exponent = Int((x >> 23) & 0xff)
    var mantissa = x & 0x7f_ffff
    if exponent == 0xff { return sign | 0x7c00 | (mantissa != 0 ? 0x200 : 0) }
    let e = exponent - 127 + 15
    if e >= 31 { return sign | 0x7c00 }
    if e <= 0 {  // a half subnormal (or zero): units of 2^-24
        if e < -10 { return sign }
        mantissa |= 0x80_0000
        let shift = UInt32(14 - e)
        var h = mantissa >> shift
        let rest = mantissa & ((1 << shift) - 1), halfway = UInt32(1) << (shift - 1)
        if rest > halfway || (rest == halfway && h & 1 == 1) { h += 1 }
        return sign | UInt16(h)
    }
    var h = UInt32(e) << 10 | (mantissa >> 13)
    let rest = mantissa & 0x1fff
    if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) { h += 1 }  // a carry into the exponent is still right
    return sign | UInt16(h)
}
