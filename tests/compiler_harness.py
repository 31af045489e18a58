"""Build a compiled model's C into a shared library and call it from Python.

Used by the compiler tests and bench/compiler.py: the archive's lib0.c + lib1.c (and a
small timing loop, so benchmarks measure C, not ctypes) are compiled with
`gcc -O2 -shared -fPIC -std=c99 -Wall -Wextra -Werror`, loaded with ctypes, and `run`
fills the TVM-style input/output structs with numpy buffers.
"""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

GCC_FLAGS = ["-O2", "-std=c99", "-Wall", "-Wextra", "-Werror"]
ARM_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-Os", "-std=c99", "-Wall", "-Wextra", "-Werror"]

_BENCH_C = r"""
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <time.h>
#include "tvmgen_%(name)s.h"
/* Seconds per call of the run function over `iters` calls (a C loop, no ctypes per call). */
double mt_bench_run(int iters, struct tvmgen_%(name)s_inputs* in, struct tvmgen_%(name)s_outputs* out) {
  struct timespec a, b;
  int i;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (i = 0; i < iters; ++i) {
    if (tvmgen_%(name)s_run(in, out) != 0) return -1.0;
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  return ((double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec)) / iters;
}
"""


def write_sources(members: dict[str, bytes], workdir: Path) -> tuple[Path, Path]:
    """Write the archive's C files under workdir; (src dir, include dir)."""
    for name, data in members.items():
        if name.startswith("codegen/"):
            p = workdir / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
    return workdir / "codegen/host/src", workdir / "codegen/host/include"


def c_fields(header: str, struct: str) -> list[str]:
    """Field names of `struct <struct> { void* a; ... }` in a header."""
    m = re.search(r"struct\s+" + re.escape(struct) + r"\s*\{([^}]*)\}", header)
    assert m, struct
    return re.findall(r"void\s*\*\s*(\w+)\s*;", m.group(1))


