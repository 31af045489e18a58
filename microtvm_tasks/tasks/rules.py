"""Up-to-date rules of the doit tasks: one function (or class) per rule, named for the rule.

doit calls them before a task and reruns the task when any says False. None starts a
Project API server: server info comes from `server_info.py`'s cache and everything else
from the project's `.tvmc.json` (parsed once per change by `read_state`). The table of
which task holds which rule is in the package docstring (`microtvm_tasks.tasks`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from ..errors import MicrotvmError
from ..state import STATE_FILE, ProjectState, try_load_state


class options_unchanged:  # noqa: N801 - named like doit's own `config_changed`
    """Up to date while this stage's options hash the same as at its last success.

    Like doit's `config_changed`, but with a key per stage so a task can hold several,
    and the digest saved only when the task succeeds. `doit forget` drops it (rerun).
    """

    def __init__(self, stage: str, options: Mapping[str, Any]) -> None:
        self.key = f"options:{stage}"
        self.options = dict(options)
        self.digest = json.dumps(self.options, sort_keys=True, default=str)

    def configure_task(self, task: Any) -> None:
        task.value_savers.append(lambda: {self.key: self.digest})

    def __call__(self, task: Any, values: Mapping[str, Any]) -> bool:
        return values.get(self.key) == self.digest

    def __repr__(self) -> str:
        return f"options_unchanged({self.key!r}, {self.options!r})"


class _StateReader:
    """`.tvmc.json` parsed once per (path, mtime, size): several rules read the same file."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple[int, int], ProjectState | None]] = {}

    def __call__(self, project_dir: str | os.PathLike[str]) -> ProjectState | None:
        path = os.path.join(project_dir, STATE_FILE)
        try:
            st = os.stat(path)
        except OSError:
            return None
        sig = (st.st_mtime_ns, st.st_size)
        hit = self._cache.get(path)
        if hit is not None and hit[0] == sig:
            return hit[1]
        state = try_load_state(project_dir, corrupt_ok=True)
        self._cache[path] = (sig, state)
        return state


read_state = _StateReader()


def generated_from_current_template(project_dir: str, template_dir: str, hasher: Any) -> bool:
    """The project exists, its generate finished, and the template's content is unchanged."""
    state = read_state(project_dir)
    if state is None or not state.artefacts.get("generate", {}).get("complete"):
        return False
    try:
        return state.template_hash == hasher.tree_hash(template_dir)
    except MicrotvmError:
        return False


def built_from_current_generation(project_dir: str) -> bool:
    """The last build finished and was made from the project as it was last generated."""
    state = read_state(project_dir)
    if state is None:
        return False
    build = state.artefacts.get("build", {})
    return bool(build.get("complete")) and build.get("generation") == \
        state.artefacts.get("generate", {}).get("id")


def project_files_unchanged(project_dir: str) -> bool:
    """No file the build read was edited, deleted or added since, and its outputs still exist.

    Files written by build/flash/run are not inputs. fsutil's ContentChecker decides: a
    file whose (mtime, size) is as recorded is unchanged, else its content hash (a touch
    is not an edit).
    """
    from ..fsutil import ContentChecker
    from ..project import stage_outputs

    state = read_state(project_dir)
    if state is None:
        return False
    build = state.artefacts.get("build", {})
    inputs: dict[str, list[Any]] = build.get("inputs") or {}
    if ContentChecker().tree_modified(project_dir, inputs, exclude=stage_outputs(state) | {STATE_FILE}):
        return False
    return all(os.path.exists(os.path.join(project_dir, rel)) for rel in build.get("outputs", []))


def flashed_current_build(project_dir: str) -> bool:
    """The device holds the project's last finished build."""
    state = read_state(project_dir)
    if state is None or not state.last_flash:
        return False
    build = state.artefacts.get("build", {})
    return bool(build.get("complete")) and state.last_flash.get("build_id") == build.get("id")


def ran_current_flash(project_dir: str, run_dir: str) -> bool:
    """The last run's summary was made on the image now on the device."""
    state = read_state(project_dir)
    if state is None or not state.last_flash:
        return False
    try:
        with open(os.path.join(run_dir, "summary.json"), encoding="utf-8") as f:
            summary = json.load(f)
    except (OSError, ValueError):
        return False
    return summary.get("flash_id") == state.last_flash.get("id")


def build_record(project_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The project's last finished build (`id`, `outputs`, `inputs`, `options`...), or None.

    For a user's own tasks downstream of build:<project> (see examples/embedding/dodo.py).
    """
    state = read_state(project_dir)
    build = state.artefacts.get("build", {}) if state is not None else {}
    return dict(build) if build.get("complete") else None
