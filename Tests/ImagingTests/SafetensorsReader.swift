// A minimal safetensors reader for the golden preprocessing fixture, kept inside the test target
// so ImagingTests does not depend on the Checkpoints target.
import Foundation

struct TestTensor {
    var dtype: String
    var shape: [Int]
    var bytes: Data
}

func readSafetensors(_ url: URL) throws -> [String: TestTensor] {
    let data = try Data(contentsOf: url)
    let headerLength = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
    let header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + headerLength))) as! [String: Any]
    var out: [String: TestTensor] = [:]
    for (key, value) in header where key != "__metadata__" {
        let entry = value as! [String: Any]
        let offsets = entry["data_offsets"] as! [Int]
        let start = 8 + headerLength + offsets[0], end = 8 + headerLength + offsets[1]
        out[key] = TestTensor(
            dtype: entry["dtype"] as! String, shape: entry["shape"] as! [Int],
            bytes: data.subdata(in: start..<end))
    }
    return out
}

extension TestTensor {
    var uint8: [UInt8] { precondition(dtype == "U8"); return [UInt8](bytes) }
    var float32: [Float] {
        precondition(dtype == "F32")
        return bytes.withUnsafeBytes { raw in
            (0..<(raw.count / 4)).map { Float(bitPattern: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self).littleEndian) }
        }
    }
}
