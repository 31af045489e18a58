"""doit task generators: compile, generate, build, flash and run, from projects.yaml.

`dodo.py` is three lines::

    from microtvm_tasks.tasks import workspace_tasks
    globals().update(workspace_tasks("projects.yaml"))

which gives `doit` the tasks `compile:<model>`, `generate:<project>`, `build:<project>`,
`flash:<project>`, `run:<project>` (and the groups `compile`, `generate`, ...), its
configuration (state in `.tvmc/doit.db`, a progress reporter, `build` as the default).

Up-to-date rules
================

Each rule is one small function or class below, named for what it checks; doit calls
them before a task and reruns the task when any says False. None starts a Project API
server: server info comes from `server_info.py`'s cache and everything else from the
project's `.tvmc.json`.

=========================  ===============================================================
task                       up to date when
=========================  ===============================================================
compile:<m>                the model's bytes are unchanged (doit's MD5 `file_dep`: a touch
                           is not a change), the archive exists, `options_unchanged`
generate:<p>               the MLF archive's bytes are unchanged (`file_dep`; an identical
                           recompile does not cascade), `.tvmc.json` exists,
                           `generated_from_current_template`, `options_unchanged`
                           (options whose earliest stage is generate_project)
build:<p>                  `built_from_current_generation`, `project_files_unchanged`
                           (hand edits rebuild), `options_unchanged` (build options)
flash:<p>                  `flashed_current_build`, `options_unchanged` (flash options)
run:<p>                    `ran_current_flash` (and inputs unchanged), `options_unchanged`
                           (open_transport options)
=========================  ===============================================================

Each stage records its result atomically only once it has finished (archive renamed
into place, project renamed into place, build record written after the build), so an
interrupted stage is never taken as done. Regenerating over hand edits stops with a
HandEditError unless `doit generate:<p> force=1` or `regenerate: force` in projects.yaml.

Output
======

Each task's output (ours, the Project API server's stdout, build tools) is appended to
`.tvmc/logs/<task>.log` under a header naming the run (pid, command, time); it is also
streamed live when doit runs one task at a time (the default), and its tail is shown
when a task fails in a parallel run (`doit -n 2`). A MicrotvmError, or a write the disk
refuses (full, read-only), fails the task with one message and no traceback.

Locks (`.tvmc/locks/`): a `doit` run holds the workspace lock, so a second `doit` on the
same workspace waits (saying which pid and command holds it) and then finds the work
done; each generate/build/flash/run holds its project's lock; device stages (flash,
run) take a lock per board or port, so two never talk to the same device at once.

This module is imported on every `doit` invocation: it imports nothing heavy (no numpy,
no compiler) at load time.

Layout
======

Split by concern, as doit itself is (its dependency.py, reporter.py, loader.py):

=================  ==========================================================================
module             what it owns
=================  ==========================================================================
`rules.py`         the up-to-date rules above, one function (or class) per rule
`actions.py`       what each task does (compile, generate, build, flash, run, clean)
`logs.py`          `run_logged`: a task's output to its log and, streaming, the console
`locks.py`         `workspace_lock`, `project_lock`, `device_lock` (+ `device_key`): one at a time
`reporter.py`      `ProgressReporter`: done/total, one message per failure, a summary
`generators.py`    `WorkspaceTasks` and `workspace_tasks`: the task dicts of a projects.yaml
=================  ==========================================================================

Every public name stays importable from `microtvm_tasks.tasks` (dodo.py files import
from here).
"""

from __future__ import annotations

from .actions import (
    build_action,
    clean_build_outputs,
    clean_dir,
    clean_project,
    compile_action,
    flash_action,
    format_results,
    generate_action,
    run_action,
    run_and_record,
    tvmc_argv,
)
from .generators import STAGE_OF_METHOD, WorkspaceTasks, workspace_tasks
from .locks import (
    DEVICE_OPTIONS,
    LOCK_TIMEOUT_SEC,
    FileLock,
    device_key,
    device_lock,
    project_lock,
    workspace_lock,
)
from .logs import LOG_TAIL_LINES, run_logged
from .reporter import ProgressReporter
from .rules import (
    build_record,
    built_from_current_generation,
    flashed_current_build,
    generated_from_current_template,
    options_unchanged,
    project_files_unchanged,
    ran_current_flash,
    read_state,
)

__all__ = [
    "DEVICE_OPTIONS", "LOCK_TIMEOUT_SEC", "LOG_TAIL_LINES", "STAGE_OF_METHOD", "FileLock",
    "ProgressReporter", "WorkspaceTasks",
    "build_action", "build_record", "built_from_current_generation", "clean_build_outputs", "clean_dir",
    "clean_project", "compile_action", "device_key", "device_lock", "flash_action", "flashed_current_build",
    "format_results", "generate_action", "generated_from_current_template", "options_unchanged",
    "project_files_unchanged", "ran_current_flash", "read_state", "run_action", "run_and_record",
    "project_lock", "run_logged", "tvmc_argv", "workspace_lock", "workspace_tasks",
]
