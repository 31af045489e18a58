// requires: mt_dsp.h
/*
 * depthwise_conv_2d_dsp.h: int8 DEPTHWISE_CONV_2D kernels for cores with the Arm DSP
 * extension (Cortex-M4/M7/M33), bit-exact with TFLite's reference integer kernel, with an
 * exact portable meaning everywhere else (mt_dsp.h, and the helpers below), so every
 * variant is tested on the host.
 *
 * The arguments are those of mt_dwconv_s8 (depthwise_conv_2d.h) except that `bias` is
 * the model's own (not folded with input_zp): every input enters as x - input_zp (SXTAB16
 * adds -input_zp to both lanes for free), so taps in the padding add nothing and are
 * skipped. The in-place ring buffer works as there. `rq` is NULL or the fast
 * requantisation table (ops/depthwise_conv_2d.py fast_requant): per channel (or once,
 * per tensor) {multiplier, rounding + (out_zp << right), right}, given only where the
 * compiler proved it exact (right >= 1, no left shift, |acc| < 2^30); else mt_mbqm.
 *
 * mt_dwconv_s8_c4 (dm 1): four channels per pass with the accumulators in registers; one
 * 32-bit load of four input bytes and one of four filter bytes per tap, SXTB16 (and its
 * ROR #8 form) split each into two 16-bit lane pairs, and SMLABB / SMLATT accumulate each
 * lane into its own channel. Output pixels whose whole window is inside the image take a
 * path without any bounds test; the others loop over the taps inside only.
 *
 * mt_dwconv_s8_c1 (in_c 1, any dm, dilation 1): the one input channel feeds all out_c =
 * dm channels. The filter is reordered at compile time (same bytes, no copy kept) so that
 * one 32-bit load of four neighbouring input pixels, split by SXTB16 into the tap pairs
 * (kx, kx+2) and (kx+1, kx+3), multiplies two taps of one channel per SMLAD. Layout, per
 * group of four channels g, row ky: for each chunk of four taps j two words per channel
 * pair {w(c,4j), w(c+1,4j), w(c,4j+2), w(c+1,4j+2)} then {.. 4j+1 .. 4j+3}, the pairs
 * (c0,c1) (c2,c3) in that order; then for each remaining tap (k_w % 4) the four channels'
 * bytes. Channels past the last full group of four keep the original [ky][kx][c] layout
 * after all groups.
 */
#define MT_DW_MAX_KH 16

#if defined(__GNUC__) && !defined(__clang__)
#define MT_DW_UNROLL _Pragma("GCC unroll 16")
#else
#define MT_DW_UNROLL
#endif

/* after a tap: the next taps' loads (from px, wt) cannot be hoisted above this point, nor
   this above the tap's accumulations, so gcc's scheduler does not load every tap at once
   and spill (an empty asm: no instruction, no memory clobber) */
#if defined(__GNUC__)
#define MT_DW_FENCE(px, wt) \
  __asm__ volatile("" : "+r"(px), "+r"(wt))
#else
#define MT_DW_FENCE(px, wt) ((void)0)
#endif

#if defined(MT_DSP)
/* acc + a.h0 * b.h0 (SMLABB) */
static inline int32_t mt_dw_smlabb(uint32_t a, uint32_t b, int32_t acc) {
  return __smlabb((int32_t)a, (int32_t)b, acc);
}
/* acc + a.h1 * b.h1 (SMLATT) */
static inline int32_t mt_dw_smlatt(uint32_t a, uint32_t b, int32_t acc) {
  return __smlatt((int32_t)a, (int32_t)b, acc);
}
/* acc + a.h0 * b.h1 (SMLABT) */
static inline int32_t mt_dw_smlabt(uint32_t a, uint32_t b, int32_t acc) {
  return __smlabt((int32_t)a, (int32_t)b, acc);
}
/* a + the bytes b1, b3 of x sign-extended, per 16-bit lane (SXTAB16 with ROR #8) */
static inline uint32_t mt_dw_sxtab16_ror8(uint32_t a, uint32_t x) {
  uint32_t r;
  __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
  return r;
}
/* (a * b + 2^31) >> 32, the rounded high word of the product (SMMULR) */
static inline int32_t mt_dw_smmulr(int32_t a, int32_t b) {
  int32_t r;
  __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
  return r;
}
#else
static inline int32_t mt_dw_h(uint32_t v, int hi) { return (int32_t)(int16_t)(uint16_t)(hi ? v >> 16 : v); }
static inline int32_t mt_dw_smlabb(uint32_t a, uint32_t b, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)(mt_dw_h(a, 0) * mt_dw_h(b, 0)));
}
static inline int32_t mt_dw_smlatt(uint32_t a, uint32_t b, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)(mt_dw_h(a, 1) * mt_dw_h(b, 1)));
}
static inline int32_t mt_dw_smlabt(uint32_t a, uint32_t b, int32_t acc) {
  return (int32_t)((uint32_t)acc + (uint32_t)(mt_dw_h(a, 0) * mt_dw_h(b, 1)));
}
static inline uint32_t mt_dw_sxtab16_ror8(uint32_t a, uint32_t x) { return mt_sxtab16(a, mt_ror8(x)); }
static inline int32_t mt_dw_smmulr(int32_t a, int32_t b) {
  return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 31)) >> 32);
}
#endif

