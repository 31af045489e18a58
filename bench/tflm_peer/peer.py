"""TFLite Micro as a local peer on the qemu_arm boards: sources, libraries, firmwares, runs.

Why this exists: the speed metric of the project is QEMU's exact instruction count per
inference on the emulated MPS2 boards. The figure to beat is TFLite Micro's (reference
kernels and CMSIS-NN kernels) measured with the *same* counter, board files and compiler,
so that the ratio ours / TFLM means something. This module builds TFLM from fetched source
trees (never committed, never downloaded by the build: TFLM's Makefile is pointed at
copies prepared here), links it with a small harness of ours (harness/main.cc) and the
qemu_arm template's startup code, UART and timer, and boots the result in QEMU.

Used by build.py (build everything), run.py (print counts) and bench/qemu_cycles.py
(--tflm-peer: the peer columns beside ours).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import select
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TEMPLATE = REPO / "templates" / "qemu_arm"
HARNESS = HERE / "harness"
RUNTIME = REPO / "microtvm_tasks" / "runtime"
MANIFEST = "peer.json"

#: kernel sets built, as TFLM's OPTIMIZED_KERNEL_DIR ("ref" is TFLM's reference kernels).
KERNELS = ("ref", "cmsis_nn")

#: where TFLM's Makefile looks for its third-party code (relative to the TFLM tree).
DOWNLOADS = Path("tensorflow/lite/micro/tools/make/downloads")
TFLM_MAKEFILE = "tensorflow/lite/micro/tools/make/Makefile"

#: TFLM's Makefile includes every example, integration test and benchmark, and their
#: generators run at parse time (some need Pillow). The library needs none of them.
MAKE_SKIP = (
    "MICRO_LITE_EXAMPLE_TESTS=",
    "MICRO_LITE_INTEGRATION_TESTS=",
    "MICRO_LITE_GEN_MUTABLE_OP_RESOLVER_TEST=",
    "MICRO_LITE_LAYER_BY_LAYER_OUTPUT=",
    "OLD_MICRO_LITE_BENCHMARKS=",
    "MICRO_LITE_BENCHMARKS=",
)

#: BUILD_TYPE=release_with_logs: TFLM's own advice for benchmarking (NDEBUG, logs kept).
BUILD_TYPE = "release_with_logs"
#: -O2 everywhere (TFLM's default builds the framework at -Os and kernels at -O2); ours is
#: measured at -O2, so is the peer.
OPT = "-O2"

#: the final firmware's arena is the probe's arena_used_bytes rounded up to this, plus the
#: first of ARENA_SLACK that works: arena_used_bytes() leaves out the temporary allocations
#: kernels make while they prepare, so exactly that much is too little.
ARENA_ALIGN = 16
ARENA_SLACK = (64, 256, 1024, 4096, 16384, 65536)
#: the probe firmware's arena (the boards have 4 MiB of RAM).
PROBE_ARENA_BYTES = 2 * 1024 * 1024

EXIT_RE = re.compile(rb"\*\*\* MT_QEMU_ARM_EXIT code=0x([0-9a-f]{8})")
FAULT_MARKER = b"*** MT_QEMU_ARM_FAULT "


class PeerError(Exception):
    """A step of the peer build or run failed; the message says which and why."""


# ---------------------------------------------------------------------------------------
# Third-party sources: what TFLM pins, where it goes, how it is patched
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dep:
    """One third-party tree TFLM's Makefile would download into tools/make/downloads/."""

    key: str  #: command-line / environment name (e.g. "cmsis_nn": --cmsis-nn, TFLM_PEER_CMSIS_NN)
    repo: str  #: its public GitHub repository (the fetch tool's name for it)
    dest: str  #: directory under downloads/
    patch: str | None = None  #: TFLM's patch for it, relative to the TFLM tree
    needed_for: tuple[str, ...] = KERNELS  #: kernel sets whose build needs it


