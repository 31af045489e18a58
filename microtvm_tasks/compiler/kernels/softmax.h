/*
 * softmax.h: SOFTMAX over the last dimension.
 *
 * int8 -> int8 follows TFLite's reference integer softmax exactly: the difference to the
 * row maximum is rescaled to a Q5.26 fixed-point value (input_beta multiplier and left
 * shift computed at compile time), exponentiated with gemmlowp's exp_on_negative_values,
 * summed in Q12.19, inverted with the Newton-Raphson reciprocal, and the product rounded
 * into the output (scale 1/256, zero point -128). Differences below diff_min give -128.
 * Integer only. float32: max-subtracted exp, divided by the sum.
 */

/* fixed-point helpers (raw int32 values; the integer-bit counts are in the names) */
static inline int32_t mt_sat_lshift(int32_t x, int exponent) {
  const int32_t threshold = (int32_t)(((int64_t)1 << (31 - exponent)) - 1);
  if (x > threshold) {
    return INT32_MAX;
  }
  if (x < -threshold) {
    return INT32_MIN;
  }
  return (int32_t)((uint32_t)x << exponent);
}

/* exp(a) for a in [-1/4, 0), a and result with 0 integer bits */
static inline int32_t mt_exp_quarter(int32_t a) {
  const int32_t constant_term = 1895147668;
  const int32_t one_third = 715827883;
  const int32_t x = a + ((int32_t)1 << 28);
  const int32_t x2 = mt_srdhm(x, x);
  const int32_t x3 = mt_srdhm(x2, x);
  const int32_t x4 = mt_srdhm(x2, x2);
  const int32_t x4_over_4 = mt_rdbypot(x4, 2);
  const int32_t poly = mt_rdbypot(mt_srdhm(x4_over_4 + x3, one_third) + x2, 1);
  return constant_term + mt_srdhm(constant_term, x + poly);
}

/* exp(a) for a <= 0 with 5 integer bits; result with 0 integer bits */
static inline int32_t mt_exp_neg_q5(int32_t a) {
  static const int32_t mults[7] = {1672461947, 1302514674, 790015084, 290630308,
                                   39332535,   720401,     242};
  const int32_t one_quarter = (int32_t)1 << 24;
  const int32_t mask = one_quarter - 1;
  const int32_t a_mod_q_minus_q = (a & mask) - one_quarter;
  const int32_t remainder = a_mod_q_minus_q - a;
  int32_t result = mt_exp_quarter(mt_sat_lshift(a_mod_q_minus_q, 5));
  int k;
  for (k = 0; k < 7; ++k) {
    if (remainder & ((int32_t)1 << (24 + k))) {
      result = mt_srdhm(result, mults[k]);
    }
  }
  return a == 0 ? INT32_MAX : result;
}

/* 1 / (1 + x) for x in [0, 1) with 0 integer bits (Newton-Raphson in Q2.29) */
static inline int32_t mt_one_over_one_plus_x(int32_t a) {
  const int64_t sum = (int64_t)a + (int64_t)INT32_MAX;
  const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
  const int32_t c48_17 = 1515870810;
  const int32_t cneg32_17 = -1010580540;
  int32_t x = c48_17 + mt_srdhm(half_denominator, cneg32_17);
  int i;
  for (i = 0; i < 3; ++i) {
    const int32_t hdx = mt_srdhm(half_denominator, x);
    const int32_t one_minus = ((int32_t)1 << 29) - hdx;
    x = x + mt_sat_lshift(mt_srdhm(x, one_minus), 2);
  }
  return mt_sat_lshift(x, 1);
}

static inline int mt_clz32(uint32_t x) {
  int n = 0;
  if (x == 0) {
    return 32;
  }
  while (!(x & 0x80000000u)) {
    x <<= 1;
    ++n;
  }
  return n;
}

MT_KERNEL void mt_softmax_s8(const int8_t* restrict in, int8_t* restrict out, int rows,
                             int depth, int32_t input_multiplier, int32_t input_left_shift,
                             int32_t diff_min) {
  int r, c;
  for (r = 0; r < rows; ++r) {
    const int8_t* restrict x = in + r * depth;
    int8_t* restrict y = out + r * depth;
    int32_t max_in_row = -128;
    int32_t sum_of_exps = 0; /* Q12.19 */
    int headroom_plus_one, num_bits_over_unit;
    int32_t shifted_scale;
    for (c = 0; c < depth; ++c) {
      if (x[c] > max_in_row) {
        max_in_row = x[c];
      }
    }
    for (c = 0; c < depth; ++c) {
      const int32_t diff = (int32_t)x[c] - max_in_row;
      if (diff >= diff_min) {
        const int32_t scaled = mt_srdhm((int32_t)((uint32_t)diff << input_left_shift), input_multiplier);
        sum_of_exps += mt_rdbypot(mt_exp_neg_q5(scaled), 12);
      }
    }
    headroom_plus_one = mt_clz32((uint32_t)sum_of_exps);
    num_bits_over_unit = 12 - headroom_plus_one;
    shifted_scale = mt_one_over_one_plus_x(
        (int32_t)(((uint32_t)sum_of_exps << headroom_plus_one) - ((uint32_t)1 << 31)));
    for (c = 0; c < depth; ++c) {
      const int32_t diff = (int32_t)x[c] - max_in_row;
      if (diff >= diff_min) {
        const int32_t scaled = mt_srdhm((int32_t)((uint32_t)diff << input_left_shift), input_multiplier);
        const int32_t e = mt_exp_neg_q5(scaled);
        const int32_t unsat = mt_rdbypot(mt_srdhm(shifted_scale, e), num_bits_over_unit + 31 - 8);
        y[c] = (int8_t)mt_clamp_i32(unsat - 128, -128, 127);
      } else {
        y[c] = -128;
      }
    }
  }
}

MT_KERNEL void mt_softmax_f32(const float* restrict in, float* restrict out, int rows, int depth,
                              float beta) {
  int r, c;
  for (r = 0; r < rows; ++r) {
    const float* restrict x = in + r * depth;
    float* restrict y = out + r * depth;
    float max = x[0];
    float sum = 0.0f;
    for (c = 1; c < depth; ++c) {
      if (x[c] > max) {
        max = x[c];
      }
    }
    for (c = 0; c < depth; ++c) {
      y[c] = expf((x[c] - max) * beta);
      sum += y[c];
    }
    for (c = 0; c < depth; ++c) {
      y[c] = y[c] / sum;
    }
  }
}
