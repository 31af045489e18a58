/*
 * mt_dsp.h: the Arm DSP-extension (SIMD within a 32-bit register) operations the int8
 * kernels for Cortex-M4/M7/M33/M55 are written in, with an exact portable C meaning.
 *
 * Where the target has the DSP extension (__ARM_FEATURE_DSP, not an x86 host) each helper
 * is one ACLE intrinsic from <arm_acle.h>, i.e. one instruction. Everywhere else it is
 * plain C that computes the same bits, so a kernel written with these helpers is correct
 * on every target and its DSP variant can be tested bit for bit on the host (the tests
 * build with MT_NO_DSP to force the portable meaning on an Arm build too).
 *
 * Lane conventions: a uint32_t holds four int8 lanes b0..b3 (b0 = lowest byte, i.e. the
 * byte at the lowest address after mt_ld32) or two int16 lanes h0 (low half), h1.
 * Arithmetic that wraps is done on uint32_t so no signed overflow can occur in C.
 */
#if defined(__ARM_FEATURE_DSP) && !defined(__SSE2__) && !defined(MT_NO_DSP)
#include <arm_acle.h>
#define MT_DSP 1
#endif
#include <string.h>

/* four bytes from any address (one LDR on cores that allow unaligned word loads) */
static inline uint32_t mt_ld32(const void* p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

static inline void mt_st32(void* p, uint32_t v) { memcpy(p, &v, 4); }

/* rotate right by 8: b1 b2 b3 b0 (folds into the ROR #8 operand of SXTB16/SXTAB16) */
static inline uint32_t mt_ror8(uint32_t v) { return (v >> 8) | (v << 24); }

#if defined(MT_DSP)
/* h0 = (int16)b0, h1 = (int16)b2 */
static inline uint32_t mt_sxtb16(uint32_t x) { return (uint32_t)__sxtb16((int8x4_t)x); }
/* h0 = a.h0 + (int16)b0, h1 = a.h1 + (int16)b2 (each lane wraps mod 2^16) */
static inline uint32_t mt_sxtab16(uint32_t a, uint32_t x) {
  return (uint32_t)__sxtab16((int16x2_t)a, (int8x4_t)x);
}
/* acc + a.h0 * b.h0 + a.h1 * b.h1 (wraps mod 2^32) */
static inline int32_t mt_smlad(uint32_t a, uint32_t b, int32_t acc) {
  return __smlad((int16x2_t)a, (int16x2_t)b, acc);
}
/* a.h0 * b.h0 + a.h1 * b.h1 */
static inline int32_t mt_smuad(uint32_t a, uint32_t b) { return __smuad((int16x2_t)a, (int16x2_t)b); }
/* per 16-bit lane a + b (wraps mod 2^16) */
static inline uint32_t mt_sadd16(uint32_t a, uint32_t b) {
  return (uint32_t)__sadd16((int16x2_t)a, (int16x2_t)b);
}
#else
static inline uint32_t mt_sx8(uint32_t byte) { return (uint32_t)(int32_t)(int8_t)(uint8_t)byte; }
static inline int32_t mt_lane16(uint32_t v, int hi) {
  return (int32_t)(int16_t)(uint16_t)(hi ? v >> 16 : v);
}
static inline uint32_t mt_sxtb16(uint32_t x) {
  return (mt_sx8(x & 0xffu) & 0xffffu) | ((mt_sx8((x >> 16) & 0xffu) & 0xffffu) << 16);
}
static inline uint32_t mt_sxtab16(uint32_t a, uint32_t x) {
  const uint32_t e = mt_sxtb16(x);
  return ((a + e) & 0xffffu) | (((a >> 16) + (e >> 16)) << 16);
}
static inline int32_t mt_smlad(uint32_t a, uint32_t b, int32_t acc) {
  const uint32_t p0 = (uint32_t)(mt_lane16(a, 0) * mt_lane16(b, 0));
  const uint32_t p1 = (uint32_t)(mt_lane16(a, 1) * mt_lane16(b, 1));
  return (int32_t)((uint32_t)acc + p0 + p1);
}
static inline int32_t mt_smuad(uint32_t a, uint32_t b) { return mt_smlad(a, b, 0); }
static inline uint32_t mt_sadd16(uint32_t a, uint32_t b) {
  return ((a + b) & 0xffffu) | (((a >> 16) + (b >> 16)) << 16);
}
#endif

/* h0 = (int16)b1, h1 = (int16)b3. gcc 12 does not fold the rotation into SXTB16's ROR #8
 * operand by itself, so on DSP cores it is written as that one instruction. */
#if defined(MT_DSP) && defined(__GNUC__)
static inline uint32_t mt_sxtb16_ror8(uint32_t x) {
  uint32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
  return r;
}
#else
static inline uint32_t mt_sxtb16_ror8(uint32_t x) { return mt_sxtb16(mt_ror8(x)); }
#endif

/* two int16 lanes from the low halves of a (h0) and b (h1): PKHBT a, b, LSL #16 */
static inline uint32_t mt_pack_lo(uint32_t a, uint32_t b) { return (a & 0xffffu) | (b << 16); }
/* two int16 lanes from the high halves of a (h0) and b (h1): PKHTB b, a, ASR #16 */
static inline uint32_t mt_pack_hi(uint32_t a, uint32_t b) { return (a >> 16) | (b & 0xffff0000u); }
