"""A Project API server's lifetime (issue 13, items 7 to 10): nothing it started outlives the
client, Ctrl-C is prompt, a silent or flooding server is stopped.

Real processes and real signals: a fake template starts a child (``sleep 600``) in its
process group and then blocks, exits or stays silent; the client runs in this process or,
when it is the one to be killed, in a subprocess. Every pid seen is killed at teardown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from microtvm_tasks.project_api import client

pytestmark = pytest.mark.timeout(60)

LIFETIME_SERVER = textwrap.dedent(
    '''
    """A template whose build starts `sleep 600` (pid in child.pid) and then does `mode`."""
    import os
    import pathlib
    import subprocess
    import sys
    import time

    from microtvm_tasks.project_api import server

    OPTIONS = [server.ProjectOption("mode", optional=["build"], type="str", help="what build does")]


    class Handler(server.ProjectAPIHandler):
        def server_info_query(self, tvm_version):
            return server.ServerInfo("lifetime", True, None, OPTIONS)

        def generate_project(self, model_library_format_path, standalone_crt_dir, project_dir, options):
            raise NotImplementedError

        def build(self, options):
            mode = options.get("mode", "return")
            write_fd = int(sys.argv[sys.argv.index("--write-fd") + 1])
            # "crash": the child holds the reply pipe, so end of file never comes
            keep = (write_fd,) if mode == "crash" else ()
            child = subprocess.Popen(["sleep", "600"], pass_fds=keep)
            pathlib.Path("child.pid").write_text(str(child.pid))
            if mode == "hang":
                time.sleep(600)
            if mode == "crash":
                os._exit(3)

        def flash(self, options):
            pass

        def open_transport(self, options):
            return server.TransportTimeouts(1.0, 1.0, 1.0)

        def close_transport(self):
            pass

        def read_transport(self, n, timeout_sec):
            raise server.TransportClosedError()

        def write_transport(self, data, timeout_sec):
            raise server.TransportClosedError()


    if __name__ == "__main__":
        server.main(Handler())
    '''
)

SILENT_SERVER = "import time\ntime.sleep(600)\n"
"""A server that reads nothing and writes nothing."""

FLOOD_SERVER = textwrap.dedent(
    """
    import os, sys
    read_fd = int(sys.argv[sys.argv.index("--read-fd") + 1])
    write_fd = int(sys.argv[sys.argv.index("--write-fd") + 1])
    os.read(read_fd, 1 << 16)
    chunk = b"x" * (1 << 20)
    try:
        for _ in range(200):  # 200 MiB without a newline
            os.write(write_fd, chunk)
    except OSError:
        pass
    """
)

# The client, run as a subprocess so that it can be killed: it prints the server's pid,
# then calls build(mode) and, like session.run_project, close_transport in a finally.
CLIENT_SCRIPT = textwrap.dedent(
    """
    import sys
    from microtvm_tasks.project_api import client
    with client.instantiate_from_dir(sys.argv[1]) as api:
        print(api.server_process.proc.pid, flush=True)
        try:
            api.build({"mode": sys.argv[2]})
        finally:
            try:
                api.close_transport()
            except Exception:
                pass
    """
)


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for a parent that does not reap is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _gone_within(pids: list[int], limit: float) -> float:
    """Seconds until all of `pids` are gone, polled up to `limit` (+1 s to show how far over)."""
    start = time.monotonic()
    while any(_alive(p) for p in pids) and time.monotonic() - start < limit + 1.0:
        time.sleep(0.01)
    return time.monotonic() - start


def _wait_for(path: Path, limit: float = 20.0) -> int:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            return int(path.read_text())
        except (OSError, ValueError):
            time.sleep(0.01)
    raise AssertionError(f"{path} never appeared")


@pytest.fixture
def pids() -> Iterator[list[int]]:
    """Pids a test saw; whatever of them still runs is killed afterwards."""
    seen: list[int] = []
    yield seen
    for pid in seen:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _template(tmp_path: Path, source: str = LIFETIME_SERVER) -> Path:
    directory = tmp_path / "lifetime"
    directory.mkdir()
    (directory / "microtvm_api_server.py").write_text(source)
    return directory


def _start_client(template: Path, mode: str, pids: list[int]) -> tuple[subprocess.Popen[str], int, int]:
    """A client subprocess blocked in build(mode): (it, the server's pid, the child's pid)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT_SCRIPT, str(template), mode], stdout=subprocess.PIPE, text=True
    )
    pids.append(proc.pid)
    assert proc.stdout is not None
    server_pid = int(proc.stdout.readline())
    pids.append(server_pid)
    child_pid = _wait_for(template / "child.pid")
    pids.append(child_pid)
    return proc, server_pid, child_pid


# -- item 7: the client killed ------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_killed_client_leaves_no_server_and_no_child(tmp_path: Path, pids: list[int], signum: int):
    proc, server_pid, child_pid = _start_client(_template(tmp_path), "hang", pids)
    time.sleep(0.2)  # well inside build's sleep
    proc.send_signal(signum)
    proc.wait(timeout=10)
    took = _gone_within([server_pid, child_pid], 2.0)
    print(f"{signal.Signals(signum).name}: server and child gone {took:.3f} s after the client")
    assert not _alive(server_pid), "the server outlived its client"
    assert not _alive(child_pid), "the server's child outlived the client"
    assert took <= 2.0


# -- item 8: SIGINT to the client alone ---------------------------------------------------