class CompiledModel:
    """A compiled MLF model loaded as a shared library."""

    def __init__(
        self,
        members: dict[str, bytes],
        workdir: Path,
        *,
        cc: str = "gcc",
        extra_flags: list[str] | None = None,
    ) -> None:
        meta = json.loads(members["metadata.json"])
        ((self.name, mod),) = meta["modules"].items()
        self.meta = mod["memory"]["functions"]["main"][0]
        src, inc = write_sources(members, workdir)
        (src / "mt_bench.c").write_text(_BENCH_C % {"name": self.name})
        header = (inc / f"tvmgen_{self.name}.h").read_text()
        self.in_fields = c_fields(header, f"tvmgen_{self.name}_inputs")
        self.out_fields = c_fields(header, f"tvmgen_{self.name}_outputs")
        self.lib_path = workdir / f"lib{self.name}.so"
        cmd = [
            cc,
            *GCC_FLAGS,
            *(extra_flags or []),
            "-shared",
            "-fPIC",
            f"-I{inc}",
            str(src / f"{self.name}_lib0.c"),
            str(src / f"{self.name}_lib1.c"),
            str(src / "mt_bench.c"),
            "-o",
            str(self.lib_path),
            "-lm",
        ]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"C build failed: {' '.join(cmd)}\n{r.stderr}")
        self.build_log = r.stderr
        self.lib = ctypes.CDLL(str(self.lib_path))
        self.InStruct = type(
            "In", (ctypes.Structure,), {"_fields_": [(f, ctypes.c_void_p) for f in self.in_fields]}
        )
        self.OutStruct = type(
            "Out", (ctypes.Structure,), {"_fields_": [(f, ctypes.c_void_p) for f in self.out_fields]}
        )
        self.run_fn = getattr(self.lib, f"tvmgen_{self.name}_run")
        self.run_fn.restype = ctypes.c_int32
        self.bench_fn = self.lib.mt_bench_run
        self.bench_fn.restype = ctypes.c_double
        self.inputs = [self._spec(n, d) for n, d in self.meta["inputs"].items()]
        self.outputs = [self._spec(n, d) for n, d in self.meta["outputs"].items()]
        self._out_bufs = [np.zeros(s["shape"], s["dtype"]) for s in self.outputs]

    @staticmethod
    def _spec(name: str, d: dict[str, Any]) -> dict[str, Any]:
        shape = d.get("shape") or [d["size"] // np.dtype(d["dtype"]).itemsize]
        return {
            "name": name,
            "dtype": np.dtype(d["dtype"]),
            "shape": tuple(shape),
            "quantization": d.get("quantization"),
        }

    def _structs(self, inputs: list[np.ndarray]) -> tuple[Any, Any, list[np.ndarray]]:
        ins = [
            np.ascontiguousarray(np.asarray(x, dtype=s["dtype"]).reshape(s["shape"]))
            for x, s in zip(inputs, self.inputs, strict=False)
        ]
        in_s = self.InStruct(*[x.ctypes.data for x in ins])
        out_s = self.OutStruct(*[y.ctypes.data for y in self._out_bufs])
        return in_s, out_s, ins

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        in_s, out_s, _keep = self._structs(inputs)
        rc = self.run_fn(ctypes.byref(in_s), ctypes.byref(out_s))
        if rc != 0:
            raise RuntimeError(f"run returned {rc}")
        return [y.copy() for y in self._out_bufs]

    def time_per_run(self, inputs: list[np.ndarray], iters: int) -> float:
        """Seconds per inference, timed by a C loop."""
        in_s, out_s, _keep = self._structs(inputs)
        return float(self.bench_fn(iters, ctypes.byref(in_s), ctypes.byref(out_s)))


def arm_compile(members: dict[str, bytes], workdir: Path, flags: list[str] | None = None) -> list[Path]:
    """Compile lib0.c and lib1.c with arm-none-eabi-gcc (-c); the object files."""
    cc = shutil.which("arm-none-eabi-gcc")
    if cc is None:
        raise FileNotFoundError("arm-none-eabi-gcc")
    src, inc = write_sources(members, workdir)
    objs = []
    for c in sorted(src.glob("*_lib[01].c")):
        obj = workdir / (c.stem + ".o")
        cmd = [cc, *(flags or ARM_FLAGS), f"-I{inc}", "-c", str(c), "-o", str(obj)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"ARM build failed: {' '.join(cmd)}\n{r.stderr}")
        objs.append(obj)
    return objs


def random_inputs(specs: list[dict[str, Any]], rng: np.random.Generator) -> list[np.ndarray]:
    out = []
    for s in specs:
        dt = np.dtype(s["dtype"])
        if dt.kind == "f":
            out.append(rng.standard_normal(s["shape"]).astype(dt))
        else:
            info = np.iinfo(dt)
            out.append(rng.integers(info.min, info.max, size=s["shape"], endpoint=True).astype(dt))
    return out


class TFLM:
    """The TFLite Micro interpreter (PyPI tflite-micro), in process."""

    def __init__(self, model_path: str | Path, arena_size: int = 4 << 20) -> None:
        from tflite_micro.python.tflite_micro import runtime

        self.interp = runtime.Interpreter.from_bytes(Path(model_path).read_bytes(), arena_size=arena_size)
        import tflite

        model = tflite.Model.GetRootAsModel(Path(model_path).read_bytes(), 0)
        self.n_outputs = model.Subgraphs(0).OutputsLength()

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        for i, x in enumerate(inputs):
            self.interp.set_input(x, i)
        self.interp.invoke()
        return [np.array(self.interp.get_output(i), copy=True) for i in range(self.n_outputs)]


class LiteRT:
    def __init__(self, model_path: str | Path) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interp = Interpreter(model_path=str(model_path))
        self.interp.allocate_tensors()
        self.ins = self.interp.get_input_details()
        self.outs = self.interp.get_output_details()

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        for d, x in zip(self.ins, inputs, strict=False):
            self.interp.set_tensor(d["index"], np.asarray(x, d["dtype"]).reshape(d["shape"]))
        self.interp.invoke()
        return [np.array(self.interp.get_tensor(d["index"]), copy=True) for d in self.outs]


# --------------------------------------------------------------------------------------
# A tiny .tflite writer, so tests can build the small single-operator models they need.
# --------------------------------------------------------------------------------------

_TFL_TYPES = {"float32": 0, "int32": 2, "uint8": 3, "int64": 4, "bool": 6, "int16": 7, "int8": 9}


def tflm_arena(model_path: str | Path) -> dict[str, int]:
    """TFLite Micro's arena use {"total", "head", "tail"} for a model (print_allocations)."""
    import os
    import tempfile

    interp = TFLM(model_path).interp
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(1), os.dup(2)
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            interp.print_allocations()
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        tmp.seek(0)
        log = tmp.read().decode(errors="replace")
    return {k: int(v) for k, v in re.findall(r"Arena allocation (total|head|tail) (\d+) bytes", log)}
