/*
 * mt_runtime.h: the two entry points a template's main() calls.
 */
#ifndef MT_RUNTIME_H_
#define MT_RUNTIME_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* project_type host_driven: serve the run protocol over mt_platform_read/write until
 * the transport closes. Returns 0 on a clean close, a negative code otherwise. */
int32_t mt_session_main(void);

/* project_type aot_standalone_demo: run the model once on the input baked in at
 * generate time (mt_standalone_input.c) and print each output as text through
 * mt_platform_write, then the elapsed ticks. Returns the model's run() status. */
int32_t mt_standalone_main(void);

#ifdef __cplusplus
}
#endif

#endif /* MT_RUNTIME_H_ */
