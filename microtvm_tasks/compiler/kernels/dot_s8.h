// requires: mt_dsp.h
/*
 * dot_s8.h: int8 x int8 -> int32 dot products, the inner loop of FULLY_CONNECTED and
 * CONV_2D. Exact integer arithmetic (the order of additions cannot change the result).
 *
 * Portable C everywhere; where the target has SSE2 (every x86-64 host) the same sums
 * are formed 16 bytes at a time with sign extension + pmaddwd, and mt_dot4_s8 shares the
 * widened input among four weight rows. On Arm cores with the DSP extension (Cortex-M4,
 * M7, M33 ...) four bytes at a time go through SXTB16 + SMLAD (two 16x16 multiply-adds
 * per instruction), through mt_dsp.h (so MT_NO_DSP selects the portable C there too).
 * Nothing here uses floating point.
 */
#if defined(__SSE2__)
#include <emmintrin.h>

static inline __m128i mt_sx_lo(__m128i v) { return _mm_srai_epi16(_mm_unpacklo_epi8(v, v), 8); }
static inline __m128i mt_sx_hi(__m128i v) { return _mm_srai_epi16(_mm_unpackhi_epi8(v, v), 8); }

static inline int32_t mt_hsum_epi32(__m128i v) {
  v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0x4E));
  v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0xB1));
  return _mm_cvtsi128_si32(v);
}
#endif

MT_KERNEL int32_t mt_dot_s8(const int8_t* restrict a, const int8_t* restrict b, int n) {
  int32_t acc = 0;
  int i = 0;
#if defined(__SSE2__)
  if (n >= 16) {
    __m128i s = _mm_setzero_si128();
    for (; i + 16 <= n; i += 16) {
      const __m128i va = _mm_loadu_si128((const __m128i*)(const void*)(a + i));
      const __m128i vb = _mm_loadu_si128((const __m128i*)(const void*)(b + i));
      s = _mm_add_epi32(s, _mm_madd_epi16(mt_sx_lo(va), mt_sx_lo(vb)));
      s = _mm_add_epi32(s, _mm_madd_epi16(mt_sx_hi(va), mt_sx_hi(vb)));
    }
    if (i + 8 <= n) {
      const __m128i va = _mm_loadl_epi64((const __m128i*)(const void*)(a + i));
      const __m128i vb = _mm_loadl_epi64((const __m128i*)(const void*)(b + i));
      s = _mm_add_epi32(s, _mm_madd_epi16(mt_sx_lo(va), mt_sx_lo(vb)));
      i += 8;
    }
    acc = mt_hsum_epi32(s);
  }
#elif defined(MT_DSP)
  for (; i + 4 <= n; i += 4) {
    const uint32_t x = mt_ld32(a + i);
    const uint32_t y = mt_ld32(b + i);
    acc = mt_smlad(mt_sxtb16(x), mt_sxtb16(y), acc);
    acc = mt_smlad(mt_sxtb16_ror8(x), mt_sxtb16_ror8(y), acc);
  }
#endif
  for (; i < n; ++i) {
    acc += (int32_t)a[i] * (int32_t)b[i];
  }
  return acc;
}

