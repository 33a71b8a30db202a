// Annotation values pickled as the reference pickles what `json.loads` gave it.

import Checkpoints
import Essentials

extension PyJSON {
    /// The value as `pickle.dumps` of the Python object receives it (dict keys in file order, as `json.loads` builds
    /// them); nil for an integer beyond 64 bits, which our pickler does not write.
    var pickleValue: PickleValue? {
        switch self {
        case .null: return PickleValue.none
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(Int(i))
        case .bigInt: return nil
        case .float(let d): return .float(d)
        case .string(let s): return .string(s)
        case .array(let a):
            var items: [PickleValue] = []
            for x in a { guard let v = x.pickleValue else { return nil }; items.append(v) }
            return .list(items)
        case .object(let o):
            var entries: [(PickleValue, PickleValue)] = []
            for (k, x) in o { guard let v = x.pickleValue else { return nil }; entries.append((.string(k), v)) }
            return .dict(PickleDict(entries))
        }
    }
}
