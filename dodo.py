"""doit entry point: every microTVM stage of the projects in projects.yaml as a task.

    doit list --all                   # the tasks, with what each does
    doit                              # the default tasks (projects.yaml `default_tasks`)
    doit run:sine_host                # compile, generate, build, flash and run one project
    doit 'run:sine_*'                 # several (doit wildcards); `doit run run` runs them all
    doit -n 2 build                   # in parallel; logs in .tvmc/logs/<task>.log
    doit generate:sine_host force=1   # regenerate over hand edits (the old project is backed up)
    doit clean; doit forget build:sine_host

Only what is stale reruns (see microtvm_tasks/tasks/ for the rules). State lives in
.tvmc/ (doit's database, server-info cache, locks, logs).
"""

from microtvm_tasks.tasks import workspace_tasks

globals().update(workspace_tasks("projects.yaml"))
