"""Glue between a Model Library Format archive and the firmware runtime.

Every template's ``generate_project`` copies `runtime_sources()` into the project and calls
`write_model_glue()`, which writes ``mt_model_glue.c``: static, 16-byte-aligned input and
output buffers, the tensor table of ``mt_model.h`` (names, dtypes, shapes, quantisation) and
a ``run()`` that calls ``tvmgen_<name>_run``. The runtime itself never includes the
generated ``tvmgen_<name>.h``, so one runtime serves every model.

The archive is read through mlf.py (`read_mlf` for metadata.json, `read_interface_header`
for the header): the C field names of the input/output structs come from the header (not
derived from tensor names) so that archives written by TVM <= 0.18 work too, including those
whose run function also takes ``struct tvmgen_<name>_workspace_pools`` (static pools are
allocated here, sized from the header's ``*_WORKSPACE_POOL_SIZE`` macros) or ``..._devices``.

Standard library only: a Project API server imports this and must start fast.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MLFError
from ..mlf import DTYPES, METADATA_FILE, TensorSpec, read_interface_header, read_mlf

RUNTIME_DIR = Path(__file__).resolve().parent

#: dtype codes, identical to ``enum mt_dtype`` in mt_model.h (mlf.DTYPES is their one home).
DTYPE_CODES: dict[str, int] = {d.name: d.code for d in DTYPES.values() if d.code is not None}
DTYPE_SIZES: dict[str, int] = {name: DTYPES[name].itemsize for name in DTYPE_CODES}
MAX_DIMS = 6

GLUE_FILE = "mt_model_glue.c"
STANDALONE_FILE = "mt_standalone_input.c"


def runtime_sources() -> list[Path]:
    """The runtime's C sources and headers, to be copied into a project's source directory.

    platform.h is included: the template implements it. Python files and the spec are not.
    """
    return sorted(p for p in RUNTIME_DIR.iterdir() if p.suffix in (".c", ".h") and p.is_file())


@dataclass
class TensorInfo:
    """One model input or output as the glue and the run protocol describe it."""

    name: str
    dtype: str
    shape: list[int]
    nbytes: int
    scale: float | None = None
    zero_point: int = 0
    c_field: str = ""

    @property
    def scale_bits(self) -> int:
        """IEEE-754 float32 bits of the scale, 0 when not quantised (mt_tensor_t.scale_bits)."""
        if self.scale is None:
            return 0
        return struct.unpack("<I", struct.pack("<f", float(self.scale)))[0]


@dataclass
class ModelInfo:
    """What the glue needs from an MLF: the module name, tensors, arena, header facts."""

    name: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    workspace_bytes: int
    header: Path
    # pool field name -> bytes, for TVM archives built with USMP workspace pools
    workspace_pools: dict[str, int] = field(default_factory=dict)
    has_devices: bool = False
    # the archive's code calls TVMBackendAllocWorkspace (TVM archives without static planning)
    needs_backend_workspace: bool = False
    # a profiling build (compile profile=True): operators timed in <prefix>_op_ticks
    profile_ops: int = 0


def _tensor(t: TensorSpec, where: str) -> TensorInfo:
    """A tensor mlf.py has read (shape and size already checked against each other), as the
    runtime can carry it: a dtype with a run-protocol code, at most MAX_DIMS dimensions, one
    scale (a per-channel tensor is described as not quantised)."""
    if t.dtype not in DTYPE_CODES:
        raise MLFError(
            f"{where}: tensor {t.name!r} has dtype {t.dtype!r}; supported: {', '.join(DTYPE_CODES)}"
        )
    if len(t.shape) > MAX_DIMS:
        raise MLFError(
            f"{where}: tensor {t.name!r} has {len(t.shape)} dimensions; the runtime supports {MAX_DIMS}"
        )
    scale = None
    zp = 0
    s, z = t.scale, t.zero_point
    if isinstance(s, list):
        s = s[0] if len(s) == 1 else None
    if isinstance(z, list):
        z = z[0] if z else 0
    if s is not None:
        scale = float(s)
        zp = int(z or 0)
    return TensorInfo(name=t.name, dtype=t.dtype, shape=list(t.shape), nbytes=t.size, scale=scale,
                      zero_point=zp)


def read_model_info(mlf_dir: str | Path) -> ModelInfo:
    """Read an extracted MLF's metadata.json and its tvmgen header (both through mlf.py)
    into a `ModelInfo`."""
    mlf_dir = Path(mlf_dir)
    meta_path = mlf_dir / METADATA_FILE
    if not meta_path.is_file():
        raise MLFError(f"{meta_path}: missing; is {mlf_dir} an extracted Model Library Format archive?")
    modules = read_mlf(mlf_dir).modules
    if len(modules) != 1:
        raise MLFError(
            f"{meta_path}: {len(modules)} modules ({', '.join(m.name for m in modules)}); the runtime "
            "serves one model per project: export one module per archive"
        )
    mod = modules[0]
    name = mod.name
    header = mlf_dir / mod.header
    try:
        htext = header.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise MLFError(f"{header}: missing; the archive was not built with the AOT C interface") from None
    iface = read_interface_header(htext, name, header)
    where = str(meta_path)
    ins = [_tensor(t, where) for t in mod.inputs]
    outs = [_tensor(t, where) for t in mod.outputs]
    # Archives without input/output metadata (older TVM): sizes from the header, bytes as uint8.
    if not ins and iface.inputs:
        ins = [TensorInfo(f, "uint8", [iface.size(f) or 0], iface.size(f) or 0) for f in iface.inputs]
    if not outs and iface.outputs:
        outs = [TensorInfo(f, "uint8", [iface.size(f) or 0], iface.size(f) or 0) for f in iface.outputs]
    for kind, tensors, fields in (("inputs", ins, iface.inputs), ("outputs", outs, iface.outputs)):
        if len(tensors) != len(fields):
            raise MLFError(
                f"{header}: struct tvmgen_{name}_{kind} has {len(fields)} fields but {where} lists "
                f"{len(tensors)} {kind}; the archive is inconsistent: re-export it"
            )
        for t, f in zip(tensors, fields, strict=True):
            t.c_field = f
    code = "".join(
        p.read_text(encoding="utf-8", errors="replace")
        for p in sorted((mlf_dir / "codegen" / "host" / "src").glob("*.c"))
    )
    return ModelInfo(
        needs_backend_workspace="TVMBackendAllocWorkspace" in code or "TVMAPISetLastError" in code,
        name=name,
        inputs=ins,
        outputs=outs,
        workspace_bytes=mod.workspace_size_bytes,
        header=header,
        workspace_pools=iface.workspace_pools,
        has_devices=iface.has_devices,
        profile_ops=iface.macros.get(f"{iface.prefix}_PROFILE_OPS", 0),
    )


def _c_string(s: str) -> str:
    out = []
    for b in s.encode("utf-8"):
        ch = chr(b)
        if ch in '"\\' or b < 0x20 or b >= 0x7F or ch == "?":
            out.append(f"\\{b:03o}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _bytes_initializer(data: bytes) -> str:
    if not data:
        return "{0}"
    rows = []
    for i in range(0, len(data), 16):
        rows.append("  " + ", ".join(f"0x{b:02x}" for b in data[i : i + 16]) + ",")
    return "{\n" + "\n".join(rows) + "\n}"


def _tensor_table(var: str, tensors: list[TensorInfo], buf_prefix: str) -> str:
    if not tensors:
        return f"static mt_tensor_t {var}[1];\n"
    rows = []
    for i, t in enumerate(tensors):
        shape = ", ".join(str(d) for d in t.shape) or "0"
        rows.append(
            f"  {{{_c_string(t.name)}, {DTYPE_CODES[t.dtype]}u, {len(t.shape)}u, {{{shape}}}, "
            f"0x{t.scale_bits:08x}u, {t.zero_point}, {buf_prefix}{i}, {t.nbytes}u}},"
        )
    return f"static mt_tensor_t {var}[] = {{\n" + "\n".join(rows) + "\n};\n"


def _standalone_bytes(info: ModelInfo, standalone_input: dict[str, bytes]) -> list[bytes]:
    known = {t.name for t in info.inputs} | {f"input_{i}" for i in range(len(info.inputs))}
    unknown = sorted(set(standalone_input) - known)
    if unknown:
        raise MLFError(
            f"standalone input names {unknown} match no model input; known: {sorted(known)}"
        )
    datas = []
    for i, t in enumerate(info.inputs):
        data = standalone_input.get(t.name, standalone_input.get(f"input_{i}"))
        if data is None:
            data = bytes(t.nbytes)
        data = bytes(data)
        if len(data) != t.nbytes:
            raise MLFError(
                f"standalone input {t.name!r}: {len(data)} bytes given, the model needs {t.nbytes}"
            )
        datas.append(data)
    return datas


def _backend_workspace(workspace_bytes: int) -> list[str]:
    """TVMBackendAllocWorkspace & co. for TVM archives that allocate at run time: a LIFO
    bump allocator (TVM's AOT code frees in reverse order) over a static pool of the
    metadata's workspace size plus alignment slack."""
    pool = workspace_bytes + 16 * 64 + 256
    return [
        "/* TVM's backend workspace API, for archives whose code allocates at run time. */",
        f"static uint8_t mt_tvm_pool[{pool}] MT_ALIGN16;",
        "static size_t mt_tvm_top;",
        "void *TVMBackendAllocWorkspace(int device_type, int device_id, uint64_t nbytes,",
        "                               int dtype_code_hint, int dtype_bits_hint) {",
        "  size_t start = (mt_tvm_top + 15u) & ~(size_t)15u;",
        "  (void)device_type; (void)device_id; (void)dtype_code_hint; (void)dtype_bits_hint;",
        "  if (start > sizeof(mt_tvm_pool) || nbytes > (uint64_t)(sizeof(mt_tvm_pool) - start)) {",
        "    return NULL;",
        "  }",
        "  mt_tvm_top = start + (size_t)nbytes;",
        "  return mt_tvm_pool + start;",
        "}",
        "int TVMBackendFreeWorkspace(int device_type, int device_id, void *ptr) {",
        "  uint8_t *p = (uint8_t *)ptr;",
        "  (void)device_type; (void)device_id;",
        "  if (p < mt_tvm_pool || p >= mt_tvm_pool + sizeof(mt_tvm_pool)) {",
        "    return -1;",
        "  }",
        "  mt_tvm_top = (size_t)(p - mt_tvm_pool); /* LIFO: everything above is free too */",
        "  return 0;",
        "}",
        "void TVMAPISetLastError(const char *msg) { (void)msg; }",
        "",
    ]


def write_model_glue(
    mlf_dir: str | Path, out_dir: str | Path, *, standalone_input: dict[str, bytes] | None = None
) -> list[Path]:
    """Write ``mt_model_glue.c`` (and, with `standalone_input`, ``mt_standalone_input.c``).

    `standalone_input` maps an input's name (or ``input_<i>``) to its raw bytes; inputs not
    given are zero. Without it the (empty) standalone input table lives in the glue file, so
    a project linking every runtime source always links. Returns the written paths.
    """
    info = read_model_info(mlf_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = info.name
    lines = [
        "/* Generated by microtvm_tasks.runtime.glue from the Model Library Format metadata.",
        f" * Model {n!r}: {len(info.inputs)} input(s), {len(info.outputs)} output(s). Do not edit:",
        " * regenerating the project rewrites it. */",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "",
        '#include "mt_model.h"',
        f'#include "tvmgen_{n}.h"',
        "",
        "#if defined(__GNUC__)",
        "#define MT_ALIGN16 __attribute__((aligned(16)))",
        "#else",
        "#define MT_ALIGN16",
        "#endif",
        "",
    ]
    for prefix, tensors in (("mt_in_", info.inputs), ("mt_out_", info.outputs)):
        for i, t in enumerate(tensors):
            lines.append(f"static uint8_t {prefix}{i}[{max(t.nbytes, 1)}] MT_ALIGN16;  /* {t.name} */")
    for f, size in info.workspace_pools.items():
        lines.append(f"static uint8_t mt_pool_{f}[{max(size, 1)}] MT_ALIGN16;")
    lines.append("")
    lines.append(_tensor_table("mt_inputs", info.inputs, "mt_in_"))
    lines.append(_tensor_table("mt_outputs", info.outputs, "mt_out_"))
    lines.append("static int32_t mt_run(void) {")
    lines.append(f"  struct tvmgen_{n}_inputs inputs;")
    lines.append(f"  struct tvmgen_{n}_outputs outputs;")
    args = ["&inputs", "&outputs"]
    if info.workspace_pools:
        lines.append(f"  struct tvmgen_{n}_workspace_pools pools;")
    if info.has_devices:
        lines.append(f"  struct tvmgen_{n}_devices devices = {{0}};")
    for i, t in enumerate(info.inputs):
        lines.append(f"  inputs.{t.c_field} = mt_in_{i};")
    for i, t in enumerate(info.outputs):
        lines.append(f"  outputs.{t.c_field} = mt_out_{i};")
    if info.workspace_pools:
        for f in info.workspace_pools:
            lines.append(f"  pools.{f} = mt_pool_{f};")
        args.append("&pools")
    if info.has_devices:
        args.append("&devices")
    lines.append(f"  return tvmgen_{n}_run({', '.join(args)});")
    lines.append("}")
    lines.append("")
    if info.needs_backend_workspace:
        lines += _backend_workspace(info.workspace_bytes)
    lines.append("const mt_model_t mt_model = {")
    lines.append(f"  {_c_string(n)}, {len(info.inputs)}u, {len(info.outputs)}u, mt_inputs, mt_outputs,")
    ticks = f"tvmgen_{n}_op_ticks" if info.profile_ops else "NULL"
    lines.append(f"  {info.workspace_bytes}u, mt_run, {info.profile_ops}u, {ticks}")
    lines.append("};")
    written = []
    if standalone_input is None:
        lines += [
            "",
            "/* No baked-in input (host_driven project): the standalone demo would run on zeros. */",
            "const uint32_t mt_standalone_num_inputs = 0;",
            "const uint8_t *const mt_standalone_input_data[1] = {NULL};",
            "const uint32_t mt_standalone_input_nbytes[1] = {0};",
        ]
    else:
        datas = _standalone_bytes(info, standalone_input)
        sl = [
            "/* Generated by microtvm_tasks.runtime.glue: the input the aot_standalone_demo runs on. */",
            "#include <stddef.h>",
            "#include <stdint.h>",
            "",
        ]
        for i, d in enumerate(datas):
            sl.append(f"static const uint8_t mt_sa_in_{i}[{max(len(d), 1)}] = {_bytes_initializer(d)};")
        count = len(datas)
        ptrs = ", ".join(f"mt_sa_in_{i}" for i in range(count)) or "NULL"
        sizes = ", ".join(f"{len(d)}u" for d in datas) or "0"
        sl += [
            f"const uint32_t mt_standalone_num_inputs = {count}u;",
            f"const uint8_t *const mt_standalone_input_data[{max(count, 1)}] = {{{ptrs}}};",
            f"const uint32_t mt_standalone_input_nbytes[{max(count, 1)}] = {{{sizes}}};",
            "",
        ]
        sa_path = out_dir / STANDALONE_FILE
        sa_path.write_text("\n".join(sl), encoding="utf-8")
        written.append(sa_path)
    glue_path = out_dir / GLUE_FILE
    glue_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [glue_path, *written]
