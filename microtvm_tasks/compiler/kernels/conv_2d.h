// requires: dot_s8.h
/*
 * conv_2d.h: CONV_2D, NHWC input, OHWI filter, int8 (TFLite reference integer semantics,
 * per-channel symmetric weights) and float32.
 *
 * int8: `bias` already holds bias - input_zp * sum(filter of that output channel). For
 * each output pixel the receptive field is gathered into `patch` (a scratch slice of the
 * arena, kh * kw * in_c bytes) with padded taps set to the input zero point, which then
 * contribute exactly nothing after the folding, as TFLite's skipped taps do. Every output
 * channel is then one contiguous dot product with its filter (four at a time). A 1x1
 * filter without padding needs no patch (patch == 0): the input pixel is contiguous.
 * In place (out == in, a 1x1 unpadded filter with out_c <= in_c): pixel p is copied to the
 * patch before output pixel p, which ends before input pixel p + 1, is written; so `in`
 * and `out` are not restrict-qualified.
 */
MT_KERNEL void mt_conv_s8(const int8_t* in, const int8_t* restrict w,
                          const int32_t* restrict bias, const int32_t* restrict mult,
                          const int8_t* restrict shift, int per_channel,
                          const uint32_t* restrict rmul, int8_t* out,
                          int8_t* restrict patch, int batches, int in_h,
                          int in_w, int in_c, int out_h, int out_w, int out_c, int k_h,
                          int k_w, int stride_h, int stride_w, int dil_h, int dil_w,
                          int pad_h, int pad_w, int32_t in_zp, int32_t out_zp,
                          int32_t act_min, int32_t act_max) {
  const int k = k_h * k_w * in_c;
  const int oc4 = out_c - (out_c & 3);
  int32_t acc[4];
  int b, oy, ox, oc, ky, kx, c, r;
  (void)rmul;
  for (b = 0; b < batches; ++b) {
    const int8_t* img = in + b * in_h * in_w * in_c;
    for (oy = 0; oy < out_h; ++oy) {
      const int iy0 = oy * stride_h - pad_h;
      for (ox = 0; ox < out_w; ++ox) {
        const int ix0 = ox * stride_w - pad_w;
        int8_t* o = out + ((b * out_h + oy) * out_w + ox) * out_c;
        const int8_t* src;
        if (patch == 0) {
          /* 1x1 filter without padding: the input pixel is the patch */
          src = img + (iy0 * in_w + ix0) * in_c;
        } else {
          int8_t* restrict p = patch;
          for (ky = 0; ky < k_h; ++ky) {
            const int iy = iy0 + ky * dil_h;
            for (kx = 0; kx < k_w; ++kx) {
              const int ix = ix0 + kx * dil_w;
              if (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w) {
                for (c = 0; c < in_c; ++c) {
                  p[c] = (int8_t)in_zp;
                }
              } else {
                const int8_t* px = img + (iy * in_w + ix) * in_c;
                for (c = 0; c < in_c; ++c) {
                  p[c] = px[c];
                }
              }
              p += in_c;
            }
          }
          src = patch;
        }
        const int8_t* restrict wo = w;
        for (oc = 0; oc < oc4; oc += 4, wo += 4 * k) {
          mt_dot4_s8(src, wo, k, k, acc);
#if defined(__SSE2__)
          if (rmul) {
            mt_requant4_store(o + oc, acc, bias + oc, mult + (per_channel ? oc : 0),
                              rmul + (per_channel ? oc : 0), per_channel, out_zp, act_min, act_max);
            continue;
          }
#endif
          for (r = 0; r < 4; ++r) {
            const int ch = per_channel ? oc + r : 0;
            const int32_t v = mt_mbqm(acc[r] + bias[oc + r], mult[ch], shift[ch]) + out_zp;
            o[oc + r] = (int8_t)mt_clamp_i32(v, act_min, act_max);
          }
        }
        for (oc = oc4; oc < out_c; ++oc, wo += k) {
          const int ch = per_channel ? oc : 0;
          const int32_t v = mt_mbqm(mt_dot_s8(src, wo, k) + bias[oc], mult[ch], shift[ch]) + out_zp;
          o[oc] = (int8_t)mt_clamp_i32(v, act_min, act_max);
        }
      }
    }
  }
}

/* int8, variant "taps": the same sums as mt_conv_s8 without a patch buffer (no scratch,
 * for layers where the patch would raise the arena's peak). Each tap's input pixel is
 * already contiguous (NHWC), and so is that tap's slice of every filter row (OHWI), so an
 * output block of four channels is the sum over taps of four in_c-long dot products. A
 * padded tap reads `zp_px`, a constant pixel of in_c input zero points, which the folded
 * bias cancels exactly as it does the patch's padded entries. */
