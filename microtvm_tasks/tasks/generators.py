"""Task generation: the doit task dicts of one projects.yaml (`WorkspaceTasks`, `workspace_tasks`).

Projects are resolved once at load (server info from the cache, options typed and split
by the earliest stage that takes them); each `task_*` generator yields one task per
model or project with its actions (`actions.py`), up-to-date rules (`rules.py`), log
(`logs.py`) and device lock (`locks.py`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..config import ModelSpec, ProjectSpec, Workspace, c_identifier, load_workspace, project_location
from ..errors import ConfigError, MicrotvmError, OptionError
from ..state import STATE_FILE
from . import actions, rules
from .locks import device_key
from .logs import run_logged
from .reporter import ProgressReporter

#: Project API methods -> our stage names (the task whose options_unchanged holds them).
STAGE_OF_METHOD = {"generate_project": "generate", "build": "build", "flash": "flash",
                   "open_transport": "run"}


class _Project:
    """Everything the five tasks of one project need, computed once at load."""

    def __init__(self, ws: Workspace, spec: ProjectSpec, info: Mapping[str, Any]) -> None:
        from .. import options as opts

        self.spec = spec
        self.dir = str(ws.project_dir(spec.name))
        self.run_dir = str(ws.run_dir(spec.name))
        po = info.get("project_options", [])
        typed: dict[str, Any] = {}
        for key, value in spec.options.items():  # one by one, to point at the bad one's line
            try:
                typed.update(opts.coerce_options({key: value}, po, where=f"project '{spec.name}'"))
            except OptionError as e:
                loc = project_location(ws, spec.name, "options", key)
                raise ConfigError(f"{loc}: {e}") from None
        self.options = typed
        # a required option missing is found now (the cached server info says what is required),
        # not when generate_project finally asks for it
        try:
            opts.check_required(opts.merge_options(opts.options_for_method({}, po, "generate_project",
                                                                            with_defaults=True), typed),
                                po, "generate_project", f"project '{spec.name}'")
        except OptionError as e:
            raise ConfigError(f"{project_location(ws, spec.name, 'options')}: {e}") from None
        self.by_stage: dict[str, dict[str, Any]] = {s: {} for s in STAGE_OF_METHOD.values()}
        for name, value in typed.items():
            self.by_stage[STAGE_OF_METHOD.get(opts.earliest_stage(name, po), "generate")][name] = value
        self.device = device_key(spec, typed)
        # The compiler target: `target:` in projects.yaml, else the board's CPU (boards.json).
        from ..template_support.boards import project_target

        assert spec.template is not None
        self.target = project_target(spec.template, spec.options, spec.target)
        # Which archive the project uses: build/mlf/<key>.tar, shared by every project with the
        # same model and target; a tuned project has its own (compiled with its tuning log).
        compiler = ws.models[spec.model].compiler
        if spec.tune and compiler != "builtin":
            loc = project_location(ws, spec.name, "tune")
            raise ConfigError(
                f"{loc}: project '{spec.name}': `tune: true` needs a model compiled by the builtin compiler "
                f"(its kernel variants are what is tuned); model '{spec.model}' uses `compiler: {compiler}`: "
                "drop `tune` or use `compiler: builtin`")
        if spec.tune:
            self.compile_key = f"{spec.model}@{spec.name}"
            self.tune_log: str | None = str(ws.tune_log(spec.name))
        elif self.target != "generic":
            self.compile_key = f"{spec.model}@{self.target}"
            self.tune_log = None
        else:
            self.compile_key = spec.model
            self.tune_log = None
        self.mlf = str(ws.mlf_path(self.compile_key))


class WorkspaceTasks:
    """The doit task generators of one projects.yaml (also usable from a user's dodo.py)."""

    def __init__(self, config: str | os.PathLike[str] = "projects.yaml") -> None:
        from ..server_info import hasher_for

        self.ws = load_workspace(config)
        self.state_dir = self.ws.state_dir
        self.cache_dir = str(self.state_dir / "server_info")
        self.log_dir = str(self.state_dir / "logs")
        self.lock_dir = str(self.state_dir / "locks")
        self.hasher = hasher_for(self.cache_dir)
        self._projects: dict[str, _Project] | None = None
        self._compiler_hash: str | None = None
        self._broken_msgs: dict[str, str] = {}

    # Projects are resolved (server info, option typing) lazily, once, on first use.
    @property
    def projects(self) -> dict[str, _Project]:
        if self._projects is None:
            from ..server_info import get_server_info

            infos: dict[str, Mapping[str, Any] | str] = {}
            out: dict[str, _Project] = {}
            for name, spec in self.ws.projects.items():
                assert spec.template is not None
                key = str(spec.template)
                if key not in infos:
                    try:
                        infos[key] = get_server_info(spec.template, self.cache_dir, memo=True)
                    except MicrotvmError as e:
                        infos[key] = str(e)
                info = infos[key]
                try:
                    if isinstance(info, str):
                        raise ConfigError(f"{project_location(self.ws, name)}: project '{name}': {info}")
                    out[name] = _Project(self.ws, spec, info)
                except ConfigError as e:
                    # one project's mistake fails that project's tasks, not the whole workspace
                    self._broken_msgs[name] = str(e)
            self._projects = out
        return self._projects

    @property
    def broken(self) -> dict[str, str]:
        """Project name -> why its configuration cannot work (its tasks fail with that)."""
        _ = self.projects
        return self._broken_msgs

    def _broken(self, stage: str, name: str) -> dict[str, Any]:
        """A task of a project whose configuration is wrong: listed with the reason, failing
        with it when run, so the other projects still load and run."""
        msg = self.broken[name]
        return {"name": name, "doc": f"cannot {stage}: {msg.splitlines()[0]}",
                "actions": [(actions.fail_with, [msg])], "uptodate": [False], **self._common()}

    def _rel(self, path: str | os.PathLike[str]) -> str:
        """`path` relative to the workspace, for docs (string slicing: called per task at load)."""
        text = os.fspath(path)
        root = os.fspath(self.ws.root).rstrip("/") + "/"
        if text.startswith(root):
            return text[len(root):]
        try:
            return os.path.relpath(text, root)
        except ValueError:
            return text

    def _common(self) -> dict[str, Any]:
        """What every task dict shares: output not captured by doit (run_logged tees it)."""
        return {"io": {"capture": False}, "verbosity": 2}

    def _logged(self, task_name: str, func: Callable[..., Any], *args: Any) -> tuple:
        return (run_logged, [task_name, self.log_dir, func, *args])

    # ------------------------------------------------------------ compile
    def task_compile(self) -> Iterator[dict[str, Any]]:
        yield {"basename": "compile", "name": None,
               "doc": "compile every model to Model Library Format (build/mlf/<model>[@<target>].tar)"}
        keys: dict[str, tuple[ModelSpec, str, str | None]] = {
            m.name: (m, "generic", None) for m in self.ws.models.values()}
        for p in self.projects.values():
            keys.setdefault(p.compile_key, (self.ws.models[p.spec.model], p.target, p.tune_log))
        for key, (m, target, log) in keys.items():
            yield self._compile(key, m, target, log)

    def _compile(self, key: str, m: ModelSpec, target: str = "generic", log: str | None = None
                 ) -> dict[str, Any]:
        from .. import __version__

        out = str(self.ws.mlf_path(key))
        module = c_identifier(m.name)
        # A change to our compiler's sources recompiles (identical output then stops there).
        compiler_id = self._compiler_id() if m.compiler == "builtin" else m.compiler
        builtin = m.compiler == "builtin"
        what = f" for {target}" if builtin and target != "generic" else ""
        what += " with its tuning log" if builtin and log else ""
        return {
            "name": key,
            "doc": f"compile {self._rel(m.path)} with the {m.compiler} compiler{what} -> {self._rel(out)}",
            "actions": [self._logged(f"compile:{key}", actions.compile_action, str(m.path), m.compiler,
                                     dict(m.options), module, out, target if builtin else None,
                                     log if builtin else None)],
            "file_dep": [str(m.path)] + ([log] if log and builtin else []),
            "targets": [out],
            "uptodate": [rules.options_unchanged("compile", {
                "compiler": compiler_id, "options": m.options, "module_name": module, "version": __version__,
                **({"target": target} if target != "generic" else {})})],
            "clean": True,
            **self._common(),
        }

    def _compiler_id(self) -> str:
        """The hash of our compiler's sources, once per load (every compile and tune task
        of the builtin compiler asks for it)."""
        if self._compiler_hash is None:
            self._compiler_hash = self.hasher.tree_hash(Path(__file__).resolve().parent.parent / "compiler")
        return self._compiler_hash

    # ------------------------------------------------------------ tune
    def task_tune(self) -> Iterator[dict[str, Any]]:
        yield {"basename": "tune", "name": None,
               "doc": "measure kernel variants on the device for projects with `tune: true` "
                      "(build/tune/<project>.jsonl)"}
        for name, p in self.projects.items():
            if p.spec.tune:
                yield self._tune(name)

    def _tune(self, name: str) -> dict[str, Any]:
        p = self.projects[name]
        m = self.ws.models[p.spec.model]
        assert p.tune_log is not None
        work = str(self.state_dir / "tune" / name)
        return {
            "name": name,
            "doc": f"measure the kernel variants of {m.name} on {p.device} ({p.target}) -> "
                   f"{self._rel(p.tune_log)}",
            "actions": [self._logged(f"tune:{name}", actions.tune_action, str(m.path), str(p.spec.template),
                                     p.options, p.tune_log, work, p.target, dict(m.options),
                                     c_identifier(m.name), self.cache_dir, self.lock_dir, p.device)],
            "file_dep": [str(m.path)],
            "targets": [p.tune_log],
            "uptodate": [rules.options_unchanged("tune", {"compiler": self._compiler_id(), "target": p.target,
                                                    "options": p.options})],
            "clean": True,
            **self._common(),
        }

    # ------------------------------------------------------------ generate
    def task_generate(self) -> Iterator[dict[str, Any]]:
        yield {"basename": "generate", "name": None,
               "doc": "generate every project from its template (Project API generate_project)"}
        for name in self.ws.projects:
            yield self._broken("generate", name) if name in self.broken else self._generate(name)

    def _generate(self, name: str) -> dict[str, Any]:
        p = self.projects[name]
        spec = p.spec
        mlf = p.mlf
        template = str(spec.template)
        where = f"{self._rel(self.ws.path)}, project '{name}'"  # (option errors with lines come at load)
        return {
            "name": name,
            "doc": f"generate {self._rel(p.dir)} from {spec.platform or self._rel(template)} "
                   f"and model {spec.model} (force=1 to overwrite hand edits)",
            # lock_dir by keyword: doit passes the `force` parameter by keyword too
            "actions": [(*self._logged(f"generate:{name}", actions.generate_action, p.dir, mlf,
                                       template, p.options, spec.platform, spec.force_regenerate,
                                       self.cache_dir, where), {"lock_dir": self.lock_dir})],
            "params": [{"name": "force", "long": "force", "type": bool, "default": False,
                        "help": "regenerate even over files edited by hand (the old project is backed up)"}],
            "file_dep": [mlf],
            "targets": [os.path.join(p.dir, STATE_FILE)],
            "uptodate": [
                (rules.generated_from_current_template, [p.dir, template, self.hasher]),
                rules.options_unchanged("generate", {"template": template, "platform": spec.platform,
                                               "options": p.by_stage["generate"]}),
            ],
            "clean": [(actions.clean_project, [p.dir, p.run_dir])],
            **self._common(),
        }

    # ------------------------------------------------------------ build
    def task_build(self) -> Iterator[dict[str, Any]]:
        yield {"basename": "build", "name": None, "doc": "build every project"}
        for name in self.ws.projects:
            yield self._broken("build", name) if name in self.broken else self._build(name)

    def _build(self, name: str) -> dict[str, Any]:
        p = self.projects[name]
        return {
            "name": name,
            "doc": f"build {self._rel(p.dir)} (reruns after hand edits of its files)",
            "actions": [self._logged(f"build:{name}", actions.build_action, p.dir, p.options,
                                     self.lock_dir)],
            "task_dep": [f"generate:{name}"],
            "uptodate": [
                (rules.built_from_current_generation, [p.dir]),
                (rules.project_files_unchanged, [p.dir]),
                rules.options_unchanged("build", p.by_stage["build"]),
            ],
            "clean": [(actions.clean_build_outputs, [p.dir])],
            **self._common(),
        }

    # ------------------------------------------------------------ flash
    def task_flash(self) -> Iterator[dict[str, Any]]:
        yield {"basename": "flash", "name": None, "doc": "flash every project's build onto its device"}
        for name in self.ws.projects:
            yield self._broken("flash", name) if name in self.broken else self._flash(name)

    def _flash(self, name: str) -> dict[str, Any]:
        p = self.projects[name]
        return {
            "name": name,
            "doc": f"flash the build of {name} onto {p.device}",
            "actions": [self._logged(f"flash:{name}", actions.flash_action, p.dir, p.options, self.lock_dir,
                                     p.device)],
            "task_dep": [f"build:{name}"],
            "uptodate": [
                (rules.flashed_current_build, [p.dir]),
                rules.options_unchanged("flash", p.by_stage["flash"]),
            ],
            **self._common(),
        }

    # ------------------------------------------------------------ run
    def task_run(self) -> Iterator[dict[str, Any]]:
        yield {"basename": "run", "name": None,
               "doc": "run every project once on its device (outputs in build/runs/<project>/)"}
        for name in self.ws.projects:
            task = self._broken("run", name) if name in self.broken else self._run(name)
            yield {"basename": "run", **task}

    def _run(self, name: str) -> dict[str, Any]:
        p = self.projects[name]
        inputs = str(p.spec.inputs) if p.spec.inputs else None
        if inputs and not os.path.isfile(inputs):  # (one stat per run task: cheap at load)
            loc = project_location(self.ws, name, "inputs")
            msg = (f"{loc}: project '{name}': its `inputs:` file {inputs} does not exist; create it (an .npz "
                   "with one array per model input, e.g. numpy.savez) or fix the path in `inputs:`")
            return {"name": name, "doc": f"cannot run: {msg}", "actions": [(actions.fail_with, [msg])],
                    "task_dep": [f"flash:{name}"], "uptodate": [False], **self._common()}
        targets = [os.path.join(p.run_dir, f) for f in ("inputs.npz", "outputs.npz", "summary.json")]
        return {
            "name": name,
            "doc": f"run {name} on {p.device}: {self._rel(p.run_dir)}/outputs.npz, summary.json",
            "actions": [self._logged(f"run:{name}", actions.run_action, p.dir, p.options, self.lock_dir,
                                     p.device, p.run_dir, inputs)],
            "task_dep": [f"flash:{name}"],
            "file_dep": [inputs] if inputs else [],
            "targets": targets,
            "uptodate": [
                (rules.ran_current_flash, [p.dir, p.run_dir]),
                rules.options_unchanged("run", {"options": p.by_stage["run"], "inputs": inputs}),
            ],
            "clean": [(actions.clean_dir, [p.run_dir])],
            **self._common(),
        }

    # ------------------------------------------------------------ doit glue
    def doit_config(self) -> dict[str, Any]:
        return {
            "dep_file": str(self.state_dir / "doit.db"),
            "backend": "sqlite3",
            "default_tasks": list(self.ws.default_tasks),
            # holds the workspace lock for the run: a second doit waits, then finds the work done
            "reporter": ProgressReporter.for_workspace(self.lock_dir, str(self.ws.root)),
            "verbosity": 2,
            "subtasks": True,  # `doit list` shows every compile:/generate:/... task with its doc
            # one project's failure (or misconfiguration) does not stop the others; doit still
            # skips what depends on a failed task and exits non-zero
            "continue": True,
        }

    def namespace(self) -> dict[str, Any]:
        """What a dodo.py's globals need: DOIT_CONFIG and the task_* generators."""
        return {
            "DOIT_CONFIG": self.doit_config(),
            "task_tune": self.task_tune,
            "task_compile": self.task_compile,
            "task_generate": self.task_generate,
            "task_build": self.task_build,
            "task_flash": self.task_flash,
            # doit refuses a creator called task_run ("run" is its command); the tasks are
            # still named run:<project> through their basename.
            "task_run_on_device": self.task_run,
        }


def _check_writable(*dirs: Path) -> None:
    """Refuse, at load, a workspace whose `.tvmc/` or `build/` cannot be written (read-only, not
    ours, or a disk so full not even an empty file fits), with one line naming the directory
    and the fix: otherwise doit's database or the first task would fail with a traceback."""
    import tempfile

    from ..fsutil import DISK_ERRNOS, disk_error_message

    for d in dirs:
        try:
            d.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=d, prefix=".write-probe-"):
                pass
        except OSError as e:
            if e.errno not in DISK_ERRNOS:
                raise
            raise MicrotvmError(disk_error_message(e, d)) from None