/* v clamped to act_min..act_max (within -128..127): SSAT #8, then the activation's bounds
   where they are narrower (constants at each call site, so those tests vanish) */
static inline int32_t mt_dw_clamp8(int32_t v, int32_t act_min, int32_t act_max) {
#if defined(MT_DSP)
  v = __ssat(v, 8);
#else
  v = v < -128 ? -128 : (v > 127 ? 127 : v);
#endif
  if (act_min > -128 && v < act_min) {
    v = act_min;
  }
  if (act_max < 127 && v > act_max) {
    v = act_max;
  }
  return v;
}

/* int8 output of channel ch: the fast table when given, else MultiplyByQuantizedMultiplier */
MT_KERNEL int8_t mt_dw_out(int32_t acc, int ch, const int32_t* restrict rq,
                           const int32_t* restrict mult, const int8_t* restrict shift,
                           int32_t out_zp, int32_t act_min, int32_t act_max) {
  int32_t v;
  if (rq) {
    /* SRDHM(acc, m) = (2 acc m + 2^31) >> 32; rounding half away from zero of the right
       shift and the output zero point are folded into rq[1] (hi >> 31 is -1 when hi < 0) */
    const int32_t hi = mt_dw_smmulr((int32_t)((uint32_t)acc << 1), rq[3 * ch]);
    v = (hi + rq[3 * ch + 1] + (hi >> 31)) >> rq[3 * ch + 2];
  } else {
    v = mt_mbqm(acc, mult[ch], shift[ch]) + out_zp;
  }
  return (int8_t)mt_dw_clamp8(v, act_min, act_max);
}

/* four channels' accumulators += (the four lanes of x - input_zp) times those of w;
   nzp2 holds -input_zp in both 16-bit lanes */
#define MT_DW_TAP4(x, wv)                         \
  do {                                            \
    const uint32_t xe_ = mt_sxtab16(nzp2, x);     \
    const uint32_t xo_ = mt_dw_sxtab16_ror8(nzp2, x); \
    const uint32_t we_ = mt_sxtb16(wv);           \
    const uint32_t wo_ = mt_sxtb16_ror8(wv);      \
    a0 = mt_dw_smlabb(xe_, we_, a0);              \
    a1 = mt_dw_smlabb(xo_, wo_, a1);              \
    a2 = mt_dw_smlatt(xe_, we_, a2);              \
    a3 = mt_dw_smlatt(xo_, wo_, a3);              \
  } while (0)

/* the input rows output row oy reads (NULL outside the image), after saving row oy in the
   ring when running in place; returns 1 when all k_h rows are inside */
MT_KERNEL int mt_dw_rows(const int8_t** rows, const int8_t* img, int8_t* restrict ring, int oy,
                         int in_h, int row_bytes, int k_h, int stride_h, int dil_h, int pad_h) {
  const int ring_rows = pad_h + 1;
  const int iy0 = oy * stride_h - pad_h;
  int all = 1;
  int ky, c;
  if (ring && oy < in_h) {
    for (c = 0; c < row_bytes; ++c) {
      ring[(oy % ring_rows) * row_bytes + c] = img[oy * row_bytes + c];
    }
  }
  for (ky = 0; ky < k_h; ++ky) {
    const int iy = iy0 + ky * dil_h;
    if (iy < 0 || iy >= in_h) {
      rows[ky] = (const int8_t*)0;
      all = 0;
    } else {
      rows[ky] = ring && iy <= oy ? ring + (iy % ring_rows) * row_bytes : img + iy * row_bytes;
    }
  }
  return all;
}

