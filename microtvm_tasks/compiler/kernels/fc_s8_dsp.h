// requires: mt_dsp.h
/*
 * fc_s8_dsp.h: int8 FULLY_CONNECTED for cores with the Arm DSP extension (exact portable C
 * elsewhere), bit-exact with TFLite's reference kernel (the same int32 sums, the same
 * requantisation).
 *
 * Row pairs share one weight word. ops/fully_connected.py packs rows a, b = a + 1 so that
 * each 16-bit lane of a uint32 word holds, for one input i, the value
 *     256 * w[b][i] + (w[a][i] + 128)     (high byte w[b][i], low byte w[a][i] + 128)
 * which is exactly that lane read as int16. One SMLAD of the raw word against two int16
 * inputs then adds 256 * (w[b] . x) + (w[a] . x) + 128 * (x0 + x1) to an accumulator t,
 * and SXTB16 ROR #8 of the same word gives w[b]'s two weights for a second SMLAD into s:
 * three instructions per four multiply-adds (two rows x two inputs) instead of four. At the
 * end (modulo 2^32, exact because the true row sums fit in int32)
 *     row b = s,   row a = t - 256 * s,
 * once t starts at bias[a] + 256 * bias[b] - 128 * sum(x) and s at bias[b]: the packed
 * bias table holds (bias[a] + 256 * bias[b], bias[b]) per pair, and 128 * sum(x) over the
 * packed inputs is formed once per batch row with USADA8 (sum of x + 128 over four bytes).
 *
 * Inputs 4k..4k+3 enter as two int16 pairs in SXTB16 lane order, (x[4k], x[4k+2]) and
 * (x[4k+1], x[4k+3]): either expanded once per batch row into a scratch buffer
 * (`xs`, 2 words per 4 inputs; one LDRD per 4 inputs in the loop) or sign-extended in the
 * loop from the int8 input (LDR + two SXTB16, no scratch). Four rows (two pairs) share
 * each input load; their four weight words are consecutive (one LDM).
 *
 * Weight tables (ops/fully_connected.py pack_fc_pairs):
 * - wp (uint32): per block of 4 rows, per k < in_dim / 4: the pair (r, r+1) words for
 *   inputs (4k, 4k+2) and (4k+1, 4k+3), then the pair (r+2, r+3) words; then the same
 *   with 2 words per k for a last pair of rows when out_dim % 4 >= 2.
 * - wr (int8): per 4-row block (then per last pair) the rows' last in_dim % 4 weights,
 *   row after row; then, when out_dim is odd, the whole last row.
 * Same size as the original weights (the single row is kept as it is).
 */

/* sum of the four bytes of x, each read as x + 128 (i.e. x ^ 0x80 unsigned), plus acc */
#if defined(MT_DSP)
static inline uint32_t mt_fc_sum_u8(uint32_t x, uint32_t acc) { return __usada8(x ^ 0x80808080u, 0u, acc); }
#else
static inline uint32_t mt_fc_sum_u8(uint32_t x, uint32_t acc) {
  const uint32_t u = x ^ 0x80808080u;
  return acc + (u & 0xffu) + ((u >> 8) & 0xffu) + ((u >> 16) & 0xffu) + (u >> 24);
}
#endif

/* The two-pair inner loops in Thumb-2 assembly where gcc's own register allocation loses
 * (it spills and reloads indices). w0..w3 are pinned to ascending registers (an LDM list
 * must be ascending); everything else gcc allocates (13 registers in all, so the memory
 * read is declared with a "memory" clobber rather than "m" operands, which would need
 * address registers of their own). Only when optimising: at -O0 gcc keeps the frame
 * pointer and has too few registers left. */
#if defined(MT_DSP) && defined(__GNUC__) && defined(__thumb2__) && defined(__OPTIMIZE__) && \
    defined(__ARM_FEATURE_UNALIGNED) && !defined(MT_FC_NO_ASM)
