"""Model Library Format archives: read, validate, extract safely, write reproducibly.

Writing is done here so that every producer (the built-in compiler, a passthrough of a
TVM archive) gives byte-identical archives for identical content: sorted members, fixed
mtime, uid/gid 0, no user or group names.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import MLFError
from .fsutil import atomic_write_bytes, sha256_file

#: mtime stamped on every member of an archive we write (reproducible output).
FIXED_MTIME = 0


def _dirs_of(names: list[str]) -> list[str]:
    dirs: set[str] = set()
    for name in names:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    return sorted(dirs)


def archive_bytes(members: Mapping[str, bytes]) -> bytes:
    """The bytes of an uncompressed tar holding `members` ({posix relative path: content}).

    Directories are added for every parent, all entries sorted by name, with fixed metadata,
    so the result depends on the content only.
    """
    names = sorted(members)
    for name in names:
        if name.startswith("/") or ".." in name.split("/") or not name:
            raise ValueError(f"unsafe archive member name {name!r}")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for d in _dirs_of(names):
            info = tarfile.TarInfo(f"./{d}")
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = FIXED_MTIME
            tar.addfile(info)
        for name in names:
            data = members[name]
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            info.mode = 0o644
            info.mtime = FIXED_MTIME
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write_archive(out: str | os.PathLike[str], members: Mapping[str, bytes]) -> Path:
    """Write `members` as a reproducible MLF tar at `out`, atomically. Returns the path."""
    out = Path(out)
    atomic_write_bytes(out, archive_bytes(members))
    return out


#: metadata.json version every archive we write has (TVM >= 0.10's layout, "modules" nested).
WRITE_VERSION = 7
#: export_datetime of every archive we write: a fixed stamp keeps the bytes reproducible.
FIXED_EXPORT_DATETIME = "1970-01-01 00:00:00Z"


def tensor_metadata(
    size: int, dtype: str, shape: list[int], quantization: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """One tensor's metadata entry: bytes, dtype, our `shape` extension and, for quantised
    tensors, our `quantization` extension ({"scale", "zero_point"}), in the order read_mlf
    expects and every writer uses."""
    entry: dict[str, Any] = {"size": int(size), "dtype": dtype, "shape": [int(d) for d in shape]}
    if quantization is not None:
        entry["quantization"] = dict(quantization)
    return entry


def build_metadata(
    module_name: str,
    *,
    workspace_bytes: int,
    constants_bytes: int,
    io_bytes: int,
    inputs: Mapping[str, Mapping[str, Any]],
    outputs: Mapping[str, Mapping[str, Any]],
    target: str,
    generator: Mapping[str, str],
) -> dict[str, Any]:
    """The metadata.json of a one-module, full-model AOT archive, as every writer of ours
    lays it out (the compiler, runtime/fake_mlf.py): one builder, so the layout read_mlf
    checks is written in one place.

    `inputs`/`outputs` map tensor names to `tensor_metadata` entries, in the run function's
    argument order. The layout is TVM 0.18's (`tvmc compile --output-format mlf`, metadata
    version 7): the per-device entry under ``memory.functions.main``, beside an (empty)
    ``memory.functions.operator_functions``, which TVM's own templates read (read_mlf also
    takes the flat ``memory.main`` of archives written by earlier versions of this tool).
    """
    main = {
        "device": 1,
        "workspace_size_bytes": workspace_bytes,
        "constants_size_bytes": constants_bytes,
        "io_size_bytes": io_bytes,
        "inputs": {name: dict(t) for name, t in inputs.items()},
        "outputs": {name: dict(t) for name, t in outputs.items()},
    }
    return {
        "version": WRITE_VERSION,
        "modules": {
            module_name: {
                "model_name": module_name,
                "export_datetime": FIXED_EXPORT_DATETIME,
                "style": "full-model",
                "target": [target],
                "executors": ["aot"],
                "memory": {"functions": {"main": [main], "operator_functions": []}},
                "generator": dict(generator),
            }
        },
    }


def metadata_bytes(meta: Mapping[str, Any]) -> bytes:
    """metadata.json's bytes as we write them (indented, keys in insertion order, a final
    newline): the same dict always gives the same bytes."""
    return (json.dumps(meta, indent=2, sort_keys=False) + "\n").encode("utf-8")


# --------------------------------------------------------------------------------------------
# Reading and validating
# --------------------------------------------------------------------------------------------

METADATA_FILE = "metadata.json"

#: metadata.json versions we can read. 3-6 are TVM's single-module layout (3-4 say
#: "runtimes" where later versions say "executors"; 3-5 give "target" as {device: str});
#: 7 (TVM >= 0.10 and our compiler) nests full-model archives under "modules". Operator-style
#: archives keep the single-module layout in every version.
MIN_VERSION = 3
MAX_VERSION = 7

@dataclass(frozen=True)
class DType:
    """One element type, as the compiler, the archive, the glue and the run protocol name it.

    One table so that the C type the compiler emits, the item size the metadata is checked
    against and the code the firmware reports (``enum mt_dtype`` in runtime/mt_model.h) cannot
    drift apart. `code` is None for types the run protocol does not carry.
    """

    name: str
    itemsize: int
    c_type: str
    code: int | None


#: dtype name -> DType: every element type our compiler and runtime know.
DTYPES: dict[str, DType] = {d.name: d for d in (
    DType("int8", 1, "int8_t", 1),
    DType("uint8", 1, "uint8_t", 2),
    DType("int16", 2, "int16_t", 3),
    DType("int32", 4, "int32_t", 4),
    DType("float32", 4, "float", 5),
    DType("int64", 8, "int64_t", 6),
    DType("bool", 1, "uint8_t", None),
)}

#: run-protocol dtype code (``enum mt_dtype``) -> dtype name; the codes never change.
DTYPE_BY_CODE: dict[int, str] = {d.code: d.name for d in DTYPES.values() if d.code is not None}

_DTYPE_RE = re.compile(r"^(u?int|float|bfloat|e4m3_float|e5m2_float)(\d+)(x\d+)?$")


def dtype_itemsize(dtype: str) -> int:
    """Bytes per element of a TVM dtype string ("int8", "float32", "uint16", "bool").

    TVM archives may name types our table lacks (float16, int8x4), so the size is read from
    the name; for the table's own types it is the table's.
    """
    known = DTYPES.get(dtype)
    if known is not None:
        return known.itemsize
    m = _DTYPE_RE.match(dtype)
    if not m:
        raise ValueError(f"unknown dtype {dtype!r}")
    bits = int(m.group(2)) * (int(m.group(3)[1:]) if m.group(3) else 1)
    return max(1, (bits + 7) // 8)


def c_ident(name: str) -> str:
    """A name as a C identifier: every character outside [A-Za-z0-9_] becomes "_", and a
    leading digit (or nothing) gets a "_" in front.

    The one rule for tensor names in the AOT interface header (struct fields, size macros)
    and for model names in C symbols: the compiler emits with it, the glue and the tasks
    look symbols up with it.
    """
    ident = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not ident or ident[0].isdigit():
        ident = "_" + ident
    return ident


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model's main function.

    `shape` comes from our `shape` extension, else [size // itemsize] (TVM archives record
    only byte size and dtype). `scale`/`zero_point` come from our `quantization` extension
    (a number, or a list for per-channel), else None.
    """

    name: str
    dtype: str
    size: int
    shape: list[int]
    scale: float | list[float] | None = None
    zero_point: int | list[int] | None = None

    @property
    def itemsize(self) -> int:
        return dtype_itemsize(self.dtype)

    @property
    def c_ident(self) -> str:
        return c_ident(self.name)

    @property
    def num_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class MLFModule:
    """One compiled model inside an archive (a TVM >= 0.10 archive may hold several)."""

    name: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    workspace_size_bytes: int
    constants_size_bytes: int
    io_size_bytes: int
    executors: list[str]
    target: list[str]
    style: str
    #: False when the archive does not describe the main function's inputs and outputs
    #: (TVM <= 0.10, graph-executor and operator-style archives): then inputs/outputs are [].
    io_described: bool = True
    export_datetime: str | None = None

    @property
    def header(self) -> str:
        """Archive-relative path of the AOT C interface header (present for interface-api=c)."""
        return f"codegen/host/include/tvmgen_{c_ident(self.name)}.h"