def _guard_dep_file() -> None:
    """doit's sqlite dependency file (.tvmc/doit.db) failing to open or to be written ("database
    or disk is full", a read-only file) ends the run with one line saying what to do, instead of
    doit's traceback. doit offers no hook there, so its SqliteDB's two entry points that write
    are wrapped, once per process (only a doit process loads the workspace's tasks)."""
    try:
        from doit.dependency import SqliteDB
    except ImportError:  # pragma: no cover - doit is a dependency
        return
    if getattr(SqliteDB, "_microtvm_guarded", False):
        return
    import functools
    import sqlite3

    def guarded(method: Callable[..., Any], doing: str) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except (sqlite3.Error, OSError) as e:
                why = str(e) or type(e).__name__
                print(f"microtvm: {self.name}: cannot {doing} doit's record of the tasks ({why}); free space "
                      f"on its disk or make {os.path.dirname(os.path.abspath(self.name))} writable, then run "
                      "again: tasks whose record was lost run again, nothing half-written is taken as done",
                      file=sys.stderr, flush=True)
                raise SystemExit(3) from None
        return wrapper

    SqliteDB.__init__ = guarded(SqliteDB.__init__, "open")  # type: ignore[method-assign]
    SqliteDB.dump = guarded(SqliteDB.dump, "write")  # type: ignore[method-assign]
    SqliteDB._microtvm_guarded = True  # type: ignore[attr-defined]


