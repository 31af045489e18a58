/*
 * Stand-in for TVM's tvm/runtime/c_backend_api.h (see c_runtime_api.h). The workspace
 * functions are defined by mt_model_glue.c (a LIFO allocator over a static pool sized from
 * the archive's metadata) when the archive's code calls them.
 */
#ifndef MT_TVM_SHIM_C_BACKEND_API_H_
#define MT_TVM_SHIM_C_BACKEND_API_H_

#include "tvm/runtime/c_runtime_api.h"

#ifdef __cplusplus
extern "C" {
#endif

TVM_DLL void *TVMBackendAllocWorkspace(int device_type, int device_id, uint64_t nbytes, int dtype_code_hint,
                                       int dtype_bits_hint);
TVM_DLL int TVMBackendFreeWorkspace(int device_type, int device_id, void *ptr);
TVM_DLL void TVMAPISetLastError(const char *msg);

#ifdef __cplusplus
}
#endif

#endif /* MT_TVM_SHIM_C_BACKEND_API_H_ */
