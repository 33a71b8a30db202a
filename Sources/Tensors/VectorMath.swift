// Vectorised transcendental functions for the activation and softmax kernels. Accurate to a few ulp (the
// reference's own libm differs from ours by as much), and several times faster than calling `expf` per element.

/// `e^x` for eight lanes: range reduction `x = n·ln2 + r` with |r| ≤ ln2/2, a degree-7 Taylor polynomial for
/// `e^r` (relative error < 1e-7), and `2^n` applied as two powers of two built in the exponent bits, so results
/// underflow through subnormals to 0 and overflow to +inf as `expf` does.
@inlinable
package func exp(_ x: SIMD8<Float>) -> SIMD8<Float> {
    // `replacing(with:where:)` compiles to compare-and-blend; the generic `clamped` does not inline.
    // The clamp only keeps n within [-150, 128]: e^-104 already rounds to 0 and e^89 to inf.
    var clamped = x.replacing(with: -104, where: x .< -104)
    clamped = clamped.replacing(with: 89, where: clamped .> 89)
    // Round to nearest with the 1.5·2^23 trick (no SSE4.1 `roundps` needed).
    let magic = SIMD8<Float>(repeating: 12_582_912)
    let shifted = clamped * 1.442_695_04 + magic
    let n = shifted - magic
    var r = clamped - n * 0.693_145_75
    r = r - n * 1.428_606_8e-6
    var p = SIMD8<Float>(repeating: 1.0 / 5040)
    p = p * r + 1.0 / 720
    p = p * r + 1.0 / 120
    p = p * r + 1.0 / 24
    p = p * r + 1.0 / 6
    p = p * r + 0.5
    p = p * r + 1
    p = p * r + 1
    // The integer n sits in the low mantissa bits of `shifted`: no float→int conversion (slow generic code in Swift).
    let n32 = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- 0x4B40_0000
    // 2^n as 2^(n/2)·2^(n - n/2): each factor is a normal float for every n in range, and the last product
    // rounds once into the subnormals (or to inf) where e^x leaves the normal range.
    let half = n32 &>> 1
    let low = unsafeBitCast((half &+ 127) &<< 23, to: SIMD8<Float>.self)
    let high = unsafeBitCast((n32 &- half &+ 127) &<< 23, to: SIMD8<Float>.self)
    return (p * low) * high
}

/// erf(x) for eight floats, within 1.1e-7 of the exact value (glibc's scalar `erff` is within 6e-8; PyTorch's
/// vectorised one within 3e-8): x·P(x²) for |x| < 0.75, 1 − e^(−x²)·Q(x) up to 4 (Q a polynomial in
/// (|x| − 2.375)/1.625), ±1 beyond, where erf rounds to 1 in fp32. Both polynomials are least-squares fits of
/// the float64 function; the error figure is their fp32 evaluation over [−6, 6] in steps of 2e-5.
@inlinable
package func erf(_ x: SIMD8<Float>) -> SIMD8<Float> {
    let sign = x .< 0
    let a = x.replacing(with: -x, where: sign)
    let s = a * a
    var p = SIMD8<Float>(repeating: 9.557676821714267e-05)
    p = p * s + -0.0008370719733648002
    p = p * s + 0.005217602010816336
    p = p * s + -0.02686499059200287
    p = p * s + 0.11283781379461288
    p = p * s + -0.37612637877464294
    p = p * s + 1.128379225730896
    let small = a * p
    let ac = a.replacing(with: 0.75, where: a .< 0.75).replacing(with: 4, where: a .> 4)
    let t = (ac - 2.375) * 0.6153846383094788
    var q = SIMD8<Float>(repeating: 9.452282938582357e-06)
    q = q * t + -2.3764654542901553e-05
    q = q * t + 2.6597477699397132e-05
    q = q * t + -6.636181205976754e-05
    q = q * t + 0.00020387955009937286
    q = q * t + -0.0004737969138659537
    q = q * t + 0.0010455424198880792
    q = q * t + -0.002313171746209264
    q = q * t + 0.004977045115083456
    q = q * t + -0.010346845723688602
    q = q * t + 0.020774297416210175
    q = q * t + -0.040157318115234375
    q = q * t + 0.07442604750394821
    q = q * t + -0.13158783316612244
    q = q * t + 0.2205056995153427
    var r = (1 - exp(-(ac * ac)) * q).replacing(with: 1, where: a .>= 4)
    r = r.replacing(with: small, where: a .< 0.75)
    return r.replacing(with: -r, where: sign)
}

/// `e^x` for one value through the vector routine (for loop tails).
@inlinable
package func exp(scalar x: Float) -> Float { exp(SIMD8(repeating: x))[0] }

/// Applies `f` to `count` floats eight at a time (the tail padded), writing `dst` (which may equal `src`).
@inlinable
package func mapVectorized(
    _ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, count: Int,
    _ f: (SIMD8<Float>) -> SIMD8<Float>
) {
    var i = 0
    while i + 8 <= count {
        let v = UnsafeRawPointer(src + i).loadUnaligned(as: SIMD8<Float>.self)
        UnsafeMutableRawPointer(dst + i).storeBytes(of: f(v), as: SIMD8<Float>.self)
        i += 8
    }
    if i < count {
        var tail = SIMD8<Float>(repeating: 0)
        for j in 0..<(count - i) { tail[j] = src[i + j] }
        let out = f(tail)
        for j in 0..<(count - i) { dst[i + j] = out[j] }
    }
}

/// Sum of `count` floats: element j goes to partial sum j % 8 (the tail zero-padded), so appending zeros never
/// changes the result (a softmax over padded keys equals the one over the real keys, bit for bit).
@inlinable
package func sum(_ p: UnsafePointer<Float>, count: Int) -> Float {
    var acc = SIMD8<Float>(repeating: 0)
    var i = 0
    while i + 8 <= count { acc += UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self); i += 8 }
    if i < count {
        var tail = SIMD8<Float>(repeating: 0)
        for j in 0..<(count - i) { tail[j] = p[i + j] }
        acc += tail
    }
    return acc.sum()
}

/// Sum of `(p[i] - shift)²` over `count` floats.
@inlinable
package func sumOfSquares(_ p: UnsafePointer<Float>, count: Int, minus shift: Float) -> Float {
    var acc = SIMD8<Float>(repeating: 0)
    var i = 0
    while i + 8 <= count {
        let c = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self) - shift
        acc += c * c
        i += 8
    }
    var total = acc.sum()
    while i < count { let c = p[i] - shift; total += c * c; i += 1 }
    return total
}

/// Largest of `count` floats (-infinity for none).
@inlinable
package func maximum(_ p: UnsafePointer<Float>, count: Int) -> Float {
    var acc = SIMD8<Float>(repeating: -.infinity)
    var i = 0
    while i + 8 <= count {
        let v = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
        acc = acc.replacing(with: v, where: v .> acc)
        i += 8
    }
    var m = acc.max()
    while i < count { m = Swift.max(m, p[i]); i += 1 }
    return m
}
