// The instruction peaks of one core, measured rather than assumed: 12 independent chains of fp32 FMAs
// (512-bit and 256-bit) and of int8 dot products (vpdpbusd, 512-bit and 256-bit), enough to cover the
// instructions' latency on any x86 core of the last decade, so that the rate is the ports' throughput at the
// clock the core actually runs those instructions at. Prints one JSON line, best of 3 rounds, per core:
// GFLOP/s for the FMAs (2 per lane), GOP/s for vpdpbusd (4 byte products, each a multiply and an add, per
// 32-bit lane); 0 where the CPU lacks the instructions.
// Built and run by scripts/bench-peak.sh.
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

// One benchmark: 12 chains of `op` on `vector`s, each instruction worth `work` operations. The empty asm keeps every
// accumulator live in a register, so the compiler can neither fold nor drop the chains.
#define PEAK(name, isa, vector, set1, seed, x, y, op, constraint, work)                                         \
    __attribute__((target(isa))) static double name(long n) {                                                  \
        vector a0 = set1(seed), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0,    \
               a10 = a0, a11 = a0;                                                                              \
        const vector b = set1(x), c = set1(y);                                                                  \
        double t = now();                                                                                       \
        for (long i = 0; i < n; i++) {                                                                          \
            a0 = op(a0, b, c); a1 = op(a1, b, c); a2 = op(a2, b, c); a3 = op(a3, b, c);                         \
            a4 = op(a4, b, c); a5 = op(a5, b, c); a6 = op(a6, b, c); a7 = op(a7, b, c);                         \
            a8 = op(a8, b, c); a9 = op(a9, b, c); a10 = op(a10, b, c); a11 = op(a11, b, c);                     \
            __asm__ volatile("" : "+" constraint(a0), "+" constraint(a1), "+" constraint(a2), "+" constraint(a3), \
                             "+" constraint(a4), "+" constraint(a5), "+" constraint(a6), "+" constraint(a7),     \
                             "+" constraint(a8), "+" constraint(a9), "+" constraint(a10), "+" constraint(a11));  \
        }                                                                                                       \
        return n * 12.0 * (work) / (now() - t) / 1e9;                                                           \
    }

// a·x + y, and the dot products of a's bytes with x's added to a (the accumulator comes first in both).
#define FMA512(a, x, y) _mm512_fmadd_ps(a, x, y)
#define FMA256(a, x, y) _mm256_fmadd_ps(a, x, y)
#define DOT512(a, x, y) _mm512_dpbusd_epi32(a, x, y)
#define DOT256(a, x, y) _mm256_dpbusd_epi32(a, x, y)

PEAK(fma512, "avx512f", __m512, _mm512_set1_ps, 1.0f, 0.999999f, 1e-7f, FMA512, "v", 16 * 2)
PEAK(fma256, "avx2,fma", __m256, _mm256_set1_ps, 1.0f, 0.999999f, 1e-7f, FMA256, "x", 8 * 2)
PEAK(vnni512, "avx512f,avx512bw,avx512vnni", __m512i, _mm512_set1_epi32, 1, 0x01010101, 0x01010101, DOT512, "v", 16 * 4 * 2)
PEAK(vnni256, "avx2,avx512vl,avx512vnni", __m256i, _mm256_set1_epi32, 1, 0x01010101, 0x01010101, DOT256, "v", 8 * 4 * 2)

static double best(double (*f)(long), long n) {
    double b = 0;
    for (int r = 0; r < 3; r++) {
        double v = f(n);
        if (v > b) b = v;
    }
    return b;
}

int main(void) {
    __builtin_cpu_init();
    int avx512 = __builtin_cpu_supports("avx512f"), avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    int vnni = avx512 && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl");
    const long n = 50000000;
    printf("{\"fma512_gflops\": %.1f, \"fma256_gflops\": %.1f, \"vnni512_gops\": %.1f, \"vnni256_gops\": %.1f}\n",
           avx512 ? best(fma512, n) : 0, avx2 ? best(fma256, n) : 0, vnni ? best(vnni512, n) : 0,
           vnni ? best(vnni256, n) : 0);
    return 0;
}