DEPS = (
    Dep(
        "flatbuffers",
        "google/flatbuffers",
        "flatbuffers",
        "tensorflow/lite/micro/tools/make/flatbuffers.patch",
    ),
    Dep("gemmlowp", "google/gemmlowp", "gemmlowp"),
    Dep("ruy", "google/ruy", "ruy"),
    Dep("kissfft", "mborgerding/kissfft", "kissfft", "third_party/kissfft/kissfft.patch"),
    Dep("cmsis", "ARM-software/CMSIS_6", "cmsis"),
    Dep("cortex_dfp", "ARM-software/Cortex_DFP", "cmsis/Cortex_DFP"),
    Dep("cmsis_nn", "ARM-software/CMSIS-NN", "cmsis_nn", needed_for=("cmsis_nn",)),
)
TFLM_REPO = "tensorflow/tflite-micro"


def _read(tree: Path, rel: str) -> str:
    try:
        return (tree / rel).read_text()
    except OSError:
        return ""


def pinned_versions(tflm: Path) -> dict[str, str]:
    """The commit or tag TFLM's download scripts name for each dependency (absent: unknown).

    These are the versions TFLM is tested with; build.py exports exactly these from the
    fetched repositories when they contain them.
    """
    make = "tensorflow/lite/micro/tools/make/"
    pins: dict[str, str] = {}
    text = _read(tflm, make + "flatbuffers_download.sh")
    m = re.search(r'ZIP_PREFIX="(v[^"]+)"', text)
    if m:
        pins["flatbuffers"] = m.group(1)
    inc = _read(tflm, make + "third_party_downloads.inc")
    for key, var in (("gemmlowp", "GEMMLOWP_URL"), ("ruy", "RUY_URL")):
        m = re.search(var + r'\s*:?=\s*"?[^"\n]*/archive/([0-9a-f]{40})\.zip', inc)
        if m:
            pins[key] = m.group(1)
    m = re.search(r'KISSFFT_URL\s*:?=\s*"?[^"\n]*/tags/([^/"\n]+)\.zip', inc)
    if m:
        pins["kissfft"] = m.group(1)
    prefixes = re.findall(r'ZIP_PREFIX="([0-9a-f]{40})"', _read(tflm, make + "ext_libs/cmsis_download.sh"))
    if prefixes:
        pins["cmsis"] = prefixes[0]
    if len(prefixes) > 1:
        pins["cortex_dfp"] = prefixes[1]
    m = re.search(r'ZIP_PREFIX_NN="([0-9a-f]{40})"', _read(tflm, make + "ext_libs/cmsis_nn_download.sh"))
    if m:
        pins["cmsis_nn"] = m.group(1)
    return pins


