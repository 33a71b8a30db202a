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

#define CHAINS(OP) OP(0) OP(1) OP(2) OP(3) OP(4) OP(5) OP(6) OP(7) OP(8) OP(9) OP(10) OP(11)
// The empty asm keeps every accumulator live in a register, so the compiler can neither fold nor drop the chains.
#define KEEP(c) \
    __asm__ volatile("" : "+" c(a0), "+" c(a1), "+" c(a2), "+" c(a3), "+" c(a4), "+" c(a5), "+" c(a6), "+" c(a7), \
                     "+" c(a8), "+" c(a9), "+" c(a10), "+" c(a11))

__attribute__((target("avx512f"))) static double fma512(long n) {
    __m512 a0 = _mm512_set1_ps(1), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0,
           a10 = a0, a11 = a0;
    const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
    double t = now();
    for (long i = 0; i < n; i++) {
#define F(r) a##r = _mm512_fmadd_ps(a##r, x, y);
        CHAINS(F)
        KEEP("v");
    }
    t = now() - t;
    return n * 12.0 * 16 * 2 / t / 1e9;
}

__attribute__((target("avx2,fma"))) static double fma256(long n) {
    __m256 a0 = _mm256_set1_ps(1), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0,
           a10 = a0, a11 = a0;
    const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
    double t = now();
    for (long i = 0; i < n; i++) {
#define G(r) a##r = _mm256_fmadd_ps(a##r, x, y);
        CHAINS(G)
        KEEP("x");
    }
    t = now() - t;
    return n * 12.0 * 8 * 2 / t / 1e9;
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) static double vnni512(long n) {
    __m512i a0 = _mm512_set1_epi32(1), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0,
            a10 = a0, a11 = a0;
    const __m512i x = _mm512_set1_epi32(0x01010101), y = _mm512_set1_epi32(0x01010101);
    double t = now();
    for (long i = 0; i < n; i++) {
#define V(r) a##r = _mm512_dpbusd_epi32(a##r, x, y);
        CHAINS(V)
        KEEP("v");
    }
    t = now() - t;
    return n * 12.0 * 16 * 4 * 2 / t / 1e9;
}

__attribute__((target("avx2,avx512vl,avx512vnni"))) static double vnni256(long n) {
    __m256i a0 = _mm256_set1_epi32(1), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0,
            a10 = a0, a11 = a0;
    const __m256i x = _mm256_set1_epi32(0x01010101), y = _mm256_set1_epi32(0x01010101);
    double t = now();
    for (long i = 0; i < n; i++) {
#define W(r) a##r = _mm256_dpbusd_epi32(a##r, x, y);
        CHAINS(W)
        KEEP("v");
    }
    t = now() - t;
    return n * 12.0 * 8 * 4 * 2 / t / 1e9;
}

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
