// The numbers of a feature file, parsed as the reference reads them: `json.loads` turns the text into the nearest
// double (correct rounding, ties to even), then NumPy / PyTorch round that double to the nearest float32. Parsing
// dominates a top-k run, so this is hand-written C (the same algorithm in Swift ran about 1.6× slower). The method
// is Clinger's and Eisel–Lemire's idea, written from their description; no code is taken from elsewhere:
//
// - Up to 19 significant digits are read into an integer w (eight digits at a time where the bytes allow), so the
//   value is exactly x = w · 10^q.
// - x ≈ (w · 2^lz) · T_q · 2^(e_q + q - lz), where T_q is 5^q truncated to 64 bits (T_q ≤ 5^q · 2^-e_q <
//   T_q + 1) and lz normalises w; the 128-bit product P = (w · 2^lz) · T_q lies below the exact scaled value by
//   less than 2^64, while P ≥ 2^126.
// - P's top 24 bits are the float's significand truncated; the bits below say on which side of the midpoint
//   between that float and the next one x lies (the midpoint is 2^102 or 2^103 away from either float in P's
//   units). Double rounding (x → double → float) can only differ from rounding x directly when x is within half a
//   double ulp (at most 2^74 in P's units) of such a midpoint, which is itself a double. So when P's remainder is
//   farther than 2^76 from the midpoint, both roundings give the same float and we return it. Otherwise, and for
//   more than 19 digits, a result outside the normal float range, or a decimal exponent outside the table,
//   `strtod` (correctly rounded) decides and the cast to float rounds, which is the reference's computation.
//
// The values `extract_features.py` writes are float32 values printed as the shortest repr of their double, so they
// lie within 2^-53 of a float and far from any midpoint: the fallback is essentially never taken on them.

#include "feature_numbers.h"
#include <stdlib.h>
#include <string.h>

/// The value of eight ASCII digits at `p` (the first most significant) in `*out`; 0 when a byte is not a digit.
static inline int eight_digits(const uint8_t *p, uint64_t *out) {
    uint64_t v = 0;
    for (int k = 0; k < 8; k++) v |= (uint64_t)p[k] << (8 * k);  // one unaligned load on little-endian targets
    // Every byte 0x30...0x39: its high nibble is 3, and adding 6 keeps it 3.
    if (((v & 0xF0F0F0F0F0F0F0F0ull) != 0x3030303030303030ull) |
        (((v + 0x0606060606060606ull) & 0xF0F0F0F0F0F0F0F0ull) != 0x3030303030303030ull))
        return 0;
    // Digits to pairs (10a + b in every other byte), then pairs to the number with two multiplications.
    uint64_t x = v - 0x3030303030303030ull;
    x = x * 10 + (x >> 8);
    const uint64_t mask = 0x000000FF000000FFull;
    *out = ((x & mask) * (100 + (1000000ull << 32)) + ((x >> 16) & mask) * (1 + (10000ull << 32))) >> 32;
    return 1;
}

static inline int is_digit(uint8_t c) { return (uint8_t)(c - '0') < 10; }
static inline int is_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/// `(float)strtod(text)` for the `n` bytes at `s`.
static float strtod_float(const uint8_t *s, long n) {
    char local[64];
    char *buf = n < (long)sizeof local ? local : malloc((size_t)n + 1);
    if (!buf) abort();  // out of memory for a copy of one number: nothing sensible is left to do
    memcpy(buf, s, (size_t)n);
    buf[n] = 0;
    float f = (float)strtod(buf, NULL);
    if (buf != local) free(buf);
    return f;
}

