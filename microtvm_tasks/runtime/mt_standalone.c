/*
 * mt_standalone.c: project_type aot_standalone_demo. Loads the input baked in at
 * generate time (mt_standalone_input.c, or an empty table in mt_model_glue.c), runs the
 * model once and prints every output as text, then the elapsed ticks:
 *
 *   mt: output 0 <name> int8 [1,1] = 12
 *   mt: output 0 <name> real = 0.123456        (quantised outputs only)
 *   mt: ticks 57 hz 1000000
 *   mt: status 0
 */
#include <string.h>

#include "mt_model.h"
#include "mt_runtime.h"
#include "mt_text.h"
#include "platform.h"

extern const uint32_t mt_standalone_num_inputs;
extern const uint8_t *const mt_standalone_input_data[];
extern const uint32_t mt_standalone_input_nbytes[];

static void put_str(const char *s) { mt_platform_write((const uint8_t *)s, strlen(s)); }

/* A fixed label: an MT_PSTR literal (program memory on AVR), copied out in small chunks. */
static void put_pstr(const char *s) {
  uint8_t buf[16];
  uint8_t n = 0;
  char c;
  while ((c = MT_PSTR_BYTE(s)) != '\0') {
    buf[n++] = (uint8_t)c;
    ++s;
    if (n == sizeof(buf)) {
      mt_platform_write(buf, n);
      n = 0;
    }
  }
  if (n != 0u) {
    mt_platform_write(buf, n);
  }
}

static void put_u32(uint32_t v) {
  char buf[12];
  mt_platform_write((const uint8_t *)buf, mt_fmt_u32(buf, v));
}

static void put_i32(int32_t v) {
  char buf[12];
  mt_platform_write((const uint8_t *)buf, mt_fmt_i32(buf, v));
}

static void put_f32(float v) {
  char buf[20];
  mt_platform_write((const uint8_t *)buf, mt_fmt_f32(buf, v));
}

/* An MT_PSTR literal: print it with put_pstr. Comparisons, not a switch: gcc turns a
 * switch of returns into a table of pointers in .rodata, which AVR copies into RAM. */
static const char *dtype_name(uint8_t dtype) {
  if (dtype == MT_DTYPE_INT8) return MT_PSTR("int8");
  if (dtype == MT_DTYPE_UINT8) return MT_PSTR("uint8");
  if (dtype == MT_DTYPE_INT16) return MT_PSTR("int16");
  if (dtype == MT_DTYPE_INT32) return MT_PSTR("int32");
  if (dtype == MT_DTYPE_FLOAT32) return MT_PSTR("float32");
  if (dtype == MT_DTYPE_INT64) return MT_PSTR("int64");
  return MT_PSTR("unknown");
}

/* Comparisons too (a switch here became a lookup table in .rodata). */
static uint8_t dtype_size(uint8_t dtype) {
  if (dtype == MT_DTYPE_INT16) {
    return 2;
  }
  if (dtype == MT_DTYPE_INT32 || dtype == MT_DTYPE_FLOAT32) {
    return 4;
  }
  if (dtype == MT_DTYPE_INT64) {
    return 8;
  }
  return 1; /* int8, uint8, unknown */
}

/* Element i of t as a raw integer (for integer dtypes) or float (float32). memcpy keeps
 * the access aligned-safe and free of strict-aliasing trouble. */
static int32_t elem_int(const mt_tensor_t *t, uint32_t i) {
  switch (t->dtype) {
    case MT_DTYPE_INT8: return (int32_t)(int8_t)t->data[i];
    case MT_DTYPE_UINT8: return (int32_t)t->data[i];
    case MT_DTYPE_INT16: {
      int16_t v;
      memcpy(&v, t->data + 2u * i, 2);
      return (int32_t)v;
    }
    default: {
      int32_t v;
      memcpy(&v, t->data + 4u * i, 4);
      return v;
    }
  }
}

static float elem_float(const mt_tensor_t *t, uint32_t i) {
  float v;
  memcpy(&v, t->data + 4u * i, 4);
  return v;
}

static void print_output(uint32_t k, const mt_tensor_t *t) {
  uint8_t d;
  uint32_t i;
  uint32_t count = t->nbytes / dtype_size(t->dtype);
  put_pstr(MT_PSTR("mt: output "));
  put_u32(k);
  put_pstr(MT_PSTR(" "));
  put_str(t->name);
  put_pstr(MT_PSTR(" "));
  put_pstr(dtype_name(t->dtype));
  put_pstr(MT_PSTR(" ["));
  for (d = 0; d < t->ndim && d < MT_MAX_DIMS; ++d) {
    if (d) put_pstr(MT_PSTR(","));
    put_i32(t->shape[d]);
  }
  put_pstr(MT_PSTR("] ="));
  for (i = 0; i < count; ++i) {
    put_pstr(MT_PSTR(" "));
    if (t->dtype == MT_DTYPE_FLOAT32) {
      put_f32(elem_float(t, i));
    } else if (t->dtype == MT_DTYPE_INT64) {
      put_i32(elem_int(t, 2u * i)); /* low word: int64 outputs are indices in practice */
    } else {
      put_i32(elem_int(t, i));
    }
  }
  put_pstr(MT_PSTR("\n"));
  if (t->scale_bits != 0u && t->dtype != MT_DTYPE_FLOAT32) {
    float scale;
    memcpy(&scale, &t->scale_bits, 4);
    put_pstr(MT_PSTR("mt: output "));
    put_u32(k);
    put_pstr(MT_PSTR(" "));
    put_str(t->name);
    put_pstr(MT_PSTR(" real ="));
    for (i = 0; i < count; ++i) {
      put_pstr(MT_PSTR(" "));
      put_f32(scale * (float)(elem_int(t, i) - t->zero_point));
    }
    put_pstr(MT_PSTR("\n"));
  }
}

int32_t mt_standalone_main(void) {
  uint32_t i;
  uint32_t t0;
  uint32_t dt;
  int32_t status;
  for (i = 0; i < mt_standalone_num_inputs && i < mt_model.num_inputs; ++i) {
    const mt_tensor_t *t = &mt_model.inputs[i];
    uint32_t n = mt_standalone_input_nbytes[i];
    if (n > t->nbytes) {
      n = t->nbytes;
    }
    memcpy(t->data, mt_standalone_input_data[i], n);
  }
  t0 = mt_platform_ticks();
  status = mt_model.run();
  dt = mt_platform_ticks() - t0;
  if (status == 0) {
    for (i = 0; i < mt_model.num_outputs; ++i) {
      print_output(i, &mt_model.outputs[i]);
    }
  }
  put_pstr(MT_PSTR("mt: ticks "));
  put_u32(dt);
  put_pstr(MT_PSTR(" hz "));
  put_u32(mt_platform_tick_hz());
  put_pstr(MT_PSTR("\nmt: status "));
  put_i32(status);
  put_pstr(MT_PSTR("\n"));
  return status;
}