MT_KERNEL void mt_conv_s8_taps(const int8_t* restrict in, const int8_t* restrict w,
                               const int32_t* restrict bias, const int32_t* restrict mult,
                               const int8_t* restrict shift, int per_channel,
                               const int8_t* restrict zp_px, int8_t* restrict out, int batches,
                               int in_h, int in_w, int in_c, int out_h, int out_w, int out_c,
                               int k_h, int k_w, int stride_h, int stride_w, int dil_h, int dil_w,
                               int pad_h, int pad_w, int32_t out_zp, int32_t act_min,
                               int32_t act_max) {
  const int k = k_h * k_w * in_c;
  const int oc4 = out_c - (out_c & 3);
  int32_t acc[4], part[4];
  int b, oy, ox, oc, ky, kx, r;
  for (b = 0; b < batches; ++b) {
    const int8_t* restrict img = in + b * in_h * in_w * in_c;
    for (oy = 0; oy < out_h; ++oy) {
      const int iy0 = oy * stride_h - pad_h;
      for (ox = 0; ox < out_w; ++ox) {
        const int ix0 = ox * stride_w - pad_w;
        int8_t* restrict o = out + ((b * out_h + oy) * out_w + ox) * out_c;
        for (oc = 0; oc < out_c; oc += (oc < oc4 ? 4 : 1)) {
          const int rows = oc < oc4 ? 4 : 1;
          acc[0] = acc[1] = acc[2] = acc[3] = 0;
          for (ky = 0; ky < k_h; ++ky) {
            const int iy = iy0 + ky * dil_h;
            for (kx = 0; kx < k_w; ++kx) {
              const int ix = ix0 + kx * dil_w;
              const int8_t* restrict px = (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w)
                                              ? zp_px
                                              : img + (iy * in_w + ix) * in_c;
              const int8_t* restrict wt = w + oc * k + (ky * k_w + kx) * in_c;
              if (rows == 4) {
                mt_dot4_s8(px, wt, k, in_c, part);
                for (r = 0; r < 4; ++r) {
                  acc[r] += part[r];
                }
              } else {
                acc[0] += mt_dot_s8(px, wt, in_c);
              }
            }
          }
          for (r = 0; r < rows; ++r) {
            const int ch = per_channel ? oc + r : 0;
            const int32_t v = mt_mbqm(acc[r] + bias[oc + r], mult[ch], shift[ch]) + out_zp;
            o[oc + r] = (int8_t)mt_clamp_i32(v, act_min, act_max);
          }
        }
      }
    }
  }
}

#define MT_CONV_F32_BLOCK 64
#define MT_CONV_F32_OC 8 /* output channels per register block */
#if defined(__SSE2__)
#define MT_CONV_F32_PX 4 /* output pixels (along a row) per register block: 8 SSE registers */
#else
#define MT_CONV_F32_PX 2 /* 16 scalar accumulators: fit a Cortex-M4F's 32 FPU registers */
#endif

/* float32, one output pixel, every output channel (borders, and channels past the last
 * whole register block from c_first on): the filter is stored [kh][kw][in_c][out_c]
 * (transposed at compile time) so the inner loop runs across output channels. */
MT_KERNEL void mt_conv_f32_pixel(const float* restrict img, const float* restrict w,
                                 const float* restrict bias, float* restrict o, int in_h,
                                 int in_w, int in_c, int out_c, int c_first, int k_h, int k_w,
                                 int dil_h, int dil_w, int iy0, int ix0, float act_min,
                                 float act_max) {
  float acc[MT_CONV_F32_BLOCK];
  int c0, c, ky, kx, ic;
  for (c0 = c_first; c0 < out_c; c0 += MT_CONV_F32_BLOCK) {
    const int n = out_c - c0 < MT_CONV_F32_BLOCK ? out_c - c0 : MT_CONV_F32_BLOCK;
    for (c = 0; c < n; ++c) {
      acc[c] = 0.0f;
    }
    for (ky = 0; ky < k_h; ++ky) {
      const int iy = iy0 + ky * dil_h;
      if (iy < 0 || iy >= in_h) {
        continue;
      }
      for (kx = 0; kx < k_w; ++kx) {
        const int ix = ix0 + kx * dil_w;
        const float* restrict px;
        const float* restrict wt;
        if (ix < 0 || ix >= in_w) {
          continue;
        }
        px = img + (iy * in_w + ix) * in_c;
        wt = w + (ky * k_w + kx) * in_c * out_c + c0;
        for (ic = 0; ic < in_c; ++ic) {
          const float xv = px[ic];
          const float* restrict wr = wt + ic * out_c;
          for (c = 0; c < n; ++c) {
            acc[c] += xv * wr[c];
          }
        }
      }
    }
    for (c = 0; c < n; ++c) {
      o[c0 + c] = mt_clamp_f32(acc[c] + (bias ? bias[c0 + c] : 0.0f), act_min, act_max);
    }
  }
}

