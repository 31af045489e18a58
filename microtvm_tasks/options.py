"""Project options: parse `KEY=VALUE`, type-check against a template's metadata, merge layers.

A template declares its options in `server_info_query` as TVM `ProjectOption`s: a name, a
`type` ("bool", "int", "str", or None meaning str), optional `choices`, a `default`, and
the methods (generate_project, build, flash, open_transport) that `required` or accept
(`optional`) it. Values reach us as strings from the command line and as typed scalars from
projects.yaml or .tvmc.json; everything is coerced here once, so templates always receive
real bools and ints, and every mistake is reported with where it was made and what is
allowed, before any server is started.

`project_options` arguments accept the forms found in practice: the list of dicts that
`server_info_query` returns over the wire, ProjectOption namedtuples, or any object with
those attributes.

`resolve` is the one way to the options of a Project API call: it merges the layers
(projects.yaml, `.tvmc.json`, the command line), types and checks each, checks what the
method requires, and keeps only what the method takes. The CLI, the tasks and
project.py all go through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from .errors import OptionError

#: Project API methods that take options, in the order a project goes through them.
METHODS = ("generate_project", "build", "flash", "open_transport")
#: the `microtvm` command of each Project API method, for messages that say where an option goes
METHOD_COMMANDS = {"generate_project": "create-project", "build": "build", "flash": "flash",
                   "open_transport": "run"}

_TRUE = frozenset({"true", "1", "yes", "on", "y"})
_FALSE = frozenset({"false", "0", "no", "off", "n"})
_TYPES = ("bool", "int", "str")


def normalize_option(opt: Any) -> dict[str, Any]:
    """One option's metadata as a plain dict with all seven ProjectOption fields."""
    if isinstance(opt, Mapping):
        d = dict(opt)
    elif hasattr(opt, "_asdict"):
        d = dict(opt._asdict())
    else:
        d = {k: getattr(opt, k, None) for k in ("name", "choices", "default", "type", "required",
                                                 "optional", "help")}
    for key in ("choices", "default", "type", "required", "optional", "help"):
        d.setdefault(key, None)
    if not isinstance(d.get("name"), str):
        raise OptionError(f"template declares a project option without a name: {opt!r}")
    d["required"] = list(d["required"] or [])
    d["optional"] = list(d["optional"] or [])
    if d["choices"] is not None:
        d["choices"] = list(d["choices"])
    return d


