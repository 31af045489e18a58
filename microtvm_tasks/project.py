"""Project operations shared by the CLI and the doit tasks: create, build, flash.

Each operation leaves the project either in its previous good state or in the new one,
and records in `.tvmc.json` what it did and from which inputs, so a later run (or the doit
up-to-date checks in `tasks/rules.py`) can tell what is stale without starting a server:

* `create_project` generates into a temporary directory beside the target and renames it
  into place with `.tvmc.json` already inside: a half-generated project never exists
  under the project's name. Over an existing project it first looks for files edited or
  added by hand since generation and refuses (HandEditError) rather than lose them; with
  `force` the old project is moved to a backup directory, never deleted.
* `build_project` / `flash_project` start the project's own Project API server and call
  build / flash with the options remembered at create time merged with overrides. Before
  building, the previous build record is withdrawn (so an interrupted build is never
  taken as done); afterwards the files the build read (with their stat and hash) and the
  files it wrote are recorded, which is what hand-edit detection and the build's
  up-to-date check compare against.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import HandEditError, MLFError, StateError, TemplateError
from .fsutil import IGNORED_NAMES, ContentChecker, iter_tree, sha256_file, walk_files
from .state import STATE_FILE, ProjectState, load_state, save_state, try_load_state

#: Stages whose outputs inside the project are recorded (and so are not "user files").
OUTPUT_STAGES = ("build", "flash", "run")

#: Prefix of the temporary directories generate works in (beside the project).
_TMP_INFIX = ".gen-"


# ------------------------------------------------------------------ what a stage wrote


def stat_tree(project_dir: str | os.PathLike[str]) -> dict[str, tuple[int, int]]:
    """{relpath: (mtime_ns, size)} of every file but .tvmc.json: cheap, no reads.

    Taken before and after a stage to find what it wrote, without hashing build outputs
    (a Zephyr build writes thousands of files).
    """
    out: dict[str, tuple[int, int]] = {}
    for rel, path in sorted(walk_files(project_dir)):
        if rel == STATE_FILE:
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        out[rel] = (st.st_mtime_ns, st.st_size)
    return out


def _changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Files new in `after` or whose (mtime, size) differs from `before`: what a stage wrote."""
    return sorted(rel for rel, sig in after.items()
                  if rel not in before or tuple(before[rel][:2]) != tuple(sig[:2]))


def stage_outputs(state: ProjectState, stages: Iterable[str] = OUTPUT_STAGES) -> set[str]:
    """Every file recorded as written by one of `stages` (build products, flash records...)."""
    out: set[str] = set()
    for stage in stages:
        out.update(state.artefacts.get(stage, {}).get("outputs", []))
    return out


def _interrupted_since(state: ProjectState) -> float | None:
    """Start time of a stage that never finished (killed): files newer than it are its outputs."""
    times = [a.get("started") for a in state.artefacts.values()
             if a.get("complete") is False and isinstance(a.get("started"), (int, float))]
    return min(times) if times else None


def find_hand_edits(project_dir: str | os.PathLike[str], state: ProjectState) -> list[str]:
    """Files a person changed or added since generate_project: what a regenerate would lose.

    A generated file whose hash differs from `generated_files`, or a file that is neither
    generated nor a recorded output of build/flash/run. Files written by an interrupted
    stage (newer than its start) count as its outputs. Deleted files are not listed:
    nothing of the user's is lost by regenerating them.
    """
    root = Path(project_dir)
    outputs = stage_outputs(state)
    since = _interrupted_since(state)
    edited: list[str] = []
    for rel in iter_tree(root, IGNORED_NAMES):
        if rel == STATE_FILE or rel in outputs:
            continue
        path = root / rel
        if since is not None and path.stat().st_mtime >= since - 1:
            continue
        generated = state.generated_files.get(rel)
        if generated is None or sha256_file(path) != generated:
            edited.append(rel)
    return edited


# ------------------------------------------------------------------ create


