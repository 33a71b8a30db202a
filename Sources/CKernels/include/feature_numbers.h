#ifndef CKERNELS_FEATURE_NUMBERS_H
#define CKERNELS_FEATURE_NUMBERS_H

#include <stdint.h>

/// The decimal exponents the power-of-five table covers: 5^q for q in [CNCLIP_POW5_MIN, CNCLIP_POW5_MAX].
enum { CNCLIP_POW5_MIN = -54, CNCLIP_POW5_MAX = 38 };

/// Parses one JSON number (or `NaN`, `Infinity`, `-Infinity`) at `p[start]`, reading no byte at or past `end`, to
/// the float32 nearest the double nearest the decimal (what `float32(json.loads(text))` gives). Stores it in
/// `*value` and returns the index after the number, or -1 when no number starts there. `pow5_significands[q -
/// CNCLIP_POW5_MIN]` and `pow5_exponents[...]` describe 5^q = (significand + δ) · 2^exponent, 0 ≤ δ < 1, with the
/// significand in [2^63, 2^64).
long cnclip_parse_feature_float(const uint8_t *p, long start, long end, const uint64_t *pow5_significands,
                                const int32_t *pow5_exponents, float *value);

/// Parses the JSON array of numbers whose `[` is at `p[start]` (JSON whitespace allowed around the numbers and
/// commas), reading no byte at or past `end`. Stores the first `capacity` values at `out`, sets `*next` to the index
/// after the `]` and returns how many values the array holds; returns -1, with nothing promised about `out`, when
/// the bytes are not such an array (the caller's own parser then names the fault).
long cnclip_parse_feature_array(const uint8_t *p, long start, long end, float *out, long capacity,
                                const uint64_t *pow5_significands, const int32_t *pow5_exponents, long *next);

#endif
