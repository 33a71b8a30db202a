// safetensors read (memory-mapped, zero-copy fp32) and write (fp32 and int64).
//
// Layout: an 8-byte little-endian header length N, N bytes of JSON `{name: {dtype, shape, data_offsets:
// [begin, end]}, "__metadata__": {str: str}}`, then the data; offsets are relative to the data start.
// Validation follows the reference implementation: tensors, sorted by offset, must tile the data with no
// gap or overlap, each exactly as long as its shape and dtype say. The writer reproduces the reference
// `save_file` byte for byte: tensors ordered by element size (larger first) then name, header JSON in that
// order without spaces, padded with spaces to a multiple of 8 bytes.

import Essentials
import Foundation
import Tensors

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A memory-mapped safetensors file: its header and the tensors it holds.
package final class SafeTensorsFile: Sendable {
    /// Dtype, shape and byte range of one stored tensor.
    package struct Info: Sendable, Equatable {
        /// Stored element type.
        package let dtype: CheckpointDType
        /// Dimensions, outermost first.
        package let shape: [Int]
        /// Byte range within the data section.
        package let range: Range<Int>
    }

    /// The mapped file.
    package let file: MappedFile
    /// The `__metadata__` map, if the header has one.
    package let metadata: [String: String]?
    /// Tensor names in data order (the order the writer laid them out).
    package let keys: [String]
    /// Header entries by name.
    package let infos: [String: Info]
    private let dataStart: Int

    /// Maximum header size the reference implementation accepts (100 MB), guarding against garbage lengths.
    static let maxHeader = 100_000_000

    /// Maps `url` and validates its header; throws `badSafetensorsHeader` / `badTensor` naming the file and key.
    package init(url: URL) throws {
        file = try MappedFile(url: url)
        let path = file.path
        let bytes = file.bytes
        guard bytes.count >= 8 else {
            throw CheckpointError.badSafetensorsHeader(file: path, reason: "file is \(bytes.count) bytes, shorter than the 8-byte header length")
        }
        let n64 = ByteReader(bytes: bytes).u64(0)
        guard n64 <= UInt64(Self.maxHeader) else {
            throw CheckpointError.badSafetensorsHeader(file: path, reason: "header length \(n64) exceeds the \(Self.maxHeader)-byte limit")
        }
        let n = Int(n64)
        guard n >= 2, n <= bytes.count - 8 else {
            throw CheckpointError.badSafetensorsHeader(file: path, reason: "header length \(n) does not fit a file of \(bytes.count) bytes")
        }
        let headerBytes = UnsafeRawBufferPointer(rebasing: bytes[8..<(8 + n)])
        guard headerBytes[0] == UInt8(ascii: "{") else {
            throw CheckpointError.badSafetensorsHeader(file: path, reason: "header does not start with '{'")
        }
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(headerBytes), options: [])
        } catch {
            throw CheckpointError.badSafetensorsHeader(file: path, reason: "header is not valid JSON (\(error.localizedDescription))")
        }
        guard let top = json as? [String: Any] else {
            throw CheckpointError.badSafetensorsHeader(file: path, reason: "header is not a JSON object")
        }
        dataStart = 8 + n
        let dataCount = bytes.count - dataStart
        var meta: [String: String]?
        var infos: [String: Info] = [:]
        for (key, value) in top {
            if key == "__metadata__" {
                guard let m = value as? [String: Any] else {
                    throw CheckpointError.badSafetensorsHeader(file: path, reason: "__metadata__ is not an object")
                }
                var strings: [String: String] = [:]
                for (k, v) in m {
                    guard let s = v as? String else {
                        throw CheckpointError.badSafetensorsHeader(file: path, reason: "__metadata__ value for '\(k)' is not a string")
                    }
                    strings[k] = s
                }
                meta = strings
                continue
            }
            guard let entry = value as? [String: Any] else {
                throw CheckpointError.badTensor(file: path, key: key, reason: "header entry is not an object")
            }
            guard let dt = entry["dtype"] as? String else { throw CheckpointError.badTensor(file: path, key: key, reason: "no dtype") }
            guard let dtype = CheckpointDType(safetensors: dt) else {
                throw CheckpointError.badTensor(file: path, key: key, reason: "dtype '\(dt)' is not supported")
            }
            guard let shape = Self.ints(entry["shape"]), shape.allSatisfy({ $0 >= 0 }) else {
                throw CheckpointError.badTensor(file: path, key: key, reason: "shape is not a list of non-negative integers")
            }
            guard let offs = Self.ints(entry["data_offsets"]), offs.count == 2, offs[0] >= 0, offs[0] <= offs[1] else {
                throw CheckpointError.badTensor(file: path, key: key, reason: "data_offsets is not [begin, end] with 0 <= begin <= end")
            }
            guard offs[1] <= dataCount else {
                throw CheckpointError.badTensor(file: path, key: key, reason: "data_offsets \(offs) run past the data section (\(dataCount) bytes)")
            }
            let (count, overflow) = shape.reduce((1, false)) { acc, d in
                let (p, o) = acc.0.multipliedReportingOverflow(by: d); return (p, acc.1 || o)
            }
            let (byteCount, bytesOverflow) = count.multipliedReportingOverflow(by: dtype.byteSize)
            guard !overflow, !bytesOverflow, byteCount == offs[1] - offs[0] else {
                throw CheckpointError.badTensor(
                    file: path, key: key,
                    reason:
                        "shape \(shape) of \(dt) needs \(overflow || bytesOverflow ? "too many" : String(byteCount)) bytes, data_offsets \(offs) give \(offs[1] - offs[0])"
                )
            }
            infos[key] = Info(dtype: dtype, shape: shape, range: offs[0]..<offs[1])
        }
        let ordered = infos.sorted {
            ($0.value.range.lowerBound, $0.value.range.upperBound, $0.key) < ($1.value.range.lowerBound, $1.value.range.upperBound, $1.key)
        }
        var end = 0
        for (key, info) in ordered {
            guard info.range.lowerBound == end else {
                let what = info.range.lowerBound < end ? "overlaps the previous tensor, which ends at \(end)" : "leaves a gap after byte \(end)"
                throw CheckpointError.badTensor(
                    file: path, key: key, reason: "data_offsets [\(info.range.lowerBound), \(info.range.upperBound)] \(what)")
            }
            end = info.range.upperBound
        }
        guard end == dataCount else {
            throw CheckpointError.badSafetensorsHeader(file: path, reason: "tensors cover \(end) bytes of a \(dataCount)-byte data section")
        }
        metadata = meta
        keys = ordered.map(\.key)
        self.infos = infos
    }

    private static func ints(_ v: Any?) -> [Int]? {
        guard let a = v as? [Any] else { return nil }
        var out: [Int] = []
        for x in a {
            // JSONSerialization gives NSNumber; a Bool or fractional number is not an integer.
            guard let n = x as? NSNumber, String(cString: n.objCType) != "c", n.doubleValue == n.doubleValue.rounded(),
                let i = Int(exactly: n.doubleValue)
            else { return nil }
            out.append(i)
        }
        return out
    }

    /// The tensor `key`: fp32 borrows the map when aligned, other dtypes are converted.
    package func tensor(_ key: String) throws -> CheckpointTensor {
        guard let info = infos[key] else { throw CheckpointError.missingKey(file: file.path, key: key) }
        let start = dataStart + info.range.lowerBound
        let bytes = UnsafeRawBufferPointer(rebasing: file.bytes[start..<(dataStart + info.range.upperBound)])
        return try TensorBuild.make(
            bytes: bytes, dtype: info.dtype, offset: 0, shape: info.shape,
            stride: TensorBuild.contiguousStrides(info.shape), mapping: file, sharedStorage: nil,
            file: file.path, key: key)
    }

    /// The `I8` tensor `key`'s values, row-major (a quantized weight); another dtype is an error naming the key.
    package func int8Values(_ key: String) throws -> [Int8] {
        guard let info = infos[key] else { throw CheckpointError.missingKey(file: file.path, key: key) }
        guard info.dtype == .int8 else {
            throw CheckpointError.typeMismatch(file: file.path, key: key, reason: "holds \(info.dtype.safetensorsName), not I8")
        }
        let start = dataStart + info.range.lowerBound
        return Array(UnsafeRawBufferPointer(rebasing: file.bytes[start..<(dataStart + info.range.upperBound)]).bindMemory(to: Int8.self))
    }

    /// All tensors in data order.
    package func stateDict() throws -> StateDict {
        var sd = StateDict(source: file.path)
        for k in keys { sd[k] = try tensor(k) }
        return sd
    }
}

