// requires: mt_dsp.h
/*
 * conv_s8_dsp.h: int8 CONV_2D (NHWC input, OHWI filter, TFLite reference integer
 * semantics) as an int16 im2col of two output pixels and a 2-pixel x 2-channel
 * multiply-accumulate kernel built on SMLAD, for cores with the Arm DSP extension (exact
 * portable C elsewhere, through mt_dsp.h).
 *
 * Depth: the receptive field of one output pixel is k = kh * kw * in_c values in (ky, kx,
 * ic) order, padded with zeros to nblk blocks of four. Block j of a pixel is two words of
 * int16 lanes in the order SXTB16 produces from four bytes b0..b3: A = (b0, b2), B = (b1,
 * b3). So a filter word needs only SXTB16 (pairs with A) and SXTB16 ROR #8 (pairs with B),
 * and each input value is sign-extended once per output pixel instead of once per four
 * output channels.
 *
 * `buf` (scratch, 4 * nblk words) holds two pixels interleaved per block: p0.A p0.B p1.A
 * p1.B, so one pointer walks both. `w` is the filter reordered at compile time
 * (conv_2d.py pack_filter_s16): for each pair of output channels, per block the pair's two
 * filter words; an odd last channel's words follow alone. The padded depth has zero
 * weights, so its input lanes (zero too) add nothing.
 *
 * `bias` already holds bias - input_zp * sum(filter of that channel); taps in the padding
 * read input_zp, which then contributes exactly nothing, as TFLite's skipped taps do.
 * The accumulators start at the bias (the sum is exact, so its order is free).
 *
 * Requantisation: with rnd != 0 every channel shifts right by r = 2..31 (-shift), and
 * rnd[c] = 2^(r-2). TFLite's MultiplyByQuantizedMultiplier, RoundingDivideByPOT(
 * SaturatingRoundingDoublingHighMul(x, m), r), equals one floor division
 * floor((x * m + 2^30 + 2^(30+r) - [x < 0] * 2^31) / 2^(31+r)) for m >= 0: the two nested
 * floors merge, and the sign test of the high product can move to x (for -2^30 <= x * m < 0
 * both forms give 0). The 64-bit sum starts as 2^30 - [x<0]*2^31 (low word 2^30 | (x &
 * 2^31), high word x >> 31), x * m is accumulated onto it (one SMLAL), and 2^(30+r) is
 * rnd[c] added to the high word, which is then shifted right by r - 1. Otherwise
 * (rnd == 0) mt_mbqm. Both are bit-identical to TFLite.
 *
 * In place (out == in: a 1x1 unpadded stride-1 filter, out_c <= in_c): both pixels of a
 * pair are expanded into `buf` before either output is written, and outputs q, q + 1 end
 * at or before input pixel q + 2; so `in` and `out` are not restrict-qualified.
 */

/* requantise one accumulator (bias included) of channel `ch` and clamp */
static inline int8_t mt_cs16_requant(int32_t x, int32_t m, int32_t shift, int32_t rnd, int fast,
                                     int32_t out_zp, int32_t act_min, int32_t act_max) {
  int32_t v;
  if (fast) {
    const uint32_t lo = 0x40000000u | ((uint32_t)x & 0x80000000u);
    const int32_t hi = x < 0 ? -1 : 0;
    const uint64_t n = ((uint64_t)(uint32_t)hi << 32) | lo;
    const int64_t t = (int64_t)(n + (uint64_t)((int64_t)x * (int64_t)m));
    v = ((int32_t)(t >> 32) + rnd) >> (-shift - 1);
  } else {
    v = mt_mbqm(x, m, shift);
  }
  return (int8_t)mt_clamp_i32(v + out_zp, act_min, act_max);
}

