// The order in which CPython 3.11 lists the elements of `set(a) - set(b)` for integer elements.
//
// `evaluation.py` reports missing queries as `", ".join(str(i) for i in ref_ids - pred_ids)`, so matching its
// message byte for byte means listing them in CPython's set iteration order: table slot order, which follows
// from the hash (an int hashes to itself modulo 2^61-1), the table size, linear probing of 9 slots plus
// perturbation, and the resize rules. This is a model of `Objects/setobject.c` (add, resize, insert-clean,
// difference, copy-and-difference), written from its documented behaviour and checked against Python's output.
// String hashes are randomised per process in Python, so for non-int keys no order can be reproduced; those keep
// insertion order.

import Essentials

/// A model of a CPython `set` of ints: only what decides iteration order.
struct CPythonSet {
    static let linearProbes = 9
    static let perturbShift = 5
    static let minSize = 8
    static let dummy = Int64.min  // marks a deleted slot (never a real hash: hashes lie in ±(2^61-1))

    var keys: [PyKey?]
    var hashes: [Int64]
    var fill = 0
    var used = 0
    var mask: Int { keys.count - 1 }
    var deleted: [Bool]

    init(size: Int = minSize) {
        keys = Array(repeating: nil, count: size)
        hashes = Array(repeating: 0, count: size)
        deleted = Array(repeating: false, count: size)
    }

    /// Python's `hash()` of an int-like key, or nil when Python's hash is not reproducible (strings).
    static func hash(_ k: PyKey) -> Int64? {
        let modulus: Int64 = (1 << 61) - 1
        switch k {
        case .none: return nil
        case .int(let v):
            var h = v >= 0 ? v % modulus : -((-(v + 1) % modulus + 1) % modulus)
            if h == -1 { h = -2 }
            return h
        case .big(let s):
            let neg = s.hasPrefix("-")
            // r < 2^61, so r * 8 < 2^64 and r * 8 % m + r * 2 + 9 < 2^63: 10 r + digit mod m without overflow.
            // (r * 10 itself can pass 2^64: the fuzzer's 20-digit id did.)
            let m = UInt64(modulus)
            var r: UInt64 = 0
            for c in s.utf8 where c >= 0x30 && c <= 0x39 { r = (r * 8 % m + r * 2 + UInt64(c - 0x30)) % m }
            var h = neg ? -Int64(r) : Int64(r)
            if h == -1 { h = -2 }
            return h
        case .float, .string: return nil
        }
    }

    func contains(_ key: PyKey, _ hash: Int64) -> Bool { slot(of: key, hash) != nil }

    /// The slot holding `key`, found as CPython's `set_lookkey` probes (linear runs, then perturbed jumps); nil when
    /// the probe reaches a never-used slot.
    private func slot(of key: PyKey, _ hash: Int64) -> Int? {
        var i = Int(truncatingIfNeeded: UInt64(bitPattern: hash) & UInt64(mask))
        var perturb = UInt64(bitPattern: hash)
        while true {
            var probes = i + Self.linearProbes <= mask ? Self.linearProbes : 0
            var j = i
            while true {
                if keys[j] == nil && !deleted[j] { return nil }
                if !deleted[j] && hashes[j] == hash && keys[j] == key { return j }
                if probes == 0 { break }
                probes -= 1
                j += 1
            }
            perturb >>= UInt64(Self.perturbShift)
            i = Int(truncatingIfNeeded: (UInt64(i) &* 5 &+ 1 &+ perturb) & UInt64(mask))
        }
    }

    mutating func add(_ key: PyKey, _ hash: Int64) {
        var i = Int(truncatingIfNeeded: UInt64(bitPattern: hash) & UInt64(mask))
        var perturb = UInt64(bitPattern: hash)
        var freeslot: Int?
        outer: while true {
            var probes = i + Self.linearProbes <= mask ? Self.linearProbes : 0
            var j = i
            while true {
                if keys[j] == nil && !deleted[j] { i = j; break outer }
                if !deleted[j] && hashes[j] == hash && keys[j] == key { return }
                if deleted[j] && freeslot == nil { freeslot = j }
                if probes == 0 { break }
                probes -= 1
                j += 1
            }
            perturb >>= UInt64(Self.perturbShift)
            i = Int(truncatingIfNeeded: (UInt64(i) &* 5 &+ 1 &+ perturb) & UInt64(mask))
        }
        if let f = freeslot {
            used += 1
            keys[f] = key; hashes[f] = hash; deleted[f] = false
            return
        }
        fill += 1; used += 1
        keys[i] = key; hashes[i] = hash
        if fill * 5 < mask * 3 { return }
        resize(used > 50000 ? used * 2 : used * 4)
    }