def test_sigint_to_the_client_alone_is_prompt(tmp_path: Path, pids: list[int]):
    proc, server_pid, child_pid = _start_client(_template(tmp_path), "hang", pids)
    time.sleep(0.2)
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)  # the client only: not its group, not the server
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    took = time.monotonic() - start
    gone = _gone_within([proc.pid, server_pid, child_pid], 2.0)
    print(f"SIGINT: client exited {took:.3f} s after it, server and child gone {gone:.3f} s after")
    assert proc.returncode is not None and took <= 2.0, f"the client took {took:.1f} s to stop"
    assert not _alive(server_pid) and not _alive(child_pid)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def test_interrupt_in_a_call_closes_the_connection(tmp_path: Path, pids: list[int]):
    """A KeyboardInterrupt in the middle of a call stops the server at once; a later call
    (close_transport in a finally) is refused at once instead of waiting for a reply."""
    template = _template(tmp_path)
    with client.instantiate_from_dir(template, timeout=30) as api:
        pids.append(api.server_process.proc.pid)
        old = signal.signal(signal.SIGALRM, _interrupt)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.5)
            start = time.monotonic()
            with pytest.raises(KeyboardInterrupt):
                api.build({"mode": "hang"})
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        pids.append(_wait_for(template / "child.pid"))
        with pytest.raises(client.ConnectionShutdownError, match="already closed"):
            api.close_transport()
        took = time.monotonic() - start
    assert took < 2.5
    assert not any(_alive(p) for p in pids)


# -- item 9: the server's process group ---------------------------------------------------


def test_child_is_gone_after_the_client_closes(tmp_path: Path, pids: list[int]):
    template = _template(tmp_path)
    with client.instantiate_from_dir(template, timeout=30) as api:
        server_pid = api.server_process.proc.pid
        pids.append(server_pid)
        api.build({"mode": "return"})
        child_pid = _wait_for(template / "child.pid")
        pids.append(child_pid)
        assert _alive(child_pid)
    assert _gone_within([server_pid, child_pid], 2.0) <= 2.0
    assert not _alive(child_pid), "the server's child outlived the closed client"


def test_child_is_gone_after_a_server_crash_noticed_at_once(tmp_path: Path, pids: list[int]):
    """The server exits mid-call while its child holds the reply pipe: the client notices
    the exit at once (not at the 30 s limit) and the child is stopped with it."""
    template = _template(tmp_path)
    with client.instantiate_from_dir(template, timeout=30) as api:
        pids.append(api.server_process.proc.pid)
        start = time.monotonic()
        with pytest.raises(client.ConnectionShutdownError, match="exited with status 3"):
            api.build({"mode": "crash"})
        took = time.monotonic() - start
    child_pid = _wait_for(template / "child.pid")
    pids.append(child_pid)
    assert took < 5.0, f"the server's exit took {took:.1f} s to notice"
    assert _gone_within([child_pid], 2.0) <= 2.0
    assert not _alive(child_pid), "the crashed server's child is still running"


def test_server_not_started_by_our_client_keeps_its_group(tmp_path: Path, pids: list[int]):
    """Without the client's marker (as under TVM's client) the server leaves no watchdog
    and kills nobody: its group is not its own."""
    template = _template(tmp_path)
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    env = {k: v for k, v in os.environ.items() if k != "MICROTVM_PROJECT_API_CLIENT_PID"}
    proc = subprocess.Popen(
        [sys.executable, str(template / "microtvm_api_server.py"),
         "--read-fd", str(r1), "--write-fd", str(w2)],
        cwd=template, pass_fds=(r1, w2), env=env,
    )
    pids.append(proc.pid)
    os.close(r1)
    os.close(w2)
    os.close(w1)  # end of file: the server exits
    assert proc.wait(timeout=20) == 0
    os.close(r2)
    assert os.getpgrp() == os.getpgid(0)  # we are still here, our group untouched


# -- item 10: silent and flooding servers -------------------------------------------------


def test_silent_server_is_stopped_without_waiting_for_the_stage_limit(tmp_path: Path, pids: list[int]):
    template = _template(tmp_path, SILENT_SERVER)
    with client.instantiate_from_dir(template, timeout=20, stage_timeout=20) as api:
        pids.append(api.server_process.proc.pid)
        api.request_read_limit = 1.0
        start = time.monotonic()
        with pytest.raises(client.ServerTimeoutError, match="did not read the build request within 1 s"):
            api.build({})
        took = time.monotonic() - start
    assert took < 5.0


def test_per_method_timeout(tmp_path: Path, pids: list[int]):
    template = _template(tmp_path)
    with client.instantiate_from_dir(template, method_timeouts={"build": 1.0}) as api:
        pids.append(api.server_process.proc.pid)
        start = time.monotonic()
        with pytest.raises(client.ServerTimeoutError, match="did not answer build within 1 s"):
            api.build({"mode": "hang"})
        took = time.monotonic() - start
    pids.append(_wait_for(template / "child.pid"))
    assert took < 5.0
    assert _gone_within(pids, 2.0) <= 2.0


def test_endless_reply_is_capped_in_bounded_memory(tmp_path: Path):
    template = _template(tmp_path, FLOOD_SERVER)
    code = textwrap.dedent(
        """
        import resource, sys
        from microtvm_tasks.project_api import client
        with client.instantiate_from_dir(sys.argv[1], timeout=60) as api:
            try:
                api.build({})
            except client.MalformedReplyError as exc:
                print("ERROR", exc)
        print("MAXRSS_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(template)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "ERROR" in out and "calling build" in out and "longer than 64 MiB" in out, out
    maxrss_mib = int(out.rsplit("MAXRSS_KIB", 1)[1]) / 1024
    assert maxrss_mib < 250, f"the client grew to {maxrss_mib:.0f} MiB"
