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

#define MT_CONV_F32_BLOCK 64

/* float32: filter stored [kh][kw][in_c][out_c] (transposed at compile time) so the inner
 * loop runs across output channels and vectorises; each output still sums its taps in
 * (ky, kx, ic) order, then adds the bias, as the reference kernel does. */
MT_KERNEL void mt_conv_f32(const float* restrict in, const float* restrict w,
                           const float* restrict bias, float* restrict out, int batches,
                           int in_h, int in_w, int in_c, int out_h, int out_w, int out_c,
                           int k_h, int k_w, int stride_h, int stride_w, int dil_h, int dil_w,
                           int pad_h, int pad_w, float act_min, float act_max) {
  float acc[MT_CONV_F32_BLOCK];
  int b, oy, ox, c0, c, ky, kx, ic;
  for (b = 0; b < batches; ++b) {
    const float* restrict img = in + b * in_h * in_w * in_c;
    for (oy = 0; oy < out_h; ++oy) {
      const int iy0 = oy * stride_h - pad_h;
      for (ox = 0; ox < out_w; ++ox) {
        const int ix0 = ox * stride_w - pad_w;
        float* restrict o = out + ((b * out_h + oy) * out_w + ox) * out_c;
        for (c0 = 0; c0 < out_c; c0 += MT_CONV_F32_BLOCK) {
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
    }
  }
}