def _resolve_template(template_dir: str | os.PathLike[str]) -> Path:
    """A template directory (an existing directory is taken as a path) or a platform name."""
    from .platforms import find_template

    path = Path(template_dir)
    return find_template(path if path.is_dir() else os.fspath(template_dir))


def _runtime_dir() -> str:
    """What we pass as `standalone_crt_dir`: our firmware runtime's sources."""
    return str(Path(__file__).resolve().parent / "runtime")


def _unique_backup(project_dir: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = project_dir.with_name(f"{project_dir.name}.backup-{stamp}")
    n = 1
    while candidate.exists():
        n += 1
        candidate = project_dir.with_name(f"{project_dir.name}.backup-{stamp}-{n}")
    return candidate


def _remove_stale_tmp(project_dir: Path) -> None:
    """Delete leftovers of interrupted generates of this project (ours by name)."""
    parent = project_dir.parent
    if not parent.is_dir():
        return
    prefix = f".{project_dir.name}{_TMP_INFIX}"
    for entry in parent.iterdir():
        if entry.name.startswith(prefix) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def check_existing_project(project_dir: Path, *, force: bool, keep_any: bool = False) -> Path | None:
    """Decide what happens to an existing project before regenerating over it.

    Returns None when it can be replaced freely, the backup path when `force` moved it
    aside; raises HandEditError listing the hand-edited files otherwise. With `keep_any`
    (`microtvm create-project`, where nothing says the directory is meant to be regenerated)
    any existing project, edited or not, counts: refused without `force`, backed up with it,
    so its build and remembered options are never lost silently.
    """
    if not project_dir.exists():
        return None
    if not project_dir.is_dir():
        raise HandEditError(f"{project_dir}: exists and is not a directory; move it away first")
    try:
        state = try_load_state(project_dir)
    except StateError:
        state = None
    if keep_any and state is not None and not find_hand_edits(project_dir, state):
        if not force:
            built = " (built)" if state.artefacts.get("build", {}).get("complete") else ""
            raise HandEditError(
                f"{project_dir} already holds a project{built} for {state.platform or 'a template'}; "
                "creating another there would replace it and its remembered options. Choose another "
                "directory, or give -f to replace it (the old project is then kept as a backup)."
            )
        backup = _unique_backup(project_dir)
        os.rename(project_dir, backup)
        _say(f"microtvm: kept the old project at {backup}")
        return backup
    if state is None:
        files = iter_tree(project_dir, IGNORED_NAMES)
        if not files:
            return None
        edited = files
        why = "is not a project generated by microtvm-tasks (no readable .tvmc.json)"
    else:
        edited = find_hand_edits(project_dir, state)
        why = "has files edited or added by hand since it was generated"
        if not edited:
            return None
    if not force:
        shown = "\n  ".join(edited[:20]) + ("\n  ..." if len(edited) > 20 else "")
        raise HandEditError(
            f"{project_dir} {why}; regenerating would overwrite them:\n  {shown}\n"
            "Move your changes into the template (or keep a copy), then regenerate with force "
            "(`doit generate:<project> force=1`, `regenerate: force` in projects.yaml, or "
            "`microtvm create-project -f`); the old project is then moved to a backup directory."
        )
    backup = _unique_backup(project_dir)
    os.rename(project_dir, backup)
    _say(f"microtvm: kept the old project (with your edits) at {backup}")
    return backup


def create_project(
    project_dir: str | os.PathLike[str],
    mlf_path: str | os.PathLike[str],
    template_dir: str | os.PathLike[str],
    options: Mapping[str, Any] | None,
    *,
    force: bool = False,
    platform: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    where: str | None = None,
    keep_existing: bool = False,
) -> ProjectState:
    """Generate a project from a template and an MLF archive, atomically, and record its state.

    `options` are checked against the template's server info (types, choices, required
    for generate_project); `where` names their origin in error messages. `keep_existing`:
    an existing project is never replaced without `force` (check_existing_project's keep_any).
    """
    from . import options as opts
    from .project_api.client import instantiate_from_dir
    from .server_info import get_server_info

    project_dir = Path(project_dir).absolute()
    mlf_path = Path(mlf_path).absolute()
    template = _resolve_template(template_dir)
    where = where or "project options"
    if not mlf_path.is_file():
        raise MLFError(f"{mlf_path}: Model Library Format archive not found; compile the model first")

    info = get_server_info(template, cache_dir)
    po = info.get("project_options", [])
    typed = opts.coerce_options(dict(options or {}), po, where=where)  # all of them: kept in .tvmc.json
    call_options = opts.resolve("generate_project", opts.Layer(typed, where, typed=True), server_info=po,
                                where=where)

    project_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(project_dir)
    backup = check_existing_project(project_dir, force=force, keep_any=keep_existing)

    work = Path(tempfile.mkdtemp(prefix=f".{project_dir.name}{_TMP_INFIX}", dir=project_dir.parent))
    try:
        target = work / project_dir.name
        with instantiate_from_dir(str(template)) as client:
            client.generate_project(
                model_library_format_path=str(mlf_path),
                standalone_crt_dir=_runtime_dir(),
                project_dir=str(target),
                options=call_options,
            )
        if not target.is_dir():
            raise TemplateError(f"{template}: generate_project did not create {target}")
        files = ContentChecker().tree_state(target, exclude={STATE_FILE})
        state = ProjectState(
            platform=platform or info.get("platform_name"),
            template_dir=str(template),
            template_hash=info["template_hash"],
            options=typed,
            mlf_path=str(mlf_path),
            mlf_hash=sha256_file(mlf_path),
            generated_files={rel: sig[2] for rel, sig in files.items()},
            artefacts={"generate": {"id": uuid.uuid4().hex, "time": time.time(), "complete": True,
                                    **({"backup": str(backup)} if backup else {})}},
        )
        save_state(target, state)
        old = None
        if project_dir.exists():  # no hand edits (checked above): replace it
            old = work / "old"
            os.rename(project_dir, old)
        try:
            os.rename(target, project_dir)
        except OSError:
            if old is not None:  # put the old project back before the temp dir goes
                os.rename(old, project_dir)
            raise
    except OSError as e:
        from .fsutil import DISK_ERRNOS

        if e.errno not in DISK_ERRNOS:
            raise
        # the disk refused a write: name the file where it was going to be, not in the temporary
        # directory (removed below)
        def real(name: Any) -> Any:
            return name.replace(str(target), str(project_dir), 1) if isinstance(name, str) else name

        raise OSError(e.errno, e.strerror, real(e.filename2 or e.filename)) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return state


# ------------------------------------------------------------------ build / flash


def _project_options(client: Any) -> list[Any]:
    from .server_info import TVM_VERSION

    info = client.server_info_query(TVM_VERSION)
    return list(info.get("project_options", []) if isinstance(info, dict) else [])


def generation_id(state: ProjectState) -> str | None:
    """Identity of the generate that made the project as it is (changes on every regenerate)."""
    return state.artefacts.get("generate", {}).get("id")


def _run_stage(
    project_dir: Path, stage: str, method: str, overrides: Mapping[str, Any] | None,
    record: Any,
) -> ProjectState:
    """Call `method` on the project's own server, recording the stage before and after."""
    from . import options as opts
    from .project_api.client import instantiate_from_dir

    state = load_state(project_dir)
    before = stat_tree(project_dir)
    started = time.time()
    prior_outputs = sorted(stage_outputs(state, [stage]))
    state.artefacts[stage] = {"complete": False, "started": started, "outputs": prior_outputs}
    if stage == "build":
        state.last_flash = None if state.last_flash is None else {**state.last_flash, "build_id": None}
    save_state(project_dir, state)  # withdraw the previous record first: interrupted = not done
    outputs: list[str] = []
    try:
        with instantiate_from_dir(str(project_dir), echo_stderr=True) as client:
            po = _project_options(client)
            where = f"options of {project_dir}"
            call_options = opts.resolve(method, opts.Layer(state.options, where, typed=True),
                                        opts.Layer(overrides, where), server_info=po, where=where)
            getattr(client, method)(call_options)
    finally:
        after = stat_tree(project_dir)
        outputs = sorted(set(_changed(before, after)) | {o for o in prior_outputs if o in after})
        # Re-read: the server may not touch .tvmc.json, but be safe with what's on disk.
        state = load_state(project_dir)
        state.artefacts[stage] = {"complete": False, "started": started, "outputs": outputs}
        save_state(project_dir, state)
    record(state, before, after, outputs, call_options, started)
    save_state(project_dir, state)
    return state


def build_project(project_dir: str | os.PathLike[str], options: Mapping[str, Any] | None = None
                  ) -> ProjectState:
    """Build a generated project with its remembered options (+ `options` overrides)."""
    project_dir = Path(project_dir).absolute()

    previous_inputs = (try_load_state(project_dir, corrupt_ok=True) or ProjectState()).artefacts.get(
        "build", {}).get("inputs")

    def record(state: ProjectState, before: dict, after: dict, outputs: list[str],
               call_options: dict, started: float) -> None:
        out_set = set(outputs) | stage_outputs(state, [s for s in OUTPUT_STAGES if s != "build"])
        checker, prev = ContentChecker(), previous_inputs or {}
        inputs = {rel: checker.get_state(project_dir / rel, sig, prev.get(rel))
                  for rel, sig in before.items() if rel not in out_set}
        state.artefacts["build"] = {
            "complete": True,
            "id": uuid.uuid4().hex,
            "started": started,
            "finished": time.time(),
            "generation": generation_id(state),
            "mlf_hash": state.mlf_hash,
            "template_hash": state.template_hash,
            "options": call_options,
            "inputs": inputs,
            "outputs": outputs,
        }
        sizes = _read_size_report(project_dir)
        if sizes is not None:
            state.artefacts["build"]["sizes"] = sizes

    return _run_stage(project_dir, "build", "build", options, record)


#: Where a template's build may leave its image's section sizes (flash/RAM bytes, the
#: board's limits) as a JSON object; build_project copies it into `.tvmc.json`.
SIZE_REPORT = "build/sizes.json"


def _read_size_report(project_dir: Path) -> dict[str, Any] | None:
    """The template's size report, or None when it wrote none (or an unreadable one)."""
    import json

    path = project_dir / SIZE_REPORT
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None


def flash_project(project_dir: str | os.PathLike[str], options: Mapping[str, Any] | None = None
                  ) -> ProjectState:
    """Flash the last build of a project; records which build went onto the device."""
    project_dir = Path(project_dir).absolute()
    state = load_state(project_dir)
    build = state.artefacts.get("build", {})
    if not build.get("complete"):
        raise StateError(f"{project_dir}: not built (or its last build did not finish); build it first")
    build_id = build.get("id")

    def record(state: ProjectState, before: dict, after: dict, outputs: list[str],
               call_options: dict, started: float) -> None:
        flash_id = uuid.uuid4().hex
        state.artefacts["flash"] = {"complete": True, "id": flash_id, "started": started,
                                    "finished": time.time(), "outputs": outputs, "build_id": build_id}
        state.last_flash = {"id": flash_id, "build_id": build_id, "time": time.time(),
                            "options": call_options}

    return _run_stage(project_dir, "flash", "flash", options, record)


def record_outputs(project_dir: str | os.PathLike[str], stage: str, before: Mapping[str, Any]) -> None:
    """After a stage run outside this module (e.g. a session), remember the files it wrote.

    `before` is `stat_tree(project_dir)` taken before the stage.
    """
    project_dir = Path(project_dir)
    state = try_load_state(project_dir, corrupt_ok=True)
    if state is None:
        return
    after = stat_tree(project_dir)
    prior = set(stage_outputs(state, [stage]))
    outputs = sorted(set(_changed(before, after)) | {o for o in prior if o in after})
    entry = dict(state.artefacts.get(stage, {}))
    if entry.get("outputs") != outputs:
        entry["outputs"] = outputs
        state.artefacts[stage] = entry
        save_state(project_dir, state)