MT_KERNEL void mt_dwconv_s8_c4(const int8_t* in, const int8_t* restrict w,
                               const int32_t* restrict bias, const int32_t* restrict mult,
                               const int8_t* restrict shift, int per_channel,
                               const int32_t* restrict rq, int8_t* out,
                               int8_t* restrict ring, int batches, int in_h, int in_w, int in_c,
                               int out_h, int out_w, int dm, int k_h, int k_w, int stride_h,
                               int stride_w, int dil_h, int dil_w, int pad_h, int pad_w,
                               int32_t in_zp, int32_t out_zp, int32_t act_min, int32_t act_max) {
  const int row_bytes = in_w * in_c;
  const uint32_t nzp2 = ((uint32_t)(-in_zp) & 0xffffu) * 0x00010001u;
  const int8_t* rows[MT_DW_MAX_KH];
  int b, oy, ox, c, ky, kx;
  (void)dm;
  for (b = 0; b < batches; ++b) {
    const int8_t* img = in + b * in_h * row_bytes;
    for (oy = 0; oy < out_h; ++oy) {
      const int rows_in = mt_dw_rows(rows, img, ring, oy, in_h, row_bytes, k_h, stride_h, dil_h, pad_h);
      for (ox = 0; ox < out_w; ++ox) {
        const int ix0 = ox * stride_w - pad_w;
        const int inside = rows_in && ix0 >= 0 && ix0 + (k_w - 1) * dil_w < in_w;
        /* taps kx_lo .. kx_hi - 1 fall inside the row (the others are padding: skipped) */
        int kx_lo = 0, kx_hi = k_w;
        int8_t* o = out + ((b * out_h + oy) * out_w + ox) * in_c;
        if (!inside) {
          while (kx_lo < k_w && ix0 + kx_lo * dil_w < 0) {
            ++kx_lo;
          }
          while (kx_hi > kx_lo && ix0 + (kx_hi - 1) * dil_w >= in_w) {
            --kx_hi;
          }
        }
        for (c = 0; c + 4 <= in_c; c += 4) {
          int32_t a0 = bias[c], a1 = bias[c + 1], a2 = bias[c + 2], a3 = bias[c + 3];
          if (inside) {
            MT_DW_UNROLL
            for (ky = 0; ky < k_h; ++ky) {
              const int8_t* px = rows[ky] + ix0 * in_c + c;
              const int8_t* wt = w + ky * k_w * in_c + c;
              MT_DW_UNROLL
              for (kx = 0; kx < k_w; ++kx) {
                const uint32_t x = mt_ld32(px + kx * dil_w * in_c);
                const uint32_t wv = mt_ld32(wt + kx * in_c);
                MT_DW_TAP4(x, wv);
                MT_DW_FENCE(px, wt);
              }
            }
          } else {
            for (ky = 0; ky < k_h; ++ky) {
              const int8_t* row = rows[ky];
              if (row) {
                const int8_t* px = row + ix0 * in_c + c;
                const int8_t* wt = w + ky * k_w * in_c + c;
                for (kx = kx_lo; kx < kx_hi; ++kx) {
                  const uint32_t x = mt_ld32(px + kx * dil_w * in_c);
                  const uint32_t wv = mt_ld32(wt + kx * in_c);
                  MT_DW_TAP4(x, wv);
                }
              }
            }
          }
          o[c] = mt_dw_out(a0, per_channel ? c : 0, rq, mult, shift, out_zp, act_min, act_max);
          o[c + 1] = mt_dw_out(a1, per_channel ? c + 1 : 0, rq, mult, shift, out_zp, act_min, act_max);
          o[c + 2] = mt_dw_out(a2, per_channel ? c + 2 : 0, rq, mult, shift, out_zp, act_min, act_max);
          o[c + 3] = mt_dw_out(a3, per_channel ? c + 3 : 0, rq, mult, shift, out_zp, act_min, act_max);
        }
        for (; c < in_c; ++c) {
          int32_t a = bias[c];
          for (ky = 0; ky < k_h; ++ky) {
            const int8_t* row = rows[ky];
            if (row) {
              for (kx = kx_lo; kx < kx_hi; ++kx) {
                const int32_t x = (int32_t)row[(ix0 + kx * dil_w) * in_c + c] - in_zp;
                a += x * (int32_t)w[(ky * k_w + kx) * in_c + c];
              }
            }
          }
          o[c] = mt_dw_out(a, per_channel ? c : 0, rq, mult, shift, out_zp, act_min, act_max);
        }
      }
    }
  }
}