def normalize_options(project_options: Iterable[Any] | Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{name: option dict} in declaration order, from any of the accepted forms.

    A mapping of name -> option is accepted too (e.g. the result of this function).
    """
    if isinstance(project_options, Mapping):
        items = project_options.values()
    else:
        items = project_options
    out: dict[str, dict[str, Any]] = {}
    for opt in items:
        d = normalize_option(opt)
        out[d["name"]] = d
    return out


def option_type(opt: Mapping[str, Any]) -> str:
    """The option's effective type name: "bool", "int" or "str" (None and unknown -> "str")."""
    t = opt.get("type")
    return t if t in _TYPES else "str"


def format_value(value: Any) -> str:
    """A value as a user types it: bools as true/false, lists comma-joined."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(format_value(v) for v in value)
    return str(value)


def parse_kv(items: Iterable[str] | None, where: str, flag: str = "-o") -> dict[str, str]:
    """Turn ["KEY=VALUE", ...] into {KEY: VALUE}; later items win over earlier ones.

    Only the first "=" splits, so values may contain "=". `where` (e.g. "-o on the command
    line") is named in the error for an item without "=" or with an empty key; `flag` is
    the option the suggestion shows (`microtvm run` takes them as -O: -o is its outputs).
    """
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise OptionError(
                f"option {item!r} ({where}) is not of the form KEY=VALUE; write e.g. {flag} {item}=VALUE"
            )
        if not key:
            raise OptionError(f"option {item!r} ({where}) has an empty name; write it as NAME=VALUE")
        out[key] = value
    return out


def _coerce_bool(value: Any, name: str, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise OptionError(f"option '{name}' ({where}) must be a bool (true or false), got {value!r}")


def _coerce_int(value: Any, name: str, where: str) -> int:
    if isinstance(value, bool):
        raise OptionError(f"option '{name}' ({where}) must be an int, got the bool {format_value(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        try:
            return int(text, 10)
        except ValueError:
            pass
        try:
            return int(text, 0)  # 0x.., 0o.., 0b..
        except ValueError:
            pass
    raise OptionError(f"option '{name}' ({where}) must be an int, got {value!r}")


def _coerce_str(value: Any, name: str, where: str) -> str | list[str]:
    if isinstance(value, str):
        return value
    # TVM templates take compile_definitions (type "str") as a list of strings from Python;
    # projects.yaml can say the same with a YAML list.
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise OptionError(
            f"option '{name}' ({where}) must be a string, got the number {value!r}; "
            f"quote it in YAML (\"{value}\") so leading zeros and the like survive"
        )
    raise OptionError(f"option '{name}' ({where}) must be a string, got {format_value(value)!r}")


def _coerce_typed(value: Any, typ: str, name: str, where: str) -> Any:
    if typ == "bool":
        return _coerce_bool(value, name, where)
    if typ == "int":
        return _coerce_int(value, name, where)
    return _coerce_str(value, name, where)


def _choice_matches(value: Any, choice: Any, typ: str) -> bool:
    if value == choice and type(value) is type(choice):
        return True
    # Choices arrive as JSON; compare in the option's type and as text (TVM lists bool
    # choices as strings "true"/"false" in some versions and as real bools in others).
    try:
        if _coerce_typed(choice, typ, "", "") == value:
            return True
    except OptionError:
        pass
    return format_value(choice) == format_value(value)


def coerce_value(value: Any, opt: Mapping[str, Any], *, where: str) -> Any:
    """One value converted to the option's type and checked against its choices."""
    name = opt["name"]
    typ = option_type(opt)
    out = _coerce_typed(value, typ, name, where)
    choices = opt.get("choices")
    if choices and not isinstance(out, list):
        if not any(_choice_matches(out, c, typ) for c in choices):
            allowed = ", ".join(format_value(c) for c in choices)
            raise OptionError(
                f"option '{name}' ({where}): {format_value(value)!r} is not one of the allowed values: "
                f"{allowed}"
            )
    return out


def coerce_options(raw: Mapping[str, Any] | None, project_options: Any, *, where: str) -> dict[str, Any]:
    """Type-convert and choice-check every option in `raw` against the template's metadata.

    Unknown names are an error listing the options the template knows. None values are
    dropped (a YAML key left empty means "not given").
    """
    known = normalize_options(project_options)
    out: dict[str, Any] = {}
    for name, value in (raw or {}).items():
        if name not in known:
            listing = ", ".join(sorted(known)) or "(none)"
            raise OptionError(
                f"unknown option '{name}' ({where}); this template's options are: {listing}"
            )
        if value is None:
            continue
        out[name] = coerce_value(value, known[name], where=where)
    return out


def check_required(
    options: Mapping[str, Any], project_options: Any, method: str, where: str
) -> None:
    """OptionError naming every option `method` requires that `options` lacks."""
    known = normalize_options(project_options)
    missing = [
        name for name, opt in known.items()
        if method in opt["required"] and options.get(name) is None
    ]
    if not missing:
        return
    parts = []
    for name in missing:
        choices = known[name].get("choices")
        if option_type(known[name]) == "bool":
            hint = "true|false"
        elif choices:
            hint = "|".join(format_value(c) for c in choices)
        else:
            hint = "VALUE"
        parts.append(f"-o {name}={hint}")
    names = ", ".join(f"'{n}'" for n in missing)
    plural = "s" if len(missing) > 1 else ""
    raise OptionError(
        f"missing required option{plural} {names} for {method} ({where}); "
        f"give {'them' if plural else 'it'} with {' '.join(parts)} "
        "(or under `options:` in projects.yaml)"
    )


def merge_options(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge option layers, later layers winning; None layers and None values are skipped.

    The usual order is template defaults, projects.yaml, .tvmc.json, command line.
    """
    out: dict[str, Any] = {}
    for layer in layers:
        if not layer:
            continue
        for k, v in layer.items():
            if v is not None:
                out[k] = v
    return out


def options_for_method(
    options: Mapping[str, Any], project_options: Any, method: str, *, with_defaults: bool = False
) -> dict[str, Any]:
    """The subset of `options` that `method` requires or accepts, per the template's metadata.

    With `with_defaults`, options the method accepts that were not given but have a
    non-None default are filled with it.
    """
    known = normalize_options(project_options)
    out: dict[str, Any] = {}
    for name, opt in known.items():
        if method not in opt["required"] and method not in opt["optional"]:
            continue
        if options.get(name) is not None:
            out[name] = options[name]
        elif with_defaults and opt.get("default") is not None:
            out[name] = opt["default"]
    return out


def earliest_stage(name: str, project_options: Any) -> str:
    """The first of generate_project, build, flash, open_transport that uses option `name`.

    A change of that option makes this stage and every later one stale. An option that
    names none of these methods is treated as affecting generate_project (the safe answer).
    """
    known = normalize_options(project_options)
    if name not in known:
        listing = ", ".join(sorted(known)) or "(none)"
        raise OptionError(f"unknown option '{name}'; this template's options are: {listing}")
    opt = known[name]
    for method in METHODS:
        if method in opt["required"] or method in opt["optional"]:
            return method
    return METHODS[0]


def methods_of(opt: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(methods requiring it, methods accepting it optionally), in METHODS order then others."""
    order = {m: i for i, m in enumerate(METHODS)}

    def ordered(ms: Iterable[str]) -> list[str]:
        return sorted(dict.fromkeys(ms), key=lambda m: (order.get(m, len(order)), m))

    return ordered(opt.get("required") or []), ordered(opt.get("optional") or [])


class Layer(NamedTuple):
    """One source of option values for `resolve`, named in its errors.

    `typed`: the values were typed and checked when they were given (`.tvmc.json`): they
    are taken as they are, and names the template no longer declares are dropped.
    """

    values: Mapping[str, Any] | None
    where: str
    typed: bool = False


def _project_options_of(server_info: Any) -> Any:
    """The option metadata from a server_info_query answer (or the metadata itself)."""
    if isinstance(server_info, Mapping) and "project_options" in server_info:
        return server_info.get("project_options") or []
    return server_info


def check_taken(options: Mapping[str, Any], project_options: Any, method: str, where: str) -> None:
    """OptionError for an option given explicitly to `method` (a command line) that `method`
    neither requires nor accepts: it would be silently ignored. The message names the
    commands that do take it."""
    known = normalize_options(project_options)
    for name in options:
        opt = known.get(name)
        if opt is None or method in opt["required"] or method in opt["optional"]:
            continue  # unknown names are coerce_options' to report
        required, optional = methods_of(opt)
        takers = [METHOD_COMMANDS.get(m, m) for m in (*required, *optional)]
        command = METHOD_COMMANDS.get(method, method)
        raise OptionError(
            f"option '{name}' ({where}) is not used by {command}; "
            + (f"give it to {', '.join(takers)} instead" if takers else "no command takes it")
        )


def resolve(method: str, *layers: Layer | Mapping[str, Any] | None, server_info: Any,
            where: str = "project options") -> dict[str, Any]:
    """The options to pass to Project API `method`: the one resolver of this package.

    `layers` are merged in order, later ones winning (the usual order: projects.yaml,
    `.tvmc.json`, the command line); a plain mapping is a `Layer` named `where`. Each
    layer is typed and checked against the template's metadata (`server_info`: the
    server_info_query answer or its `project_options`), the options `method` requires are
    checked, and the result holds only what `method` takes, defaults filled.
    """
    po = _project_options_of(server_info)
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer is None:
            continue
        if not isinstance(layer, Layer):
            layer = Layer(layer, where)
        if layer.typed:
            merged.update({k: v for k, v in (layer.values or {}).items() if v is not None})
        else:
            merged.update(coerce_options(layer.values, po, where=layer.where))
    call = options_for_method(merged, po, method, with_defaults=True)
    check_required(call, po, method, where)
    return call
