// requires: dot_s8.h
/*
 * fully_connected.h: FULLY_CONNECTED, int8 (TFLite reference semantics) and float32.
 *
 * int8 (rmul: 2^(32 - right shift) per channel for the SSE2 requantisation, or null):
 * weights [out_dim][in_dim], symmetric (per tensor: one multiplier/shift, or per
 * output channel: per_channel = 1 and out_dim of each); the
 * compiler folds input_offset * sum(weights row) into `bias`, so the inner loop is a plain
 * int8 x int8 -> int32 dot product (dot_s8.h), four output rows at a time.
 * float32: weights are stored transposed, [in_dim][out_dim], so the loop over outputs is
 * an axpy that vectorises without reassociating any sum.
 */
MT_KERNEL void mt_fc_s8(const int8_t* restrict in, const int8_t* restrict w,
                        const int32_t* restrict bias, const int32_t* restrict mult,
                        const int8_t* restrict shift, int per_channel,
                        const uint32_t* restrict rmul, int8_t* restrict out, int batches,
                        int in_dim, int out_dim,
                        int32_t out_zp, int32_t act_min, int32_t act_max) {
  const int o4 = out_dim - (out_dim & 3);
  int32_t acc[4];
  int b, o, r;
  (void)rmul;
  for (b = 0; b < batches; ++b) {
    const int8_t* restrict x = in + b * in_dim;
    const int8_t* restrict wr = w;
    int8_t* restrict y = out + b * out_dim;
    for (o = 0; o < o4; o += 4, wr += 4 * in_dim) {
      mt_dot4_s8(x, wr, in_dim, in_dim, acc);
#if defined(__SSE2__)
      if (rmul) {
        mt_requant4_store(y + o, acc, bias + o, mult + (per_channel ? o : 0), rmul + (per_channel ? o : 0),
                          per_channel, out_zp, act_min, act_max);
        continue;
      }
#endif
      for (r = 0; r < 4; ++r) {
        const int ch = per_channel ? o + r : 0;
        const int32_t v = mt_mbqm(acc[r] + bias[o + r], mult[ch], shift[ch]) + out_zp;
        y[o + r] = (int8_t)mt_clamp_i32(v, act_min, act_max);
      }
    }
    for (o = o4; o < out_dim; ++o, wr += in_dim) {
      const int ch = per_channel ? o : 0;
      const int32_t v = mt_mbqm(mt_dot_s8(x, wr, in_dim) + bias[o], mult[ch], shift[ch]) + out_zp;
      y[o] = (int8_t)mt_clamp_i32(v, act_min, act_max);
    }
  }
}

MT_KERNEL void mt_fc_f32(const float* restrict in, const float* restrict wt,
                         const float* restrict bias, float* restrict out, int batches,
                         int in_dim, int out_dim, float act_min, float act_max) {
  int b, o, i;
  for (b = 0; b < batches; ++b) {
    const float* restrict x = in + b * in_dim;
    float* restrict y = out + b * out_dim;
    for (o = 0; o < out_dim; ++o) {
      y[o] = 0.0f;
    }
    for (i = 0; i < in_dim; ++i) {
      const float xi = x[i];
      const float* restrict wr = wt + i * out_dim;
      for (o = 0; o < out_dim; ++o) {
        y[o] += xi * wr[o];
      }
    }
    for (o = 0; o < out_dim; ++o) {
      y[o] = mt_clamp_f32(y[o] + (bias ? bias[o] : 0.0f), act_min, act_max);
    }
  }
}