def workspace_tasks(config: str | os.PathLike[str] = "projects.yaml") -> dict[str, Any]:
    """DOIT_CONFIG and task generators for a projects.yaml, for `globals().update(...)` in dodo.py.

    A configuration error is printed as one message (file:line: what is wrong) and doit
    exits with status 3, instead of a traceback.
    """
    try:
        wt = WorkspaceTasks(config)
        if not wt.ws.projects:
            raise ConfigError(f"{wt.ws.path}: declares no projects, so doit has nothing to do; add `models:` "
                              "and `projects:` (or a `matrix:`), as the README's example shows")
        ns = wt.namespace()
        # resolve now: option and template errors surface at load, with lines; a project whose
        # own settings are wrong is reported and its tasks fail, the others load and run
        for msg in wt.broken.values():
            print(f"microtvm: {msg} (its tasks will fail; the other projects are not affected)",
                  file=sys.stderr)
        _check_writable(wt.state_dir, wt.ws.build_dir)
    except MicrotvmError as e:
        print(f"microtvm: {e}", file=sys.stderr)
        raise SystemExit(3) from None
    _guard_dep_file()
    ns["MICROTVM_WORKSPACE"] = wt
    from .logs import interrupt_hook

    if getattr(sys.excepthook, "__qualname__", "") != "interrupt_hook.<locals>.hook":
        sys.excepthook = interrupt_hook(sys.excepthook)
    return ns
