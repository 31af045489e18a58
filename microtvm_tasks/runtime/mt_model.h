/*
 * mt_model.h: how the runtime sees the compiled model.
 *
 * A generated file, src/mt_model_glue.c (written by microtvm_tasks/runtime/glue.py from the
 * MLF metadata at generate_project time), defines `mt_model`: the model's inputs and
 * outputs (names, dtypes, shapes, quantisation, static buffers) and a `run` function that
 * calls tvmgen_<name>_run() on those buffers. The runtime never includes tvmgen_*.h.
 */
#ifndef MT_MODEL_H_
#define MT_MODEL_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MT_MAX_DIMS 6

/* dtype codes, shared with microtvm_tasks/session.py */
enum mt_dtype {
  MT_DTYPE_INT8 = 1,
  MT_DTYPE_UINT8 = 2,
  MT_DTYPE_INT16 = 3,
  MT_DTYPE_INT32 = 4,
  MT_DTYPE_FLOAT32 = 5,
  MT_DTYPE_INT64 = 6
};

typedef struct {
  const char *name;
  uint8_t dtype;                 /* enum mt_dtype */
  uint8_t ndim;
  int32_t shape[MT_MAX_DIMS];
  uint32_t scale_bits;           /* IEEE-754 float32 bits of the scale; 0 when not quantised */
  int32_t zero_point;
  uint8_t *data;                 /* static buffer of nbytes */
  uint32_t nbytes;
} mt_tensor_t;

typedef struct {
  const char *name;              /* MLF module name, e.g. "default" */
  uint32_t num_inputs;
  uint32_t num_outputs;
  mt_tensor_t *inputs;
  mt_tensor_t *outputs;
  uint32_t arena_bytes;          /* workspace_size_bytes from the MLF metadata */
  int32_t (*run)(void);          /* 0 on success */
  uint32_t num_ops;              /* a profiling build: operators timed by run(), else 0 */
  const uint32_t *op_ticks;      /* their ticks in the last run() (num_ops entries), or NULL */
} mt_model_t;

extern const mt_model_t mt_model;

#ifdef __cplusplus
}
#endif

#endif /* MT_MODEL_H_ */
