/*
 * mt_common.h: helpers every generated lib1.c starts with.
 *
 * The fixed-point routines reproduce TFLite's integer requantisation bit for bit:
 * SaturatingRoundingDoublingHighMul (round half away from zero of the doubled high
 * product), RoundingDivideByPOT (round half away from zero of a right shift) and
 * MultiplyByQuantizedMultiplier (left shift, high multiply, rounding right shift).
 * Integer only: no floating point is used here.
 */
#ifndef MT_KERNEL
#if defined(__GNUC__)
/* inlined at every call site so the constant shapes of that call specialise the loops */
#define MT_KERNEL static inline __attribute__((always_inline))
#else
#define MT_KERNEL static inline
#endif
#endif

static inline int32_t mt_srdhm(int32_t a, int32_t b) {
  int64_t ab;
  int64_t nudge;
  if (a == b && a == INT32_MIN) {
    return INT32_MAX;
  }
  ab = (int64_t)a * (int64_t)b;
  nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
  return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

static inline int32_t mt_rdbypot(int32_t x, int32_t exponent) {
  const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* MultiplyByQuantizedMultiplier: mt_rdbypot(mt_srdhm(x << left, multiplier), right), in
 * fewer operations. The multiplier comes from QuantizeMultiplier (|m| < 2^31, possibly
 * negated), never INT32_MIN, so SRDHM's saturation case cannot occur; then its
 * nudge-and-truncate equals floor((ab + 2^30) / 2^31) for both signs of ab, and
 * RoundingDivideByPOT equals floor((hi + 2^(right-1) - (hi < 0)) / 2^right) for right > 0.
 * Bit-identical results (tests/test_compiler_core.py checks against TFLite's arithmetic). */
static inline int32_t mt_mbqm(int32_t x, int32_t multiplier, int32_t shift) {
  const int32_t left = shift > 0 ? shift : 0;
  const int32_t right = shift > 0 ? 0 : -shift;
  const int64_t ab = (int64_t)(int32_t)((uint32_t)x << left) * (int64_t)multiplier;
  const int32_t hi = (int32_t)((ab + ((int64_t)1 << 30)) >> 31);
  const int32_t half = (int32_t)(((int64_t)1 << right) >> 1);
  const int32_t round = hi < 0 ? half - (right > 0) : half;
  return (int32_t)(((int64_t)hi + round) >> right);
}

static inline int32_t mt_clamp_i32(int32_t x, int32_t lo, int32_t hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}

static inline float mt_clamp_f32(float x, float lo, float hi) {
  return x < lo ? lo : (x > hi ? hi : x);
}