/* MT_CONV_F32_PX neighbouring output pixels x MT_CONV_F32_OC output channels; `w`, `bias`
 * and `o` already point at the first channel of the block, ix0 is the first pixel's
 * leftmost tap column. A tap column outside the input contributes a 0.0f input (adding
 * +0.0f * w leaves a sum unchanged), so borders need no separate path. The accumulators
 * are named variables, never an array, so they stay in registers at any optimisation
 * level: eight SSE registers of 4 pixels x 8 channels on x86 hosts, sixteen scalars of
 * 2 pixels x 8 channels elsewhere. Each output adds its taps in (ky, kx, ic) order and
 * then the bias on every path (so all give the same floats as mt_conv_f32_pixel). */
MT_KERNEL void mt_conv_f32_block(const float* restrict img, const float* restrict w,
                                 const float* restrict bias, float* restrict o, int in_h,
                                 int in_w, int in_c, int out_c, int k_h, int k_w, int dil_h,
                                 int dil_w, int stride_w, int iy0, int ix0, float act_min,
                                 float act_max) {
  int ky, kx, ic, p;
#if defined(__SSE2__)
  __m128 a0l = _mm_setzero_ps(), a0h = a0l, a1l = a0l, a1h = a0l;
  __m128 a2l = a0l, a2h = a0l, a3l = a0l, a3h = a0l;
  __m128 acc[8];
#define MT_CF32_STEP()                                                                       \
  do {                                                                                       \
    const __m128 wl = _mm_loadu_ps(wt + ic * out_c);                                         \
    const __m128 wh = _mm_loadu_ps(wt + ic * out_c + 4);                                     \
    __m128 x = _mm_set1_ps(MT_CF32_X(0));                                                    \
    a0l = _mm_add_ps(a0l, _mm_mul_ps(x, wl));                                                \
    a0h = _mm_add_ps(a0h, _mm_mul_ps(x, wh));                                                \
    x = _mm_set1_ps(MT_CF32_X(1));                                                           \
    a1l = _mm_add_ps(a1l, _mm_mul_ps(x, wl));                                                \
    a1h = _mm_add_ps(a1h, _mm_mul_ps(x, wh));                                                \
    x = _mm_set1_ps(MT_CF32_X(2));                                                           \
    a2l = _mm_add_ps(a2l, _mm_mul_ps(x, wl));                                                \
    a2h = _mm_add_ps(a2h, _mm_mul_ps(x, wh));                                                \
    x = _mm_set1_ps(MT_CF32_X(3));                                                           \
    a3l = _mm_add_ps(a3l, _mm_mul_ps(x, wl));                                                \
    a3h = _mm_add_ps(a3h, _mm_mul_ps(x, wh));                                                \
  } while (0)
#else
  float a00 = 0.0f, a01 = 0.0f, a02 = 0.0f, a03 = 0.0f, a04 = 0.0f, a05 = 0.0f, a06 = 0.0f;
  float a07 = 0.0f, a10 = 0.0f, a11 = 0.0f, a12 = 0.0f, a13 = 0.0f, a14 = 0.0f, a15 = 0.0f;
  float a16 = 0.0f, a17 = 0.0f;
  float acc[16];
#define MT_CF32_STEP()                                                                       \
  do {                                                                                       \
    const float* restrict wr = wt + ic * out_c;                                              \
    const float x0 = MT_CF32_X(0), x1 = MT_CF32_X(1);                                        \
    a00 += x0 * wr[0];                                                                       \
    a10 += x1 * wr[0];                                                                       \
    a01 += x0 * wr[1];                                                                       \
    a11 += x1 * wr[1];                                                                       \
    a02 += x0 * wr[2];                                                                       \
    a12 += x1 * wr[2];                                                                       \
    a03 += x0 * wr[3];                                                                       \
    a13 += x1 * wr[3];                                                                       \
    a04 += x0 * wr[4];                                                                       \
    a14 += x1 * wr[4];                                                                       \
    a05 += x0 * wr[5];                                                                       \
    a15 += x1 * wr[5];                                                                       \
    a06 += x0 * wr[6];                                                                       \
    a16 += x1 * wr[6];                                                                       \
    a07 += x0 * wr[7];                                                                       \
    a17 += x1 * wr[7];                                                                       \
  } while (0)
#endif
  for (ky = 0; ky < k_h; ++ky) {
    const int iy = iy0 + ky * dil_h;
    const float* restrict row;
    if (iy < 0 || iy >= in_h) {
      continue;
    }
    row = img + iy * in_w * in_c;
    for (kx = 0; kx < k_w; ++kx) {
      const int ix = ix0 + kx * dil_w;
      const float* restrict wt = w + (ky * k_w + kx) * in_c * out_c;
      const float* q[MT_CONV_F32_PX];
      if (ix >= 0 && ix + (MT_CONV_F32_PX - 1) * stride_w < in_w) {
        for (p = 0; p < MT_CONV_F32_PX; ++p) {
          q[p] = row + (ix + p * stride_w) * in_c;
        }
#define MT_CF32_X(p) q[p][ic]
        for (ic = 0; ic < in_c; ++ic) {
          MT_CF32_STEP();
        }
#undef MT_CF32_X
      } else {
        /* some of the taps fall into the padding: they read 0.0f */
        for (p = 0; p < MT_CONV_F32_PX; ++p) {
          const int x = ix + p * stride_w;
          q[p] = x >= 0 && x < in_w ? row + x * in_c : (const float*)0;
        }
#define MT_CF32_X(p) (q[p] ? q[p][ic] : 0.0f)
        for (ic = 0; ic < in_c; ++ic) {
          MT_CF32_STEP();
        }
#undef MT_CF32_X
      }
    }
  }
#undef MT_CF32_STEP
#if defined(__SSE2__)
  acc[0] = a0l, acc[1] = a0h, acc[2] = a1l, acc[3] = a1h;
  acc[4] = a2l, acc[5] = a2h, acc[6] = a3l, acc[7] = a3h;
  {
    const __m128 lo = _mm_set1_ps(act_min), hi = _mm_set1_ps(act_max);
    const __m128 bl = bias ? _mm_loadu_ps(bias) : _mm_setzero_ps();
    const __m128 bh = bias ? _mm_loadu_ps(bias + 4) : _mm_setzero_ps();
    for (p = 0; p < MT_CONV_F32_PX; ++p) {
      float* restrict op = o + p * out_c;
      _mm_storeu_ps(op, _mm_min_ps(hi, _mm_max_ps(lo, _mm_add_ps(acc[2 * p], bl))));
      _mm_storeu_ps(op + 4, _mm_min_ps(hi, _mm_max_ps(lo, _mm_add_ps(acc[2 * p + 1], bh))));
    }
  }
#else
  acc[0] = a00, acc[1] = a01, acc[2] = a02, acc[3] = a03;
  acc[4] = a04, acc[5] = a05, acc[6] = a06, acc[7] = a07;
  acc[8] = a10, acc[9] = a11, acc[10] = a12, acc[11] = a13;
  acc[12] = a14, acc[13] = a15, acc[14] = a16, acc[15] = a17;
  for (p = 0; p < MT_CONV_F32_PX; ++p) {
    int c;
    for (c = 0; c < MT_CONV_F32_OC; ++c) {
      o[p * out_c + c] =
          mt_clamp_f32(acc[p * MT_CONV_F32_OC + c] + (bias ? bias[c] : 0.0f), act_min, act_max);
    }
  }
#endif
}

