"""A tiny hand-written Model Library Format archive, for testing runtimes and templates.

Every template's tests need a model whose outputs are known without the compiler: this one
has one int8 input ``x:0`` (quantised, shape [1, n]) and two outputs, ``y`` = x + 1
(saturating int8, same quantisation) and ``z`` = [sum(x), max(x)] as float32. When the
first three input bytes are 42, -42, 42 its run function returns 3, so tests can check how
an error from the model travels back. `workspace_pools=True` writes the header the way TVM's
USMP builds do (a third ``workspace_pools`` argument with a size macro), to test the glue
on that shape of archive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from microtvm_tasks import __version__

IN_SCALE = 0.5
IN_ZP = -1


def _header(name: str, n: int, workspace_pools: bool) -> str:
    up = name.upper()
    pools_decl = ""
    pools_arg = ""
    if workspace_pools:
        pools_decl = (
            f"#define TVMGEN_{up}_GLOBAL_WORKSPACE_WORKSPACE_POOL_SIZE 48\n"
            f"struct tvmgen_{name}_workspace_pools {{\n  void* global_workspace;\n}};\n"
        )
        pools_arg = f",\n  struct tvmgen_{name}_workspace_pools* workspace_pools"
    return f"""#ifndef TVMGEN_{up}_H_
#define TVMGEN_{up}_H_
#include <stdint.h>
#define TVMGEN_{up}_X_0_SIZE {n}
#define TVMGEN_{up}_Y_SIZE {n}
#define TVMGEN_{up}_Z_SIZE 8
struct tvmgen_{name}_inputs {{
  void* x_0;
}};
struct tvmgen_{name}_outputs {{
  void* y;  /* int8 */
  void* z;  /* float32[2] */
}};
{pools_decl}int32_t tvmgen_{name}_run(
  struct tvmgen_{name}_inputs* inputs,
  struct tvmgen_{name}_outputs* outputs{pools_arg}
);
#endif
"""


def _lib(name: str, n: int, workspace_pools: bool) -> str:
    pools_param = f", struct tvmgen_{name}_workspace_pools* workspace_pools" if workspace_pools else ""
    use_pool = (
        "  int8_t* scratch = (int8_t*)workspace_pools->global_workspace;\n  scratch[0] = 1;\n"
        if workspace_pools
        else "  static int8_t scratch[1] = {1};\n"
    )
    return f"""#include <stdint.h>
#include "tvmgen_{name}.h"
int32_t tvmgen_{name}_run(struct tvmgen_{name}_inputs* inputs,
                          struct tvmgen_{name}_outputs* outputs{pools_param}) {{
  const int8_t* x = (const int8_t*)inputs->x_0;
  int8_t* y = (int8_t*)outputs->y;
  float* z = (float*)outputs->z;
  int32_t i;
  int32_t sum = 0;
  int32_t mx = -128;
{use_pool}  if ({n} >= 3 && x[0] == 42 && x[1] == -42 && x[2] == 42) {{
    return 3;
  }}
  for (i = 0; i < {n}; ++i) {{
    int32_t v = (int32_t)x[i] + scratch[0];
    y[i] = (int8_t)(v > 127 ? 127 : v);
    sum += x[i];
    if (x[i] > mx) mx = x[i];
  }}
  z[0] = (float)sum;
  z[1] = (float)mx;
  return 0;
}}
"""


def _tvm_style_libs(name: str, n: int) -> tuple[str, str]:
    """lib0/lib1 laid out like TVM's AOT output: the run wrapper in lib0 calling a
    ``__tvm_main__`` in lib1 that allocates its scratch through TVMBackendAllocWorkspace."""
    lib0 = f"""#include "tvm/runtime/c_runtime_api.h"
#include "tvmgen_{name}.h"
TVM_DLL int32_t tvmgen_{name}___tvm_main__(void* x, void* y, void* z);
int32_t tvmgen_{name}_run(struct tvmgen_{name}_inputs* inputs, struct tvmgen_{name}_outputs* outputs) {{
  return tvmgen_{name}___tvm_main__(inputs->x_0, outputs->y, outputs->z);
}}
"""
    lib1 = f"""#define TVM_EXPORTS
