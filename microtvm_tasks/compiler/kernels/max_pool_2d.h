/*
 * max_pool_2d.h: MAX_POOL_2D over NHWC, int8 and float32.
 *
 * As TFLite's reference: the window is clipped to the input (padding never wins the
 * max), then the fused activation clamp is applied. int8 needs no rescale because
 * TFLite requires equal input and output quantisation for pooling.
 * Channels are processed in blocks held in local accumulators: the window is read in
 * NHWC order (contiguous channels), and every input a block needs is read before that
 * block's output is written, so with no padding the output may overwrite the input
 * (the planner's in-place mode): `in` and `out` are therefore not `restrict`.
 */
#ifndef MT_MAXPOOL_BLOCK
#define MT_MAXPOOL_BLOCK 16
#endif

#define MT_MAX_POOL_BODY(T, INIT, CLAMP)                                                \
  T acc[MT_MAXPOOL_BLOCK];                                                              \
  int b, oy, ox, c0, c, n, fy, fx;                                                      \
  for (b = 0; b < batches; ++b) {                                                       \
    for (oy = 0; oy < out_h; ++oy) {                                                    \
      const int iy0 = oy * stride_h - pad_h;                                            \
      const int fy0 = iy0 < 0 ? -iy0 : 0;                                               \
      const int fy1 = filter_h < in_h - iy0 ? filter_h : in_h - iy0;                    \
      for (ox = 0; ox < out_w; ++ox) {                                                  \
        const int ix0 = ox * stride_w - pad_w;                                          \
        const int fx0 = ix0 < 0 ? -ix0 : 0;                                             \
        const int fx1 = filter_w < in_w - ix0 ? filter_w : in_w - ix0;                  \
        T* o = out + ((b * out_h + oy) * out_w + ox) * depth;                           \
        for (c0 = 0; c0 < depth; c0 += MT_MAXPOOL_BLOCK) {                              \
          n = depth - c0 < MT_MAXPOOL_BLOCK ? depth - c0 : MT_MAXPOOL_BLOCK;            \
          for (c = 0; c < n; ++c) {                                                     \
            acc[c] = INIT;                                                              \
          }                                                                             \
          for (fy = fy0; fy < fy1; ++fy) {                                              \
            for (fx = fx0; fx < fx1; ++fx) {                                            \
              const T* x = in + ((b * in_h + iy0 + fy) * in_w + ix0 + fx) * depth + c0; \
              for (c = 0; c < n; ++c) {                                                 \
                acc[c] = x[c] > acc[c] ? x[c] : acc[c];                                 \
              }                                                                         \
            }                                                                           \
          }                                                                             \
          for (c = 0; c < n; ++c) {                                                     \
            o[c0 + c] = CLAMP;                                                          \
          }                                                                             \
        }                                                                               \
      }                                                                                 \
    }                                                                                   \
  }

MT_KERNEL void mt_max_pool_s8(const int8_t* in, int8_t* out, int batches, int in_h, int in_w,
                              int depth, int out_h, int out_w, int filter_h, int filter_w,
                              int stride_h, int stride_w, int pad_h, int pad_w,
                              int32_t act_min, int32_t act_max) {
  MT_MAX_POOL_BODY(int8_t, -128, (int8_t)mt_clamp_i32(acc[c], act_min, act_max))
}

MT_KERNEL void mt_max_pool_f32(const float* in, float* out, int batches, int in_h, int in_w,
                               int depth, int out_h, int out_w, int filter_h, int filter_w,
                               int stride_h, int stride_w, int pad_h, int pad_w, float act_min,
                               float act_max) {
  MT_MAX_POOL_BODY(float, -3.4028234663852886e38f, mt_clamp_f32(acc[c], act_min, act_max))
}
