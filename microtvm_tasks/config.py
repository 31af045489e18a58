"""Load and validate `projects.yaml`: the workspace of models x platforms the doit tasks come from.

The document is checked by a JSON Schema (compiled once with fastjsonschema, so loading
tasks stays fast) and then by the few cross-reference rules a schema cannot express
(a project naming an unknown model, two projects with the same name). Every error names
the file, the line and the field, because the person reading it is editing that file:
the YAML is parsed once on the fast path, and only when something is wrong is it composed
again to map the offending JSON path to its line via the YAML node marks.

Layout::

    defaults:                 # optional
      build_dir: build        # relative to this file
      options: {...}          # Project API options shared by every project
      default_tasks: [build]  # what a bare `doit` runs
    models:
      sine: {path: models/sine.tflite, compiler: builtin, options: {...}}
    projects:
      sine_host: {model: sine, platform: host, options: {...}, inputs: x.npz}
      mine: {model: sine, template: path/to/template, regenerate: force}
    matrix:                   # expands to <model>_<platform>[_<board>]
      - {models: [sine, kws], platforms: [qemu_arm], boards: [mps2_an386], options: {...}}
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, TemplateError
from .mlf import c_ident

#: Model compilers: our own AOT compiler, TVM's `tvmc compile` (TVM <= 0.18), or an MLF archive as is.
COMPILERS = ("builtin", "tvmc", "mlf")

#: Names become doit task names and directory names: no ':', '/', spaces.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"

_SCALAR = {"type": ["string", "integer", "number", "boolean", "null", "array"]}
_OPTIONS = {
    "type": "object",
    "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_.-]*$"},
    "additionalProperties": _SCALAR,
}
_NAME = {"type": "string", "pattern": NAME_PATTERN}
_NAME_LIST = {"type": "array", "minItems": 1, "items": _NAME}

#: The JSON Schema of projects.yaml. `x-message` (ignored by the validator) is the text shown
#: when that very rule fails, for rules whose generic message would be cryptic.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "defaults": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "build_dir": {"type": "string", "minLength": 1},
                "options": _OPTIONS,
                "default_tasks": {"type": "array", "items": {"type": "string", "minLength": 1}},
            },
        },
        "models": {
            "type": "object",
            "propertyNames": {"pattern": NAME_PATTERN},
            "additionalProperties": {
                "type": "object",
                "required": ["path"],
                "additionalProperties": False,
                "properties": {
                    "path": {"type": "string", "minLength": 1},
                    "compiler": {"enum": list(COMPILERS)},
                    "options": _OPTIONS,
                },
            },
        },
        "projects": {
            "type": "object",
            "propertyNames": {"pattern": NAME_PATTERN},
            "additionalProperties": {
                "type": "object",
                "required": ["model"],
                "additionalProperties": False,
                "properties": {
                    "model": _NAME,
                    "platform": _NAME,
                    "template": {"type": "string", "minLength": 1},
                    "options": _OPTIONS,
                    "inputs": {"type": "string", "minLength": 1},
                    "regenerate": {"enum": ["force"]},
                    "target": {"type": "string", "minLength": 1},
                    "tune": {"type": "boolean"},
                },
                "allOf": [
                    {
                        "not": {"required": ["platform", "template"]},
                        "x-message": "give either `platform` (a built-in platform name) or `template` "
                        "(a template directory), not both",
                    },
                    {
                        "anyOf": [{"required": ["platform"]}, {"required": ["template"]}],
                        "x-message": "missing `platform` (a built-in platform name) or `template` "
                        "(a template directory)",
                    },
                ],
            },
        },
        "matrix": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["models", "platforms"],
                "additionalProperties": False,
                "properties": {
                    "models": _NAME_LIST,
                    "platforms": _NAME_LIST,
                    "boards": _NAME_LIST,
                    "options": _OPTIONS,
                    "inputs": {"type": "string", "minLength": 1},
                    "regenerate": {"enum": ["force"]},
                    "target": {"type": "string", "minLength": 1},
                    "tune": {"type": "boolean"},
                },
            },
        },
    },
}

@functools.cache
def _load_validator(cache_dir: Path | None) -> Any:
    """The schema compiled to a Python function, with its bytecode cached in `cache_dir`.

    fastjsonschema.compile costs ~90 ms (code generation, then compile); loading the
    cached code object with marshal costs well under 1 ms, and every `doit` call loads
    projects.yaml. The cache key covers the schema, fastjsonschema's and Python's versions.
    """
    import hashlib
    import json
    import marshal
    import sys

    import fastjsonschema

    key = hashlib.sha256(
        f"{json.dumps(SCHEMA, sort_keys=True)}|{fastjsonschema.VERSION}|{sys.version}".encode()
    ).hexdigest()[:20]
    path = cache_dir / f"projects-schema-{key}.marshal" if cache_dir is not None else None
    code = None
    if path is not None:
        try:
            code = marshal.loads(path.read_bytes())
        except (OSError, ValueError, EOFError, TypeError):
            code = None
    if code is None:
        code = compile(fastjsonschema.compile_to_code(SCHEMA), "<projects.yaml schema>", "exec")
        if path is not None:
            try:
                from .fsutil import atomic_write_bytes

                atomic_write_bytes(path, marshal.dumps(code))
            except OSError:
                pass
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102 - our own schema, compiled by fastjsonschema
    return namespace["validate"]


def _validate(data: Any, cache_dir: Path | None = None) -> None:
    """Run the compiled schema: compiled (or loaded from `cache_dir`) once per process and
    cache directory, so each workspace's cache holds it, not only the first one's."""
    _load_validator(cache_dir)(data)


def _checked_target(name: str | None, err: Any) -> str | None:
    """A project's `target:` as the compiler names it, or err(message) naming the known ones."""
    if name is None:
        return None
    from .targets import TARGETS

    key = str(name).strip().lower()
    if key not in TARGETS:
        raise err(f"unknown target {name!r}; known targets: {', '.join(sorted(TARGETS))}")
    return key