#define MT_FC_ASM 1

#define MT_FC_PAIRS_MAC                        \
  "smlad %[t0], %[w0], %[xa], %[t0]\n\t"       \
  "sxtb16 %[w0], %[w0], ror #8\n\t"            \
  "smlad %[s0], %[w0], %[xa], %[s0]\n\t"       \
  "smlad %[t0], %[w1], %[xb], %[t0]\n\t"       \
  "sxtb16 %[w1], %[w1], ror #8\n\t"            \
  "smlad %[s0], %[w1], %[xb], %[s0]\n\t"       \
  "smlad %[t1], %[w2], %[xa], %[t1]\n\t"       \
  "sxtb16 %[w2], %[w2], ror #8\n\t"            \
  "smlad %[s1], %[w2], %[xa], %[s1]\n\t"       \
  "smlad %[t1], %[w3], %[xb], %[t1]\n\t"       \
  "sxtb16 %[w3], %[w3], ror #8\n\t"            \
  "smlad %[s1], %[w3], %[xb], %[s1]\n\t"
/* inputs from the int16 scratch: one LDRD */
#define MT_FC_STEP16                           \
  "ldrd %[xa], %[xb], [%[x]], #8\n\t"          \
  "ldmia %[w]!, {%[w0], %[w1], %[w2], %[w3]}\n\t" MT_FC_PAIRS_MAC
/* inputs from the int8 vector: LDR + two SXTB16 */
#define MT_FC_STEP8                            \
  "ldr %[xb], [%[x]], #4\n\t"                  \
  "ldmia %[w]!, {%[w0], %[w1], %[w2], %[w3]}\n\t" \
  "sxtb16 %[xa], %[xb]\n\t"                    \
  "sxtb16 %[xb], %[xb], ror #8\n\t" MT_FC_PAIRS_MAC

#define MT_FC_OUTS                                                                          \
  [t0] "+r"(t0), [s0] "+r"(s0), [t1] "+r"(t1), [s1] "+r"(s1), [x] "+r"(xp), [w] "+r"(wq), \
      [xa] "=&r"(xa), [xb] "=&r"(xb), [w0] "=&r"(w0), [w1] "=&r"(w1), [w2] "=&r"(w2),      \
      [w3] "=&r"(w3)

/* acc[0..3] (t0, s0, t1, s1) += the packed products of k4 steps (inputs 4k..4k+3 each); x advances by
 * 8 (int16 scratch) or 4 (int8 input) bytes per step, w by 16 */
MT_KERNEL void mt_fc_pairs2_asm(const void* x, int wide, const uint32_t* w, int k4, int32_t* acc) {
  register uint32_t w0 __asm__("r8");
  register uint32_t w1 __asm__("r10");
  register uint32_t w2 __asm__("r11");
  register uint32_t w3 __asm__("r12");
  uint32_t xa, xb;
  int32_t t0 = acc[0], s0 = acc[1], t1 = acc[2], s1 = acc[3];
  const uint8_t* xp = (const uint8_t*)x;
  const uint32_t* wq = w;
  const uint8_t* end;
  /* 1, 2, then 4 steps at a time (the loop's CMP + BNE once per 64 multiply-adds) */
  if (wide) {
    if (k4 & 1) {
      __asm__(MT_FC_STEP16 : MT_FC_OUTS : : "memory");
    }
    if (k4 & 2) {
      __asm__(MT_FC_STEP16 MT_FC_STEP16 : MT_FC_OUTS : : "memory");
    }
    if (k4 >> 2) {
      end = xp + 8 * (k4 & ~3);
      __asm__("1:\n\t" MT_FC_STEP16 MT_FC_STEP16 MT_FC_STEP16 MT_FC_STEP16
              "cmp %[x], %[end]\n\t"
              "bne 1b\n\t"
              : MT_FC_OUTS
              : [end] "r"(end)
              : "cc", "memory");
    }
  } else {
    if (k4 & 1) {
      __asm__(MT_FC_STEP8 : MT_FC_OUTS : : "memory");
    }
    if (k4 & 2) {
      __asm__(MT_FC_STEP8 MT_FC_STEP8 : MT_FC_OUTS : : "memory");
    }
    if (k4 >> 2) {
      end = xp + 4 * (k4 & ~3);
      __asm__("1:\n\t" MT_FC_STEP8 MT_FC_STEP8 MT_FC_STEP8 MT_FC_STEP8
              "cmp %[x], %[end]\n\t"
              "bne 1b\n\t"
              : MT_FC_OUTS
              : [end] "r"(end)
              : "cc", "memory");
    }
  }
  (void)w0;
  (void)w1;
  (void)w2;
  (void)w3;
  acc[0] = t0;
  acc[1] = s0;
  acc[2] = t1;
  acc[3] = s1;
}
#endif