__attribute__((always_inline)) static inline long parse_number(const uint8_t *p, long start, long end, const uint64_t *sig, const int32_t *exps,
                                float *value) {
    long i = start;
    if (i >= end) return -1;
    int neg = p[i] == '-';
    i += neg;
    if (i >= end) return -1;
    if (!is_digit(p[i])) {
        // Python's json also reads NaN, Infinity and -Infinity.
        if (!neg && end - i >= 3 && memcmp(p + i, "NaN", 3) == 0) { *value = __builtin_nanf(""); return i + 3; }
        if (end - i >= 8 && memcmp(p + i, "Infinity", 8) == 0) { *value = neg ? -__builtin_inff() : __builtin_inff(); return i + 8; }
        return -1;
    }
    unsigned first = (unsigned)(p[i] - '0');
    i++;
    // w holds the first 19 significant digits; x = w · 10^exp10 exactly unless `dropped` (a nonzero digit beyond).
    uint64_t w = first;
    int digits = first != 0, dropped = 0, integer = 1;
    long exp10 = 0;
    if (first != 0) {
        while (i < end && is_digit(p[i])) {
            unsigned d = (unsigned)(p[i] - '0');
            if (digits < 19) { w = w * 10 + d; digits++; } else { exp10++; dropped |= d != 0; }
            i++;
        }
    }
    if (i + 1 < end && p[i] == '.' && is_digit(p[i + 1])) {
        integer = 0;
        i++;
        if (w == 0)
            while (i < end && p[i] == '0') { exp10--; i++; }
        uint64_t v;
        while (digits <= 11 && i + 8 <= end && eight_digits(p + i, &v)) { w = w * 100000000u + v; digits += 8; exp10 -= 8; i += 8; }
        while (i < end && is_digit(p[i])) {
            unsigned d = (unsigned)(p[i] - '0');
            if (digits < 19) { w = w * 10 + d; digits++; exp10--; } else dropped |= d != 0;
            i++;
        }
    }
    if (i < end && (p[i] | 0x20) == 'e') {
        long j = i + 1, e = 0;
        int negative_exponent = 0;
        if (j < end && (p[j] == '+' || p[j] == '-')) { negative_exponent = p[j] == '-'; j++; }
        // Without digits the `e` is not part of the number (Python's scanner stops before it, as we do).
        if (j < end && is_digit(p[j])) {
            while (j < end && is_digit(p[j])) { if (e < 100000) e = e * 10 + (p[j] - '0'); j++; }
            exp10 += negative_exponent ? -e : e;
            integer = 0;
            i = j;
        }
    }
    // `-0` is the integer 0 to json.loads, which becomes +0.0; `-0.0` stays negative.
    if (w == 0) { *value = neg && !integer ? -0.0f : 0.0f; return i; }
    if (!dropped && exp10 >= CNCLIP_POW5_MIN && exp10 <= CNCLIP_POW5_MAX) {
        long row = exp10 - CNCLIP_POW5_MIN;
        int lz = __builtin_clzll(w);
        uint64_t hi = (uint64_t)(((unsigned __int128)(w << lz) * sig[row]) >> 64);
        int top = (int)(hi >> 63);  // P's leading bit: 127 (top = 1) or 126
        int shift = 39 + top;       // hi's bits below the float's 24
        // Where the remainder lies against the midpoint, in units of 2^64 (the low word adds less than one).
        int64_t diff = (int64_t)(hi & ((1ull << shift) - 1)) - (int64_t)(1ull << (shift - 1));
        long binary_exponent = 126 + top + exp10 + exps[row] - lz;
        if ((diff >= 4096 || diff <= -4098) && binary_exponent >= -126 && binary_exponent <= 126) {
            // Rounding up may carry out of the significand into the exponent field, which is the right float.
            uint32_t bits = (((uint32_t)(binary_exponent + 127) << 23) | ((uint32_t)(hi >> shift) & 0x7FFFFF)) + (diff > 0);
            bits |= neg ? 0x80000000u : 0;
            memcpy(value, &bits, 4);
            return i;
        }
    }
    *value = strtod_float(p + start, i - start);
    return i;
}

long cnclip_parse_feature_float(const uint8_t *p, long start, long end, const uint64_t *pow5_significands,
                                const int32_t *pow5_exponents, float *value) {
    return parse_number(p, start, end, pow5_significands, pow5_exponents, value);
}

long cnclip_parse_feature_array(const uint8_t *p, long start, long end, float *out, long capacity,
                                const uint64_t *pow5_significands, const int32_t *pow5_exponents, long *next) {
    long i = start;
    if (i >= end || p[i] != '[') return -1;
    i++;
    while (i < end && is_space(p[i])) i++;
    if (i < end && p[i] == ']') { *next = i + 1; return 0; }
    long n = 0;
    for (;;) {
        while (i < end && is_space(p[i])) i++;
        float v;
        long j = parse_number(p, i, end, pow5_significands, pow5_exponents, &v);
        if (j < 0) return -1;
        if (n < capacity) out[n] = v;
        n++;
        i = j;
        if (i < end && p[i] == ',') { i++; continue; }
        while (i < end && is_space(p[i])) i++;
        if (i >= end) return -1;
        if (p[i] == ',') { i++; continue; }
        if (p[i] == ']') { *next = i + 1; return n; }
        return -1;
    }
}
