// libFuzzer harness: the records of a cn-clip dataset LMDB — `pairs` (key "0".."N-1" → pickle of (image_id, text_id,
// text), plus `num_samples`) and `imgs` (key image_id → base64 of the image file, plus `num_images`) — read with
// PairsStore / ImageStore as training, extract-features and index build read them.
//
// The LMDB file format itself is liblmdb's and is not fuzzed (liblmdb trusts its files); the harness writes the
// input's records into a fresh environment with liblmdb and fuzzes what our readers do with them. Input: the first
// byte picks the store (even: pairs, odd: imgs), then records `[key length: 1 byte][key][value length: 2 bytes
// LE][value]` until the input ends (a short last value takes what is left). A throw is a correct refusal.

import CLibFuzzer
import Checkpoints
import Datasets
import Essentials
import Foundation
import FuzzSupport
import Imaging

let scratch = scratchFolder("lmdb")

/// The input's records.
func records(_ b: UnsafeBufferPointer<UInt8>) -> [([UInt8], [UInt8])] {
    var out: [([UInt8], [UInt8])] = []
    var i = 0
    while i < b.count {
        let k = Int(b[i]); i += 1
        let key = Array(b[i..<min(i + k, b.count)]); i = min(i + k, b.count)
        var n = b.count - i
        if i + 2 <= b.count { n = Int(b[i]) | Int(b[i + 1]) << 8; i += 2 }
        let value = Array(b[i..<min(i + n, b.count)]); i = min(i + n, b.count)
        out.append((key, value))
    }
    return out
}

func fuzzLMDB(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let dir = "\(scratch)/env"
    try? FileManager.default.removeItem(atPath: dir)
    do {
        let env = try LMDBEnvironment(creatingAt: dir, mapSize: 1 << 22, durable: false)
        try env.write { txn in
            // Keys LMDB itself refuses (empty, over 511 bytes) are left out: that is liblmdb's rule, not our reader's.
            for (k, v) in records(UnsafeBufferPointer(start: data + 1, count: size - 1)) where !k.isEmpty {
                try txn.put(k, v)
            }
        }
        try env.sync()
    } catch {
        fatalError("cannot write the scratch LMDB: \(error)")
    }
    if data[0] % 2 == 0 {
        guard let pairs = try? PairsStore(path: dir) else { return 0 }
        try? pairs.forEach { _, pair in _ = (pair.imageID.intValue, pair.textID.intValue, pair.text.stringValue) }
        if pairs.count > 0 {
            // The reader indexes `num_samples` keys; a count that lies is a refusal, not a trap.
            for i in [0, 1, pairs.count - 1, pairs.count, Int.max, -1] { _ = try? pairs.pair(at: i) }
        }
    } else {
        guard let images = try? ImageStore(path: dir) else { return 0 }
        try? images.forEach { id, bytes in _ = try? Image(data: bytes, name: id) }
        _ = try? images.imageData(id: "0")
        _ = try? images.imageData(id: "num_images")
    }
    return 0
}

// SwiftPM's entry point runs this top-level code; hand over to libFuzzer's driver (see Fuzz/CLibFuzzer/shim.h).
var argc = CommandLine.argc
var argv = Optional(CommandLine.unsafeArgv)
exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in data.map { fuzzLMDB($0, size) } ?? 0 })
