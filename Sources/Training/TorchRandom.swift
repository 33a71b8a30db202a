// PyTorch's CPU generator (`torch.Generator().manual_seed(s)`: a 32-bit MT19937) and `torch.randperm(n,
// generator=g)`, hand-written because the training data order must be the reference's bit for bit: the
// reference's DistributedSampler draws each epoch's order as `randperm(len, generator seeded seed + epoch)`.
// randperm on the CPU for n < 2^32/20 is the Fisher–Yates variant `swap(r[i], r[i + random() % (n - i)])`.

/// MT19937 as PyTorch's `CPUGeneratorImpl` seeds and steps it (`random()` = one 32-bit output).
package struct MersenneTwister19937: Sendable {
    private var state = [UInt32](repeating: 0, count: 624)
    private var index = 624

    /// A generator seeded as `torch.Generator().manual_seed(seed)` (the low 32 bits initialise the state).
    package init(seed: UInt64) {
        state[0] = UInt32(truncatingIfNeeded: seed)
        for j in 1..<624 {
            state[j] = 1_812_433_253 &* (state[j - 1] ^ (state[j - 1] >> 30)) &+ UInt32(j)
        }
    }

    /// The next 32 random bits.
    package mutating func next32() -> UInt32 {
        if index >= 624 { twist() }
        var y = state[index]
        index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C_5680
        y ^= (y << 15) & 0xEFC6_0000
        y ^= y >> 18
        return y
    }

    private mutating func twist() {
        for i in 0..<624 {
            let y = (state[i] & 0x8000_0000) | (state[(i + 1) % 624] & 0x7FFF_FFFF)
            var v = state[(i + 397) % 624] ^ (y >> 1)
            if y & 1 != 0 { v ^= 0x9908_B0DF }
            state[i] = v
        }
        index = 0
    }
}

/// `torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()` (CPU, n < 2^32/20).
package func torchRandperm(_ n: Int, seed: UInt64) -> [Int] {
    precondition(n >= 0 && n < Int(UInt32.max / 20), "randperm: n = \(n) outside the small-n path")
    var r = Array(0..<n)
    var g = MersenneTwister19937(seed: seed)
    if n > 1 {
        for i in 0..<(n - 1) {
            let z = Int(g.next32()) % (n - i)
            r.swapAt(i, i + z)
        }
    }
    return r
}