/* out[r] = dot(a, b + r * stride, n) for r = 0..3 */
MT_KERNEL void mt_dot4_s8(const int8_t* restrict a, const int8_t* restrict b, int stride, int n,
                          int32_t* restrict out) {
  int i = 0;
  int r;
#if defined(__SSE2__)
  if (n >= 16) {
    __m128i s0 = _mm_setzero_si128(), s1 = _mm_setzero_si128();
    __m128i s2 = _mm_setzero_si128(), s3 = _mm_setzero_si128();
    __m128i t0, t1, t2, t3, u0, u1;
    for (; i + 16 <= n; i += 16) {
      const __m128i va = _mm_loadu_si128((const __m128i*)(const void*)(a + i));
      const __m128i al = mt_sx_lo(va), ah = mt_sx_hi(va);
      __m128i vb = _mm_loadu_si128((const __m128i*)(const void*)(b + i));
      s0 = _mm_add_epi32(s0, _mm_add_epi32(_mm_madd_epi16(al, mt_sx_lo(vb)), _mm_madd_epi16(ah, mt_sx_hi(vb))));
      vb = _mm_loadu_si128((const __m128i*)(const void*)(b + stride + i));
      s1 = _mm_add_epi32(s1, _mm_add_epi32(_mm_madd_epi16(al, mt_sx_lo(vb)), _mm_madd_epi16(ah, mt_sx_hi(vb))));
      vb = _mm_loadu_si128((const __m128i*)(const void*)(b + 2 * stride + i));
      s2 = _mm_add_epi32(s2, _mm_add_epi32(_mm_madd_epi16(al, mt_sx_lo(vb)), _mm_madd_epi16(ah, mt_sx_hi(vb))));
      vb = _mm_loadu_si128((const __m128i*)(const void*)(b + 3 * stride + i));
      s3 = _mm_add_epi32(s3, _mm_add_epi32(_mm_madd_epi16(al, mt_sx_lo(vb)), _mm_madd_epi16(ah, mt_sx_hi(vb))));
    }
    if (i + 8 <= n) {
      const __m128i al = mt_sx_lo(_mm_loadl_epi64((const __m128i*)(const void*)(a + i)));
      s0 = _mm_add_epi32(s0, _mm_madd_epi16(al, mt_sx_lo(_mm_loadl_epi64((const __m128i*)(const void*)(b + i)))));
      s1 = _mm_add_epi32(s1, _mm_madd_epi16(al, mt_sx_lo(_mm_loadl_epi64((const __m128i*)(const void*)(b + stride + i)))));
      s2 = _mm_add_epi32(s2, _mm_madd_epi16(al, mt_sx_lo(_mm_loadl_epi64((const __m128i*)(const void*)(b + 2 * stride + i)))));
      s3 = _mm_add_epi32(s3, _mm_madd_epi16(al, mt_sx_lo(_mm_loadl_epi64((const __m128i*)(const void*)(b + 3 * stride + i)))));
      i += 8;
    }
    t0 = _mm_unpacklo_epi32(s0, s1);
    t1 = _mm_unpackhi_epi32(s0, s1);
    t2 = _mm_unpacklo_epi32(s2, s3);
    t3 = _mm_unpackhi_epi32(s2, s3);
    u0 = _mm_add_epi32(t0, t1);
    u1 = _mm_add_epi32(t2, t3);
    _mm_storeu_si128((__m128i*)(void*)out,
                     _mm_add_epi32(_mm_unpacklo_epi64(u0, u1), _mm_unpackhi_epi64(u0, u1)));
  } else
#endif
  {
    out[0] = out[1] = out[2] = out[3] = 0;
  }
#if defined(MT_DSP)
  {
    int32_t a0 = out[0], a1 = out[1], a2 = out[2], a3 = out[3];
    for (; i + 4 <= n; i += 4) {
      const uint32_t x = mt_ld32(a + i);
      const uint32_t xe = mt_sxtb16(x), xo = mt_sxtb16_ror8(x);
      uint32_t y = mt_ld32(b + i);
      a0 = mt_smlad(xe, mt_sxtb16(y), a0);
      a0 = mt_smlad(xo, mt_sxtb16_ror8(y), a0);
      y = mt_ld32(b + stride + i);
      a1 = mt_smlad(xe, mt_sxtb16(y), a1);
      a1 = mt_smlad(xo, mt_sxtb16_ror8(y), a1);
      y = mt_ld32(b + 2 * stride + i);
      a2 = mt_smlad(xe, mt_sxtb16(y), a2);
      a2 = mt_smlad(xo, mt_sxtb16_ror8(y), a2);
      y = mt_ld32(b + 3 * stride + i);
      a3 = mt_smlad(xe, mt_sxtb16(y), a3);
      a3 = mt_smlad(xo, mt_sxtb16_ror8(y), a3);
    }
    out[0] = a0;
    out[1] = a1;
    out[2] = a2;
    out[3] = a3;
  }
#endif
  for (r = 0; r < 4; ++r) {
    const int8_t* restrict br = b + r * stride;
    int32_t acc = out[r];
    int j;
    for (j = i; j < n; ++j) {
      acc += (int32_t)a[j] * (int32_t)br[j];
    }
    out[r] = acc;
  }
}

