"""Find Project API templates by platform name, entry point, or directory path.

A platform is found the way pyserial finds a URL handler: by name, never by an
``if platform == ...`` chain. Three sources, in this order:

1. built-in templates: each directory under the installed ``microtvm_tasks.templates``
   package that holds a Project API server (``templates/host/``...);
2. third-party templates registered in the entry-point group ``microtvm_tasks.platforms``:
   ``name = "package.module"`` (the module's directory, or the package's directory, is
   the template) or ``name = "package.module:ATTR"`` (ATTR is a path, or a callable that
   returns one). Entry points are only loaded when asked for;
3. a directory path holding ``microtvm_api_server.py``, ``microtvm_api_server.sh`` or
   ``launch_microtvm_api_server.sh``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from microtvm_tasks.errors import TemplateError
from microtvm_tasks.project_api.server import SERVER_FILENAMES, SERVER_PYTHON_FILENAME

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

ENTRY_POINT_GROUP = "microtvm_tasks.platforms"


def is_template_dir(path: Path) -> bool:
    """True when ``path`` is a directory holding a Project API server."""
    return path.is_dir() and any((path / name).is_file() for name in SERVER_FILENAMES)


def _builtin_root() -> Path | None:
    # Locate the package without executing anything but its (empty) __init__.
    import importlib.util

    spec = importlib.util.find_spec("microtvm_tasks.templates")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def builtin_templates() -> dict[str, Path]:
    """The templates shipped with this package, by directory name, sorted."""
    root = _builtin_root()
    if root is None or not root.is_dir():
        return {}
    found = {}
    for child in sorted(root.iterdir()):
        if child.name.startswith(("_", ".")):
            continue
        if is_template_dir(child):
            found[child.name] = child.resolve()
    return found


def _entry_points() -> list[EntryPoint]:
    from importlib.metadata import entry_points

    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _describe(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    owner = f" (from {dist.name})" if dist is not None and getattr(dist, "name", None) else ""
    return f"entry point {ep.name} = {ep.value!r} in group {ENTRY_POINT_GROUP}{owner}"


def _load_entry_point(ep: EntryPoint) -> Path:
    """Resolve one entry point to its template directory (imports only what it names)."""
    try:
        if ep.attr is None:
            import importlib.util

            spec = importlib.util.find_spec(ep.module)
            if spec is None:
                raise TemplateError(f"{_describe(ep)}: module {ep.module} is not installed")
            if spec.submodule_search_locations:
                path = Path(next(iter(spec.submodule_search_locations)))
            elif spec.origin:
                path = Path(spec.origin).parent
            else:
                raise TemplateError(f"{_describe(ep)}: module {ep.module} has no location on disk")
        else:
            value = ep.load()
            if callable(value):
                value = value()
            path = Path(os.fspath(value))
    except TemplateError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken plug-in must not crash the tool
        raise TemplateError(f"{_describe(ep)} cannot be loaded: {type(exc).__name__}: {exc}") from exc
    if not is_template_dir(path):
        raise TemplateError(
            f"{_describe(ep)} points at {path}, which holds none of {', '.join(SERVER_FILENAMES)}"
        )
    return path.resolve()


def list_templates() -> dict[str, Path]:
    """Every known template by name: built-ins first, then entry points.

    A built-in name cannot be taken over by a plug-in (the entry point is ignored with a
    warning), and a plug-in that fails to load is left out with a warning.
    """
    found = builtin_templates()
    for ep in _entry_points():
        if ep.name in found:
            warnings.warn(f"{_describe(ep)} ignored: {ep.name!r} is a built-in platform", stacklevel=2)
            continue
        try:
            found[ep.name] = _load_entry_point(ep)
        except TemplateError as exc:
            warnings.warn(str(exc), stacklevel=2)
    return found


def _looks_like_path(text: str) -> bool:
    return text.startswith((".", "~")) or "/" in text or (os.sep != "/" and os.sep in text)


def find_template(name_or_path: str | os.PathLike[str]) -> Path:
    """The template directory for a platform name or a path (absolute, resolved).

    Names are tried first (built-in, then entry point) unless the argument looks like a
    path (contains a separator or starts with ``.`` or ``~``). Raises `TemplateError`
    naming the known platforms when nothing matches.
    """
    text = os.fspath(name_or_path)
    if not isinstance(name_or_path, os.PathLike) and not _looks_like_path(text):
        root = _builtin_root()  # a built-in by name: one stat, no listing, no entry-point scan
        if root is not None and not text.startswith("_") and is_template_dir(root / text):
            return (root / text).resolve()
        for ep in _entry_points():
            if ep.name == text:
                return _load_entry_point(ep)
    path = Path(text).expanduser()
    if path.is_dir():
        if is_template_dir(path):
            return path.resolve()
        raise TemplateError(
            f"{path} is not a Project API template: it holds none of {', '.join(SERVER_FILENAMES)}"
        )
    known = sorted(set(builtin_templates()) | {ep.name for ep in _entry_points()})
    raise TemplateError(
        f"unknown platform or template directory {text!r}; known platforms: "
        f"{', '.join(known) if known else '(none installed)'}; or give the path of a directory "
        f"holding {SERVER_PYTHON_FILENAME}"
    )

