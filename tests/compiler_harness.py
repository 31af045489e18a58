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
        self.meta = mod["memory"]["main"][0]
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


class TFLiteBuilder:
    """Build a one-subgraph TFLite flatbuffer.

    t = b.tensor([1, 8], "int8", scale=0.1, zero_point=3)           # activation
    w = b.tensor([4, 8], "int8", data=arr, scale=[...], axis=0)     # constant
    b.op("FULLY_CONNECTED", [t, w, -1], [y], "FullyConnectedOptions", FusedActivationFunction=1)
    data = b.finish(inputs=[t], outputs=[y])
    Option fields are the schema's names (tflite.<Options>Add<Field>).
    """

    def __init__(self) -> None:
        self.tensors: list[dict[str, Any]] = []
        self.ops: list[tuple[str, list[int], list[int], str | None, dict[str, Any]]] = []

    def tensor(self, shape, dtype, *, data=None, scale=None, zero_point=None, axis=0, name=None) -> int:
        self.tensors.append(
            {
                "shape": [int(s) for s in shape],
                "dtype": dtype,
                "data": None if data is None else np.ascontiguousarray(np.asarray(data, dtype=dtype)),
                "scale": None if scale is None else np.atleast_1d(np.asarray(scale, np.float32)),
                "zero_point": None if zero_point is None else np.atleast_1d(np.asarray(zero_point, np.int64)),
                "axis": axis,
                "name": name or f"t{len(self.tensors)}",
            }
        )
        return len(self.tensors) - 1

    def op(
        self, builtin: str, inputs: list[int], outputs: list[int], options: str | None = None, **fields: Any
    ) -> None:
        self.ops.append((builtin, list(inputs), list(outputs), options, fields))

    def finish(self, inputs: list[int], outputs: list[int]) -> bytes:
        import flatbuffers
        import tflite
        from tflite.BuiltinOperator import BuiltinOperator
        from tflite.BuiltinOptions import BuiltinOptions

        b = flatbuffers.Builder(1024)

        def int_vector(start_fn, values, prepend="PrependInt32"):
            start_fn(b, len(values))
            for v in reversed(values):
                getattr(b, prepend)(v)
            return b.EndVector()

        # buffers: 0 is the empty sentinel, then one per constant tensor
        buffer_offsets = []
        tflite.BufferStart(b)
        buffer_offsets.append(tflite.BufferEnd(b))
        tensor_buffer = []
        for t in self.tensors:
            if t["data"] is None:
                tensor_buffer.append(0)
                continue
            raw = t["data"].tobytes()
            b.StartVector(1, len(raw), 16)
            for byte in reversed(raw):
                b.PrependUint8(byte)
            vec = b.EndVector()
            tflite.BufferStart(b)
            tflite.BufferAddData(b, vec)
            buffer_offsets.append(tflite.BufferEnd(b))
            tensor_buffer.append(len(buffer_offsets) - 1)

        tensor_offsets = []
        for t, buf in zip(self.tensors, tensor_buffer, strict=True):
            name = b.CreateString(t["name"])
            shape = int_vector(tflite.TensorStartShapeVector, t["shape"])
            q = None
            if t["scale"] is not None:
                scales = t["scale"]
                zps = t["zero_point"] if t["zero_point"] is not None else np.zeros(len(scales), np.int64)
                tflite.QuantizationParametersStartScaleVector(b, len(scales))
                for s in reversed(scales.tolist()):
                    b.PrependFloat32(s)
                sv = b.EndVector()
                tflite.QuantizationParametersStartZeroPointVector(b, len(zps))
                for z in reversed(zps.tolist()):
                    b.PrependInt64(z)
                zv = b.EndVector()
                tflite.QuantizationParametersStart(b)
                tflite.QuantizationParametersAddScale(b, sv)
                tflite.QuantizationParametersAddZeroPoint(b, zv)
                tflite.QuantizationParametersAddQuantizedDimension(b, t["axis"])
                q = tflite.QuantizationParametersEnd(b)
            tflite.TensorStart(b)
            tflite.TensorAddShape(b, shape)
            tflite.TensorAddType(b, _TFL_TYPES[t["dtype"]])
            tflite.TensorAddBuffer(b, buf)
            tflite.TensorAddName(b, name)
            if q is not None:
                tflite.TensorAddQuantization(b, q)
            tensor_offsets.append(tflite.TensorEnd(b))

        codes: list[str] = []
        op_offsets = []
        for builtin, ins, outs, opt_name, fields in self.ops:
            if builtin not in codes:
                codes.append(builtin)
            opt = None
            if opt_name is not None:
                getattr(tflite, f"{opt_name}Start")(b)
                for k, v in fields.items():
                    getattr(tflite, f"{opt_name}Add{k}")(b, v)
                opt = getattr(tflite, f"{opt_name}End")(b)
            iv = int_vector(tflite.OperatorStartInputsVector, ins)
            ov = int_vector(tflite.OperatorStartOutputsVector, outs)
            tflite.OperatorStart(b)
            tflite.OperatorAddOpcodeIndex(b, codes.index(builtin))
            tflite.OperatorAddInputs(b, iv)
            tflite.OperatorAddOutputs(b, ov)
            if opt is not None:
                tflite.OperatorAddBuiltinOptionsType(b, getattr(BuiltinOptions, opt_name))
                tflite.OperatorAddBuiltinOptions(b, opt)
            op_offsets.append(tflite.OperatorEnd(b))

        def table_vector(start_fn, offsets):
            start_fn(b, len(offsets))
            for o in reversed(offsets):
                b.PrependUOffsetTRelative(o)
            return b.EndVector()

        tv = table_vector(tflite.SubGraphStartTensorsVector, tensor_offsets)
        opv = table_vector(tflite.SubGraphStartOperatorsVector, op_offsets)
        inv = int_vector(tflite.SubGraphStartInputsVector, inputs)
        outv = int_vector(tflite.SubGraphStartOutputsVector, outputs)
        sgname = b.CreateString("main")
        tflite.SubGraphStart(b)
        tflite.SubGraphAddTensors(b, tv)
        tflite.SubGraphAddOperators(b, opv)
        tflite.SubGraphAddInputs(b, inv)
        tflite.SubGraphAddOutputs(b, outv)
        tflite.SubGraphAddName(b, sgname)
        sg = tflite.SubGraphEnd(b)

        code_offsets = []
        for c in codes:
            value = getattr(BuiltinOperator, c)
            tflite.OperatorCodeStart(b)
            tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(value, 127))
            tflite.OperatorCodeAddBuiltinCode(b, value)
            tflite.OperatorCodeAddVersion(b, 1)
            code_offsets.append(tflite.OperatorCodeEnd(b))
        cv = table_vector(tflite.ModelStartOperatorCodesVector, code_offsets)
        sgv = table_vector(tflite.ModelStartSubgraphsVector, [sg])
        bv = table_vector(tflite.ModelStartBuffersVector, buffer_offsets)
        desc = b.CreateString("built by tests/compiler_harness.py")
        tflite.ModelStart(b)
        tflite.ModelAddVersion(b, 3)
        tflite.ModelAddOperatorCodes(b, cv)
        tflite.ModelAddSubgraphs(b, sgv)
        tflite.ModelAddDescription(b, desc)
        tflite.ModelAddBuffers(b, bv)
        model = tflite.ModelEnd(b)
        b.Finish(model, file_identifier=b"TFL3")
        return bytes(b.Output())


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
