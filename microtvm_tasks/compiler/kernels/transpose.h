/*
 * transpose.h: TRANSPOSE of up to 4 dimensions (also the NCHW <-> NHWC conversions the
 * ONNX frontend inserts at a model's boundary).
 *
 * The output is written in order; s0..s3 are the input element strides of the output's
 * dimensions d0..d3, so one kernel serves every permutation.
 */
#define MT_TRANSPOSE_BODY(T)                                                      \
  int i0, i1, i2, i3;                                                             \
  T* o = out;                                                                     \
  for (i0 = 0; i0 < d0; ++i0) {                                                   \
    for (i1 = 0; i1 < d1; ++i1) {                                                 \
      for (i2 = 0; i2 < d2; ++i2) {                                               \
        const T* x = in + i0 * s0 + i1 * s1 + i2 * s2;                            \
        for (i3 = 0; i3 < d3; ++i3) {                                             \
          *o++ = x[i3 * s3];                                                      \
        }                                                                         \
      }                                                                           \
    }                                                                             \
  }

MT_KERNEL void mt_transpose_8(const int8_t* restrict in, int8_t* restrict out, int d0, int d1,
                              int d2, int d3, int s0, int s1, int s2, int s3) {
  MT_TRANSPOSE_BODY(int8_t)
}

MT_KERNEL void mt_transpose_32(const int32_t* restrict in, int32_t* restrict out, int d0,
                               int d1, int d2, int d3, int s0, int s1, int s2, int s3) {
  MT_TRANSPOSE_BODY(int32_t)
}

MT_KERNEL void mt_transpose_f32(const float* restrict in, float* restrict out, int d0, int d1,
                                int d2, int d3, int s0, int s1, int s2, int s3) {
  MT_TRANSPOSE_BODY(float)
}
