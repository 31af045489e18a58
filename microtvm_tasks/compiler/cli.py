"""`microtvm compile MODEL [-o OUT.tar] [--module-name NAME] [--input-layout NCHW|NHWC]`.

The `tvmc compile --output-format mlf` of this tool: a .tflite or .onnx model becomes a
Model Library Format archive with the built-in compiler; an existing MLF .tar is checked
and copied. Errors are MicrotvmError (CompileError), printed by the top-level CLI.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the `compile` subcommand."""
    p = subparsers.add_parser(
        "compile",
        help="compile a TFLite or ONNX model to a Model Library Format archive",
        description="Compile MODEL (.tflite, .onnx, or an existing MLF .tar, which is validated and "
        "copied) to a Model Library Format archive with the built-in ahead-of-time compiler: C99, "
        "one static arena, weights const in flash, TVM's AOT C interface.",
    )
    p.add_argument("model", metavar="MODEL", help="model file: .tflite, .onnx or an MLF .tar")
    p.add_argument(
        "-o",
        "--output",
        metavar="OUT.tar",
        help="archive to write (default: MODEL's name with .tar, in the current directory)",
    )
    p.add_argument(
        "--module-name",
        default="default",
        metavar="NAME",
        help="module name: tvmgen_NAME_run, NAME_lib0.c (default: default)",
    )
    p.add_argument(
        "--input-layout",
        choices=["NCHW", "NHWC"],
        default=None,
        help="layout of 4-D ONNX model inputs (default NCHW as in the model; TFLite is NHWC)",
    )
    p.add_argument("--target", metavar="CPU", default=None,
                   help="CPU to tune the kernels for (e.g. cortex-m4, cortex-m7, cortex-m33; default "
                        "generic). The C stays portable; the target picks each operator's kernel variant")
    p.add_argument("--tuning-log", metavar="LOG.jsonl", default=None,
                   help="a log written by `microtvm tune`: each operator gets its fastest measured variant")
    p.add_argument("--profile", action="store_true",
                   help="time every operator (for `microtvm run --profile`; costs a few instructions "
                        "per operator)")
    p.set_defaults(func=compile_command)


def compile_command(args: argparse.Namespace) -> int:
    import time

    from . import compile_model

    model = Path(args.model)
    out = Path(args.output) if args.output else Path(model.stem + ".tar")
    if out.resolve() == model.resolve():
        from ..errors import CompileError

        raise CompileError(f"{out}: the output would overwrite the input; choose another -o")
    options = {}
    if args.input_layout is not None:
        options["input_layout"] = args.input_layout
    t0 = time.perf_counter()
    if args.tuning_log is not None and not Path(args.tuning_log).is_file():
        from ..errors import CompileError

        raise CompileError(f"{args.tuning_log}: tuning log not found; run `microtvm tune` first, or drop "
                           "--tuning-log to use the default variants")
    compile_model(model, out, module_name=args.module_name, target=args.target, tuning_log=args.tuning_log,
                  profile=args.profile, **options)
    if args.tuning_log is not None:
        import sys

        from ..targets import Target
        from .variants import log_coverage

        tgt = Target.parse(args.target)
        total, usable = log_coverage(args.tuning_log, tgt)
        if not usable:
            print(f"note: {args.tuning_log} has {total} record(s) but none for target {tgt.name} with this "
                  "compiler's kernels (measured for another target, or before a kernel changed): the "
                  f"default variants were used; run `microtvm tune` again" +
                  ("" if args.target else ", and give --target (the log's records name theirs)"),
                  file=sys.stderr)
    print(f"wrote {out} ({out.stat().st_size} bytes) in {time.perf_counter() - t0:.2f} s")
    return 0
