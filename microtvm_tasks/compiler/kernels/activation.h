/*
 * activation.h: stand-alone activations that are not table lookups.
 *
 * mt_clamp_buf_s8: int8 RELU / RELU6 when no rescale is needed (TFLite Micro's int8 RELU6
 * clamps to [zero_point, quantised 6] in the input's quantisation).
 * float32 RELU, RELU6, LOGISTIC, TANH. The exponential is computed here (range
 * reduction by ln 2 and a degree-7 polynomial, about 1 ulp) so that generated code
 * never needs libm on a microcontroller.
 */
MT_KERNEL void mt_clamp_buf_s8(const int8_t* in, int8_t* out, int n, int32_t lo, int32_t hi) {
  int i;
  for (i = 0; i < n; ++i) {
    out[i] = (int8_t)mt_clamp_i32(in[i], lo, hi);
  }
}

MT_KERNEL void mt_clamp_buf_f32(const float* in, float* out, int n, float lo, float hi) {
  int i;
  for (i = 0; i < n; ++i) {
    const float x = in[i];
    out[i] = x < lo ? lo : (x > hi ? hi : x);
  }
}

/* e^x for float x; returns 0 below -104 and +inf above 89. */
static inline float mt_expf(float x) {
  const float ln2_hi = 0.693145751953125f;
  const float ln2_lo = 1.428606765330187e-06f;
  float k, r, p;
  int32_t ki;
  union {
    float f;
    uint32_t u;
  } scale;
  if (x > 88.7f) {
    return 3.4028234663852886e38f * 2.0f;
  }
  if (x < -103.9f) {
    return 0.0f;
  }
  k = x * 1.4426950408889634f;
  k = k >= 0.0f ? (float)(int32_t)(k + 0.5f) : (float)(int32_t)(k - 0.5f);
  ki = (int32_t)k;
  r = (x - k * ln2_hi) - k * ln2_lo;
  /* e^r on [-ln2/2, ln2/2], Horner form of the Taylor series to degree 7. */
  p = 1.0f + r * (1.0f + r * (0.5f + r * (1.6666667e-1f + r * (4.1666668e-2f +
      r * (8.3333338e-3f + r * (1.3888889e-3f + r * 1.9841270e-4f))))));
  /* multiply by 2^k in two steps so that k down to -150 stays representable */
  if (ki < -100) {
    scale.u = (uint32_t)(ki + 100 + 127) << 23;
    return p * scale.f * 7.888609052210118e-31f; /* 2^-100 */
  }
  if (ki > 127) {
    scale.u = (uint32_t)(ki - 1 + 127) << 23;
    return p * scale.f * 2.0f;
  }
  scale.u = (uint32_t)(ki + 127) << 23;
  return p * scale.f;
}

MT_KERNEL void mt_logistic_f32(const float* in, float* out, int n) {
  int i;
  for (i = 0; i < n; ++i) {
    const float x = in[i];
    if (x > 16.619047164916992f) {
      out[i] = 1.0f;
    } else if (x < -9.0f) {
      out[i] = mt_expf(x);
    } else {
      out[i] = 1.0f / (1.0f + mt_expf(-x));
    }
  }
}

MT_KERNEL void mt_tanh_f32(const float* in, float* out, int n) {
  int i;
  for (i = 0; i < n; ++i) {
    const float x = in[i];
    const float ax = x < 0.0f ? -x : x;
    float t;
    if (ax < 0.0004f) {
      t = ax; /* tanh(x) = x - x^3/3: the cubic term is below float resolution */
    } else if (ax > 9.1f) {
      t = 1.0f;
    } else {
      t = 1.0f - 2.0f / (mt_expf(2.0f * ax) + 1.0f);
    }
    out[i] = x < 0.0f ? -t : t;
  }
}
