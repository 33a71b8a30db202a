// libFuzzer harness: the pickle VM (PickleDecoder), as LMDB pair records and checkpoint pickles reach it.
//
// The input is the pickle. It is decoded without a tensor resolver (LMDB records: plain values only), then with one
// that builds small tensors, so `_rebuild_tensor_v2` / persistent-id paths run too. A plain value that decodes is
// pickled again by PickleEncoder and must decode to the same value. A throw is a correct refusal.

import CLibFuzzer
import Checkpoints
import Foundation
import NeuralNet
import Tensors

/// Builds a zero tensor of `shape` for any storage reference the pickle names (refusing huge ones, as a real file could not hold them).
func resolver(_ storage: TorchStorageRef, _ offset: Int, _ shape: [Int], _ stride: [Int]) throws -> CheckpointTensor {
    guard shape.allSatisfy({ $0 >= 0 }), shape.count == stride.count, offset >= 0 else {
        throw CheckpointError.badTensor(file: "<fuzz>", key: storage.key, reason: "bad view")
    }
    let (count, overflow) = shape.reduce((1, false)) { a, d in
        let (p, o) = a.0.multipliedReportingOverflow(by: d); return (p, a.1 || o)
    }
    guard !overflow, count <= 4096 else { throw CheckpointError.badTensor(file: "<fuzz>", key: storage.key, reason: "too large") }
    return CheckpointTensor(Tensor(shape: shape, scalars: [Float](repeating: 0, count: count)), dtype: storage.dtype)
}

func hasTensor(_ v: PickleValue) -> Bool {
    switch v {
    case .tensor: return true
    case .list(let a), .tuple(let a): return a.contains(where: hasTensor)
    case .dict(let d): return d.entries.contains { hasTensor($0.key) || hasTensor($0.value) }
    default: return false
    }
}

func fuzzPickle(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    if let value = try? PickleDecoder(source: "<fuzz>").decode(bytes) {
        _ = value.description
        // What the dataset reader does with a record.
        if let items = value.arrayValue, items.count == 3 { _ = (items[0].intValue, items[1].intValue, items[2].stringValue) }
        // What --resume does with an optimizer entry.
        _ = try? AdamW.StateDict(value, source: "<fuzz>")
        if !hasTensor(value), let again = try? PickleEncoder.encode(value) {
            guard let back = try? PickleValue.unpickle(again, source: "<re-encoded>") else {
                fatalError("PickleEncoder output does not decode: \(value)")
            }
            precondition(back.description == value.description, "pickle round trip changed \(value) into \(back)")
        }
    }
    if let value = try? PickleDecoder(source: "<fuzz>", tensorResolver: resolver).decode(bytes) {
        _ = value.description
        _ = try? StateDict.from(pickled: value, source: "<fuzz>")
    }
    return 0
}

// SwiftPM's entry point runs this top-level code; hand over to libFuzzer's driver (see Fuzz/CLibFuzzer/shim.h).
var argc = CommandLine.argc
var argv = Optional(CommandLine.unsafeArgv)
exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in data.map { fuzzPickle($0, size) } ?? 0 })
