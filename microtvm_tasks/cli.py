"""The `microtvm` command line: the `tvmc micro` RFC's commands, one stage at a time.

    microtvm create-project PROJECT_DIR MLF PLATFORM [-d TEMPLATE_DIR] [--list-options] [-o K=V ...] [-f]
    microtvm build PROJECT_DIR [-f] [-o K=V ...]
    microtvm flash PROJECT_DIR [-o K=V ...]
    microtvm list-options PLATFORM | -d TEMPLATE_DIR
    microtvm templates
    microtvm compile ... / microtvm run ...   (registered by their own modules)

Platform options are whatever the template declares in `server_info_query`; `-o` values
are typed (bool as true/false, int, str) and checked against the declared choices before
any server starts. The RFC's open question is answered with `.tvmc.json`: the platform
and the options given to create-project are remembered, so build, flash and run need
neither again; an explicit `-o` overrides for that one call.

A user mistake (any MicrotvmError) prints `microtvm: error: <message>` and exits with 2,
without a traceback (`--debug` shows it). Imports are lazy so `microtvm --help` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .options import METHOD_COMMANDS  # Project API method -> the command that calls it

PROG = "microtvm"
WHERE_CLI = "-o on the command line"

COMMAND_METHODS = {v: k for k, v in METHOD_COMMANDS.items()}

#: Commands other modules register: name -> (module, help shown before it is imported).
EXTERNAL_COMMANDS = {
    "compile": ("microtvm_tasks.compiler.cli",
                "compile a TFLite or ONNX model to a Model Library Format archive"),
    "run": ("microtvm_tasks.run_cli", "run the model on a flashed project and save its outputs"),
    "tune": ("microtvm_tasks.tune_cli",
             "measure each operator's kernel variants on a device and log the fastest"),
}

#: Display order of the built-in platforms; others follow alphabetically, then "template".
_PREFERRED_ORDER = ("host", "qemu_arm", "zephyr", "arduino")


# --------------------------------------------------------------------------------------------
# Platforms (found by platforms.py only) and server info (server_info.py's cache)
# --------------------------------------------------------------------------------------------


def list_templates() -> dict[str, Path]:
    """{platform name: template directory} (platforms.list_templates), in display order."""
    from .platforms import list_templates as _list

    found = _list()
    order = [n for n in _PREFERRED_ORDER if n in found]
    order += sorted(n for n in found if n not in _PREFERRED_ORDER)
    return {n: found[n] for n in order}


def find_template(name_or_path: str | os.PathLike[str]) -> Path:
    """A platform name or a template directory -> the template directory (platforms.find_template)."""
    from .platforms import find_template as _find

    return _find(name_or_path)


def server_info(template_dir: Path) -> dict[str, Any]:
    """The template's server_info_query answer, cached by template hash in the CLI's cache
    (`.tvmc/server_info` of the current directory)."""
    from .server_info import default_cache_dir, get_server_info

    return get_server_info(template_dir, default_cache_dir())


class _LazyPlatforms:
    """argparse `choices` that lists the platforms only when asked (keeps --help fast)."""

    def _names(self) -> list[str]:
        return [*list_templates(), "template"]

    def __contains__(self, item: object) -> bool:
        return item in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


# --------------------------------------------------------------------------------------------
# Option listing
# --------------------------------------------------------------------------------------------


def _value_hint(opt: dict[str, Any]) -> str:
    from .options import format_value, option_type

    typ = option_type(opt)
    if typ == "bool":
        return "true|false"
    if opt.get("choices"):
        return "|".join(format_value(c) for c in opt["choices"])
    return "INT" if typ == "int" else "VALUE"


def _commands(methods: list[str]) -> str:
    return ", ".join(METHOD_COMMANDS.get(m, m) for m in methods)


def format_options(
    info: dict[str, Any], *, title: str, command: str | None = None, width: int = 100
) -> str:
    """Human listing of a template's options: type, default, choices, commands, help.

    With `command`, options that command requires are marked `(required)`.
    """
    from .options import format_value, methods_of, normalize_options, option_type

    opts = normalize_options(info.get("project_options") or [])
    lines = [title]
    intro = "Give them as -o NAME=VALUE."
    if command == "create-project":
        intro += (" Options given to create-project are remembered in .tvmc.json for build, flash and "
                  "run; -o there overrides them.")
    lines.extend(textwrap.wrap(intro, width=width))
    if not opts:
        lines.append("")
        lines.append("  (this template declares no options)")
        return "\n".join(lines) + "\n"
    method = COMMAND_METHODS.get(command or "")
    wrapper = textwrap.TextWrapper(width=width, initial_indent=" " * 6, subsequent_indent=" " * 6,
                                   break_on_hyphens=False, break_long_words=False)
    for name, opt in opts.items():
        required, optional = methods_of(opt)
        head = f"  {name}={_value_hint(opt)}"
        if method is not None and method in required:
            head += "  (required)"
        lines.append("")
        lines.append(head)
        default = opt.get("default")
        if default is None:
            shown = "(none)"
        elif default == "":
            shown = "'' (empty)"
        else:
            shown = format_value(default)
        facts = [f"type: {option_type(opt)}", f"default: {shown}"]
        if opt.get("choices"):
            facts.append("choices: " + ", ".join(format_value(c) for c in opt["choices"]))
        lines.append("      " + "; ".join(facts))
        if required:
            lines.append(f"      required by: {_commands(required)}")
        if optional:
            lines.append(f"      accepted by: {_commands(optional)}")
        help_text = (opt.get("help") or "").strip()
        if help_text:
            lines.extend(wrapper.wrap(help_text))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


def _template_for(args: argparse.Namespace) -> tuple[str, Path]:
    """(platform name, template dir) from PLATFORM and -d."""
    from .errors import TemplateError

    platform = getattr(args, "platform", None)
    template_dir = getattr(args, "template_dir", None)
    if platform == "template" or (platform is None and template_dir):
        if not template_dir:
            raise TemplateError("platform 'template' needs -d TEMPLATE_DIR (a directory with "
                                "microtvm_api_server.py)")
        path = Path(template_dir)
        if not path.is_dir():
            raise TemplateError(f"{template_dir}: no such template directory")
        return "template", find_template(path)
    if template_dir:
        raise TemplateError(f"-d is only for the 'template' platform; drop it or write `template -d "
                            f"{template_dir}` instead of {platform!r}")
    if platform is None:
        raise TemplateError("give a PLATFORM (see `microtvm templates`) or -d TEMPLATE_DIR")
    return platform, find_template(platform).resolve()


def _typed_cli_options(items: list[str] | None, info: dict[str, Any] | None,
                       method: str | None = None) -> dict[str, Any]:
    """-o KEY=VALUE items, typed and checked against `info` when we have it (and, for
    `method`, that it takes every one of them: an option it ignores is an error)."""
    from .options import check_taken, coerce_options, parse_kv

    raw = parse_kv(items, WHERE_CLI)
    if info is None:
        return raw
    typed = coerce_options(raw, info.get("project_options") or [], where=WHERE_CLI)
    if method is not None:
        check_taken(typed, info.get("project_options") or [], method, WHERE_CLI)
    return typed


def cmd_create_project(args: argparse.Namespace) -> int:
    from .mlf import read_mlf
    from .options import resolve

    platform, template = _template_for(args)
    info = server_info(template)
    if args.list_options:
        sys.stdout.write(format_options(
            info, command="create-project",
            title=f"Project options of platform '{platform}' (template: {template})"))
        return 0
    options = _typed_cli_options(args.options, info)
    resolve("generate_project", options, server_info=info, where=WHERE_CLI)  # before any server starts
    mlf = read_mlf(args.mlf)  # a bad archive is reported before a server starts
    from .project import create_project

    # For `template -d DIR` the server's own platform_name is the more telling record.
    from .server_info import default_cache_dir

    state = create_project(args.project_dir, args.mlf, template, options, force=args.force,
                           keep_existing=True,
                           platform=None if platform == "template" else platform,
                           cache_dir=default_cache_dir())
    models = ", ".join(m.name for m in mlf.modules)
    print(f"{PROG}: created {args.project_dir} (platform {state.platform or platform}, model {models}); "
          f"next: {PROG} build {args.project_dir}")
    return 0


def _project_template_info(project_dir: str) -> dict[str, Any] | None:
    """Server info of the template a project was made from, if that template still exists."""
    from .state import load_state

    state = load_state(project_dir)
    template = Path(state.template_dir) if state.template_dir else None
    if template is None or not template.is_dir():
        return None
    return server_info(template)


def _list_project_options(args: argparse.Namespace, command: str) -> int:
    from .state import load_state

    state = load_state(args.project_dir)
    info = _project_template_info(args.project_dir)
    if info is None:
        from .project_api.client import instantiate_from_dir

        with instantiate_from_dir(args.project_dir) as client:
            from .server_info import TVM_VERSION

            info = dict(client.server_info_query(TVM_VERSION))
    remembered = ", ".join(f"{k}={v}" for k, v in sorted(state.options.items())) or "(none)"
    sys.stdout.write(format_options(
        info, command=command,
        title=f"Project options for `{command}` of {args.project_dir} (platform {state.platform}); "
              f"remembered from create-project: {remembered}"))
    return 0


def _remove_build_outputs(project_dir: str) -> None:
    """-f for build: delete what the last build wrote (and a build/ directory), TVM-style."""
    from .state import load_state

    root = Path(project_dir).resolve()
    state = load_state(project_dir)
    for rel in state.artefacts.get("build", {}).get("outputs", []):
        p = (root / rel).resolve()
        if root in p.parents and p.is_file():
            p.unlink()
    build_dir = root / "build"
    if build_dir.is_dir() and not build_dir.is_symlink():
        shutil.rmtree(build_dir)


def cmd_build(args: argparse.Namespace) -> int:
    if args.list_options:
        return _list_project_options(args, "build")
    info = _project_template_info(args.project_dir)  # also: StateError if not a project
    options = _typed_cli_options(args.options, info, "build")
    if args.force:
        _remove_build_outputs(args.project_dir)
    from .project import build_project

    build_project(args.project_dir, options or None)
    print(f"{PROG}: built {args.project_dir}; next: {PROG} flash {args.project_dir}")
    return 0


def cmd_flash(args: argparse.Namespace) -> int:
    if args.list_options:
        return _list_project_options(args, "flash")
    info = _project_template_info(args.project_dir)
    options = _typed_cli_options(args.options, info, "flash")
    from .project import flash_project

    flash_project(args.project_dir, options or None)
    print(f"{PROG}: flashed {args.project_dir}; next: {PROG} run {args.project_dir}")
    return 0


def cmd_list_options(args: argparse.Namespace) -> int:
    platform, template = _template_for(args)
    info = server_info(template)
    sys.stdout.write(format_options(
        info, title=f"Project options of platform '{platform}' (template: {template})"))
    return 0


def cmd_templates(args: argparse.Namespace) -> int:
    templates = list_templates()
    if not templates:
        print("(no templates found)")
        return 0
    width = max(len(n) for n in templates)
    for name, path in templates.items():
        print(f"{name:<{width}}  {path}")
    return 0


def _cmd_unavailable(args: argparse.Namespace) -> int:
    from .errors import MicrotvmError

    module = EXTERNAL_COMMANDS[args.command][0]
    raise MicrotvmError(f"the `{args.command}` command is not available in this installation "
                        f"({module} is missing)")


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------


def _add_option_args(p: argparse.ArgumentParser, *, list_options: bool = True) -> None:
    p.add_argument("-o", "--option", dest="options", action="extend", nargs="+", metavar="KEY=VALUE",
                   default=[], help="project option (repeatable; see --list-options)")
    if list_options:
        p.add_argument("--list-options", action="store_true",
                       help="list the platform's options (type, default, choices, which commands need "
                       "them) and exit")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser. `command` (the subcommand about to run, if known) decides which
    external command modules get imported: only the one that will run."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Compile models to Model Library Format and drive microTVM Project API templates: "
        "create a project, build it, flash it, run it.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and server stderr on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    for name, (module, help_text) in EXTERNAL_COMMANDS.items():
        if command == name:
            try:
                mod = importlib.import_module(module)
            except ModuleNotFoundError as e:
                if e.name != module:
                    raise
            else:
                mod.register(sub)
                continue
        p = sub.add_parser(name, help=help_text, add_help=False, prefix_chars="\0")
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=_cmd_unavailable)

    p = sub.add_parser("create-project",
                       help="generate a project from an MLF archive and a platform template",
                       description="Generate PROJECT_DIR from the MLF archive with the platform's template "
                       "(Project API generate_project). The platform and options are remembered in "
                       "PROJECT_DIR/.tvmc.json.")
    p.add_argument("project_dir", metavar="PROJECT_DIR", help="project directory to create")
    p.add_argument("mlf", metavar="MLF", help="Model Library Format archive (.tar)")
    action = p.add_argument("platform", metavar="PLATFORM", choices=_LazyPlatforms(),
                            help="platform (a built-in or installed template), or `template` with -d")
    # argparse formats the metavar once when the argument is added; with None it would list
    # the choices (finding every template) even for `microtvm --help`. Unset it afterwards so
    # `create-project --help` and its usage still show {host,qemu_arm,...,template}.
    action.metavar = None
    p.add_argument("-d", "--template-dir", metavar="TEMPLATE_DIR",
                   help="template directory (with the `template` platform)")
    _add_option_args(p)
    p.add_argument("-f", "--force", action="store_true",
                   help="replace an existing project (the old one is moved to a backup directory)")
    p.set_defaults(func=cmd_create_project)

    p = sub.add_parser("build", help="build a generated project",
                       description="Build PROJECT_DIR with the options remembered at create time.")
    p.add_argument("project_dir", metavar="PROJECT_DIR")
    p.add_argument("-f", "--force", action="store_true", help="delete the previous build's outputs first")
    _add_option_args(p)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("flash", help="flash a built project onto its device",
                       description="Flash PROJECT_DIR's last build with the remembered options.")
    p.add_argument("project_dir", metavar="PROJECT_DIR")
    _add_option_args(p)
    p.set_defaults(func=cmd_flash)

    p = sub.add_parser("list-options", help="list a platform's project options",
                       description="List the options of PLATFORM (or of the template in -d TEMPLATE_DIR).")
    p.add_argument("platform", metavar="PLATFORM", nargs="?")
    p.add_argument("-d", "--template-dir", metavar="TEMPLATE_DIR")
    p.set_defaults(func=cmd_list_options)

    p = sub.add_parser("templates", help="list the platforms (built-in and installed templates)")
    p.set_defaults(func=cmd_templates)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    for a in argv:
        if not a.startswith("-"):
            return a
    return None


def _error_text(exc: BaseException, debug: bool) -> str:
    """One readable message; a server's traceback is reduced to its last line unless debug."""
    text = str(exc)
    data = getattr(exc, "data", None)
    if not debug and isinstance(data, dict) and data.get("traceback"):
        first = text.splitlines()[0] if text else type(exc).__name__
        tb_lines = [ln for ln in str(data["traceback"]).splitlines() if ln.strip()]
        last = tb_lines[-1].strip() if tb_lines else ""
        return f"{first} ({last})" if last and last not in first else first
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `microtvm` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    debug = bool(args.debug) or bool(os.environ.get("MICROTVM_DEBUG"))
    from .errors import MicrotvmError

    try:
        return int(args.func(args) or 0)
    except MicrotvmError as e:
        if debug:
            import traceback

            traceback.print_exc()
        print(f"{PROG}: error: {_error_text(e, debug)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