/* float32 convolution, one output row: in blocks of MT_CONV_F32_PX pixels (the last block
 * of a row overlaps the one before rather than falling back to single pixels: it writes the
 * same values again), each in blocks of MT_CONV_F32_OC channels whose accumulators stay in
 * registers while the taps stream by (each filter row loaded once for all pixels of the
 * block). Each output sums its taps in (ky, kx, ic) order and then adds the bias, as the
 * reference kernel does. Rows narrower than a block and channels past the last whole block
 * take mt_conv_f32_pixel. */
MT_KERNEL void mt_conv_f32_row(const float* restrict img, const float* restrict w,
                               const float* restrict bias, float* restrict orow, int in_h,
                               int in_w, int in_c, int out_w, int out_c, int k_h, int k_w,
                               int stride_w, int dil_h, int dil_w, int pad_w, int iy0,
                               float act_min, float act_max) {
  const int oc_blocked = out_c - out_c % MT_CONV_F32_OC;
  int ox, c0, p;
  if (out_w < MT_CONV_F32_PX) {
    for (ox = 0; ox < out_w; ++ox) {
      mt_conv_f32_pixel(img, w, bias, orow + ox * out_c, in_h, in_w, in_c, out_c, 0, k_h, k_w,
                        dil_h, dil_w, iy0, ox * stride_w - pad_w, act_min, act_max);
    }
    return;
  }
  for (ox = 0; ox < out_w; ox += MT_CONV_F32_PX) {
    int ix0;
    if (ox + MT_CONV_F32_PX > out_w) {
      ox = out_w - MT_CONV_F32_PX; /* overlap the previous block */
    }
    ix0 = ox * stride_w - pad_w;
    for (c0 = 0; c0 < oc_blocked; c0 += MT_CONV_F32_OC) {
      mt_conv_f32_block(img, w + c0, bias ? bias + c0 : bias, orow + ox * out_c + c0, in_h, in_w,
                        in_c, out_c, k_h, k_w, dil_h, dil_w, stride_w, iy0, ix0, act_min,
                        act_max);
    }
    if (oc_blocked < out_c) {
      for (p = 0; p < MT_CONV_F32_PX; ++p) {
        mt_conv_f32_pixel(img, w, bias, orow + (ox + p) * out_c, in_h, in_w, in_c, out_c,
                          oc_blocked, k_h, k_w, dil_h, dil_w, iy0, ix0 + p * stride_w, act_min,
                          act_max);
      }
    }
  }
}

