/*
 * lut.h: int8 -> int8 element-wise operators as a 256-entry table lookup.
 *
 * An int8 input has 256 possible values, so LOGISTIC, TANH, requantising QUANTIZE and
 * requantising RELU are computed once per value at compile time with TFLite's exact
 * integer arithmetic (see ops/fixedpoint_lut.py) and stored in a const table. At run
 * time each element is one load: bit-exact with TFLite Micro and integer-only. Each
 * element is read before it is written, so `out` may equal `in` (in-place mode).
 */
MT_KERNEL void mt_lut_s8(const int8_t* in, int8_t* out, int n,
                         const int8_t* restrict table) {
  int i;
  for (i = 0; i < n; ++i) {
    out[i] = table[(int32_t)in[i] + 128];
  }
}
