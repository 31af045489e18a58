"""`microtvm run PROJECT_DIR`: run the model on a built (and flashed) project.

As the TVM RFC describes `tvmc run --device micro PROJECT_DIR`: the platform and options
given at create time come from the project's `.tvmc.json`, so none are needed here; the
project's own Project API server is started, its transport opened, and the run protocol
(microtvm_tasks/runtime/PROTOCOL.md) loads inputs, runs and reads outputs.

Inputs come from `-i inputs.npz` (arrays `input_0`, ... or named after the model's inputs)
or are filled (`--fill-mode`). For a quantised input, float arrays are quantised with the
model's scale and zero point; quantised outputs are shown with their real values too.
Outputs are saved with `-o outputs.npz` as `output_0`, ...
"""

from __future__ import annotations

import argparse
from typing import Any


def _count(text: str) -> int:
    """A count argument: an integer >= 0 (argparse reports anything else with the flag)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"{n} is negative; give 0 or more")
    return n


def _positive(text: str) -> int:
    n = _count(text)
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def register(subparsers: Any) -> None:
    """Add the `run` subcommand."""
    p = subparsers.add_parser(
        "run",
        help="run the model on a built/flashed project and print or save its outputs",
        description="Run the model of PROJECT_DIR over the run protocol (the project's Project API "
        "transport) with the options remembered at create time.",
    )
    p.add_argument("project_dir", metavar="PROJECT_DIR", help="a generated, built and flashed project")
    p.add_argument("-i", "--inputs", metavar="INPUTS.npz",
                   help="input arrays (input_0, ... or the model's input names); floats are quantised "
                   "for quantised inputs")
    p.add_argument("-o", "--outputs", metavar="OUTPUTS.npz", help="save the outputs as output_0, ...")
    p.add_argument("--fill-mode", choices=["zeros", "ones", "random"], default="random",
                   help="fill inputs not given with -i (default: random, seeded)")
    p.add_argument("--seed", type=int, default=0, help="seed for --fill-mode random (default 0)")
    p.add_argument("--print-top", metavar="N", type=_count, default=0,
                   help="print the N largest values of each output with their indices")
    p.add_argument("--print-time", action="store_true",
                   help="print the device's time per inference (from its tick counter) and the round trip")
    p.add_argument("--repeat", metavar="N", type=_positive, default=1,
                   help="measurements to take (default 1)")
    p.add_argument("--number", metavar="N", type=_positive, default=1,
                   help="runs per measurement, averaged (default 1)")
    p.add_argument("--option", "-O", dest="option", action="append", default=[], metavar="KEY=VALUE",
                   help="override a project option for open_transport (e.g. a serial port)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each device reply")
    p.add_argument("--profile", action="store_true",
                   help="print the ticks of each operator (the project must be built from an archive "
                        "compiled with `microtvm compile --profile`)")
    p.set_defaults(func=run_command)


def _format_values(values: Any, limit: int = 16) -> str:
    import numpy as np

    flat = np.asarray(values).reshape(-1)
    shown = flat[:limit]
    if flat.dtype.kind == "f":
        text = " ".join(f"{v:.6g}" for v in shown)
    else:
        text = " ".join(str(int(v)) for v in shown)
    return text + (f" ... ({flat.size} values)" if flat.size > limit else "")


def _load_inputs(path: str) -> dict[str, Any]:
    import numpy as np

    from .errors import SessionError

    how = "write one with numpy.savez(path, input_0=array, ...)"
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        raise SessionError(f"{path}: no such inputs file") from None
    except OSError as e:
        raise SessionError(f"{path}: cannot read the inputs file ({e.strerror})") from None
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):  # a .npz is a zip archive (empty: no members)
        kind = "a single .npy array" if magic[:4] == b"\x93NUM" else "not a zip archive"
        raise SessionError(f"{path}: not a .npz file of named input arrays ({kind}); {how}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as e:
        first = str(e).splitlines()[0]
        raise SessionError(f"{path}: not a .npz file of input arrays ({first}); {how}") from None
    if not arrays:
        raise SessionError(f"{path}: holds no arrays; name them input_0, ... or after the model's inputs "
                           "(numpy.savez(path, input_0=array))")
    return arrays


def print_result(result: Any, *, print_top: int = 0, print_time: bool = False, out: Any = None) -> None:
    """The human-readable report of a run (shared with the doit run task)."""
    import statistics
    import sys

    import numpy as np

    out = out or sys.stdout
    desc = result.description
    print(f"model {desc.name}: {len(desc.inputs)} input(s), {len(desc.outputs)} output(s), "
          f"arena {desc.arena_bytes} bytes", file=out)
    for t, a in zip(desc.inputs, result.inputs, strict=True):
        q = f", scale {t.scale:.6g} zero point {t.zero_point}" if t.quantized else ""
        print(f"input_{t.index} {t.name!r} {t.dtype}{list(t.shape)}{q}: {_format_values(a)}", file=out)
        if t.quantized and np.asarray(a).dtype.kind != "f":
            print(f"  real: {_format_values(t.dequantize(a))}", file=out)
    for t, y in zip(desc.outputs, result.outputs, strict=True):
        q = f", scale {t.scale:.6g} zero point {t.zero_point}" if t.quantized else ""
        print(f"output_{t.index} {t.name!r} {t.dtype}{list(t.shape)}{q}: {_format_values(y)}", file=out)
        if t.quantized:
            print(f"  real: {_format_values(t.dequantize(y))}", file=out)
        if print_top > 0:
            flat = np.asarray(y).reshape(-1)
            order = np.argsort(-flat.astype(np.float64), kind="stable")[:print_top]
            real = t.dequantize(flat) if t.quantized else None
            for rank, idx in enumerate(order, 1):
                extra = f" (real {float(real[idx]):.6g})" if real is not None else ""
                print(f"  top {rank}: index {int(idx)} value {flat[idx]}{extra}", file=out)
    if print_time:
        us = [s * 1e6 for s in result.timings]
        print(f"time per inference (device ticks at {result.tick_hz} Hz, {len(us)} repeat(s) of "
              f"{result.number} run(s)): mean {statistics.fmean(us):.3f} us, "
              f"median {statistics.median(us):.3f} us, "
              f"min {min(us):.3f} us, max {max(us):.3f} us"
              + (f", std {statistics.stdev(us):.3f} us" if len(us) > 1 else ""), file=out)
        print(f"round trip (load inputs, run once, read outputs, over the transport): "
              f"{result.round_trip_s * 1e3:.3f} ms", file=out)


def _project_type(project_dir: str) -> str | None:
    from .state import try_load_state

    try:
        st = try_load_state(project_dir)
    except Exception:  # noqa: BLE001 - a broken state file is reported by run_project itself
        return None
    return st.options.get("project_type") if st is not None else None


def _profiled_operators(project_dir: str) -> list[dict[str, Any]]:
    """The operator list of the project's profiling archive (src/<name>.profile.json, copied
    in with the model), or [] when the template did not copy it."""
    import json
    from pathlib import Path

    for path in sorted(Path(project_dir).glob("**/src/*.profile.json")):
        try:
            return list(json.loads(path.read_text(encoding="utf-8"))["operators"])
        except (OSError, ValueError, KeyError):
            continue
    return []


def format_profile(ticks: list[int], ops: list[dict[str, Any]], hz: int) -> str:
    """Per-operator ticks as a table, largest share first in a column of percentages."""
    total = sum(ticks) or 1
    lines = [f"{'#':>3} {'operator':<20} {'variant':<18} {'ticks':>12} {'share':>6}  name"]
    for k, t in enumerate(ticks):
        op = ops[k] if k < len(ops) and len(ops) == len(ticks) else {}
        lines.append(f"{k:>3} {op.get('kind', '?'):<20} {str(op.get('variant') or '-'):<18} {t:>12} "
                     f"{100.0 * t / total:5.1f}%  {str(op.get('name', ''))[:50]}")
    lines.append(f"    {'total':<39} {sum(ticks):>12}        ({hz} ticks/s)")
    return "\n".join(lines)


def run_command(args: argparse.Namespace) -> int:
    """Handler of `microtvm run`."""
    import numpy as np

    from .options import parse_kv
    from .session import run_project

    if _project_type(args.project_dir) == "aot_standalone_demo":
        # The firmware runs on its baked-in input and prints the result: show that.
        from .errors import SessionError
        from .session import read_standalone_output

        if args.inputs or args.outputs:
            raise SessionError(
                f"{args.project_dir} is an aot_standalone_demo project: it runs on the input baked in at "
                "generate time and prints its outputs; -i/-o need a host_driven project"
            )
        print(read_standalone_output(args.project_dir, timeout=args.timeout), end="")
        return 0
    inputs = _load_inputs(args.inputs) if args.inputs else None
    raw = parse_kv(args.option, "--option on the command line", flag="-O") if args.option else None
    result = run_project(
        args.project_dir, inputs, fill_mode=args.fill_mode, repeat=args.repeat, number=args.number,
        raw_options=raw, seed=args.seed, timeout=args.timeout, profile=args.profile,
    )
    print_result(result, print_top=args.print_top, print_time=args.print_time)
    if result.op_ticks is not None:
        print(format_profile(result.op_ticks, _profiled_operators(args.project_dir), result.tick_hz))
    if args.outputs:
        import io

        from .fsutil import atomic_write_bytes

        buf = io.BytesIO()
        np.savez(buf, **{f"output_{i}": y for i, y in enumerate(result.outputs)})
        atomic_write_bytes(args.outputs, buf.getvalue())
        print(f"outputs saved to {args.outputs}")
    return 0
