"""The server-info cache: one server launch per template content, cheap hashing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_tasks_support import write_fake_template

from microtvm_tasks.fsutil import tree_hash
from microtvm_tasks.server_info import TreeHasher, get_server_info, template_hash


@pytest.fixture
def server_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "servers.log"
    monkeypatch.setenv("FAKE_SERVER_LOG", str(log))
    return log


def starts(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_cached_by_template_hash_and_refreshed_on_edit(tmp_path: Path, server_log: Path) -> None:
    tpl = write_fake_template(tmp_path / "tpl")
    cache = tmp_path / "cache"
    info = get_server_info(tpl, cache)
    assert info["platform_name"] == "fake"
    assert info["template_hash"] == tree_hash(tpl)
    assert (cache / f"{tree_hash(tpl)}.json").is_file()
    assert starts(server_log) == 1

    again = get_server_info(tpl, cache)
    assert again == info
    assert starts(server_log) == 1, "a cached template launched its server"

    (tpl / "data.txt").write_text("changed\n")
    changed = get_server_info(tpl, cache)
    assert changed["template_hash"] != info["template_hash"]
    assert starts(server_log) == 2

    # Back to the old content: the old entry is found again, no launch.
    (tpl / "data.txt").write_text("/* template data v1 */\n")
    assert get_server_info(tpl, cache)["template_hash"] == info["template_hash"]
    assert starts(server_log) == 2


def test_corrupt_cache_entry_is_rewritten(tmp_path: Path, server_log: Path) -> None:
    tpl = write_fake_template(tmp_path / "tpl")
    cache = tmp_path / "cache"
    info = get_server_info(tpl, cache)
    entry = cache / f"{info['template_hash']}.json"
    entry.write_text("{not json")
    assert get_server_info(tpl, cache)["platform_name"] == "fake"
    assert json.loads(entry.read_text())["template_hash"] == info["template_hash"]
    assert starts(server_log) == 2


def test_default_cache_dir_is_dot_tvmc_of_cwd(tmp_path: Path, server_log: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's cache is .tvmc/ of the current directory; it says so: no hidden default."""
    from microtvm_tasks import cli

    tpl = write_fake_template(tmp_path / "tpl")
    monkeypatch.chdir(tmp_path)
    info = cli.server_info(tpl)
    assert (tmp_path / ".tvmc" / "server_info" / f"{info['template_hash']}.json").is_file()
    entries = sorted((tmp_path / ".tvmc" / "server_info").iterdir())
    before = starts(server_log)
    get_server_info(tpl)  # no cache_dir: the server is asked, and nothing is written
    assert starts(server_log) == before + 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tvmc", "servers.log", "tpl"]
    assert sorted((tmp_path / ".tvmc" / "server_info").iterdir()) == entries


def test_hash_matches_fsutil_and_reads_only_changed_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    tpl = write_fake_template(tmp_path / "tpl")
    (tpl / "sub").mkdir()
    (tpl / "sub" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(tpl / "sub" / "run.sh", 0o755)
    cache = tmp_path / "cache"
    assert template_hash(tpl, cache) == tree_hash(tpl)

    import microtvm_tasks.fsutil as fsutil

    reads: list[str] = []
    real = fsutil.sha256_file
    monkeypatch.setattr(fsutil, "sha256_file", lambda p: reads.append(Path(p).name) or real(p))
    fresh = TreeHasher(cache)  # a new process: only the on-disk stat cache is known
    got = fresh.tree_hash(tpl)
    assert reads == [], "unchanged files were read again"
    assert got == tree_hash(tpl)  # (fsutil.tree_hash keeps no record: it reads every file)
    reads.clear()
    (tpl / "data.txt").write_text("new content\n")
    got = TreeHasher(cache).tree_hash(tpl)
    assert reads == ["data.txt"]
    assert got == tree_hash(tpl)
    # the executable bit is part of the hash
    before = tree_hash(tpl)
    os.chmod(tpl / "sub" / "run.sh", 0o644)
    assert TreeHasher(cache).tree_hash(tpl) == tree_hash(tpl) != before


def test_broken_template_is_a_clear_error(tmp_path: Path) -> None:
    from microtvm_tasks.errors import MicrotvmError

    tpl = tmp_path / "broken"
    tpl.mkdir()
    (tpl / "microtvm_api_server.py").write_text("import sys\nsys.exit('I am broken')\n")
    with pytest.raises(MicrotvmError, match="(?s)broken.*I am broken"):
        get_server_info(tpl, tmp_path / "cache")