#include "tvm/runtime/c_runtime_api.h"
#include "tvm/runtime/c_backend_api.h"
#include <stdint.h>
TVM_DLL int32_t tvmgen_{name}___tvm_main__(void* x_, void* y_, void* z_) {{
  const int8_t* x = (const int8_t*)x_;
  int8_t* y = (int8_t*)y_;
  float* z = (float*)z_;
  int32_t* acc = (int32_t*)TVMBackendAllocWorkspace(1, 0, (uint64_t)(2 * sizeof(int32_t)), 0, 32);
  int32_t i;
  if (acc == NULL) {{
    TVMAPISetLastError("out of workspace");
    return -1;
  }}
  acc[0] = 0;
  acc[1] = -128;
  for (i = 0; i < {n}; ++i) {{
    int32_t v = (int32_t)x[i] + 1;
    y[i] = (int8_t)(v > 127 ? 127 : v);
    acc[0] += x[i];
    if (x[i] > acc[1]) acc[1] = x[i];
  }}
  z[0] = (float)acc[0];
  z[1] = (float)acc[1];
  return TVMBackendFreeWorkspace(1, 0, acc);
}}
"""
    return lib0, lib1


def fake_mlf_members(name: str = "default", n: int = 4, *, workspace_pools: bool = False,
                     tvm_style: bool = False) -> dict[str, bytes]:
    """The members of the fake archive ({relative path: bytes}). `tvm_style` lays the code out
    as TVM <= 0.18 does (needs the host template's stand-in TVM headers)."""
    from ..mlf import build_metadata, metadata_bytes, tensor_metadata

    quant = {"scale": IN_SCALE, "zero_point": IN_ZP}
    meta = build_metadata(
        name,
        workspace_bytes=48 if workspace_pools else 16,
        constants_bytes=0,
        io_bytes=2 * n + 8,
        inputs={"x:0": tensor_metadata(n, "int8", [1, n], quant)},
        outputs={"y": tensor_metadata(n, "int8", [1, n], quant), "z": tensor_metadata(8, "float32", [2])},
        target="c -keys=cpu",
        generator={"name": "microtvm-tasks-fake", "version": __version__},
    )
    lib0 = "/* no constants */\n"
    lib1 = _lib(name, n, workspace_pools)
    if tvm_style:
        lib0, lib1 = _tvm_style_libs(name, n)
    return {
        "metadata.json": metadata_bytes(meta),
        f"codegen/host/include/tvmgen_{name}.h": _header(name, n, workspace_pools).encode(),
        f"codegen/host/src/{name}_lib0.c": lib0.encode(),
        f"codegen/host/src/{name}_lib1.c": lib1.encode(),
        f"src/{name}.ir.txt": b"fake: y = x + 1; z = [sum(x), max(x)]\n",
    }


def write_fake_mlf(out: str | Path, name: str = "default", n: int = 4, *,
                   workspace_pools: bool = False, tvm_style: bool = False) -> Path:
    """Write the fake archive as a tar at `out` (via microtvm_tasks.mlf.write_archive)."""
    from ..mlf import write_archive

    return write_archive(out, fake_mlf_members(name, n, workspace_pools=workspace_pools, tvm_style=tvm_style))


def extract_fake_mlf(out_dir: str | Path, name: str = "default", n: int = 4, *,
                     workspace_pools: bool = False) -> Path:
    """Write the fake archive's members as a directory (an already-extracted MLF)."""
    out_dir = Path(out_dir)
    for rel, data in fake_mlf_members(name, n, workspace_pools=workspace_pools).items():
        p = out_dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return out_dir


def fake_reference(x: Any) -> tuple[Any, Any]:
    """What the fake model computes for int8 input `x` (for comparisons in tests)."""
    import numpy as np

    x = np.asarray(x, dtype=np.int8)
    y = np.minimum(x.astype(np.int32) + 1, 127).astype(np.int8)
    z = np.array([x.astype(np.int32).sum(), x.max()], dtype=np.float32)
    return y, z