/* Sign-extend output pixel q's receptive field into lane slot `slot` (0 or 1) of buf. */
static inline void mt_cs16_im2col(const int8_t* in, uint32_t* restrict buf, int slot, int q,
                                  int in_h, int in_w, int in_c, int out_h, int out_w, int k_h,
                                  int k_w, int stride_h, int stride_w, int dil_h, int dil_w,
                                  int pad_h, int pad_w, int32_t in_zp, int nblk) {
  const int per_img = out_h * out_w;
  const int b = q / per_img;
  const int oy = (q - b * per_img) / out_w;
  const int ox = q - b * per_img - oy * out_w;
  const int iy0 = oy * stride_h - pad_h;
  const int ix0 = ox * stride_w - pad_w;
  const int8_t* img = in + b * in_h * in_w * in_c;
  const int k = k_h * k_w * in_c;
  const int row = k_w * in_c; /* filter row length */
  uint32_t* restrict d = buf + 2 * slot;
  int ky, kx, j, e;
  if (k_h == 1 && k_w == 1 && pad_h == 0 && pad_w == 0 && (in_c & 3) == 0) {
    /* 1x1 unpadded: the pixel itself, four channels a word */
    const int8_t* px = img + (iy0 * in_w + ix0) * in_c;
    for (j = 0; j < nblk; ++j) {
      const uint32_t x = mt_ld32(px + 4 * j);
      d[4 * j] = mt_sxtb16(x);
      d[4 * j + 1] = mt_sxtb16_ror8(x);
    }
    return;
  }
  for (ky = 0; ky < k_h; ++ky) {
    const int iy = iy0 + ky * dil_h;
    const int e0 = ky * row;
    const int row_in = iy >= 0 && iy < in_h;
    if (row_in && dil_w == 1 && (row & 3) == 0 && ix0 >= 0 && ix0 + k_w <= in_w) {
      /* a whole filter row inside the image: row bytes contiguous, block aligned */
      const int8_t* px = img + (iy * in_w + ix0) * in_c;
      uint32_t* restrict dj = d + e0; /* 4 words per block, e0 / 4 blocks in */
      for (j = 0; j < row / 4; ++j) {
        const uint32_t x = mt_ld32(px + 4 * j);
        dj[4 * j] = mt_sxtb16(x);
        dj[4 * j + 1] = mt_sxtb16_ror8(x);
      }
      continue;
    }
    for (kx = 0; kx < k_w; ++kx) {
      const int ix = ix0 + kx * dil_w;
      const int inside = row_in && ix >= 0 && ix < in_w;
      const int8_t* px = img + (iy * in_w + ix) * in_c;
      int c;
      for (c = 0; c < in_c; ++c) {
        const int32_t v = inside ? (int32_t)px[c] : in_zp;
        const uint16_t h = (uint16_t)(uint32_t)v;
        const int ei = e0 + kx * in_c + c;
        /* lane (ei & 3) of block ei >> 2: 0 -> A.h0, 1 -> B.h0, 2 -> A.h1, 3 -> B.h1 */
        memcpy((unsigned char*)(d + 4 * (ei >> 2) + (ei & 1)) + 2 * ((ei >> 1) & 1), &h, 2);
      }
    }
  }
  for (e = k; e < 4 * nblk; ++e) {
    const uint16_t z = 0;
    memcpy((unsigned char*)(d + 4 * (e >> 2) + (e & 1)) + 2 * ((e >> 1) & 1), &z, 2);
  }
}

