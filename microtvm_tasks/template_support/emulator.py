"""Start an emulator (QEMU) whose UART is a loopback TCP socket we created.

The listening socket is bound here (port 0: the kernel picks a free port) and its
descriptor passed to the emulator (QEMU's ``-chardev socket,fd=N,server=on,wait=on``), so
there is no race for a port between choosing it and the emulator binding it, and the
emulator waits for our connection before starting the CPU, so no boot output is lost. The
emulator runs in its own process group (stopped as a whole with
`processes.kill_group`) and gets SIGKILL when the server dies.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

from microtvm_tasks.template_support.processes import parent_death_preexec


def launch_on_loopback(
    argv_for_fd: Callable[[int], list[str]], log_path: Path
) -> tuple[subprocess.Popen, int]:
    """Start ``argv_for_fd(fd)`` with a listening 127.0.0.1 socket as descriptor `fd` and its
    output in `log_path` (truncated); return (process, TCP port to connect to)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        fd = listener.fileno()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv_for_fd(fd),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(fd,),
                start_new_session=True,
                preexec_fn=parent_death_preexec(),  # noqa: PLW1509 - needed for parent-death kill
            )
    finally:
        listener.close()  # the emulator holds its own copy of the listening socket
    return proc, port