/* the two int16 input pairs of inputs 4k..4k+3 */
static inline void mt_fc_xpair(const void* x, int wide, int k, uint32_t* xa, uint32_t* xb) {
  if (wide) {
    *xa = mt_ld32((const uint8_t*)x + 8 * k);
    *xb = mt_ld32((const uint8_t*)x + 8 * k + 4);
  } else {
    const uint32_t v = mt_ld32((const int8_t*)x + 4 * k);
    *xa = mt_sxtb16(v);
    *xb = mt_sxtb16_ror8(v);
  }
}

/* np (1 or 2) row pairs: acc[2p] (t), acc[2p+1] (s) += the packed products of k4 steps */
MT_KERNEL void mt_fc_pairs(const void* x, int wide, const uint32_t* restrict w, int np, int k4,
                           int32_t* restrict acc) {
  int k, p;
#if defined(MT_FC_ASM)
  if (np == 2) {
    mt_fc_pairs2_asm(x, wide, w, k4, acc);
    return;
  }
#endif
  for (k = 0; k < k4; ++k) {
    uint32_t xa, xb;
    mt_fc_xpair(x, wide, k, &xa, &xb);
    for (p = 0; p < np; ++p) {
      const uint32_t wa = w[2 * p], wb = w[2 * p + 1];
      acc[2 * p] = mt_smlad(wa, xa, acc[2 * p]);
      acc[2 * p + 1] = mt_smlad(mt_sxtb16_ror8(wa), xa, acc[2 * p + 1]);
      acc[2 * p] = mt_smlad(wb, xb, acc[2 * p]);
      acc[2 * p + 1] = mt_smlad(mt_sxtb16_ror8(wb), xb, acc[2 * p + 1]);
    }
    w += 2 * np;
  }
}

/* v clamped to -128..127: one SSAT where the core has it */
#if defined(__ARM_FEATURE_SAT) && defined(__GNUC__) && !defined(__SSE2__)
static inline int32_t mt_fc_sat8(int32_t v) {
  int32_t r;
  __asm__("ssat %0, #8, %1" : "=r"(r) : "r"(v));
  return r;
}
#else
static inline int32_t mt_fc_sat8(int32_t v) { return mt_clamp_i32(v, -128, 127); }
#endif

/* MultiplyByQuantizedMultiplier(x, m, shift) + out_zp, clamped to act_min..act_max (within
 * -128..127), stored. fast (every channel shifts right by r = 2..23 and m >= 0;
 * rnd = 2^(r-2) + out_zp * 2^(r-1)): TFLite's RoundingDivideByPOT(
 * SaturatingRoundingDoublingHighMul(x, m), r) is one floor division
 *     floor((x * m + 2^30 + 2^(30+r) - [x < 0] * 2^31) / 2^(31+r))
 * (the nested floors merge; the sign test of the high product may use x, as for
 * -2^30 <= x * m < 0 both give 0), and adding out_zp * 2^(31+r) to the numerator adds
 * out_zp to the quotient. The 64-bit sum starts at high word rnd - [x < 0], low word
 * 2^30 + [x < 0] * 2^31, takes x * m in one SMLAL, and its high word shifted right by
 * r - 1 is the result; |high word| < 2^30 + 2^29 for r <= 23, so nothing wraps.
 * Otherwise mt_mbqm + out_zp. Bit-identical either way. */