/* four bytes of `row` from column ix on, input_zp (zp4: in every byte) for the columns
   outside 0..in_w-1; the chunk is not wholly outside. Rows of four or more bytes shift a
   load from inside the row instead of assembling bytes. */
MT_KERNEL uint32_t mt_dw_ld4_edge(const int8_t* row, int ix, int in_w, uint32_t zp4) {
  uint32_t v = 0;
  int i;
  if (ix >= 0 && ix + 4 <= in_w) {
    return mt_ld32(row + ix);
  }
  if (in_w >= 4 && ix < 0 && ix > -4) {
    const int n = 8 * -ix; /* 8..24 bits of padding at the low end */
    return (mt_ld32(row) << n) | (zp4 >> (32 - n));
  }
  if (in_w >= 4 && ix >= 0 && ix < in_w) {
    const int n = 8 * (ix + 4 - in_w); /* 8..24 bits of padding at the high end */
    return (mt_ld32(row + in_w - 4) >> n) | (zp4 << (32 - n));
  }
  for (i = 0; i < 4; ++i) {
    const int x = ix + i;
    const uint32_t byte = x >= 0 && x < in_w ? (uint32_t)(uint8_t)row[x] : (zp4 & 0xffu);
    v |= byte << (8 * i);
  }
  return v;
}

/* accumulators A0..A3 (one group of four channels) += the chunk's two tap pairs (xe, xo)
   times the group's filter words at wp (layout above) */
#define MT_DW_CHUNK4(wp, A0, A1, A2, A3)             \
  do {                                               \
    uint32_t w_ = mt_ld32(wp);                       \
    A0 = mt_smlad(xe, mt_sxtb16(w_), A0);            \
    A1 = mt_smlad(xe, mt_sxtb16_ror8(w_), A1);       \
    w_ = mt_ld32((wp) + 4);                          \
    A2 = mt_smlad(xe, mt_sxtb16(w_), A2);            \
    A3 = mt_smlad(xe, mt_sxtb16_ror8(w_), A3);       \
    w_ = mt_ld32((wp) + 8);                          \
    A0 = mt_smlad(xo, mt_sxtb16(w_), A0);            \
    A1 = mt_smlad(xo, mt_sxtb16_ror8(w_), A1);       \
    w_ = mt_ld32((wp) + 12);                         \
    A2 = mt_smlad(xo, mt_sxtb16(w_), A2);            \
    A3 = mt_smlad(xo, mt_sxtb16_ror8(w_), A3);       \
  } while (0)

/* the same for one remaining tap: x holds x - input_zp in its low 16 bits */
#define MT_DW_TAIL4(wp, A0, A1, A2, A3)              \
  do {                                               \
    const uint32_t wv_ = mt_ld32(wp);                \
    const uint32_t we_ = mt_sxtb16(wv_);             \
    const uint32_t wo_ = mt_sxtb16_ror8(wv_);        \
    A0 = mt_dw_smlabb(x, we_, A0);                   \
    A1 = mt_dw_smlabb(x, wo_, A1);                   \
    A2 = mt_dw_smlabt(x, we_, A2);                   \
    A3 = mt_dw_smlabt(x, wo_, A3);                   \
  } while (0)

