// requires: dot_s8.h
/*
 * depthwise_conv_2d.h: DEPTHWISE_CONV_2D, NHWC input, filter [1][kh][kw][in_c * dm],
 * int8 (TFLite reference integer semantics, per-channel weights) and float32.
 *
 * Output channel oc = ic * dm + m reads input channel ic. The loop runs over blocks of
 * output channels with one int32 (float) accumulator per channel, so the inner loop is
 * an elementwise multiply-add across channels that vectorises. int8: `bias` holds
 * bias - input_zp * sum over taps of the filter; a padded tap adds input_zp * filter.
 * In place (out == in; stride 1, dm 1, same shape, pad_h <= k_h - 1): output row oy
 * overwrites input row oy, so the rows above it (from oy - pad_h) and row oy itself (read
 * while its pixels are being replaced) come from `ring`, pad_h + 1 input rows, each copied
 * just before the output row that overwrites it; rows below oy are still intact in place.
 */
#define MT_DW_BLOCK 64

MT_KERNEL void mt_dwconv_s8(const int8_t* in, const int8_t* restrict w,
                            const int32_t* restrict bias, const int32_t* restrict mult,
                            const int8_t* restrict shift, int per_channel,
                            const uint32_t* restrict rmul, int8_t* out,
                            int8_t* restrict ring, int batches, int in_h, int in_w, int in_c,
                            int out_h, int out_w, int dm, int k_h, int k_w, int stride_h,
                            int stride_w, int dil_h, int dil_w, int pad_h, int pad_w,
                            int32_t in_zp, int32_t out_zp, int32_t act_min, int32_t act_max) {
  const int out_c = in_c * dm;
  const int row_bytes = in_w * in_c;
  const int ring_rows = pad_h + 1;
  int32_t acc[MT_DW_BLOCK];
  int b, oy, ox, c0, c, ky, kx;
  (void)rmul;
  for (b = 0; b < batches; ++b) {
    const int8_t* img = in + b * in_h * in_w * in_c;
    for (oy = 0; oy < out_h; ++oy) {
      const int iy0 = oy * stride_h - pad_h;
      if (ring && oy < in_h) {
        /* input row oy, about to be overwritten; rows oy - pad_h .. oy - 1 are already in
           the ring (saved at their own turn), rows > oy are still intact in place */
        for (c = 0; c < row_bytes; ++c) {
          ring[(oy % ring_rows) * row_bytes + c] = img[oy * row_bytes + c];
        }
      }
      for (ox = 0; ox < out_w; ++ox) {
        const int ix0 = ox * stride_w - pad_w;
        int8_t* o = out + ((b * out_h + oy) * out_w + ox) * out_c;
        for (c0 = 0; c0 < out_c; c0 += MT_DW_BLOCK) {
          const int n = out_c - c0 < MT_DW_BLOCK ? out_c - c0 : MT_DW_BLOCK;
          for (c = 0; c < n; ++c) {
            acc[c] = bias[c0 + c];
          }
          for (ky = 0; ky < k_h; ++ky) {
            const int iy = iy0 + ky * dil_h;
            for (kx = 0; kx < k_w; ++kx) {
              const int ix = ix0 + kx * dil_w;
              const int8_t* restrict wt = w + (ky * k_w + kx) * out_c + c0;
              if (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w) {
                for (c = 0; c < n; ++c) {
                  acc[c] += in_zp * (int32_t)wt[c];
                }
              } else {
                const int8_t* restrict px = ring && iy <= oy
                                                ? ring + (iy % ring_rows) * row_bytes + ix * in_c
                                                : img + (iy * in_w + ix) * in_c;
                if (dm == 1) {
                  for (c = 0; c < n; ++c) {
                    acc[c] += (int32_t)px[c0 + c] * (int32_t)wt[c];
                  }
                } else {
                  for (c = 0; c < n; ++c) {
                    acc[c] += (int32_t)px[(c0 + c) / dm] * (int32_t)wt[c];
                  }
                }
              }
            }
          }
          c = 0;
#if defined(__SSE2__)
          if (rmul) {
            static const int32_t zero4[4] = {0, 0, 0, 0};
            for (; c + 4 <= n; c += 4) {
              const int ch = per_channel ? c0 + c : 0;
              mt_requant4_store(o + c0 + c, acc + c, zero4, mult + ch, rmul + ch, per_channel, out_zp,
                                act_min, act_max);
            }
          }
#endif
          {
            /* the block's own multipliers: indexing mult/shift by c0 + c here made gcc -O2
               mis-bound this loop (a false "iteration 67 invokes undefined behavior" on
               vww's 128-channel layers); c0 + c < out_c always holds, as n <= out_c - c0 */
            const int32_t* restrict mb = per_channel ? mult + c0 : mult;
            const int8_t* restrict sb = per_channel ? shift + c0 : shift;
            for (; c < n; ++c) {
              const int ch = per_channel ? c : 0;
              const int32_t v = mt_mbqm(acc[c], mb[ch], sb[ch]) + out_zp;
              o[c0 + c] = (int8_t)mt_clamp_i32(v, act_min, act_max);
            }
          }
        }
      }
    }
  }
}

MT_KERNEL void mt_dwconv_f32(const float* restrict in, const float* restrict w,
                             const float* restrict bias, float* restrict out, int batches,
                             int in_h, int in_w, int in_c, int out_h, int out_w, int dm,
                             int k_h, int k_w, int stride_h, int stride_w, int dil_h,
                             int dil_w, int pad_h, int pad_w, float act_min, float act_max) {
  const int out_c = in_c * dm;
  float acc[MT_DW_BLOCK];
  int b, oy, ox, c0, c, ky, kx;
  for (b = 0; b < batches; ++b) {
    const float* restrict img = in + b * in_h * in_w * in_c;
    for (oy = 0; oy < out_h; ++oy) {
      const int iy0 = oy * stride_h - pad_h;
      for (ox = 0; ox < out_w; ++ox) {
        const int ix0 = ox * stride_w - pad_w;
        float* restrict o = out + ((b * out_h + oy) * out_w + ox) * out_c;
        for (c0 = 0; c0 < out_c; c0 += MT_DW_BLOCK) {
          const int n = out_c - c0 < MT_DW_BLOCK ? out_c - c0 : MT_DW_BLOCK;
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
              const float* restrict wt = w + (ky * k_w + kx) * out_c + c0;
              const float* restrict px;
              if (ix < 0 || ix >= in_w) {
                continue;
              }
              px = img + (iy * in_w + ix) * in_c;
              for (c = 0; c < n; ++c) {
                acc[c] += px[(c0 + c) / dm] * wt[c];
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