MT_KERNEL void mt_conv_s8_s16(const int8_t* in, const uint32_t* restrict w,
                              const int32_t* restrict bias, const int32_t* restrict mult,
                              const int8_t* restrict shift, const int32_t* restrict rnd,
                              int per_channel, int8_t* out, uint32_t* restrict buf, int batches,
                              int in_h, int in_w, int in_c, int out_h, int out_w, int out_c,
                              int k_h, int k_w, int stride_h, int stride_w, int dil_h,
                              int dil_w, int pad_h, int pad_w, int32_t in_zp, int32_t out_zp,
                              int32_t act_min, int32_t act_max) {
  const int nblk = (k_h * k_w * in_c + 3) / 4;
  const int npix = batches * out_h * out_w;
  const int fast = rnd != 0;
  int q, oc, j;
  for (q = 0; q < npix; q += 2) {
    const int two = q + 1 < npix; /* an odd last pixel fills both slots, stores once */
    const uint32_t* restrict wp = w;
    int8_t* o0 = out + q * out_c;
    int8_t* o1 = o0 + out_c;
    mt_cs16_im2col(in, buf, 0, q, in_h, in_w, in_c, out_h, out_w, k_h, k_w, stride_h, stride_w,
                   dil_h, dil_w, pad_h, pad_w, in_zp, nblk);
    mt_cs16_im2col(in, buf, 1, two ? q + 1 : q, in_h, in_w, in_c, out_h, out_w, k_h, k_w,
                   stride_h, stride_w, dil_h, dil_w, pad_h, pad_w, in_zp, nblk);
    for (oc = 0; oc + 2 <= out_c; oc += 2) {
      const uint32_t* restrict x = buf;
      const int c0 = per_channel ? oc : 0, c1 = per_channel ? oc + 1 : 0;
      int32_t a00 = bias[oc], a01 = bias[oc + 1];
      int32_t a10 = a00, a11 = a01;
      for (j = 0; j < nblk; ++j) {
        const uint32_t x0a = x[0], x0b = x[1], x1a = x[2], x1b = x[3];
        uint32_t f = wp[0];
        uint32_t fa = mt_sxtb16(f), fb = mt_sxtb16_ror8(f);
        a00 = mt_smlad(x0a, fa, a00);
        a00 = mt_smlad(x0b, fb, a00);
        a10 = mt_smlad(x1a, fa, a10);
        a10 = mt_smlad(x1b, fb, a10);
        f = wp[1];
        fa = mt_sxtb16(f);
        fb = mt_sxtb16_ror8(f);
        a01 = mt_smlad(x0a, fa, a01);
        a01 = mt_smlad(x0b, fb, a01);
        a11 = mt_smlad(x1a, fa, a11);
        a11 = mt_smlad(x1b, fb, a11);
        x += 4;
        wp += 2;
      }
      {
        const int32_t m0 = mult[c0], m1 = mult[c1];
        const int32_t s0 = shift[c0], s1 = shift[c1];
        const int32_t r0 = fast ? rnd[c0] : 0, r1 = fast ? rnd[c1] : 0;
        o0[oc] = mt_cs16_requant(a00, m0, s0, r0, fast, out_zp, act_min, act_max);
        o0[oc + 1] = mt_cs16_requant(a01, m1, s1, r1, fast, out_zp, act_min, act_max);
        if (two) {
          o1[oc] = mt_cs16_requant(a10, m0, s0, r0, fast, out_zp, act_min, act_max);
          o1[oc + 1] = mt_cs16_requant(a11, m1, s1, r1, fast, out_zp, act_min, act_max);
        }
      }
    }
    if (oc < out_c) { /* odd last channel */
      const uint32_t* restrict x = buf;
      const int c0 = per_channel ? oc : 0;
      int32_t a00 = bias[oc], a10 = a00;
      for (j = 0; j < nblk; ++j) {
        const uint32_t f = wp[0];
        const uint32_t fa = mt_sxtb16(f), fb = mt_sxtb16_ror8(f);
        a00 = mt_smlad(x[0], fa, a00);
        a00 = mt_smlad(x[1], fb, a00);
        a10 = mt_smlad(x[2], fa, a10);
        a10 = mt_smlad(x[3], fb, a10);
        x += 4;
        wp += 1;
      }
      o0[oc] = mt_cs16_requant(a00, mult[c0], shift[c0], fast ? rnd[c0] : 0, fast, out_zp, act_min,
                               act_max);
      if (two) {
        o1[oc] = mt_cs16_requant(a10, mult[c0], shift[c0], fast ? rnd[c0] : 0, fast, out_zp,
                                 act_min, act_max);
      }
    }
  }
}
