/*
 * conv_2d.h: CONV_2D, NHWC input, OHWI filter, int8 (TFLite reference integer semantics,
 * per-channel symmetric weights) and float32.
 *
 * int8: `bias` already holds bias - input_zp * sum(filter of that output channel), so an
 * in-bounds tap is a plain int8 dot product. A tap in the padding must contribute
 * nothing, which after that folding means adding input_zp * filter (the padded input
 * value is the zero point). When a filter row lies fully inside the input (no dilation
 * along x), its kw * in_c bytes are contiguous in both input and filter: one long dot.
 */
MT_KERNEL int32_t mt_dot_s8(const int8_t* restrict a, const int8_t* restrict b, int n) {
  int32_t acc = 0;
  int i;
  for (i = 0; i < n; ++i) {
    acc += (int32_t)a[i] * (int32_t)b[i];
  }
  return acc;
}

MT_KERNEL int32_t mt_sum_s8(const int8_t* restrict a, int n) {
  int32_t acc = 0;
  int i;
  for (i = 0; i < n; ++i) {
    acc += (int32_t)a[i];
  }
  return acc;
}

MT_KERNEL void mt_conv_s8(const int8_t* restrict in, const int8_t* restrict w,
                          const int32_t* restrict bias, const int32_t* restrict mult,
                          const int32_t* restrict shift, int per_channel,
                          int8_t* restrict out, int batches, int in_h, int in_w, int in_c,
                          int out_h, int out_w, int out_c, int k_h, int k_w, int stride_h,
                          int stride_w, int dil_h, int dil_w, int pad_h, int pad_w,
                          int32_t in_zp, int32_t out_zp, int32_t act_min, int32_t act_max) {
  int b, oy, ox, oc, ky, kx;
  for (b = 0; b < batches; ++b) {
    const int8_t* restrict img = in + b * in_h * in_w * in_c;
    for (oy = 0; oy < out_h; ++oy) {
      const int iy0 = oy * stride_h - pad_h;
      for (ox = 0; ox < out_w; ++ox) {
        const int ix0 = ox * stride_w - pad_w;
        const int row_inside = dil_w == 1 && ix0 >= 0 && ix0 + k_w <= in_w;
        int8_t* restrict o = out + ((b * out_h + oy) * out_w + ox) * out_c;
        for (oc = 0; oc < out_c; ++oc) {
          const int8_t* restrict wo = w + oc * k_h * k_w * in_c;
          int32_t acc = bias[oc];
          for (ky = 0; ky < k_h; ++ky) {
            const int iy = iy0 + ky * dil_h;
            const int8_t* restrict wr = wo + ky * k_w * in_c;
            if (iy < 0 || iy >= in_h) {
              acc += in_zp * mt_sum_s8(wr, k_w * in_c);
            } else if (row_inside) {
              acc += mt_dot_s8(img + (iy * in_w + ix0) * in_c, wr, k_w * in_c);
            } else {
              for (kx = 0; kx < k_w; ++kx) {
                const int ix = ix0 + kx * dil_w;
                if (ix < 0 || ix >= in_w) {
                  acc += in_zp * mt_sum_s8(wr + kx * in_c, in_c);
                } else {
                  acc += mt_dot_s8(img + (iy * in_w + ix) * in_c, wr + kx * in_c, in_c);
                }
              }
            }
          }
          acc = mt_mbqm(acc, mult[per_channel ? oc : 0], shift[per_channel ? oc : 0]) + out_zp;
          o[oc] = (int8_t)mt_clamp_i32(acc, act_min, act_max);
        }
      }
    }
  }
}

MT_KERNEL void mt_conv_f32(const float* restrict in, const float* restrict w,
                           const float* restrict bias, float* restrict out, int batches,
                           int in_h, int in_w, int in_c, int out_h, int out_w, int out_c,
                           int k_h, int k_w, int stride_h, int stride_w, int dil_h, int dil_w,
                           int pad_h, int pad_w, float act_min, float act_max) {
  int b, oy, ox, oc, ky, kx, ic;
  for (b = 0; b < batches; ++b) {
    const float* restrict img = in + b * in_h * in_w * in_c;
    for (oy = 0; oy < out_h; ++oy) {
      const int iy0 = oy * stride_h - pad_h;
      for (ox = 0; ox < out_w; ++ox) {
        const int ix0 = ox * stride_w - pad_w;
        float* restrict o = out + ((b * out_h + oy) * out_w + ox) * out_c;
        for (oc = 0; oc < out_c; ++oc) {
          const float* restrict wo = w + oc * k_h * k_w * in_c;
          float acc = 0.0f;
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
              wt = wo + (ky * k_w + kx) * in_c;
              for (ic = 0; ic < in_c; ++ic) {
                acc += px[ic] * wt[ic];
              }
            }
          }
          o[oc] = mt_clamp_f32(acc + (bias ? bias[oc] : 0.0f), act_min, act_max);
        }
      }
    }
  }
}
