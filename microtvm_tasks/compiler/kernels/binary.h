/*
 * binary.h: ADD, SUB, MUL with numpy-style broadcasting over up to 4 dimensions.
 *
 * int8 follows TFLite's reference integer semantics: ADD/SUB shift both offset inputs
 * left by 20 bits, rescale each to the common scale 2*max(s1, s2) with its own
 * fixed-point multiplier, add/subtract, and rescale to the output; MUL multiplies the
 * offset inputs and applies one multiplier. Every multiplier/shift comes from the
 * compiler (computed as TFLite's Prepare does). `op` is a compile-time constant at each
 * call site (0 ADD, 1 SUB, 2 MUL), so the inlined kernel keeps only one branch.
 * Broadcasting: the caller passes the output extents d0..d3 and, per input, the element
 * strides of each of those dimensions (0 where the input is broadcast).
 */
#define MT_BIN_ADD 0
#define MT_BIN_SUB 1
#define MT_BIN_MUL 2

typedef struct {
  int32_t in1_offset, in2_offset, left_shift;
  int32_t in1_mult, in1_shift, in2_mult, in2_shift;
  int32_t out_mult, out_shift, out_offset, act_min, act_max;
} mt_bin_q_t;

MT_KERNEL int8_t mt_bin_elem_s8(int op, int32_t x, int32_t y, const mt_bin_q_t* p) {
  int32_t raw;
  if (op == MT_BIN_MUL) {
    raw = mt_mbqm((p->in1_offset + x) * (p->in2_offset + y), p->out_mult, p->out_shift);
  } else {
    const int32_t a = mt_mbqm((int32_t)((uint32_t)(p->in1_offset + x) << p->left_shift),
                              p->in1_mult, p->in1_shift);
    const int32_t b = mt_mbqm((int32_t)((uint32_t)(p->in2_offset + y) << p->left_shift),
                              p->in2_mult, p->in2_shift);
    raw = mt_mbqm(op == MT_BIN_ADD ? a + b : a - b, p->out_mult, p->out_shift);
  }
  return (int8_t)mt_clamp_i32(raw + p->out_offset, p->act_min, p->act_max);
}

MT_KERNEL void mt_binary_s8(int op, const int8_t* a, const int8_t* b, int8_t* out,
                            const mt_bin_q_t* p, int d0, int d1, int d2, int d3,
                            int as0, int as1, int as2, int as3,
                            int bs0, int bs1, int bs2, int bs3) {
  int i0, i1, i2, i3;
  int n = 0;
  for (i0 = 0; i0 < d0; ++i0) {
    for (i1 = 0; i1 < d1; ++i1) {
      for (i2 = 0; i2 < d2; ++i2) {
        const int8_t* ar = a + i0 * as0 + i1 * as1 + i2 * as2;
        const int8_t* br = b + i0 * bs0 + i1 * bs1 + i2 * bs2;
        for (i3 = 0; i3 < d3; ++i3) {
          out[n++] = mt_bin_elem_s8(op, ar[i3 * as3], br[i3 * bs3], p);
        }
      }
    }
  }
}

MT_KERNEL void mt_binary_f32(int op, const float* a, const float* b, float* out,
                             float act_min, float act_max, int d0, int d1, int d2, int d3,
                             int as0, int as1, int as2, int as3,
                             int bs0, int bs1, int bs2, int bs3) {
  int i0, i1, i2, i3;
  int n = 0;
  for (i0 = 0; i0 < d0; ++i0) {
    for (i1 = 0; i1 < d1; ++i1) {
      for (i2 = 0; i2 < d2; ++i2) {
        const float* ar = a + i0 * as0 + i1 * as1 + i2 * as2;
        const float* br = b + i0 * bs0 + i1 * bs1 + i2 * bs2;
        for (i3 = 0; i3 < d3; ++i3) {
          const float x = ar[i3 * as3];
          const float y = br[i3 * bs3];
          const float r = op == MT_BIN_ADD ? x + y : (op == MT_BIN_SUB ? x - y : x * y);
          out[n++] = mt_clamp_f32(r, act_min, act_max);
        }
      }
    }
  }
}
