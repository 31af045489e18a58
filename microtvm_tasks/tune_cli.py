"""`microtvm tune MODEL PLATFORM [-o KEY=VALUE ...] [--log LOG.jsonl] [--target CPU]`.

`tune:<project>` outside doit: measure the kernel variants of MODEL's operators on the
device the platform and options describe (tune.py), keep the log, print the table. Then
`microtvm compile MODEL --target CPU --tuning-log LOG.jsonl` picks the fastest variants.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the `tune` subcommand."""
    p = subparsers.add_parser(
        "tune",
        help="measure each operator's kernel variants on a device and log the fastest",
        description="Compile MODEL once per batch of kernel variants as a profiling build, generate, build, "
        "flash and run it on PLATFORM's device through the Project API, and write the ticks each "
        "operator took to a tuning log. Variants already measured (same target, same compiler) are "
        "not measured again. Every batch must give the same outputs (all variants are exact).",
    )
    p.add_argument("model", metavar="MODEL", help="a .tflite or .onnx model")
    p.add_argument("platform", metavar="PLATFORM", nargs="?", default=None,
                   help="a platform (see `microtvm templates`), or `template` with -d")
    p.add_argument("-d", "--template-dir", metavar="DIR", help="a template directory (platform `template`)")
    p.add_argument("-o", "--option", dest="options", action="extend", nargs="+", metavar="KEY=VALUE",
                   default=[], help="project option, as for create-project (e.g. board=mps2_an386)")
    p.add_argument("--log", metavar="LOG.jsonl", default=None,
                   help="the tuning log to extend (default: MODEL's name with .tune.jsonl)")
    p.add_argument("--target", metavar="CPU", default=None,
                   help="compiler target (default: the board's CPU from the template's boards.json)")
    p.add_argument("--work-dir", metavar="DIR", default=None,
                   help="where the batch projects are built (default: a temporary directory)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each device reply")
    p.set_defaults(func=tune_command)


def tune_command(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from .cli import _template_for, _typed_cli_options, server_info
    from .tune import tune_model

    _, template = _template_for(args)
    options = _typed_cli_options(args.options, server_info(template))
    model = Path(args.model)
    log = Path(args.log) if args.log else Path(model.stem + ".tune.jsonl")
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="microtvm-tune."))
    try:
        result = tune_model(model, template, options, log, work_dir=work, target=args.target,
                            timeout=args.timeout)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    print(result.table())
    if not result.pending_before:
        print("nothing to measure: every variant is in the log already")
    return 0
