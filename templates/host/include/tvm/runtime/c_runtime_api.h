/*
 * Stand-in for TVM's tvm/runtime/c_runtime_api.h, written for microtvm-tasks (not TVM's
 * file): just what the C code of a TVM <= 0.18 Model Library Format archive (AOT executor,
 * unpacked C interface) needs to compile without TVM's standalone CRT.
 */
#ifndef MT_TVM_SHIM_C_RUNTIME_API_H_
#define MT_TVM_SHIM_C_RUNTIME_API_H_

#include <stddef.h>
#include <stdint.h>

#ifndef TVM_DLL
#define TVM_DLL
#endif

#endif /* MT_TVM_SHIM_C_RUNTIME_API_H_ */
