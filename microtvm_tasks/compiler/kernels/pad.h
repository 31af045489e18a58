/*
 * pad.h: PAD of a 4-D tensor with a constant (int8: the output zero point, as TFLite;
 * float32: 0). Each output row is written once: leading pad, copied input, trailing pad.
 */
#define MT_PAD_BODY(T)                                                                   \
  int i0, i1, i2, i3;                                                                    \
  T* o = out;                                                                            \
  for (i0 = 0; i0 < o0; ++i0) {                                                          \
    for (i1 = 0; i1 < o1; ++i1) {                                                        \
      for (i2 = 0; i2 < o2; ++i2) {                                                      \
        const int s0 = i0 - p0, s1 = i1 - p1, s2 = i2 - p2;                              \
        if (s0 < 0 || s0 >= d0 || s1 < 0 || s1 >= d1 || s2 < 0 || s2 >= d2) {            \
          for (i3 = 0; i3 < o3; ++i3) {                                                  \
            *o++ = value;                                                                \
          }                                                                              \
        } else {                                                                         \
          const T* x = in + ((s0 * d1 + s1) * d2 + s2) * d3;                             \
          for (i3 = 0; i3 < p3; ++i3) {                                                  \
            *o++ = value;                                                                \
          }                                                                              \
          for (i3 = 0; i3 < d3; ++i3) {                                                  \
            *o++ = x[i3];                                                                \
          }                                                                              \
          for (i3 = p3 + d3; i3 < o3; ++i3) {                                            \
            *o++ = value;                                                                \
          }                                                                              \
        }                                                                                \
      }                                                                                  \
    }                                                                                    \
  }

MT_KERNEL void mt_pad_s8(const int8_t* restrict in, int8_t* restrict out, int d0, int d1,
                         int d2, int d3, int o0, int o1, int o2, int o3, int p0, int p1,
                         int p2, int p3, int8_t value) {
  MT_PAD_BODY(int8_t)
}

MT_KERNEL void mt_pad_f32(const float* restrict in, float* restrict out, int d0, int d1,
                          int d2, int d3, int o0, int o1, int o2, int o3, int p0, int p1,
                          int p2, int p3, float value) {
  MT_PAD_BODY(float)
}