@dataclass(frozen=True)
class MLFInfo:
    """What read_mlf learnt about an archive: its metadata, typed, plus its member names."""

    path: Path
    version: int
    modules: list[MLFModule]
    members: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def module(self, name: str | None = None) -> MLFModule:
        """The module called `name`, or the only one when `name` is None."""
        if name is None:
            if len(self.modules) == 1:
                return self.modules[0]
            names = ", ".join(m.name for m in self.modules)
            raise MLFError(f"{self.path}: holds several modules ({names}); say which one to use")
        for m in self.modules:
            if m.name == name:
                return m
        names = ", ".join(m.name for m in self.modules)
        raise MLFError(f"{self.path}: no module named {name!r} (it holds: {names})")


def mlf_hash(path: str | os.PathLike[str]) -> str:
    """sha256 of the archive's bytes (staleness is decided by content, not mtime)."""
    try:
        return sha256_file(path)
    except OSError as e:
        raise MLFError(f"{path}: cannot read Model Library Format archive ({e.strerror or e})") from None


# ---- the tar layer -------------------------------------------------------------------------


def _read_tar_bytes(path: Path) -> bytes:
    """The uncompressed tar bytes of `path` (gzip, bzip2 and xz are undone), checked whole."""
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise MLFError(f"{path}: is a directory, not a Model Library Format archive") from None
    except OSError as e:
        raise MLFError(f"{path}: cannot read Model Library Format archive ({e.strerror or e})") from None
    try:
        if data[:2] == b"\x1f\x8b":
            return gzip.decompress(data)
        if data[:3] == b"BZh":
            return bz2.decompress(data)
        if data[:6] == b"\xfd7zXZ\x00":
            return lzma.decompress(data)
    except (EOFError, OSError, zlib.error, lzma.LZMAError, ValueError) as e:
        raise MLFError(f"{path}: compressed archive is truncated or corrupt ({e}); recreate it") from None
    return data