def _is_bare_git(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and not (path / ".git").exists()


def _git(git_dir: Path, *args: str) -> str:
    return subprocess.run(
        ["git", f"--git-dir={git_dir}", *args], capture_output=True, text=True, check=True, timeout=300
    ).stdout.strip()


def export_tree(src: Path, dest: Path, ref: str | None) -> dict[str, str]:
    """Copy the source tree `src` to `dest`; returns where it came from (for the manifest).

    `src` is a bare git directory (what the fetch tool brings: then `ref` is exported when
    the repository has it, else HEAD), a git work tree (copied as it is, its HEAD recorded)
    or a plain directory (copied).
    """
    src = Path(src).resolve()
    if not src.exists():
        raise PeerError(f"{src}: no such source tree")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if _is_bare_git(src):
        commit = None
        if ref:
            try:
                commit = _git(src, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
            except subprocess.CalledProcessError:
                commit = None
        used = ref if commit else "HEAD"
        if not commit:
            commit = _git(src, "rev-parse", "HEAD^{commit}")
        with subprocess.Popen(["git", f"--git-dir={src}", "archive", commit], stdout=subprocess.PIPE) as gitp:
            subprocess.run(["tar", "-x", "-C", str(dest)], stdin=gitp.stdout, check=True, timeout=600)
            if gitp.wait() != 0:
                raise PeerError(f"git archive {commit} of {src} failed")
        return {"source": str(src), "ref": used, "commit": commit, "pinned": ref or "", "kind": "git"}
    shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)
    info = {"source": str(src), "ref": "", "commit": "", "pinned": ref or "", "kind": "directory"}
    if (src / ".git").exists():
        try:
            info["commit"] = _git(src / ".git", "rev-parse", "HEAD")
        except (subprocess.CalledProcessError, OSError):
            pass
    return info


def apply_patch(tree: Path, patch: Path) -> str:
    """Apply TFLM's patch to a third-party tree unless it is already applied."""
    already = subprocess.run(
        ["patch", "-p1", "-R", "--dry-run", "-s", "-f", "-i", str(patch)], cwd=tree, capture_output=True
    )
    if already.returncode == 0:
        return "already applied"
    proc = subprocess.run(["patch", "-p1", "-f", "-i", str(patch)], cwd=tree, capture_output=True, text=True)
    if proc.returncode != 0:
        raise PeerError(f"{patch} does not apply to {tree}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return "applied"


def prepare_sources(paths: dict[str, Path], out: Path, kernels: tuple[str, ...]) -> dict[str, Any]:
    """Lay out out/src/tflite-micro with every dependency in its downloads/ directory.

    `paths` maps "tflm" and each Dep.key to a source tree. Returns the provenance record.
    """
    if "tflm" not in paths:
        raise PeerError("the TFLite Micro tree is required (--tflm or TFLM_PEER_TFLM)")
    tree = out / "src" / "tflite-micro"
    record: dict[str, Any] = {"tflm": export_tree(paths["tflm"], tree, None)}
    if not (tree / TFLM_MAKEFILE).is_file():
        raise PeerError(f"{paths['tflm']}: not a TFLite Micro tree (no {TFLM_MAKEFILE})")
    pins = pinned_versions(tree)
    downloads = tree / DOWNLOADS
    downloads.mkdir(parents=True, exist_ok=True)
    missing = []
    for dep in DEPS:
        if not set(dep.needed_for) & set(kernels):
            continue
        if dep.key not in paths:
            missing.append(dep)
            continue
        dest = downloads / dep.dest
        info = export_tree(paths[dep.key], dest, pins.get(dep.key))
        if dep.patch:
            info["patch"] = f"{dep.patch}: {apply_patch(dest, tree / dep.patch)}"
        record[dep.key] = info
    if missing:
        names = ", ".join(f"--{d.key.replace('_', '-')} (github:{d.repo})" for d in missing)
        raise PeerError(f"missing source trees: {names}")
    # TFLM's pigweed download is only used by its tests; the script skips an existing dir.
    (downloads / "pigweed").mkdir(exist_ok=True)
    return record


# ---------------------------------------------------------------------------------------
# Boards (the qemu_arm template's data) and the TFLM library
# ---------------------------------------------------------------------------------------


def template_module() -> ModuleType:
    """The qemu_arm template's server module (boards, linker script, firmware tree)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    spec = importlib.util.spec_from_file_location(
        "qemu_arm_server_for_peer", TEMPLATE / "microtvm_api_server.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def board_info(board_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(board, qemu settings) from templates/qemu_arm/boards.json."""
    return template_module().board_config(board_name)


def tflm_arch(board: dict[str, Any]) -> list[str]:
    """TFLM cortex_m_generic make variables giving the board's CPU flags (boards.json cflags)."""
    cpu, fpu = board["cpu"], bool(board["fpu"])
    flags = board["cflags"]
    fpu_flag = next((f.split("=", 1)[1] for f in flags if f.startswith("-mfpu=")), None)
    arch = f"{cpu}+fp" if fpu else cpu
    if cpu == "cortex-m4" and not fpu:
        arch = "cortex-m4"
    args = [f"TARGET_ARCH={arch}"]
    if fpu_flag:
        args.append(f"FPU={fpu_flag}")
    return args


def toolchain_root() -> str:
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None:
        raise PeerError(
            "arm-none-eabi-gcc not found; apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi"
        )
    return str(Path(gcc).parent) + "/"


def make_args(board: dict[str, Any], kernels: str) -> list[str]:
    """The TFLM make command line (after `make -f Makefile`) for one board and kernel set."""
    args = [
        "TARGET=cortex_m_generic",
        *tflm_arch(board),
        "TOOLCHAIN=gcc",
        f"TARGET_TOOLCHAIN_ROOT={toolchain_root()}",
        f"BUILD_TYPE={BUILD_TYPE}",
        f"CORE_OPTIMIZATION_LEVEL={OPT}",
        f"KERNEL_OPTIMIZATION_LEVEL={OPT}",
        f"THIRD_PARTY_KERNEL_OPTIMIZATION_LEVEL={OPT}",
        *MAKE_SKIP,
    ]
    if kernels != "ref":
        args.append(f"OPTIMIZED_KERNEL_DIR={kernels}")
    return args


#: set by find_python: a directory whose python3 has numpy and Pillow, put first on PATH.
_PY_BIN: Path | None = None


def find_python(bin_dir: Path, python: str | None = None) -> str:
    """A python3 with numpy and Pillow for TFLM's Makefile, linked as bin_dir/python3.

    TFLM's Makefile runs `python3` (specialize_files.py, and generate_cc_arrays.py for its
    own tests, which it evaluates at parse time even when only the library is built).
    """
    global _PY_BIN
    candidates = [python] if python else [sys.executable, "/usr/bin/python3", shutil.which("python3") or ""]
    for cand in candidates:
        if not cand:
            continue
        ok = subprocess.run([cand, "-c", "import numpy, PIL"], capture_output=True).returncode == 0
        if ok:
            bin_dir.mkdir(parents=True, exist_ok=True)
            link = bin_dir / "python3"
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(cand)
            _PY_BIN = bin_dir
            return cand
    raise PeerError(
        "TFLM's Makefile needs a python3 with numpy and Pillow: apt-get install python3-numpy python3-pil "
        "(or pip install numpy pillow), or pass --python"
    )


def _make_env() -> dict[str, str]:
    env = dict(os.environ)
    if _PY_BIN is not None:
        env["PATH"] = f"{_PY_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def make_print(tree: Path, args: list[str], var: str) -> str:
    """A variable of TFLM's Makefile, as it would be used for `args`."""
    proc = subprocess.run(
        ["make", "-s", "-f", TFLM_MAKEFILE, *args, f"print-{var}"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
        env=_make_env(),
    )
    for line in proc.stdout.splitlines():
        if line.startswith(f"{var}="):
            return line[len(var) + 1 :]
    raise PeerError(f"make print-{var} failed in {tree}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def check_cxx_headers() -> None:
    """Fail early, with the package to install, when arm-none-eabi-g++ has no C++ library."""
    probe = subprocess.run(
        ["arm-none-eabi-g++", "-x", "c++", "-E", "-", "-o", os.devnull],
        input="#include <cstddef>\n",
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        raise PeerError(
            "arm-none-eabi-g++ has no C++ standard headers; apt-get install libstdc++-arm-none-eabi-newlib"
        )


def build_library(tree: Path, board_name: str, kernels: str, lib_dir: Path, jobs: int, log: Path) -> dict:
    """Build libtensorflow-microlite.a with TFLM's own Makefile; copy it to `lib_dir`."""
    board, _ = board_info(board_name)
    args = make_args(board, kernels)
    start = time.monotonic()
    with open(log, "w") as f:
        proc = subprocess.run(
            ["make", "-f", TFLM_MAKEFILE, *args, "microlite", f"-j{jobs}"],
            cwd=tree,
            stdout=f,
            stderr=subprocess.STDOUT,
            env=_make_env(),
        )
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        tail = log.read_text()[-3000:]
        raise PeerError(f"TFLM build ({board_name}, {kernels}) failed; see {log}:\n{tail}")
    lib = tree / make_print(tree, args, "MICROLITE_LIB_PATH")
    lib_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(lib, lib_dir / lib.name)
    cxxflags = [f for f in shlex.split(make_print(tree, args, "CXXFLAGS")) if f != "-MD"]
    includes = shlex.split(make_print(tree, args, "INCLUDES"))
    return {
        "lib": str((lib_dir / lib.name).relative_to(lib_dir.parents[1])),
        "make_args": args,
        "cxxflags": cxxflags,
        "includes": [_abs_include(i, tree) for i in includes],
        "build_seconds": round(seconds, 1),
    }


def _abs_include(flag: str, tree: Path) -> str:
    if flag.startswith("-I") and not Path(flag[2:]).is_absolute():
        return "-I" + str((tree / flag[2:]).resolve())
    return flag


# ---------------------------------------------------------------------------------------
# The model: C arrays, the op resolver, the fixed input
# ---------------------------------------------------------------------------------------

_TFLITE_NUMPY = {0: "float32", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16", 9: "int8"}


def model_io(model: Path) -> tuple[list[str], list[tuple[list[int], str]]]:
    """(builtin operator names, [(shape, numpy dtype) per input]) of a .tflite model."""
    import tflite
    from tflite.BuiltinOperator import BuiltinOperator

    names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}
    m = tflite.Model.GetRootAsModel(model.read_bytes(), 0)
    ops = []
    for i in range(m.OperatorCodesLength()):
        oc = m.OperatorCodes(i)
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        if code == BuiltinOperator.CUSTOM:
            raise PeerError(f"{model.name}: custom operator {oc.CustomCode()!r} is not supported by the peer")
        ops.append(names[code])
    if m.SubgraphsLength() != 1:
        raise PeerError(f"{model.name}: {m.SubgraphsLength()} subgraphs; the peer harness handles one")
    sg = m.Subgraphs(0)
    inputs = []
    for j in range(sg.InputsLength()):
        t = sg.Tensors(sg.Inputs(j))
        if t.Type() not in _TFLITE_NUMPY:
            raise PeerError(f"{model.name}: input {j} has TFLite type {t.Type()}")
        inputs.append(
            ([int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else [], _TFLITE_NUMPY[t.Type()])
        )
    return sorted(set(ops)), inputs


def resolver_method(op: str) -> str:
    """MicroMutableOpResolver's Add method for a builtin (CONV_2D -> AddConv2D)."""
    special = {"UNIDIRECTIONAL_SEQUENCE_LSTM": "UnidirectionalSequenceLSTM"}
    if op in special:
        return "Add" + special[op]
    words = []
    for w in op.split("_"):
        words.append(w if re.fullmatch(r"\d+D", w) else w.capitalize())
    return "Add" + "".join(words)


def fixed_inputs(specs: list[tuple[list[int], str]]) -> list[bytes]:
    """The input bytes bench/qemu_cycles.py sends to our firmware, drawn the same way."""
    bench = str(REPO / "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    import qemu_cycles

    return [a.tobytes() for a in qemu_cycles.draw_inputs(specs)]


def _c_bytes(data: bytes, indent: str = "  ") -> str:
    lines = []
    for i in range(0, len(data), 16):
        lines.append(indent + ", ".join(f"0x{b:02x}" for b in data[i : i + 16]) + ",")
    return "\n".join(lines) if lines else indent + "0x00,"


def write_model_sources(model: Path, dest: Path, resolver_header: Path) -> dict[str, Any]:
    """model_data.h/.cc (the model and its fixed input as arrays) and model_ops.h in `dest`."""
    ops, specs = model_io(model)
    known = set(re.findall(r"TfLiteStatus (Add[A-Za-z0-9]+)\(", resolver_header.read_text()))
    methods = [resolver_method(op) for op in ops]
    unknown = [f"{op} ({meth})" for op, meth in zip(ops, methods, strict=True) if meth not in known]
    if unknown:
        raise PeerError(f"{model.name}: no MicroMutableOpResolver method for {', '.join(unknown)}")
    inputs = fixed_inputs(specs)
    data = model.read_bytes()
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "model_data.h").write_text(
        "// Generated by bench/tflm_peer/build.py. Do not edit.\n"
        "#ifndef PEER_MODEL_DATA_H_\n#define PEER_MODEL_DATA_H_\n#include <stddef.h>\n\n"
        f"#define PEER_INPUT_COUNT {len(inputs)}u\n"
        "extern const unsigned char g_peer_model[];\n"
        "extern const unsigned char* const g_peer_inputs[];\n"
        "extern const size_t g_peer_input_bytes[];\n\n#endif\n"
    )
    parts = [
        f"// Generated by bench/tflm_peer/build.py from {model.name}. Do not edit.",
        '#include "model_data.h"',
        "",
        f"// {model.name}, {len(data)} bytes (sha256 {hashlib.sha256(data).hexdigest()}).",
        f"alignas(16) const unsigned char g_peer_model[{len(data)}] = {{",
        _c_bytes(data),
        "};",
    ]
    for i, (raw, (shape, dtype)) in enumerate(zip(inputs, specs, strict=True)):
        parts += [
            f"// input {i}: {dtype} {shape}, numpy default_rng(0) as bench/qemu_cycles.py draws it.",
            f"alignas(16) static const unsigned char g_input_{i}[{max(len(raw), 1)}] = {{",
            _c_bytes(raw),
            "};",
        ]
    refs = ", ".join(f"g_input_{i}" for i in range(len(inputs))) or "nullptr"
    sizes = ", ".join(f"{len(raw)}u" for raw in inputs) or "0u"
    parts += [
        f"const unsigned char* const g_peer_inputs[] = {{{refs}}};",
        f"const size_t g_peer_input_bytes[] = {{{sizes}}};",
        "",
    ]
    (dest / "model_data.cc").write_text("\n".join(parts))
    adds = "\n".join(f"  if (r.{m}() != kTfLiteOk) return kTfLiteError;" for m in methods)
    (dest / "model_ops.h").write_text(
        "// Generated by bench/tflm_peer/build.py: exactly the operators of "
        f"{model.name}. Do not edit.\n"
        "#ifndef PEER_MODEL_OPS_H_\n#define PEER_MODEL_OPS_H_\n"
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n\n'
        f"#define PEER_OP_COUNT {len(methods)}\n\n"
        "template <unsigned int N>\nTfLiteStatus peer_add_ops(tflite::MicroMutableOpResolver<N>& r) {\n"
        f"{adds}\n  return kTfLiteOk;\n}}\n\n#endif\n"
    )
    return {
        "model": str(model),
        "sha256": hashlib.sha256(data).hexdigest(),
        "ops": ops,
        "inputs": [
            {"shape": s, "dtype": d, "hex": raw.hex()} for raw, (s, d) in zip(inputs, specs, strict=True)
        ],
    }


# ---------------------------------------------------------------------------------------
# Firmware: board files + harness + model + library
# ---------------------------------------------------------------------------------------


def _mk_value(text: str, name: str) -> list[str]:
    for line in text.splitlines():
        if line.startswith(f"{name} :="):
            return shlex.split(line.split(":=", 1)[1])
    raise PeerError(f"board.mk has no {name}")


def write_board_tree(dest: Path, board_name: str) -> dict[str, list[str]]:
    """The qemu_arm template's board files, linker script and flags for `board_name`."""
    mod = template_module()
    mod.write_firmware_tree(dest, board_name, with_main=False)
    mk = (dest / "board.mk").read_text()
    return {"cpu_flags": _mk_value(mk, "CPU_FLAGS"), "board_defs": _mk_value(mk, "BOARD_DEFS")}


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise PeerError(f"{what} failed:\n$ {shlex.join(argv)}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")


def compile_board_objects(board_dir: Path, flags: dict[str, list[str]]) -> list[Path]:
    """Compile the template's C board files once per board (same flags as the template)."""
    objs = []
    for src in sorted((board_dir / "src").glob("*.c")):
        obj = board_dir / "obj" / (src.stem + ".o")
        obj.parent.mkdir(parents=True, exist_ok=True)
        _run(
            [
                "arm-none-eabi-gcc",
                *flags["cpu_flags"],
                "-std=c99",
                OPT,
                "-g",
                "-ffunction-sections",
                "-fdata-sections",
                "-Wall",
                "-Wextra",
                "-Werror",
                *flags["board_defs"],
                f"-I{board_dir / 'src'}",
                f"-I{RUNTIME}",
                "-c",
                str(src),
                "-o",
                str(obj),
            ],
            f"compile {src.name}",
        )
        objs.append(obj)
    return objs


def section_sizes(elf: Path) -> dict[str, int]:
    out = subprocess.run(
        ["arm-none-eabi-size", "-B", str(elf)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    text, data, bss = (int(x) for x in out.strip().splitlines()[-1].split()[:3])
    return {"text": text, "data": data, "bss": bss, "flash_bytes": text + data, "ram_bytes": data + bss}


def compile_harness(
    fw_dir: Path, model_dir: Path, lib_info: dict[str, Any], flags: dict[str, list[str]]
) -> list[Path]:
    """Compile the harness and the model arrays with TFLM's own C++ flags (once per image set)."""
    fw_dir.mkdir(parents=True, exist_ok=True)
    cxx = [
        "arm-none-eabi-g++",
        *lib_info["cxxflags"],
        *flags["cpu_flags"],
        OPT,
        "-g",
        *lib_info["includes"],
        f"-I{model_dir}",
        f"-I{RUNTIME}",
    ]
    objs = []
    for src in (HARNESS / "main.cc", model_dir / "model_data.cc"):
        obj = fw_dir / (src.stem + ".o")
        _run([*cxx, "-c", str(src), "-o", str(obj)], f"compile {src.name}")
        objs.append(obj)
    return objs


def link_image(
    elf: Path,
    objs: list[Path],
    board_dir: Path,
    board_objs: list[Path],
    flags: dict[str, list[str]],
    lib: Path,
    arena_bytes: int,
    probe: bool,
) -> Path:
    """arena.cc (the arena of this image) compiled, then everything linked into `elf`."""
    arena_src = elf.with_suffix(".arena.cc")
    arena_src.write_text(
        "// Generated by bench/tflm_peer/build.py: the arena of one image. Do not edit.\n"
        "#include <stddef.h>\n#include <stdint.h>\n"
        f"alignas(16) uint8_t g_peer_arena[{arena_bytes}];\n"
        f"extern const size_t g_peer_arena_bytes = {arena_bytes}u;\n"
        f"extern const int g_peer_probe = {1 if probe else 0};\n"
    )
    arena_obj = arena_src.with_suffix(".o")
    _run(
        [
            "arm-none-eabi-g++",
            *flags["cpu_flags"],
            "-std=c++17",
            OPT,
            "-c",
            str(arena_src),
            "-o",
            str(arena_obj),
        ],
        f"compile {arena_src.name}",
    )
    _run(
        [
            "arm-none-eabi-g++",
            *flags["cpu_flags"],
            "-nostartfiles",
            "--specs=nano.specs",
            "--specs=nosys.specs",
            "-Wl,--gc-sections",
            f"-Wl,-T,{board_dir / 'qemu_arm.ld'}",
            f"-Wl,-Map={elf.with_suffix('.map')}",
            "-o",
            str(elf),
            *map(str, board_objs),
            *map(str, objs),
            str(arena_obj),
            str(lib),
            "-lm",
        ],
        f"link {elf}",
    )
    return elf


# ---------------------------------------------------------------------------------------
# Running a firmware in QEMU
# ---------------------------------------------------------------------------------------


def qemu_argv(elf: Path, machine: str, icount_shift: int) -> list[str]:
    """QEMU as the qemu_arm template runs it, with UART0 on our stdout instead of a socket."""
    return [
        shutil.which("qemu-system-arm") or "qemu-system-arm",
        "-M",
        machine,
        "-display",
        "none",
        "-monitor",
        "none",
        "-nodefaults",
        "-icount",
        f"shift={icount_shift}",
        "-serial",
        "stdio",
        "-kernel",
        str(elf),
    ]


def run_firmware(elf: Path, board_name: str, timeout: float = 600.0) -> dict[str, Any]:
    """Boot `elf` on `board_name` until main() returns; the `peer ...` lines as a dict."""
    board, qemu = board_info(board_name)
    argv = qemu_argv(elf, board["emulator"]["machine"], int(qemu["icount_shift"]))
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    buf = b""
    deadline = time.monotonic() + timeout
    try:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                buf += chunk
                if EXIT_RE.search(buf) or (FAULT_MARKER in buf and buf.rstrip().endswith(b"***")):
                    break
            elif proc.poll() is not None:
                break
    finally:
        proc.kill()
        proc.wait()
    return parse_output(buf, elf)


def parse_output(buf: bytes, elf: Path) -> dict[str, Any]:
    text = buf.decode("utf-8", "replace")
    result: dict[str, Any] = {"outputs": {}, "log": []}
    for line in text.splitlines():
        line = line.strip("\r")
        if line.startswith("tflm "):
            result["log"].append(line[5:])
        if not line.startswith("peer "):
            continue
        parts = line.split(" ", 3)
        key = parts[1]
        if key == "output" and len(parts) >= 3:
            result["outputs"][int(parts[2])] = parts[3] if len(parts) > 3 else ""
        elif key == "error":
            result["error"] = " ".join(parts[2:])
        elif key == "done":
            result["done"] = True
        elif len(parts) >= 3 and parts[2].isdigit():
            result[key] = int(parts[2])
    m = EXIT_RE.search(buf)
    result["exit_code"] = int(m.group(1), 16) if m else None
    if FAULT_MARKER in buf:
        result["error"] = "fault: " + buf[buf.index(FAULT_MARKER) :].decode("utf-8", "replace")[:300]
    elif m is None and "error" not in result:
        result["error"] = f"{elf}: no exit marker (timeout or QEMU died); output tail: {text[-300:]!r}"
    elif "error" not in result and not result.get("done"):
        result["error"] = "firmware stopped before printing `peer done`"
    return result


def load_manifest(out: Path) -> dict[str, Any]:
    path = Path(out) / MANIFEST
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PeerError(f"{path}: not a peer build ({exc}); run bench/tflm_peer/build.py first") from None


def run_model(out: Path, manifest: dict[str, Any], stem: str, board: str) -> dict[str, dict[str, Any]]:
    """Boot every kernel set's firmware of `stem` on `board`: {kernels: result}."""
    results: dict[str, dict[str, Any]] = {}
    fws = manifest.get("models", {}).get(stem, {}).get("firmware", {}).get(board, {})
    for kernels, fw in fws.items():
        if "error" in fw:
            results[kernels] = {"error": fw["error"]}
            continue
        res = run_firmware(Path(out) / fw["elf"], board)
        res.update({k: fw[k] for k in ("flash_bytes", "ram_bytes", "arena_bytes") if k in fw})
        results[kernels] = res
    return results