static inline void mt_fc_out(int8_t* restrict y, int32_t x, int32_t m, int32_t shift, int32_t rnd, int fast,
                             int32_t out_zp, int32_t act_min, int32_t act_max) {
  int32_t v;
  if (fast) {
    const uint32_t neg = x < 0 ? 0xffffffffu : 0u;
    const uint64_t init = ((uint64_t)(neg + (uint32_t)rnd) << 32) | (0x40000000u + (neg << 31));
    const uint32_t hi = (uint32_t)((init + (uint64_t)((int64_t)x * (int64_t)m)) >> 32);
    v = (int32_t)hi >> (-shift - 1);
  } else {
    v = mt_mbqm(x, m, shift) + out_zp;
  }
  v = mt_fc_sat8(v);
  if (act_min > -128 && v < act_min) {
    v = act_min;
  }
  if (act_max < 127 && v > act_max) {
    v = act_max;
  }
  *y = (int8_t)v;
}

/* Output channel ch's requantisation parameters: per channel from the tables, else the
 * per-tensor values given as arguments (compile-time constants once inlined). */
#define MT_FC_OUT(y, x, ch)                                                                  \
  mt_fc_out((y), (x), per_channel ? mult[ch] : m0, per_channel ? shift[ch] : s0,             \
            per_channel ? rnd[ch] : rnd0, fast, out_zp, act_min, act_max)

/* expand: 0 reads the int8 input in the loop; 1 first widens each batch row into xs
 * (2 * (in_dim / 4) words of scratch). Per tensor (per_channel 0) the requantisation is
 * m0, s0, rnd0 and the tables are not read; fast: see mt_fc_out (rnd may be null if 0). */
