"""The doit reporter of these tasks: progress as done/total, one message per failure, a summary."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any


def _reachable(tasks: Mapping[str, Any], selected: list[str] | None) -> set[str]:
    names = list(selected) if selected else list(tasks)
    seen: set[str] = set()
    while names:
        name = names.pop()
        if name in seen or name not in tasks:
            continue
        seen.add(name)
        t = tasks[name]
        names.extend(t.task_dep)
        names.extend(t.setup_tasks)
    return seen


try:
    from doit.reporter import ConsoleReporter as _ConsoleReporter
except ImportError:  # pragma: no cover - doit is a dependency
    _ConsoleReporter = object  # type: ignore[assignment, misc]


class ProgressReporter(_ConsoleReporter):  # type: ignore[misc, valid-type]
    """`.  build:sine_host  (3/12)` per task started, one message per failure, a summary.

    Up-to-date tasks are counted, not listed (a no-op over 500 projects prints one line).
    Failures from a MicrotvmError carry no traceback; an unexpected exception (a bug)
    keeps its traceback.
    """

    desc = "progress: done/total and the running task; up-to-date tasks summarised"

    #: Where the workspace lock lives and the workspace it names (set by `for_workspace`).
    lock_dir: str | None = None
    workspace: str = ""

    @classmethod
    def for_workspace(cls, lock_dir: str, workspace: str) -> type[ProgressReporter]:
        """This reporter, holding the workspace lock of `lock_dir` for the run (doit takes a class)."""
        return type(cls.__name__, (cls,), {"lock_dir": lock_dir, "workspace": workspace})

    def __init__(self, outstream: Any, options: Any) -> None:
        super().__init__(outstream, options)
        self.total = 0
        self.finished = 0
        self.executed: list[str] = []
        self.uptodate = 0
        self.failed: list[str] = []
        self.started_at = time.monotonic()
        self._lock: Any = None

    def _counts(self, task: Any) -> bool:
        return bool(task.actions) and not task.name.startswith("_")

    def initialize(self, tasks: Any, selected_tasks: Any) -> None:
        """Counts the tasks and takes the workspace lock: called by doit's runner before the first
        up-to-date check (doit reads `.tvmc/doit.db` per task, lazily), so a second `doit` waits
        here and then sees everything the first one recorded."""
        if self.lock_dir is not None and self._lock is None:
            from .locks import workspace_lock

            lock = workspace_lock(self.lock_dir, self.workspace)
            lock.__enter__()
            self._lock = lock
        self.total = sum(1 for n in _reachable(tasks, selected_tasks) if self._counts(tasks[n]))
        self.started_at = time.monotonic()

    def execute_task(self, task: Any) -> None:
        if self._counts(task):
            self.executed.append(task.name)
            self.write(f".  {task.name}  ({self.finished + 1}/{self.total})\n")
            self.outstream.flush()

    def add_success(self, task: Any) -> None:
        if self._counts(task):
            self.finished += 1

    def skip_uptodate(self, task: Any) -> None:
        if self._counts(task):
            self.finished += 1
            self.uptodate += 1

    def skip_ignore(self, task: Any) -> None:
        if self._counts(task):
            self.finished += 1
            self.write(f"!! {task.name} (ignored)\n")

    def add_failure(self, task: Any, fail: Any) -> None:
        from doit.exceptions import TaskFailed, UnmetDependency

        self.finished += 1
        self.failed.append(task.name)
        if isinstance(fail, UnmetDependency):
            self.write(f"-- {task.name} not run: it depends on {fail.message}, which failed\n")
        elif isinstance(fail, TaskFailed):
            self.write(f"FAILED {fail.message}\n" if fail.message.startswith(task.name)
                       else f"FAILED {task.name}: {fail.message}\n")
        else:
            self.write(f"ERROR in {task.name}: {fail.get_msg()}\n")

    def complete_run(self) -> None:
        """The summary line; the workspace lock is given back (doit has written doit.db by now)."""
        from .logs import INTERRUPTED

        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None
        if INTERRUPTED:  # "0 failed" would mislead: the interrupt hook says what happened
            return
        elapsed = time.monotonic() - self.started_at
        if self.runtime_errors:
            self.write("Execution aborted.\n" + "\n".join(self.runtime_errors) + "\n")
        if not self.executed and not self.failed:
            self.write(f"nothing to do: {self.uptodate} task(s) up to date ({elapsed:.2f} s)\n")
        else:
            self.write(f"{len(self.executed)} task(s) run, {self.uptodate} up to date, "
                       f"{len(self.failed)} failed ({elapsed:.1f} s)\n")