/// Reading and writing safetensors files.
package enum SafeTensors {
    /// All tensors of the safetensors file at `url`, in data order.
    package static func read(_ url: URL) throws -> StateDict {
        try SafeTensorsFile(url: url).stateDict()
    }

    /// Writes `tensors` (floating as F32, integer as I64) with optional `metadata`, atomically (temp file + rename).
    package static func write(_ tensors: StateDict, metadata: [String: String]? = nil, to url: URL) throws {
        try write(tensors.entries.map { ($0.key, $0.value) }, metadata: metadata, to: url)
    }

    /// Writes fp32 `tensors` by name with optional `metadata`, atomically.
    package static func write(_ tensors: [String: Tensor], metadata: [String: String]? = nil, to url: URL) throws {
        try write(tensors.map { ($0.key, CheckpointTensor($0.value)) }, metadata: metadata, to: url)
    }

    /// A tensor as stored: its dtype, shape and elements.
    package struct StoredTensor {
        /// The element type written.
        package let dtype: CheckpointDType
        /// Dimensions, outermost first.
        package let shape: [Int]
        private let elements: Elements

        private enum Elements {
            case float(Tensor)
            case integers([Int64])
            case int8([Int8])
        }

        /// Int8 values of `shape` (a quantized weight), stored as `I8`.
        package init(shape: [Int], int8 values: [Int8]) {
            precondition(shape.reduce(1, *) == values.count, "shape \(shape) needs \(shape.reduce(1, *)) values, got \(values.count)")
            (dtype, self.shape, elements) = (.int8, shape, .int8(values))
        }

        /// A checkpoint tensor as the reference's `save_file` stores it: floating as F32, integer as I64.
        package init(_ t: CheckpointTensor) {
            switch t.values {
            case .float(let x): (dtype, shape, elements) = (.float32, t.shape, .float(x))
            case .integer(let v): (dtype, shape, elements) = (.int64, t.shape, .integers(v))
            }
        }

        /// Bytes in the file.
        var byteCount: Int { shape.reduce(1, *) * dtype.byteSize }

        /// Hands the little-endian element bytes to `out`.
        func write(_ out: (UnsafeRawBufferPointer) throws -> Void) throws {
            switch elements {
            case .float(let x): try x.withUnsafeBufferPointer { try out(UnsafeRawBufferPointer($0)) }
            case .integers(let v): try v.map { $0.littleEndian }.withUnsafeBytes { try out($0) }
            case .int8(let v): try v.withUnsafeBytes { try out($0) }
            }
        }
    }

    /// The header bytes (length prefix included) and data order for `tensors`, as the reference writer lays them out.
    static func layout(_ tensors: [(String, StoredTensor)], metadata: [String: String]?, path: String) throws -> (
        header: [UInt8], order: [(String, StoredTensor)]
    ) {
        var seen = Set<String>()
        for (k, _) in tensors {
            guard seen.insert(k).inserted else { throw CheckpointError.typeMismatch(file: path, key: k, reason: "appears twice") }
            guard k != "__metadata__" else { throw CheckpointError.typeMismatch(file: path, key: k, reason: "is reserved for metadata") }
        }
        let order = tensors.sorted { a, b in
            let (x, y) = (a.1.dtype.byteSize, b.1.dtype.byteSize)
            return x != y ? x > y : a.0 < b.0
        }
        var json = "{"
        var first = true
        if let metadata {
            json += "\"__metadata__\":{"
            json += metadata.keys.sorted().map {
                "\(PythonJSON.string($0, ensureASCII: false)):\(PythonJSON.string(metadata[$0]!, ensureASCII: false))"
            }.joined(separator: ",")
            json += "}"
            first = false
        }
        var offset = 0
        for (k, t) in order {
            let size = t.byteCount
            if !first { json += "," }
            first = false
            json +=
                "\(PythonJSON.string(k, ensureASCII: false)):{\"dtype\":\"\(t.dtype.safetensorsName)\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + size)]}"
            offset += size
        }
        json += "}"
        var header = Array(json.utf8)
        header.append(contentsOf: repeatElement(UInt8(ascii: " "), count: (8 - header.count % 8) % 8))
        return (withUnsafeBytes(of: UInt64(header.count).littleEndian, Array.init) + header, order)
    }

    /// Writes `tensors` in the given key set (order is normalised) with optional `metadata`, atomically.
    package static func write(_ tensors: [(String, CheckpointTensor)], metadata: [String: String]? = nil, to url: URL) throws {
        try write(stored: tensors.map { ($0.0, StoredTensor($0.1)) }, metadata: metadata, to: url)
    }

    /// Writes tensors as stored (any dtype, `I8` included) with optional `metadata`, atomically.
    package static func write(stored tensors: [(String, StoredTensor)], metadata: [String: String]? = nil, to url: URL) throws {
        let (header, order) = try layout(tensors, metadata: metadata, path: url.path)
        try writeAtomically(url) { out in
            try header.withUnsafeBytes { try out($0) }
            for (_, t) in order { try t.write(out) }
        }
    }
}

/// Writes `url` through the one safe writer (Essentials' `AtomicOutput`); `body` gets a function appending bytes.
/// A failure leaves the previous file in place and is reported as `CheckpointError.io`.
func writeAtomically(_ url: URL, _ body: (@escaping (UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
    try AtomicOutput.write(path: url.path) { file in try body { try file.write(bytes: $0) } }
}