MT_KERNEL void mt_dwconv_s8_c1(const int8_t* in, const int8_t* restrict w,
                               const int32_t* restrict bias, const int32_t* restrict mult,
                               const int8_t* restrict shift, int per_channel,
                               const int32_t* restrict rq, int8_t* out,
                               int8_t* restrict ring, int batches, int in_h, int in_w, int in_c,
                               int out_h, int out_w, int dm, int k_h, int k_w, int stride_h,
                               int stride_w, int dil_h, int dil_w, int pad_h, int pad_w,
                               int32_t in_zp, int32_t out_zp, int32_t act_min, int32_t act_max) {
  const int out_c = dm;
  const int groups = out_c / 4;
  const int chunks = k_w / 4;
  const int tail = k_w % 4;
  const int group_bytes = k_h * k_w * 4; /* one group of four channels' filter */
  const int8_t* restrict wrest = w + groups * group_bytes;
  const int rest = out_c - 4 * groups;
  const uint32_t zp4 = (uint32_t)(uint8_t)(int8_t)in_zp * 0x01010101u;
  const uint32_t nzp2 = ((uint32_t)(-in_zp) & 0xffffu) * 0x00010001u;
  const int8_t* rows[MT_DW_MAX_KH];
  int b, oy, ox, g, ky, j, t, c;
  (void)in_c;
  (void)dil_w;
  for (b = 0; b < batches; ++b) {
    const int8_t* img = in + b * in_h * in_w;
    for (oy = 0; oy < out_h; ++oy) {
      const int rows_in = mt_dw_rows(rows, img, ring, oy, in_h, in_w, k_h, stride_h, dil_h, pad_h);
      for (ox = 0; ox < out_w; ++ox) {
        const int ix0 = ox * stride_w - pad_w;
        const int inside = rows_in && ix0 >= 0 && ix0 + k_w - 1 < in_w;
        /* chunks j_lo .. j_hi - 1 have a column inside the row (the others add nothing) */
        int j_lo = 0, j_hi = chunks;
        int8_t* o = out + ((b * out_h + oy) * out_w + ox) * out_c;
        if (!inside) {
          while (j_lo < chunks && ix0 + 4 * j_lo + 3 < 0) {
            ++j_lo;
          }
          while (j_hi > j_lo && ix0 + 4 * (j_hi - 1) >= in_w) {
            --j_hi;
          }
        }
        for (g = 0; g + 2 <= groups; g += 2) { /* eight channels share each input chunk */
          const int8_t* wg = w + g * group_bytes;
          const int oc = 4 * g;
          int32_t a0 = bias[oc], a1 = bias[oc + 1], a2 = bias[oc + 2], a3 = bias[oc + 3];
          int32_t a4 = bias[oc + 4], a5 = bias[oc + 5], a6 = bias[oc + 6], a7 = bias[oc + 7];
          for (ky = 0; ky < k_h; ++ky) {
            const int8_t* row = rows[ky];
            const int8_t* wr = wg + ky * k_w * 4;
            if (!row) {
              continue; /* a padding row adds nothing: inputs enter as x - input_zp */
            }
            if (inside) {
              MT_DW_UNROLL
              for (j = 0; j < chunks; ++j) {
                const uint32_t xw = mt_ld32(row + ix0 + 4 * j);
                const uint32_t xe = mt_sxtab16(nzp2, xw);         /* taps 4j, 4j+2 */
                const uint32_t xo = mt_dw_sxtab16_ror8(nzp2, xw); /* taps 4j+1, 4j+3 */
                MT_DW_CHUNK4(wr + 16 * j, a0, a1, a2, a3);
                MT_DW_CHUNK4(wr + group_bytes + 16 * j, a4, a5, a6, a7);
              }
            } else {
              for (j = j_lo; j < j_hi; ++j) {
                const uint32_t xw = mt_dw_ld4_edge(row, ix0 + 4 * j, in_w, zp4);
                const uint32_t xe = mt_sxtab16(nzp2, xw);
                const uint32_t xo = mt_dw_sxtab16_ror8(nzp2, xw);
                MT_DW_CHUNK4(wr + 16 * j, a0, a1, a2, a3);
                MT_DW_CHUNK4(wr + group_bytes + 16 * j, a4, a5, a6, a7);
              }
            }
            for (t = 0; t < tail; ++t) {
              const int ix = ix0 + 4 * chunks + t;
              if (ix >= 0 && ix < in_w) {
                const uint32_t x = (uint32_t)((int32_t)row[ix] - in_zp) & 0xffffu;
                MT_DW_TAIL4(wr + 16 * chunks + 4 * t, a0, a1, a2, a3);
                MT_DW_TAIL4(wr + group_bytes + 16 * chunks + 4 * t, a4, a5, a6, a7);
              }
            }
          }
          o[oc] = mt_dw_out(a0, per_channel ? oc : 0, rq, mult, shift, out_zp, act_min, act_max);
          o[oc + 1] = mt_dw_out(a1, per_channel ? oc + 1 : 0, rq, mult, shift, out_zp, act_min, act_max);
          o[oc + 2] = mt_dw_out(a2, per_channel ? oc + 2 : 0, rq, mult, shift, out_zp, act_min, act_max);
          o[oc + 3] = mt_dw_out(a3, per_channel ? oc + 3 : 0, rq, mult, shift, out_zp, act_min, act_max);
          o[oc + 4] = mt_dw_out(a4, per_channel ? oc + 4 : 0, rq, mult, shift, out_zp, act_min, act_max);
          o[oc + 5] = mt_dw_out(a5, per_channel ? oc + 5 : 0, rq, mult, shift, out_zp, act_min, act_max);
          o[oc + 6] = mt_dw_out(a6, per_channel ? oc + 6 : 0, rq, mult, shift, out_zp, act_min, act_max);
          o[oc + 7] = mt_dw_out(a7, per_channel ? oc + 7 : 0, rq, mult, shift, out_zp, act_min, act_max);
        }
        for (; g < groups; ++g) {
          const int8_t* wg = w + g * group_bytes;
          const int oc = 4 * g;
          int32_t a0 = bias[oc], a1 = bias[oc + 1], a2 = bias[oc + 2], a3 = bias[oc + 3];
          for (ky = 0; ky < k_h; ++ky) {
            const int8_t* row = rows[ky];
            const int8_t* wr = wg + ky * k_w * 4;
            if (!row) {
              continue;
            }
            for (j = j_lo; j < j_hi; ++j) {
              const uint32_t xw = inside ? mt_ld32(row + ix0 + 4 * j) : mt_dw_ld4_edge(row, ix0 + 4 * j, in_w, zp4);
              const uint32_t xe = mt_sxtab16(nzp2, xw);
              const uint32_t xo = mt_dw_sxtab16_ror8(nzp2, xw);
              MT_DW_CHUNK4(wr + 16 * j, a0, a1, a2, a3);
            }
            for (t = 0; t < tail; ++t) {
              const int ix = ix0 + 4 * chunks + t;
              if (ix >= 0 && ix < in_w) {
                const uint32_t x = (uint32_t)((int32_t)row[ix] - in_zp) & 0xffffu;
                MT_DW_TAIL4(wr + 16 * chunks + 4 * t, a0, a1, a2, a3);
              }
            }
          }
          o[oc] = mt_dw_out(a0, per_channel ? oc : 0, rq, mult, shift, out_zp, act_min, act_max);
          o[oc + 1] = mt_dw_out(a1, per_channel ? oc + 1 : 0, rq, mult, shift, out_zp, act_min, act_max);
          o[oc + 2] = mt_dw_out(a2, per_channel ? oc + 2 : 0, rq, mult, shift, out_zp, act_min, act_max);
          o[oc + 3] = mt_dw_out(a3, per_channel ? oc + 3 : 0, rq, mult, shift, out_zp, act_min, act_max);
        }
        for (c = 0; c < rest; ++c) {
          const int oc = 4 * groups + c;
          int32_t a = bias[oc];
          for (ky = 0; ky < k_h; ++ky) {
            const int8_t* row = rows[ky];
            int kx;
            if (!row) {
              continue;
            }
            for (kx = 0; kx < k_w; ++kx) {
              const int ix = ix0 + kx;
              if (ix >= 0 && ix < in_w) {
                a += ((int32_t)row[ix] - in_zp) * (int32_t)wrest[(ky * k_w + kx) * rest + c];
              }
            }
          }
          o[oc] = mt_dw_out(a, per_channel ? oc : 0, rq, mult, shift, out_zp, act_min, act_max);
        }
      }
    }
  }
}