@dataclass(frozen=True)
class ModelSpec:
    """One entry of `models:`. `path` is absolute (resolved against the YAML's directory)."""

    name: str
    path: Path
    compiler: str = "builtin"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProjectSpec:
    """One project (from `projects:` or expanded from `matrix:`).

    Exactly one of `platform` (a built-in or entry-point platform name) and `template`
    (an absolute directory) is set. `options` already includes `defaults.options`
    and, for matrix entries, `board`.
    """

    name: str
    model: str
    platform: str | None
    template: Path | None
    options: dict[str, Any]
    inputs: Path | None = None
    force_regenerate: bool = False
    origin: str = "projects"
    #: compiler target (a CPU name) when given; else the board's CPU from its boards.json
    target: str | None = None
    #: measure kernel variants on the device first (tune:<project>) and compile with the log
    tune: bool = False


@dataclass
class Workspace:
    """A loaded projects.yaml: where it is, where outputs go, its models and projects."""

    path: Path
    root: Path
    build_dir: Path
    default_options: dict[str, Any]
    models: dict[str, ModelSpec]
    projects: dict[str, ProjectSpec]
    #: What a bare `doit` runs (`defaults.default_tasks`; every build when not given).
    default_tasks: list[str] = field(default_factory=lambda: ["build"])
    #: The YAML's text and each project's path in it: lines are found only when an error
    #: raised after loading (an option's type, say) needs one (`project_location`).
    text: str = field(default="", repr=False)
    origins: dict[str, list[Any]] = field(default_factory=dict, repr=False)

    @property
    def state_dir(self) -> Path:
        """`.tvmc/` beside projects.yaml: doit's database, server-info cache, locks, logs."""
        return self.root / ".tvmc"

    def mlf_path(self, model: str) -> Path:
        """build/mlf/<model>.tar; `model` may be a compile key such as kws@cortex-m4."""
        return self.build_dir / "mlf" / f"{model}.tar"

    def tune_log(self, project: str) -> Path:
        """build/tune/<project>.jsonl: the tuning log of a project with `tune: true`."""
        return self.build_dir / "tune" / f"{project}.jsonl"

    def project_dir(self, project: str) -> Path:
        return self.build_dir / "projects" / project

    def run_dir(self, project: str) -> Path:
        return self.build_dir / "runs" / project

    def where(self, line: int, field_path: str = "") -> str:
        """"file:line (field)" for messages about one place in the YAML."""
        loc = f"{self.path}:{line}" if line else str(self.path)
        return f"{loc} ({field_path})" if field_path else loc


# ---------------------------------------------------------------- YAML parsing