def _open_tar(path: Path, data: bytes) -> tuple[tarfile.TarFile, list[tarfile.TarInfo]]:
    if not data:
        raise MLFError(f"{path}: empty file, not a Model Library Format archive (a .tar)")
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:")
        members = tar.getmembers()
    except tarfile.TarError as e:
        what = "truncated" if "end of" in str(e) or "truncated" in str(e) else "not a tar archive"
        raise MLFError(f"{path}: {what} ({e}); expected a Model Library Format .tar") from None
    # tarfile stops silently when the data ends inside a header or right after a member;
    # a whole archive has its members' data and then an all-zero end-of-archive block.
    end = 0
    for m in members:
        end = max(end, m.offset_data + ((m.size + 511) // 512) * 512 if m.isreg() else m.offset_data)
    trailer = data[end:end + 512]
    if len(trailer) < 512 or trailer.strip(b"\0"):
        tar.close()
        raise MLFError(
            f"{path}: truncated tar archive (no end-of-archive marker after {len(members)} members); "
            "recreate or re-download it"
        )
    return tar, members


def _norm_name(name: str) -> str:
    """Member name without leading "./" and trailing "/" ("" for the archive root)."""
    while name.startswith("./"):
        name = name[2:]
    name = name.rstrip("/")
    return "" if name == "." else name


def _check_members(path: Path, members: list[tarfile.TarInfo]) -> None:
    """Refuse anything that could write outside the extraction directory, before writing."""
    symlinks: set[str] = set()
    regular: set[str] = set()
    for m in members:
        raw = m.name
        name = _norm_name(raw)
        if raw.startswith("/") or raw.startswith("\\") or re.match(r"^[A-Za-z]:", raw):
            raise MLFError(f"{path}: unsafe member {raw!r} (absolute path); refusing to extract it")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise MLFError(f"{path}: unsafe member {raw!r} (contains '..'); refusing to extract it")
        if "\0" in raw:
            raise MLFError(f"{path}: unsafe member {raw!r} (NUL in name); refusing to extract it")
        # No member may be written through a symlink the archive itself created: that is how
        # a lexically harmless name ends up outside the tree.
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in symlinks:
                raise MLFError(
                    f"{path}: unsafe member {raw!r} (goes through the symlink {'/'.join(parts[:i])!r}); "
                    "refusing to extract it"
                )
        if m.ischr() or m.isblk() or m.isfifo():
            kind = "character device" if m.ischr() else "block device" if m.isblk() else "FIFO"
            raise MLFError(f"{path}: unsafe member {raw!r} ({kind}); refusing to extract it")
        if m.issym():
            target = m.linkname
            if target.startswith("/") or re.match(r"^[A-Za-z]:", target):
                raise MLFError(
                    f"{path}: unsafe symlink {raw!r} -> {target!r} (absolute target); refusing to extract it"
                )
            base = parts[:-1]
            for p in target.split("/"):
                if p in ("", "."):
                    continue
                if p == "..":
                    if not base:
                        raise MLFError(
                            f"{path}: unsafe symlink {raw!r} -> {target!r} (points outside the archive); "
                            "refusing to extract it"
                        )
                    base.pop()
                else:
                    base.append(p)
                    if "/".join(base) in symlinks:
                        raise MLFError(
                            f"{path}: unsafe symlink {raw!r} -> {target!r} (chains through another "
                            "symlink); refusing to extract it"
                        )
            symlinks.add("/".join(parts))
        elif m.islnk():
            target = _norm_name(m.linkname)
            tparts = [p for p in target.split("/") if p not in ("", ".")]
            if m.linkname.startswith("/") or ".." in tparts or "/".join(tparts) not in regular:
                raise MLFError(
                    f"{path}: unsafe hard link {raw!r} -> {m.linkname!r} (target is not a file earlier in "
                    "the archive); refusing to extract it"
                )
            regular.add("/".join(parts))
        elif m.isreg():
            regular.add("/".join(parts))
        elif not m.isdir():
            raise MLFError(
                f"{path}: unsupported member {raw!r} (tar type {m.type!r}); refusing to extract it"
            )


# ---- metadata ------------------------------------------------------------------------------


class _Bad(Exception):
    """A metadata problem; read_mlf turns it into a one-line MLFError naming the file."""


def _int(d: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    if key not in d:
        if default is not None:
            return default
        raise _Bad(f"{where} has no '{key}'")
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise _Bad(f"{where}.{key} should be a non-negative integer, got {v!r}")
    return v


def _str_list(v: Any, where: str) -> list[str]:
    if isinstance(v, str):
        return [v]
    if isinstance(v, Mapping):  # versions <= 5: {device_type: target string}
        v = [v[k] for k in sorted(v, key=lambda k: (len(str(k)), str(k)))]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _Bad(f"{where} should be a list of strings, got {v!r}")
    return list(v)


def _num_or_list(v: Any, kind: type, where: str) -> Any:
    def ok(x: Any) -> bool:
        if isinstance(x, bool):
            return False
        return isinstance(x, int) if kind is int else isinstance(x, (int, float))

    if ok(v):
        return kind(v)
    if isinstance(v, list) and v and all(ok(x) for x in v):
        return [kind(x) for x in v]
    raise _Bad(f"{where} should be a number or a list of numbers, got {v!r}")


def _tensors(d: Any, where: str) -> list[TensorSpec]:
    if not isinstance(d, Mapping):
        raise _Bad(f"{where} should be an object of tensors, got {type(d).__name__}")
    out = []
    for name, spec in d.items():
        w = f"{where}[{name!r}]"
        if not isinstance(spec, Mapping):
            raise _Bad(f"{w} should be an object")
        dtype = spec.get("dtype")
        if not isinstance(dtype, str):
            raise _Bad(f"{w} has no 'dtype' string")
        try:
            itemsize = dtype_itemsize(dtype)
        except ValueError:
            raise _Bad(f"{w}.dtype {dtype!r} is not a known dtype") from None
        size = _int(spec, "size", w)
        if "shape" in spec:
            shape = spec["shape"]
            if not isinstance(shape, list) or not all(
                isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in shape
            ):
                raise _Bad(f"{w}.shape should be a list of non-negative integers, got {shape!r}")
            n = 1
            for x in shape:
                n *= x
            if n * itemsize != size:
                raise _Bad(f"{w}: shape {shape} of {dtype} is {n * itemsize} bytes but size says {size}")
        else:
            if size % itemsize:
                raise _Bad(f"{w}: size {size} is not a multiple of the {dtype} item size {itemsize}")
            shape = [size // itemsize]
        scale = zero_point = None
        q = spec.get("quantization")
        if q is not None:
            if not isinstance(q, Mapping) or "scale" not in q or "zero_point" not in q:
                raise _Bad(f"{w}.quantization should be an object with 'scale' and 'zero_point'")
            scale = _num_or_list(q["scale"], float, f"{w}.quantization.scale")
            zero_point = _num_or_list(q["zero_point"], int, f"{w}.quantization.zero_point")
        out.append(TensorSpec(str(name), dtype, size, list(shape), scale, zero_point))
    return out


def _module(name_hint: str | None, d: Any, where: str, version: int) -> MLFModule:
    if not isinstance(d, Mapping):
        raise _Bad(f"{where} should be an object")
    name = d.get("model_name", name_hint)
    if not isinstance(name, str) or not name:
        raise _Bad(f"{where} has no 'model_name' string")
    style = d.get("style", "full-model")
    if not isinstance(style, str):
        raise _Bad(f"{where}.style should be a string")
    exec_key = "executors" if "executors" in d or version >= 5 else "runtimes"
    executors = _str_list(d.get(exec_key, []), f"{where}.{exec_key}")
    if "target" not in d:
        raise _Bad(f"{where} has no 'target'")
    target = _str_list(d["target"], f"{where}.target")
    memory = d.get("memory")
    if not isinstance(memory, Mapping):
        raise _Bad(f"{where} has no 'memory' object")
    inputs: list[TensorSpec] = []
    outputs: list[TensorSpec] = []
    workspace = constants = io_size = 0
    described = False
    if style == "full-model":
        # TVM nests the per-device entries under memory.functions.main; accept them directly
        # under memory.main too (an early draft of our compiler's layout).
        funcs = memory.get("functions", memory)
        if not isinstance(funcs, Mapping) or not isinstance(funcs.get("main"), list):
            raise _Bad(f"{where}.memory.functions.main should be a list")
        for i, entry in enumerate(funcs["main"]):
            w = f"{where}.memory.functions.main[{i}]"
            if not isinstance(entry, Mapping):
                raise _Bad(f"{w} should be an object")
            workspace += _int(entry, "workspace_size_bytes", w)
            constants += _int(entry, "constants_size_bytes", w, 0)
            io_size += _int(entry, "io_size_bytes", w, 0)
            if "inputs" in entry or "outputs" in entry:
                if described:
                    raise _Bad(f"{w}: inputs/outputs given for more than one device")
                inputs = _tensors(entry.get("inputs", {}), f"{w}.inputs")
                outputs = _tensors(entry.get("outputs", {}), f"{w}.outputs")
                described = True
    export = d.get("export_datetime")
    return MLFModule(
        name=name, inputs=inputs, outputs=outputs, workspace_size_bytes=workspace,
        constants_size_bytes=constants, io_size_bytes=io_size, executors=executors,
        target=target, style=style, io_described=described,
        export_datetime=export if isinstance(export, str) else None,
    )


def parse_metadata(meta: Any, source: str | os.PathLike[str] = METADATA_FILE) -> tuple[int, list[MLFModule]]:
    """Validate a parsed metadata.json; returns (version, modules). MLFError names `source`."""
    try:
        if not isinstance(meta, Mapping):
            raise _Bad("metadata.json is not a JSON object")
        version = meta.get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise _Bad("metadata.json has no integer 'version'")
        if not MIN_VERSION <= version <= MAX_VERSION:
            raise MLFError(
                f"{source}: metadata.json version {version} is not supported (this tool reads versions "
                f"{MIN_VERSION} to {MAX_VERSION}); export the model with TVM <= 0.18 or `microtvm compile`"
            )
        if "modules" in meta:
            mods = meta["modules"]
            if not isinstance(mods, Mapping) or not mods:
                raise _Bad("metadata.json 'modules' should be a non-empty object")
            modules = [_module(k, v, f"modules[{k!r}]", version) for k, v in mods.items()]
        else:
            modules = [_module(None, meta, "metadata.json", version)]
    except _Bad as e:
        v = meta.get("version") if isinstance(meta, Mapping) else None
        known = isinstance(v, int) and not isinstance(v, bool)
        of = f" (version {v})" if known else ""
        raise MLFError(f"{source}: invalid Model Library Format metadata{of}: {e}") from None
    names = [m.name for m in modules]
    if len(set(names)) != len(names):
        raise MLFError(f"{source}: invalid Model Library Format metadata: duplicate module names {names}")
    return version, modules


def _parse_metadata_bytes(raw: bytes, source: Path) -> dict[str, Any]:
    try:
        meta = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise MLFError(f"{source}: metadata.json is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise MLFError(
            f"{source}: metadata.json is not valid JSON (line {e.lineno} column {e.colno}: {e.msg})"
        ) from None
    return meta


def _read_dir(path: Path) -> MLFInfo:
    meta_path = path / METADATA_FILE
    if not meta_path.is_file():
        raise MLFError(f"{path}: no metadata.json, so not an extracted Model Library Format archive")
    meta = _parse_metadata_bytes(meta_path.read_bytes(), path)
    version, modules = parse_metadata(meta, path)
    members = [p.relative_to(path).as_posix() for p in sorted(path.rglob("*")) if p.is_file()]
    return MLFInfo(path=path, version=version, modules=modules, members=members, metadata=meta)


def _read_archive(path: Path) -> tuple[MLFInfo, tarfile.TarFile, list[tarfile.TarInfo]]:
    data = _read_tar_bytes(path)
    tar, members = _open_tar(path, data)
    try:
        _check_members(path, members)
        meta_member = None
        for m in members:
            if _norm_name(m.name) == METADATA_FILE:
                meta_member = m
        if meta_member is None or not meta_member.isreg():
            raise MLFError(f"{path}: no metadata.json at the top of the archive, so not Model Library Format")
        f = tar.extractfile(meta_member)
        assert f is not None
        try:
            raw = f.read()
        except tarfile.TarError as e:
            raise MLFError(f"{path}: truncated archive ({e}); recreate it") from None
        meta = _parse_metadata_bytes(raw, path)
        version, modules = parse_metadata(meta, path)
    except BaseException:
        tar.close()
        raise
    names = sorted(_norm_name(m.name) for m in members if m.isreg() or m.islnk())
    return MLFInfo(path=path, version=version, modules=modules, members=names, metadata=meta), tar, members


def read_mlf(path: str | os.PathLike[str]) -> MLFInfo:
    """Read and validate an MLF archive (a .tar, optionally compressed, or an extracted directory).

    Also checks every member is safe to extract, so a valid answer means extract_mlf will work.
    """
    path = Path(path)
    if path.is_dir():
        return _read_dir(path)
    if not path.exists():
        raise MLFError(f"{path}: no such Model Library Format archive")
    info, tar, _ = _read_archive(path)
    tar.close()
    return info


def extract_mlf(
    path: str | os.PathLike[str], dest: str | os.PathLike[str], *, replace: bool = False
) -> MLFInfo:
    """Validate the archive, then extract it into `dest` (created; must be new or empty).

    Every member is checked before anything is written (no absolute paths, no '..', no
    devices, no links leaving the tree); extraction then also goes through tarfile's
    "data" filter where this Python has it. Files land in a temporary directory beside
    `dest` that is renamed into place, so `dest` is either complete or absent. With
    `replace`, an existing non-empty `dest` is replaced; otherwise it is an error.
    """
    path = Path(path)
    dest = Path(dest)
    if not path.exists():
        raise MLFError(f"{path}: no such Model Library Format archive")
    if dest.exists() and (not dest.is_dir() or (any(dest.iterdir()) and not replace)):
        raise MLFError(f"{dest}: exists and is not an empty directory; will not extract {path} over it")
    info, tar, members = _read_archive(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        with tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, members=members, filter="data")
            else:  # Python < 3.11.4: our _check_members is the only guard; drop modes/owners ourselves
                tar.extractall(tmp, members=members)
                for p in tmp.rglob("*"):
                    if not p.is_symlink():
                        mode = p.stat().st_mode
                        os.chmod(p, stat.S_IMODE(mode) & 0o755 | (0o700 if p.is_dir() else 0o600))
        # Our archives carry mtime 0 (reproducible bytes). Kept as is, every extracted source
        # would look older than any object file a previous build left, and make would not
        # rebuild after the model changed: stamp the extraction time instead.
        for p in tmp.rglob("*"):
            if not p.is_symlink():
                os.utime(p)
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            os.replace(dest, old / "d")
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except tarfile.TarError as e:
        raise MLFError(f"{path}: cannot extract ({e}); the archive is corrupt or unsafe") from None
    except OSError as e:
        raise MLFError(f"{path}: cannot extract into {dest} ({e})") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return MLFInfo(path=path, version=info.version, modules=info.modules, members=info.members,
                   metadata=info.metadata)


# ---- the AOT C interface header ----------------------------------------------------------


_STRUCT_RE = r"struct\s+{tag}\s*\{{(?P<body>[^}}]*)\}}\s*;"
#: an integer #define; hex before decimal, or "0x30" would read as 0
_DEFINE_RE = re.compile(r"#define\s+([A-Za-z_][A-Za-z0-9_]*)\s+\(?\s*(0x[0-9a-fA-F]+|\d+)[uUlL]*\s*\)?")


@dataclass(frozen=True)
class InterfaceHeader:
    """What an AOT C interface header (``tvmgen_<name>.h``) declares.

    Field order is the struct's (= the run function's argument order). Archives written by
    TVM <= 0.18 may also pass ``struct tvmgen_<name>_workspace_pools`` (USMP static pools,
    sized by ``*_WORKSPACE_POOL_SIZE`` macros) or ``struct tvmgen_<name>_devices`` to the run
    function; both are recorded so the glue can supply them.
    """

    model_name: str
    inputs: list[str]
    outputs: list[str]
    #: every integer #define of the header, name -> value
    macros: dict[str, int]
    #: pool field -> bytes, when the run function takes workspace pools
    workspace_pools: dict[str, int] = field(default_factory=dict)
    has_devices: bool = False

    @property
    def prefix(self) -> str:
        """``TVMGEN_<NAME>``, the prefix of the header's macros."""
        return f"TVMGEN_{c_ident(self.model_name).upper()}"

    def size(self, c_field: str) -> int | None:
        """The ``TVMGEN_<NAME>_<FIELD>_SIZE`` macro of an input/output field (TVM >= 0.11, ours)."""
        return self.macros.get(f"{self.prefix}_{c_field.upper()}_SIZE")


def _struct_fields(text: str, tag: str, source: str) -> list[str] | None:
    m = re.search(_STRUCT_RE.format(tag=re.escape(tag)), text)
    if m is None:
        return None
    fields = []
    for decl in m.group("body").split(";"):
        decl = decl.strip()
        if not decl:
            continue
        fm = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*$", decl)
        if fm is None:
            raise MLFError(f"{source}: cannot parse the field declaration {decl!r} in struct {tag}")
        fields.append(fm.group(1))
    return fields


def read_interface_header(text: str, model_name: str, source: str | os.PathLike[str] = "") -> InterfaceHeader:
    """Parse a ``tvmgen_<name>.h``; MLFError (naming `source`, else the header's file name)
    when it lacks the inputs/outputs structs or the run prototype."""
    tvmgen = f"tvmgen_{c_ident(model_name)}"
    where = str(source) or f"{tvmgen}.h"
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    macros = {m.group(1): int(m.group(2), 0) for m in _DEFINE_RE.finditer(text)}
    inputs = _struct_fields(text, f"{tvmgen}_inputs", where)
    outputs = _struct_fields(text, f"{tvmgen}_outputs", where)
    if inputs is None or outputs is None:
        raise MLFError(f"{where}: no struct {tvmgen}_inputs/outputs; not an AOT C interface header")
    m = re.search(rf"{re.escape(tvmgen)}_run\s*\((?P<params>[^)]*)\)", text)
    if m is None:
        raise MLFError(f"{where}: no {tvmgen}_run prototype")
    params = m.group("params")
    pools: dict[str, int] = {}
    if f"{tvmgen}_workspace_pools" in params:
        pool_macros = {k: v for k, v in macros.items() if k.endswith("_WORKSPACE_POOL_SIZE")}
        for f in _struct_fields(text, f"{tvmgen}_workspace_pools", where) or []:
            size = pool_macros.get(f"{tvmgen.upper()}_{f.upper()}_WORKSPACE_POOL_SIZE")
            if size is None:
                cands = [v for k, v in pool_macros.items() if f.upper() in k]
                if len(cands) != 1:
                    raise MLFError(f"{where}: no *_WORKSPACE_POOL_SIZE macro for workspace pool {f!r}")
                size = cands[0]
            pools[f] = size
    return InterfaceHeader(model_name=model_name, inputs=inputs, outputs=outputs, macros=macros,
                           workspace_pools=pools, has_devices=f"{tvmgen}_devices" in params)


def parse_interface_header(text: str, model_name: str) -> dict[str, list[tuple[str, int | None]]]:
    """{"inputs": [(c field, size or None)], "outputs": [...]} from a tvmgen_<name>.h
    (read_interface_header, in the shape of (field, size) pairs)."""
    h = read_interface_header(text, model_name)
    return {kind: [(f, h.size(f)) for f in fields] for kind, fields in (("inputs", h.inputs),
                                                                        ("outputs", h.outputs))}