MT_KERNEL void mt_conv_f32(const float* restrict in, const float* restrict w,
                           const float* restrict bias, float* restrict out, int batches,
                           int in_h, int in_w, int in_c, int out_h, int out_w, int out_c,
                           int k_h, int k_w, int stride_h, int stride_w, int dil_h, int dil_w,
                           int pad_h, int pad_w, float act_min, float act_max) {
  int b, oy;
  for (b = 0; b < batches; ++b) {
    const float* restrict img = in + b * in_h * in_w * in_c;
    for (oy = 0; oy < out_h; ++oy) {
      mt_conv_f32_row(img, w, bias, out + (b * out_h + oy) * out_w * out_c, in_h, in_w, in_c,
                      out_w, out_c, k_h, k_w, stride_w, dil_h, dil_w, pad_w,
                      oy * stride_h - pad_h, act_min, act_max);
    }
  }
}

/* float32 convolution followed by a MAX_POOL_2D whose windows tile the convolution's output
 * (stride = filter, no padding): the convolution's output never exists as a whole. For
 * each pooled row, the pool_h convolution rows it covers are computed one at a time into
 * `row` (a scratch slice of out_w * out_c floats) and max-reduced into the pooled row in
 * the pool kernel's order (rows, then columns; then the pool's clamp); convolution rows
 * and columns past the last whole window, which the pool would drop, are never computed. */
MT_KERNEL void mt_conv_maxpool_f32(const float* restrict in, const float* restrict w,
                                   const float* restrict bias, float* restrict out,
                                   float* restrict row, int batches, int in_h, int in_w,
                                   int in_c, int out_w, int out_c, int k_h, int k_w,
                                   int stride_h, int stride_w, int dil_h, int dil_w, int pad_h,
                                   int pad_w, float act_min, float act_max, int pool_h,
                                   int pool_w, int pooled_h, int pooled_w, float pool_min,
                                   float pool_max) {
  const int used_w = pooled_w * pool_w;
  int b, py, r, px, fx, c;
  (void)out_w;
  for (b = 0; b < batches; ++b) {
    const float* restrict img = in + b * in_h * in_w * in_c;
    for (py = 0; py < pooled_h; ++py) {
      float* restrict o = out + (b * pooled_h + py) * pooled_w * out_c;
      for (c = 0; c < pooled_w * out_c; ++c) {
        o[c] = -3.4028234663852886e38f;
      }
      for (r = 0; r < pool_h; ++r) {
        const int oy = py * pool_h + r;
        mt_conv_f32_row(img, w, bias, row, in_h, in_w, in_c, used_w, out_c, k_h, k_w, stride_w,
                        dil_h, dil_w, pad_w, oy * stride_h - pad_h, act_min, act_max);
        for (px = 0; px < pooled_w; ++px) {
          float* restrict op = o + px * out_c;
          for (fx = 0; fx < pool_w; ++fx) {
            const float* restrict x = row + (px * pool_w + fx) * out_c;
            for (c = 0; c < out_c; ++c) {
              op[c] = x[c] > op[c] ? x[c] : op[c];
            }
          }
        }
      }
      for (c = 0; c < pooled_w * out_c; ++c) {
        o[c] = mt_clamp_f32(o[c], pool_min, pool_max);
      }
    }
  }
}
