#!/usr/bin/env python3
"""Project API server of the `host` platform: the model runs in a process on this machine.

The host platform is the embedded default without a board: a real C program built from the
generated project with the system compiler, spoken to over the same Project API transport
and the same run protocol (microtvm_tasks/runtime/PROTOCOL.md) that boards use. The
transport is the program's stdin/stdout.

Project layout written by generate_project:
    microtvm_api_server.py   this file (later stages talk to the project's own copy)
    host_impl.py             the rest of this server (see below)
    Makefile                 from Makefile.template, with the generate-time options filled in
    model.tar, model/        the Model Library Format archive and its extracted tree
    src/                     main.c, platform_host.c, the runtime sources, mt_model_glue.c
    build/main               after build

This script answers server_info_query alone (the options), importing nothing beyond the
Project API helper; `host_impl.py` holds the rest (loaded as `server.LazyImplementation`
describes).
"""

from __future__ import annotations

import os

from microtvm_tasks.project_api import server

IMPL_FILE = "host_impl.py"
MODEL_TAR = server.PROJECT_MLF_FILENAME
MODEL_DIR = "model"
_SERVER_DIR = os.path.dirname(os.path.realpath(__file__))
# A project (as opposed to the template) has its MLF beside the server.

PROJECT_TYPES = ["host_driven", "aot_standalone_demo"]

_SHARED = server.default_project_options(
    project_type={
        "choices": PROJECT_TYPES,
        "default": "host_driven",
        "required": None,
        "optional": ["generate_project"],
        "help": "host_driven: serve the run protocol on stdin/stdout; aot_standalone_demo: run once on "
        "a baked-in input and print the outputs.",
    },
    verbose={"optional": ["generate_project", "build"]},
    warning_as_error={"help": "Compile with -Werror."},
    compile_definitions={"help": "Extra preprocessor definitions, space separated (e.g. '-DFOO=1 -DBAR')."},
)
PROJECT_OPTIONS = [
    o for o in _SHARED if o.name in ("project_type", "verbose", "warning_as_error", "compile_definitions",
                                     "extra_files_tar")
] + [
    server.ProjectOption(
        "cc", optional=["build"], type="str", default="cc",
        help="C compiler to build with (default: the system's cc).",
    ),
    server.ProjectOption(
        "cflags", optional=["build"], type="str", default="",
        help="Extra compiler flags for the build, space separated (e.g. '-O3 -march=native').",
    ),
    server.ProjectOption(
        "standalone_input", optional=["generate_project"], type="str", default=None,
        help="aot_standalone_demo only: .npz (arrays input_0... or the model's input names) baked "
        "into the program; default: a fixed pseudo-random input.",
    ),
]

_IMPL = server.LazyImplementation(globals(), IMPL_FILE)
_load_impl, __getattr__ = _IMPL.load, _IMPL.module_getattr
#: server_info_query answered here; every other call goes to `HostHandler` (in `IMPL_FILE`).
Handler = _IMPL.handler("host", "HostHandler", PROJECT_OPTIONS)


if __name__ == "__main__":
    server.main(Handler())