_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Safe loader that refuses duplicate mapping keys (PyYAML silently keeps the last)."""


def _construct_mapping(loader: Any, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    seen: dict[Any, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise _YamlKeyError(key_node.start_mark.line + 1, f"unhashable mapping key {key!r}") from None
        if key in seen:
            raise _YamlKeyError(
                key_node.start_mark.line + 1,
                f"duplicate key '{key}' (first given on line {seen[key]}); every name must be unique",
            )
        seen[key] = key_node.start_mark.line + 1
        out[key] = loader.construct_object(value_node, deep=True)
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _YamlKeyError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def _parse(text: str, path: Path) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except _YamlKeyError as e:
        raise ConfigError(f"{path}:{e.line}: {e.message}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: invalid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None


def _compose(text: str) -> Any:
    try:
        return yaml.compose(text, Loader=_BaseLoader)
    except yaml.YAMLError:
        return None


def node_at(root: Any, path: list[Any]) -> tuple[Any, Any]:
    """(node, key node or None) reached by following `path` (keys and indices) from `root`.

    Stops at the deepest node that exists, so a missing field points at its parent.
    """
    node, key_node = root, None
    for part in path:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    node, key_node = v, k
                    break
            else:
                return node, key_node
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node, key_node = node.value[part], None
        else:
            return node, key_node
    return node, key_node


def line_of(text: str, path: list[Any], *, key: bool = True) -> int:
    """1-based line of the YAML element at JSON path `path` (its key's line if `key`)."""
    root = _compose(text)
    if root is None:
        return 0
    node, key_node = node_at(root, path)
    mark = (key_node if key and key_node is not None else node).start_mark
    return mark.line + 1


def _dotted(path: list[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _describe(value: Any) -> str:
    return {
        dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
        float: "a number", type(None): "empty",
    }.get(type(value), type(value).__name__)


def _typed_path(data: Any, parts: list[Any]) -> list[Any]:
    """fastjsonschema's path names list items by digit strings: make them ints where lists are."""
    out: list[Any] = []
    node = data
    for part in parts:
        if isinstance(node, list) and isinstance(part, str) and part.isdigit():
            part = int(part)
        out.append(part)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return out


def _schema_error(exc: Any, text: str, path: Path, data: Any = None) -> ConfigError:
    """Turn a fastjsonschema error into 'file:line: field: what is wrong, what is allowed'."""
    jpath = list(exc.path[1:]) if exc.path and exc.path[0] == "data" else list(exc.path or [])
    jpath = _typed_path(data, jpath)
    definition = exc.definition if isinstance(exc.definition, dict) else {}
    rule = exc.rule
    value = exc.value
    where_path = list(jpath)
    if "x-message" in definition:
        msg = definition["x-message"]
    elif rule == "additionalProperties" and isinstance(value, dict):
        allowed = sorted(definition.get("properties", {}))
        extra = sorted(k for k in value if k not in allowed)
        if extra:
            where_path = jpath + [extra[0]]
        msg = f"unknown field '{extra[0] if extra else '?'}'"
        if allowed:
            msg += f"; allowed fields are: {', '.join(allowed)}"
    elif rule == "required" and isinstance(value, dict):
        missing = [k for k in definition.get("required", []) if k not in value]
        msg = f"missing required field '{missing[0] if missing else '?'}'"
    elif rule == "type":
        expected = definition.get("type")
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        msg = f"must be {'an' if str(expected)[0] in 'aeio' else 'a'} {expected}, got {_describe(value)}"
    elif rule == "enum":
        msg = f"{value!r} is not allowed; use one of: {', '.join(map(str, definition.get('enum', [])))}"
    elif rule == "propertyNames" and isinstance(value, dict):
        pattern = re.compile(definition.get("propertyNames", {}).get("pattern", ".*"))
        bad = [k for k in value if not pattern.search(str(k))]
        if bad:
            where_path = jpath + [bad[0]]
        msg = f"'{bad[0] if bad else '?'}' is not a valid name (letters, digits, '_', '.', '+', '-'; " \
              "no ':' or '/')"
    elif rule == "pattern" and isinstance(value, str):
        msg = f"'{value}' is not a valid name (letters, digits, '_', '.', '+', '-'; no ':' or '/')"
    elif rule == "minItems":
        msg = "must list at least one entry"
    elif rule == "minLength":
        msg = "must not be empty"
    else:
        msg = str(exc.message).replace("data.", "", 1).replace("data ", "", 1)
    line = line_of(text, where_path)
    loc = f"{path}:{line}" if line else str(path)
    return ConfigError(f"{loc}: {_dotted(where_path)}: {msg}")


# ---------------------------------------------------------------- loading


def load_workspace(
    path: str | os.PathLike[str] = "projects.yaml", *, check_templates: bool = True
) -> Workspace:
    """Read, validate and expand projects.yaml. ConfigError names the file, line and field.

    With `check_templates`, every project's platform or template is resolved now, so a
    missing template is reported at its line before any task runs.
    """
    path = Path(path).absolute()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: not found; write a projects.yaml (see the README) or run from its directory"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    data = _parse(text, path)
    if data is None:
        data = {}
    try:
        _validate(data, path.parent / ".tvmc" / "cache")
    except Exception as exc:  # fastjsonschema.JsonSchemaValueException
        if hasattr(exc, "rule") and hasattr(exc, "path"):
            raise _schema_error(exc, text, path, data) from None
        raise
    root = path.parent

    def err(jpath: list[Any], msg: str) -> ConfigError:
        ln = line_of(text, jpath)
        loc = f"{path}:{ln}" if ln else str(path)
        return ConfigError(f"{loc}: {_dotted(jpath)}: {msg}")

    defaults = data.get("defaults") or {}
    build_dir = (root / defaults.get("build_dir", "build")).resolve()
    default_options = dict(defaults.get("options") or {})

    models: dict[str, ModelSpec] = {}
    for name, m in (data.get("models") or {}).items():
        models[name] = ModelSpec(
            name=name,
            path=(root / m["path"]).resolve(),
            compiler=m.get("compiler", "builtin"),
            options=dict(m.get("options") or {}),
        )

    projects: dict[str, ProjectSpec] = {}
    origins: dict[str, list[Any]] = {}

    def add(spec: ProjectSpec, jpath: list[Any]) -> None:
        if spec.name in projects:
            first = line_of(text, origins[spec.name])
            raise err(jpath, f"project '{spec.name}' is defined twice (first at line {first}); "
                             "rename one of them")
        if spec.model not in models:
            known = ", ".join(sorted(models)) or "(none)"
            raise err(jpath + (["model"] if spec.origin == "projects" else ["models"]),
                      f"unknown model '{spec.model}'; models declared under `models:` are: {known}")
        projects[spec.name] = spec
        origins[spec.name] = jpath

    for name, p in (data.get("projects") or {}).items():
        template = (root / p["template"]).resolve() if p.get("template") else None
        add(ProjectSpec(
            name=name, model=p["model"], platform=p.get("platform"), template=template,
            options={**default_options, **(p.get("options") or {})},
            inputs=(root / p["inputs"]).resolve() if p.get("inputs") else None,
            force_regenerate=p.get("regenerate") == "force",
            target=_checked_target(p.get("target"), lambda m, n=name: err(["projects", n, "target"], m)),
            tune=bool(p.get("tune", False)),
        ), ["projects", name])

    for i, entry in enumerate(data.get("matrix") or []):
        boards = entry.get("boards") or [None]
        for model in entry["models"]:
            for platform in entry["platforms"]:
                for board in boards:
                    name = f"{model}_{platform}" + (f"_{board}" if board else "")
                    opts = {**default_options, **(entry.get("options") or {})}
                    if board:
                        opts["board"] = board
                    add(ProjectSpec(
                        name=name, model=model, platform=platform, template=None, options=opts,
                        inputs=(root / entry["inputs"]).resolve() if entry.get("inputs") else None,
                        force_regenerate=entry.get("regenerate") == "force", origin="matrix",
                        target=_checked_target(entry.get("target"),
                                               lambda m, i=i: err(["matrix", i, "target"], m)),
                        tune=bool(entry.get("tune", False)),
                    ), ["matrix", i])

    if check_templates:
        from .platforms import find_template, is_template_dir

        resolved: dict[str, Path] = {}
        for name, spec in projects.items():
            jpath = origins[name]
            if spec.template is not None:
                if not is_template_dir(spec.template):
                    raise err(jpath + ["template"],
                              f"template directory {spec.template} has no microtvm_api_server.py; "
                              "point `template:` at a Project API template directory")
                continue
            assert spec.platform is not None
            if spec.platform not in resolved:
                try:
                    resolved[spec.platform] = find_template(spec.platform)
                except TemplateError as e:
                    raise err(jpath + (["platform"] if spec.origin == "projects" else ["platforms"]),
                              f"unknown platform '{spec.platform}' ({e}); "
                              "use a built-in platform (see `microtvm templates`) or `template: DIR`"
                              ) from None
            projects[name] = _with_template(spec, resolved[spec.platform])

    return Workspace(path=path, root=root, build_dir=build_dir, default_options=default_options,
                     models=models, projects=projects,
                     default_tasks=list(defaults.get("default_tasks") or ["build"]),
                     text=text, origins=origins)


def _with_template(spec: ProjectSpec, template: Path) -> ProjectSpec:
    return dataclasses.replace(spec, template=template)


def project_location(ws: Workspace, project: str, *sub: Any) -> str:
    """'file:line (field)' of a project (or one of its fields), for error messages raised after load."""
    text = ws.text
    jpath = list(ws.origins.get(project, []))
    spec = ws.projects.get(project)
    if spec is not None and spec.origin == "projects":
        jpath += list(sub)
    elif sub and sub[0] == "options":
        jpath += ["options"]
    line = line_of(text, jpath) if text and jpath else 0
    return f"{ws.path}:{line}" if line else str(ws.path)


def c_identifier(name: str) -> str:
    """A model name as a C identifier (MLF module names appear in C symbols): mlf.c_ident,
    the rule the compiler names its symbols by."""
    return c_ident(name)
