/*
 * average_pool_2d.h: AVERAGE_POOL_2D, NHWC, int8 (TFLite reference: sum of the in-bounds
 * window, divided by its element count rounding half away from zero, clamped; input and
 * output share quantisation) and float32. Channels are the inner, vectorised loop.
 * `divisor` 0 divides by the window's in-bounds count (TFLite); non-zero is a fixed
 * divisor (ONNX count_include_pad=1: padded positions count as zeros).
 */
#define MT_POOL_BLOCK 64

MT_KERNEL void mt_avgpool_s8(const int8_t* restrict in, int8_t* restrict out, int batches,
                             int in_h, int in_w, int ch, int out_h, int out_w, int k_h,
                             int k_w, int stride_h, int stride_w, int pad_h, int pad_w,
                             int divisor, int32_t act_min, int32_t act_max) {
  int32_t acc[MT_POOL_BLOCK];
  int b, oy, ox, c0, c, y, x;
  for (b = 0; b < batches; ++b) {
    for (oy = 0; oy < out_h; ++oy) {
      const int iy0 = oy * stride_h - pad_h;
      const int y0 = iy0 < 0 ? 0 : iy0;
      const int y1 = iy0 + k_h > in_h ? in_h : iy0 + k_h;
      for (ox = 0; ox < out_w; ++ox) {
        const int ix0 = ox * stride_w - pad_w;
        const int x0 = ix0 < 0 ? 0 : ix0;
        const int x1 = ix0 + k_w > in_w ? in_w : ix0 + k_w;
        const int32_t count = divisor ? (int32_t)divisor : (int32_t)((y1 - y0) * (x1 - x0));
        for (c0 = 0; c0 < ch; c0 += MT_POOL_BLOCK) {
          const int n = ch - c0 < MT_POOL_BLOCK ? ch - c0 : MT_POOL_BLOCK;
          for (c = 0; c < n; ++c) {
            acc[c] = 0;
          }
          for (y = y0; y < y1; ++y) {
            for (x = x0; x < x1; ++x) {
              const int8_t* restrict px = in + ((b * in_h + y) * in_w + x) * ch + c0;
              for (c = 0; c < n; ++c) {
                acc[c] += px[c];
              }
            }
          }
          for (c = 0; c < n; ++c) {
            int32_t v = 0;
            if (count > 0) {
              v = acc[c] > 0 ? (acc[c] + count / 2) / count : (acc[c] - count / 2) / count;
            }
            out[((b * out_h + oy) * out_w + ox) * ch + c0 + c] =
                (int8_t)mt_clamp_i32(v, act_min, act_max);
          }
        }
      }
    }
  }
}

MT_KERNEL void mt_avgpool_f32(const float* restrict in, float* restrict out, int batches,
                              int in_h, int in_w, int ch, int out_h, int out_w, int k_h,
                              int k_w, int stride_h, int stride_w, int pad_h, int pad_w,
                              int divisor, float act_min, float act_max) {
  float acc[MT_POOL_BLOCK];
  int b, oy, ox, c0, c, y, x;
  for (b = 0; b < batches; ++b) {
    for (oy = 0; oy < out_h; ++oy) {
      const int iy0 = oy * stride_h - pad_h;
      const int y0 = iy0 < 0 ? 0 : iy0;
      const int y1 = iy0 + k_h > in_h ? in_h : iy0 + k_h;
      for (ox = 0; ox < out_w; ++ox) {
        const int ix0 = ox * stride_w - pad_w;
        const int x0 = ix0 < 0 ? 0 : ix0;
        const int x1 = ix0 + k_w > in_w ? in_w : ix0 + k_w;
        const int count = divisor ? divisor : (y1 - y0) * (x1 - x0);
        for (c0 = 0; c0 < ch; c0 += MT_POOL_BLOCK) {
          const int n = ch - c0 < MT_POOL_BLOCK ? ch - c0 : MT_POOL_BLOCK;
          for (c = 0; c < n; ++c) {
            acc[c] = 0.0f;
          }
          for (y = y0; y < y1; ++y) {
            for (x = x0; x < x1; ++x) {
              const float* restrict px = in + ((b * in_h + y) * in_w + x) * ch + c0;
              for (c = 0; c < n; ++c) {
                acc[c] += px[c];
              }
            }
          }
          for (c = 0; c < n; ++c) {
            const float v = count > 0 ? acc[c] / (float)count : 0.0f;
            out[((b * out_h + oy) * out_w + ox) * ch + c0 + c] = mt_clamp_f32(v, act_min, act_max);
          }
        }
      }
    }
  }
}
