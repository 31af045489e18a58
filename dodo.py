"""doit entry point: every microTVM stage of the projects in projects.yaml as a task.

    doit list                      # the tasks, with what each does
    doit                           # build every project (compile, generate, build as needed)
    doit run:sine_host             # ... and run one, results in build/runs/sine_host/
    doit generate:sine_host force=1   # regenerate over hand edits (the old project is backed up)

State lives in .tvmc/ (doit's database, server-info cache, locks, logs).
"""

from microtvm_tasks.tasks import workspace_tasks

globals().update(workspace_tasks("projects.yaml"))