#if defined(__SSE2__)
/* Four lanes of mt_mbqm at once, for right shifts 1..31 and no left shift (the compiler
 * passes rmul = 2^(32 - right) per lane only then). Bit-identical to mt_mbqm:
 * - SRDHM: unsigned 32x32->64 products (pmuludq) plus 2^30, bits 31..62 kept, and 2*mult
 *   subtracted where acc < 0 (the unsigned reading of a negative acc adds 2^32 * mult);
 * - RoundingDivideByPOT: (hi + 2^31) * 2^(32-right) splits into the quotient (high word,
 *   minus 2^(31-right)) and the remainder as a 32-bit fraction (low word), which rounds up
 *   when above one half, or at exactly one half for non-negative hi. */
static inline __m128i mt_requant4(__m128i acc, __m128i mult, __m128i rmul) {
  const __m128i lo32 = _mm_set_epi32(0, -1, 0, -1);
  const __m128i c30 = _mm_set_epi32(0, 1 << 30, 0, 1 << 30);
  const __m128i sign = _mm_set1_epi32(INT32_MIN);
  const __m128i p02 = _mm_add_epi64(_mm_mul_epu32(acc, mult), c30);
  const __m128i p13 = _mm_add_epi64(_mm_mul_epu32(_mm_srli_epi64(acc, 32), _mm_srli_epi64(mult, 32)), c30);
  __m128i hi = _mm_or_si128(_mm_and_si128(_mm_srli_epi64(p02, 31), lo32),
                            _mm_slli_epi64(_mm_srli_epi64(p13, 31), 32));
  __m128i xu, q02, q13, high, frac, up;
  hi = _mm_sub_epi32(hi, _mm_and_si128(_mm_srai_epi32(acc, 31), _mm_add_epi32(mult, mult)));
  xu = _mm_xor_si128(hi, sign);
  q02 = _mm_mul_epu32(xu, rmul);
  q13 = _mm_mul_epu32(_mm_srli_epi64(xu, 32), _mm_srli_epi64(rmul, 32));
  high = _mm_or_si128(_mm_srli_epi64(q02, 32), _mm_andnot_si128(lo32, q13));
  frac = _mm_or_si128(_mm_and_si128(q02, lo32), _mm_slli_epi64(q13, 32));
  up = _mm_cmpgt_epi32(_mm_xor_si128(frac, sign),
                       _mm_xor_si128(_mm_srai_epi32(hi, 31), _mm_set1_epi32(-1)));
  return _mm_sub_epi32(_mm_sub_epi32(high, _mm_srli_epi32(rmul, 1)), up);
}

/* dst[0..3] = clamp(v + zp, lo, hi) as int8 (lo, hi within -128..127) */
static inline void mt_store4_s8(int8_t* restrict dst, __m128i v, int32_t zp, int32_t lo, int32_t hi) {
  __m128i w = _mm_add_epi32(v, _mm_set1_epi32(zp));
  int32_t bits;
  w = _mm_packs_epi32(w, w);
  w = _mm_min_epi16(_mm_max_epi16(w, _mm_set1_epi16((int16_t)lo)), _mm_set1_epi16((int16_t)hi));
  w = _mm_packs_epi16(w, w);
  bits = _mm_cvtsi128_si32(w);
  dst[0] = (int8_t)(bits & 0xff);
  dst[1] = (int8_t)((bits >> 8) & 0xff);
  dst[2] = (int8_t)((bits >> 16) & 0xff);
  dst[3] = (int8_t)((bits >> 24) & 0xff);
}

/* requantise acc[0..3] + bias[0..3] of channels ch..ch+3 (or the single per-tensor values) */
static inline void mt_requant4_store(int8_t* restrict dst, const int32_t* acc, const int32_t* restrict bias,
                                     const int32_t* restrict mult, const uint32_t* restrict rmul,
                                     int per_channel, int32_t zp, int32_t lo, int32_t hi) {
  const __m128i a = _mm_add_epi32(_mm_loadu_si128((const __m128i*)(const void*)acc),
                                  _mm_loadu_si128((const __m128i*)(const void*)bias));
  const __m128i m = per_channel ? _mm_loadu_si128((const __m128i*)(const void*)mult) : _mm_set1_epi32(mult[0]);
  const __m128i r = per_channel ? _mm_loadu_si128((const __m128i*)(const void*)rmul)
                                : _mm_set1_epi32((int32_t)rmul[0]);
  mt_store4_s8(dst, mt_requant4(a, m, r), zp, lo, hi);
}
#endif
