"""The arrows of ARCHITECTURE.md: every module's imports of our own parts, read from its
source, point only where that page allows (lazy imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "microtvm_tasks"

LOW = {"errors", "fsutil"}
#: part -> the parts it may import (ARCHITECTURE.md, "The arrows").
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "fsutil": {"errors"},
    "targets": {"errors"},
    "frames": set(),
    "project_api": {"errors"},
    "mlf": LOW,
    "state": LOW,
    "options": LOW,
    "compiler": LOW | {"mlf", "targets", "version"},
    "runtime": {"errors", "mlf", "version"},
    "platforms": {"errors", "project_api"},
    "server_info": LOW | {"project_api"},
    "template_support": LOW | {"project_api", "mlf", "runtime", "targets"},
    "config": LOW | {"mlf", "platforms", "targets"},  # mlf: c_ident, the one C-identifier rule
    "project": LOW | {"options", "platforms", "project_api", "server_info", "state"},
    "session": LOW | {"frames", "options", "platforms", "project_api", "server_info", "state", "mlf"},
}
ALLOWED["tune"] = LOW | {"compiler", "targets", "template_support", "project", "session"}
BELOW_TOP = set(ALLOWED)
ALLOWED["tasks"] = BELOW_TOP | {"version"}
ALLOWED["cli"] = ALLOWED["run_cli"] = BELOW_TOP | {"version"}
ALLOWED["tune_cli"] = BELOW_TOP | {"version", "cli"}  # PLATFORM [-d DIR] and -o parsed as create-project does
TEMPLATES = {"errors", "project_api", "template_support", "mlf", "runtime"}


def _part(module: str) -> str:
    """`microtvm_tasks.tasks.rules` -> "tasks"; the package itself (its __version__) -> "version"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] != "__version__" else "version"


def _imports(path: Path, package: str) -> set[str]:
    """The microtvm_tasks modules `path` imports (absolute and relative, at any depth)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "microtvm_tasks")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                if not node.module:  # from . import x: x is a module of that package
                    found.update(f"{target}.{a.name}" for a in node.names)
                    continue
            else:
                target = node.module or ""
            if target == "microtvm_tasks":  # from microtvm_tasks import mlf, __version__
                found.update(f"microtvm_tasks.{a.name}" for a in node.names)
            elif target.split(".")[0] == "microtvm_tasks":
                found.add(target)
    return found


def _modules() -> list[tuple[str, Path, str]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        if path.name == "__init__.py":
            name = name[: -len(".__init__")]
        out.append((name, path, package))
    return out


@pytest.mark.parametrize("name,path,package", _modules(), ids=lambda v: v if isinstance(v, str) else "")
def test_imports_follow_the_arrows(name, path, package):
    part = _part(name)
    if part in ("version", "templates"):
        return
    assert part in ALLOWED, f"{name}: part {part!r} is not in ARCHITECTURE.md; add it there and here"
    bad = sorted(m for m in _imports(path, package) if _part(m) != part and _part(m) not in ALLOWED[part])
    assert not bad, f"{name} ({part}) imports {bad}: not an arrow ARCHITECTURE.md allows"


def test_the_project_api_server_imports_nothing_of_ours():
    """Templates may vendor server.py: it must stand alone."""
    path = PACKAGE / "project_api" / "server.py"
    assert _imports(path, "microtvm_tasks.project_api") == set()


@pytest.mark.parametrize("template", sorted(p.name for p in (ROOT / "templates").iterdir() if p.is_dir()))
def test_templates_use_only_the_template_facing_parts(template):
    for path in sorted((ROOT / "templates" / template).glob("*.py")):
        bad = sorted(m for m in _imports(path, "templates") if _part(m) not in TEMPLATES)
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_the_check_sees_a_forbidden_arrow(tmp_path):
    """The check can fail: a low part reaching up is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from ..tasks import rules\n    from microtvm_tasks.cli import main\n")
    found = _imports(bad, "microtvm_tasks.mlf_like")
    assert {"microtvm_tasks.tasks", "microtvm_tasks.cli"} <= found
    assert {_part(m) for m in found} - ALLOWED["mlf"] == {"tasks", "cli"}