    static func insertClean(_ keys: inout [PyKey?], _ hashes: inout [Int64], _ key: PyKey, _ hash: Int64) {
        let mask = keys.count - 1
        var perturb = UInt64(bitPattern: hash)
        var i = Int(truncatingIfNeeded: perturb & UInt64(mask))
        while true {
            if keys[i] == nil { keys[i] = key; hashes[i] = hash; return }
            if i + linearProbes <= mask {
                for j in 1...linearProbes where keys[i + j] == nil { keys[i + j] = key; hashes[i + j] = hash; return }
            }
            perturb >>= UInt64(perturbShift)
            i = Int(truncatingIfNeeded: (UInt64(i) &* 5 &+ 1 &+ perturb) & UInt64(mask))
        }
    }

    mutating func resize(_ minUsed: Int) {
        var size = Self.minSize
        while size <= minUsed { size <<= 1 }
        var nk = [PyKey?](repeating: nil, count: size), nh = [Int64](repeating: 0, count: size)
        for s in 0..<keys.count where keys[s] != nil && !deleted[s] { Self.insertClean(&nk, &nh, keys[s]!, hashes[s]) }
        keys = nk; hashes = nh; deleted = Array(repeating: false, count: size)
        fill = used
    }

    mutating func discard(_ key: PyKey, _ hash: Int64) {
        guard let j = slot(of: key, hash) else { return }
        keys[j] = nil
        deleted[j] = true
        used -= 1
    }

    /// Elements in iteration (slot) order.
    var elements: [(PyKey, Int64)] { (0..<keys.count).compactMap { s in keys[s].map { ($0, hashes[s]) } } }

    /// `set(iterable)`: one add per element, in order.
    static func from(_ items: [(PyKey, Int64)]) -> CPythonSet {
        var s = CPythonSet()
        for (k, h) in items { s.add(k, h) }
        return s
    }

    /// `set.copy()`: `set_merge` into an empty set (same table size: slot-for-slot copy; otherwise clean inserts).
    func copy() -> CPythonSet {
        var s = CPythonSet()
        if used == 0 { return s }
        if (0 + used) * 5 >= s.mask * 3 { s.resize((0 + used) * 2) }
        let hasDummies = fill != used
        if s.mask == mask && !hasDummies {
            s.keys = keys; s.hashes = hashes; s.deleted = Array(repeating: false, count: keys.count)
        } else {
            for (k, h) in elements { Self.insertClean(&s.keys, &s.hashes, k, h) }
        }
        s.fill = used; s.used = used
        return s
    }

    /// `self - other` as CPython computes it.
    func subtracting(_ other: CPythonSet) -> CPythonSet {
        if (used >> 2) > other.used {
            var r = copy()
            for (k, h) in other.elements { r.discard(k, h) }
            return r
        }
        var r = CPythonSet()
        for (k, h) in elements where !other.contains(k, h) { r.add(k, h) }
        return r
    }
}

/// The elements of `set(reference) - set(predicted)` in CPython's iteration order (insertion order for
/// non-int keys, whose Python order is not reproducible).
func pythonSetDifferenceOrder(reference: [PyKey], predicted: [PyKey]) -> [PyKey] {
    let refHashes = reference.map(CPythonSet.hash), predHashes = predicted.map(CPythonSet.hash)
    if refHashes.contains(where: { $0 == nil }) || predHashes.contains(where: { $0 == nil }) {
        let have = Set(predicted)
        var seen = Set<PyKey>()
        return reference.filter { !have.contains($0) && seen.insert($0).inserted }
    }
    let a = CPythonSet.from(zip(reference, refHashes.map { $0! }).map { ($0, $1) })
    let b = CPythonSet.from(zip(predicted, predHashes.map { $0! }).map { ($0, $1) })
    return a.subtracting(b).elements.map { $0.0 }
}
