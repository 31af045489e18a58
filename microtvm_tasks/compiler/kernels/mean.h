/*
 * mean.h: MEAN over the height and width of an NHWC tensor.
 *
 * int8: TFLite's QuantizedMeanOrSum: an int32 sum per channel, minus
 * zero_point * count (folded by the compiler into `sum_offset`), then one fixed-point
 * multiplier that already contains the division by the count. float32: the sum in
 * h, w order divided by the count, as TFLite's reference.
 */
MT_KERNEL void mt_mean_hw_s8(const int8_t* in, int8_t* out, int batches, int hw, int depth,
                             int32_t sum_offset, int32_t mult, int32_t shift,
                             int32_t out_zp) {
  int b, i, c;
  for (b = 0; b < batches; ++b) {
    const int8_t* x = in + b * hw * depth;
    for (c = 0; c < depth; ++c) {
      int32_t acc = 0;
      for (i = 0; i < hw; ++i) {
        acc += x[i * depth + c];
      }
      out[b * depth + c] =
          (int8_t)mt_clamp_i32(mt_mbqm(acc + sum_offset, mult, shift) + out_zp, -128, 127);
    }
  }
}

MT_KERNEL void mt_mean_hw_f32(const float* in, float* out, int batches, int hw, int depth) {
  int b, i, c;
  for (b = 0; b < batches; ++b) {
    const float* x = in + b * hw * depth;
    for (c = 0; c < depth; ++c) {
      float acc = 0.0f;
      for (i = 0; i < hw; ++i) {
        acc += x[i * depth + c];
      }
      out[b * depth + c] = acc / (float)hw;
    }
  }
}
