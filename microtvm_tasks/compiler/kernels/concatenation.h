/*
 * concatenation.h: copy one input of a CONCATENATION into its slice of the output.
 *
 * Viewed as [outer][chunk] bytes, input k occupies bytes [offset, offset + chunk_in) of
 * every output row of out_row bytes. The compiler emits one call per input. Works on
 * bytes, so it serves every dtype (TFLite requires equal int8 quantisation).
 */
MT_KERNEL void mt_concat_part(const void* in, void* out, int outer, int chunk_in,
                              int out_row, int offset) {
  const uint8_t* x = (const uint8_t*)in;
  uint8_t* y = (uint8_t*)out + offset;
  int i, j;
  for (i = 0; i < outer; ++i) {
    for (j = 0; j < chunk_in; ++j) {
      y[j] = x[j];
    }
    x += chunk_in;
    y += out_row;
  }
}