MT_KERNEL void mt_fc_s8_pairs(const int8_t* restrict in, const uint32_t* restrict wp,
                              const int8_t* restrict wr, const int32_t* restrict bp, int per_channel,
                              const int32_t* restrict mult, const int8_t* restrict shift,
                              const int32_t* restrict rnd, int32_t m0, int32_t s0, int32_t rnd0, int fast,
                              int8_t* restrict out, int batches, int in_dim, int out_dim, int32_t out_zp,
                              int32_t act_min, int32_t act_max, int expand, uint32_t* restrict xs) {
  const int k4 = in_dim >> 2;
  const int tail = in_dim & 3;
  const int o4 = out_dim & ~3;
  const int o2 = out_dim & ~1;
  int b, o, k, j;
  for (b = 0; b < batches; ++b) {
    const int8_t* restrict x = in + b * in_dim;
    const int8_t* restrict xt = x + 4 * k4;
    const void* xsrc = expand ? (const void*)xs : (const void*)x;
    const uint32_t* restrict w = wp;
    const int8_t* restrict wt = wr;
    int8_t* restrict y = out + b * out_dim;
    uint32_t usum = 0, corr;
    if (!expand) {
      /* four words a step: the loop overhead is most of the cost of a one-block layer */
      uint32_t u1 = 0, u2 = 0, u3 = 0;
      for (k = 0; k < (k4 & ~3); k += 4) {
        usum = mt_fc_sum_u8(mt_ld32(x + 4 * k), usum);
        u1 = mt_fc_sum_u8(mt_ld32(x + 4 * k + 4), u1);
        u2 = mt_fc_sum_u8(mt_ld32(x + 4 * k + 8), u2);
        u3 = mt_fc_sum_u8(mt_ld32(x + 4 * k + 12), u3);
      }
      usum += u1 + u2 + u3;
    } else {
      for (k = 0; k < (k4 & ~1); k += 2) {
        const uint32_t v0 = mt_ld32(x + 4 * k), v1 = mt_ld32(x + 4 * k + 4);
        usum = mt_fc_sum_u8(v0, usum);
        usum = mt_fc_sum_u8(v1, usum);
        mt_st32(xs + 2 * k, mt_sxtb16(v0));
        mt_st32(xs + 2 * k + 1, mt_sxtb16_ror8(v0));
        mt_st32(xs + 2 * k + 2, mt_sxtb16(v1));
        mt_st32(xs + 2 * k + 3, mt_sxtb16_ror8(v1));
      }
    }
    for (k = k4 & ~(expand ? 1 : 3); k < k4; ++k) {
      const uint32_t v = mt_ld32(x + 4 * k);
      usum = mt_fc_sum_u8(v, usum);
      if (expand) {
        mt_st32(xs + 2 * k, mt_sxtb16(v));
        mt_st32(xs + 2 * k + 1, mt_sxtb16_ror8(v));
      }
    }
    /* 128 * sum(x) = 128 * (usum - 128 * 4 * k4), modulo 2^32 */
    corr = 128u * usum - 65536u * (uint32_t)k4;
    for (o = 0; o < o4; o += 4) {
      int32_t acc[4];
      int32_t r0, r1, r2, r3;
      acc[0] = (int32_t)((uint32_t)bp[o] - corr);
      acc[1] = bp[o + 1];
      acc[2] = (int32_t)((uint32_t)bp[o + 2] - corr);
      acc[3] = bp[o + 3];
      mt_fc_pairs(xsrc, expand, w, 2, k4, acc);
      w += 4 * k4;
      r0 = (int32_t)((uint32_t)acc[0] - ((uint32_t)acc[1] << 8));
      r1 = acc[1];
      r2 = (int32_t)((uint32_t)acc[2] - ((uint32_t)acc[3] << 8));
      r3 = acc[3];
      for (j = 0; j < tail; ++j) {
        const int32_t xj = xt[j];
        r0 += xj * wt[j];
        r1 += xj * wt[tail + j];
        r2 += xj * wt[2 * tail + j];
        r3 += xj * wt[3 * tail + j];
      }
      wt += 4 * tail;
      MT_FC_OUT(y + o, r0, o);
      MT_FC_OUT(y + o + 1, r1, o + 1);
      MT_FC_OUT(y + o + 2, r2, o + 2);
      MT_FC_OUT(y + o + 3, r3, o + 3);
    }
    if (o4 < o2) {
      int32_t acc[2];
      int32_t r0, r1;
      acc[0] = (int32_t)((uint32_t)bp[o4] - corr);
      acc[1] = bp[o4 + 1];
      mt_fc_pairs(xsrc, expand, w, 1, k4, acc);
      r0 = (int32_t)((uint32_t)acc[0] - ((uint32_t)acc[1] << 8));
      r1 = acc[1];
      for (j = 0; j < tail; ++j) {
        r0 += (int32_t)xt[j] * wt[j];
        r1 += (int32_t)xt[j] * wt[tail + j];
      }
      wt += 2 * tail;
      MT_FC_OUT(y + o4, r0, o4);
      MT_FC_OUT(y + o4 + 1, r1, o4 + 1);
    }
    if (o2 < out_dim) {
      int32_t acc = bp[o2];
      for (k = 0; k < k4; ++k) {
        uint32_t xa, xb;
        const uint32_t v = mt_ld32(wt + 4 * k);
        mt_fc_xpair(xsrc, expand, k, &xa, &xb);
        acc = mt_smlad(mt_sxtb16(v), xa, acc);
        acc = mt_smlad(mt_sxtb16_ror8(v), xb, acc);
      }
      for (j = 0; j < tail; ++j) {
        acc += (int32_t)xt[j] * (int32_t)wt[4 * k4 + j];
      }
      MT_FC_OUT(y + o2, acc, o2);
    }
  }
}

#undef MT_FC_OUT
