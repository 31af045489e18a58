/*
 * dot_s8.h: int8 x int8 -> int32 dot products, the inner loop of FULLY_CONNECTED and
 * CONV_2D. Exact integer arithmetic (the order of additions cannot change the result).
 *
 * Portable C everywhere; where the target has SSE2 (every x86-64 host) the same sums
 * are formed 16 bytes at a time with sign extension + pmaddwd, and mt_dot4_s8 shares the
 * widened input among four weight rows. Nothing here uses floating point.
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
    acc = mt_hsum_epi32(s);
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
