"""Run a template's implementation file in its server script's namespace.

A Project API server is started for every query, and most ask only `server_info_query`,
so each built-in template's `microtvm_api_server.py` holds just the options and runs its
`<name>_impl.py` on the first other call. Running the file's code in the script's own
namespace (instead of importing it as a module) keeps one namespace: a name replaced on
the script's module (a test's monkeypatch) is the one the implementation sees, and the
module looks as if it were one file. `SourceFileLoader.get_code` reads the byte code from
``__pycache__`` and writes it there when Python may, which a script never gets.

Only the scripts' `_load_impl` imports this, and only then: importing it at the top of a
script would cost every server_info_query (tests/test_template_startup.py).
"""

from __future__ import annotations

import importlib.machinery
import os
from typing import Any


def run_in_namespace(path: str, namespace: dict[str, Any]) -> dict[str, Any]:
    """Execute the (byte-code cached) Python file `path` in `namespace`; return `namespace`."""
    name = os.path.splitext(os.path.basename(path))[0]
    code = importlib.machinery.SourceFileLoader(name, path).get_code(name)
    exec(code, namespace)  # noqa: S102 - our own template file, by design (see the docstring)
    return namespace
