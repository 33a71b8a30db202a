// libFuzzer harness: `torch.save` files — the stored-zip reader, the pickle with tensor resolution against the
// archive's storage entries, and the checkpoint loader every command uses (`loadCheckpoint`: format sniffing,
// `state_dict` extraction, key normalisation, the optimizer entry for --resume).
//
// The input is the file. Every tensor that loads is read end to end, so a view that escapes its storage shows up
// as a sanitizer report or a fault. A throw is a correct refusal.

import CLibFuzzer
import Checkpoints
import Foundation
import FuzzSupport
import NeuralNet

let scratch = scratchFolder("torch")
let path = "\(scratch)/checkpoint.pt"

/// Reads every element of `t` (sums, so the reads are not optimised away).
func touch(_ t: CheckpointTensor) -> Double {
    switch t.values {
    case .float(let x): return x.withUnsafeBufferPointer { $0.reduce(0) { $0 + Double($1) } }
    case .integer(let v): return v.reduce(0) { $0 + Double($1) }
    }
}

func fuzzTorchSave(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard FileManager.default.createFile(atPath: path, contents: Data(bytes: data, count: size)) else { fatalError("cannot write \(path)") }
    let url = URL(fileURLWithPath: path)
    var sink = 0.0
    if let file = try? TorchCheckpoint(url: url) {
        _ = (file.epoch, file.step, file.name, file.root.description)
        if let sd = try? file.stateDict { for (_, t) in sd { sink += touch(t) } }
    }
    if let loaded = try? loadCheckpoint(url) {
        for (_, t) in loaded.stateDict { sink += touch(t) }
        if let optimizer = loaded.trainingEntries?["optimizer"] { _ = try? AdamW.StateDict(optimizer, source: path) }
    }
    if sink.isNaN { return 0 }  // keeps `sink` alive
    return 0
}

// SwiftPM's entry point runs this top-level code; hand over to libFuzzer's driver (see Fuzz/CLibFuzzer/shim.h).
var argc = CommandLine.argc
var argv = Optional(CommandLine.unsafeArgv)
exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in data.map { fuzzTorchSave($0, size) } ?? 0 })
