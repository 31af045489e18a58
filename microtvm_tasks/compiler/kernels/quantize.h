/*
 * quantize.h: QUANTIZE float32 -> int8 and DEQUANTIZE int8 -> float32.
 *
 * QUANTIZE is TFLite's AffineQuantize: round(x / scale) in float32, halves away from
 * zero, plus the zero point, saturated. The rounding is done without libm: the value
 * is first clamped to a range where the integer conversion is exact.
 * DEQUANTIZE computes scale * (q - zero_point) in float32; the exact product of a
 * float and a 9-bit integer rounds to the same float as TFLite's double product.
 * (int8 -> int8 QUANTIZE is a requantising table, see lut.h.)
 */
MT_KERNEL void mt_quantize_f32_s8(const float* in, int8_t* out, int n, float scale,
                                  int32_t zero_point) {
  int i;
  for (i = 0; i < n; ++i) {
    float v = in[i] / scale;
    int32_t r;
    float frac;
    v = v > 1000.0f ? 1000.0f : (v < -1000.0f ? -1000.0f : v);
    r = (int32_t)v; /* truncates toward zero */
    frac = v - (float)r;
    if (frac >= 0.5f) {
      r += 1;
    } else if (frac <= -0.5f) {
      r -= 1;
    }
    out[i] = (int8_t)mt_clamp_i32(r + zero_point, -128, 127);
  }
}

MT_KERNEL void mt_dequantize_s8_f32(const int8_t* in, float* out, int n, float scale,
                                    int32_t zero_point) {
  int i;
  for (i = 0; i < n; ++i) {
    out[i] = scale * (float)((int32_t)in[i] - zero_point);
  }
}
