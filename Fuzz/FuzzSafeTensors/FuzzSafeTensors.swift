// libFuzzer harness: safetensors files (header length, JSON header, dtypes, shapes, offsets tiling the data).
//
// The input is the file. It is opened with SafeTensorsFile, every tensor is read end to end (I8 ones through
// `int8Values` too), and it goes through `loadCheckpoint` (format sniffing and key normalisation) as the CLI's
// `--resume x.safetensors` does. A throw is a correct refusal.

import CLibFuzzer
import Checkpoints
import Foundation
import FuzzSupport

let scratch = scratchFolder("safetensors")
let path = "\(scratch)/model.safetensors"

func touch(_ t: CheckpointTensor) -> Double {
    switch t.values {
    case .float(let x): return x.withUnsafeBufferPointer { $0.reduce(0) { $0 + Double($1) } }
    case .integer(let v): return v.reduce(0) { $0 + Double($1) }
    }
}

func fuzzSafeTensors(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard FileManager.default.createFile(atPath: path, contents: Data(bytes: data, count: size)) else { fatalError("cannot write \(path)") }
    let url = URL(fileURLWithPath: path)
    var sink = 0.0
    if let file = try? SafeTensorsFile(url: url) {
        _ = file.metadata
        for key in file.keys {
            guard let t = try? file.tensor(key) else { continue }
            precondition(t.count == file.infos[key]!.shape.reduce(1, *))
            sink += touch(t)
            if file.infos[key]?.dtype == .int8, let v = try? file.int8Values(key) { sink += Double(v.count) }
        }
    }
    if let loaded = try? loadCheckpoint(url) { for (_, t) in loaded.stateDict { sink += touch(t) } }
    if sink.isNaN { return 0 }
    return 0
}

// SwiftPM's entry point runs this top-level code; hand over to libFuzzer's driver (see Fuzz/CLibFuzzer/shim.h).
var argc = CommandLine.argc
var argv = Optional(CommandLine.unsafeArgv)
exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in data.map { fuzzSafeTensors($0, size) } ?? 0 })
