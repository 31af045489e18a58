"""Task logs: each task's output to `.tvmc/logs/<task>.log`, streamed live when doit runs one task at a time.

`run_logged` wraps an action: fds 1 and 2 go to the log (through a tee thread to the
console as well when streaming), a MicrotvmError becomes a TaskFailed with its message
and, when the output was not shown live, the log's tail. Each run is appended under a
header (task, pid, command, time), so the log of an earlier run, or of another process,
is never overwritten; a log past LOG_KEEP_BYTES moves to `<task>.old.log` first. A write
the disk refuses (full, read-only, not writable) fails the task with one line naming the
path and the fix, not a traceback.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import MicrotvmError

#: Lines of a failed task's log shown with its error (when the log was not streamed).
LOG_TAIL_LINES = 30

#: A task's log is moved to `<task>.old.log` (replacing the older one) once it is this large.
LOG_KEEP_BYTES = 8 << 20


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES, start: int = 0) -> str:
    """The last `lines` lines of `path` written after offset `start` (this run's part)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(start, size - 16384))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def _streaming() -> bool:
    """True when doit runs tasks in this process one at a time (not `-n N` workers)."""
    import multiprocessing

    return multiprocessing.current_process().name == "MainProcess" and \
        threading.current_thread() is threading.main_thread()


class _Tee(threading.Thread):
    def __init__(self, read_fd: int, log: Any, console_fd: int) -> None:
        super().__init__(daemon=True, name="task-log-tee")
        self.read_fd, self.log, self.console_fd = read_fd, log, console_fd

    def run(self) -> None:
        while True:
            try:
                data = os.read(self.read_fd, 65536)
            except OSError:
                return
            if not data:
                return
            if self.log is not None:
                try:
                    self.log.write(data)
                    self.log.flush()
                except OSError:  # a full disk: the console still gets it; the task's own error says why
                    self.log = None
            try:
                os.write(self.console_fd, data)
            except OSError:
                pass


def run_logged(task_name: str, log_dir: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run one task's work with fds 1 and 2 going to `.tvmc/logs/<task>.log` (+ the console).

    Redirecting the file descriptors (not just sys.stdout) also catches the Project API
    server and the build tools it runs. A MicrotvmError becomes a TaskFailed carrying its
    message (and the log's tail when the output was not shown live): no traceback.
    A string returned by `func` (a run's results) is printed even when the output was not
    shown live.
    """
    from doit.exceptions import TaskFailed

    from ..fsutil import DISK_ERRNOS, disk_error_message
    from .locks import _command

    log_path = Path(log_dir) / (re.sub(r"[^A-Za-z0-9_.+-]", "_", task_name) + ".log")
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if log_path.is_file() and log_path.stat().st_size > LOG_KEEP_BYTES:
            os.replace(log_path, log_path.with_name(log_path.stem + ".old.log"))
        log = open(log_path, "ab")  # noqa: SIM115 - closed by the with below
        start = log.tell()
        log.write(f"==== {task_name} · pid {os.getpid()} · {_command()} · "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S')} ====\n".encode())
        log.flush()
    except OSError as e:
        if e.errno not in DISK_ERRNOS:
            raise
        return TaskFailed(f"{task_name}: cannot write its log: {disk_error_message(e, log_path)}")
    stream = _streaming()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    tee: _Tee | None = None
    with log:
        if stream:
            read_fd, write_fd = os.pipe()
            tee = _Tee(read_fd, log, saved[0])
            tee.start()
            os.dup2(write_fd, 1)
            os.dup2(write_fd, 2)
            os.close(write_fd)
        else:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        failure: str | None = None
        full_text = ""
        # Python-level writes go to fds 1/2 too, whatever sys.stdout was (doit's, pytest's).
        old_streams = sys.stdout, sys.stderr
        sys.stdout = open(1, "w", buffering=1, closefd=False, encoding="utf-8", errors="replace")  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False, encoding="utf-8", errors="replace")  # noqa: SIM115
        result: Any = None
        try:
            result = func(*args, **kwargs)
        except MicrotvmError as e:
            failure, full_text = _short_message(e), str(e)
        except OSError as e:  # the disk refused a write: one line, and the stage is not recorded as done
            if e.errno not in DISK_ERRNOS:
                raise
            failure = full_text = (f"{disk_error_message(e)}; nothing half-written was kept, "
                                   "the task runs again next time")
        except KeyboardInterrupt:
            INTERRUPTED.append(task_name)  # for the one-line report (interrupt_hook)
            log.write(b"\ninterrupted (Ctrl-C)\n")
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout.close()
            sys.stderr.close()
            sys.stdout, sys.stderr = old_streams
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            if tee is not None:
                tee.join(timeout=5.0)  # EOF once every writer (a lingering child too) is gone
                if not tee.is_alive():
                    os.close(tee.read_fd)
            os.close(saved[0])
            os.close(saved[1])
            tail = ""
            if failure is not None:
                try:
                    log.flush()
                    if not stream:  # the task's own output, before our error text
                        tail = _log_tail(log_path, start=start)
                    if full_text != failure:  # the server-side traceback: in the log, not on screen
                        log.write(f"{full_text}\n".encode())
                    log.write(f"error: {failure}\n".encode())
                    log.flush()
                except OSError:  # a full disk: the message still reaches the console
                    pass
    if failure is None:
        if isinstance(result, str) and not stream:  # a result worth seeing: not only in the log
            print(f"{task_name}: {result}", flush=True)
        return None
    msg = f"{task_name}: {failure}\n(full output: {log_path})"
    if tail:
        msg += f"\n--- last lines of {log_path.name} ---\n{tail}"
    return TaskFailed(msg)


#: tasks a Ctrl-C interrupted in this process (normally one)
INTERRUPTED: list[str] = []


def interrupt_hook(previous: Any) -> Any:
    """A sys.excepthook that reports a Ctrl-C as one line instead of doit's ~50-line
    traceback. doit's runner records the tasks that finished before the KeyboardInterrupt
    leaves it (its finally closes the dependency file), and every action here writes
    through a temporary file or directory that it removes when interrupted, so the line
    can say that nothing half-written was kept."""

    def hook(tp: type[BaseException], value: BaseException, tb: Any) -> None:
        if not issubclass(tp, KeyboardInterrupt):
            previous(tp, value, tb)
            return
        where = f" during {INTERRUPTED[-1]}" if INTERRUPTED else ""
        print(f"microtvm: interrupted (Ctrl-C){where}; nothing half-written was kept, the tasks that "
              "finished are recorded: run the same command again to go on", file=sys.stderr, flush=True)

    return hook


def _short_message(e: BaseException) -> str:
    """The error as a person wants it: a template's own message without the server-side traceback.

    A template raising (say) ToolNotFoundError reaches us as a JSON-RPC error whose text
    holds the message, then the remote traceback; the traceback goes to the log only.
    The server's stderr tail (compiler errors) is kept.
    """
    text = str(e)
    data = getattr(e, "data", None)
    if not (isinstance(data, dict) and data.get("traceback")):
        return text
    cut = text.find("JSON-RPC error #")
    head = text[:cut].rsplit("\n", 1)[0].strip() if cut > 0 else ""
    if not head:
        return text
    marker = "The server's stderr during the call:"
    if marker in text:
        head += "\n" + text[text.index(marker):]
    return head
