"""devtools.postgres without a server: which binaries it picks, and the failure without any."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.postgres import PostgresNotInstalledError, newest_bin, running_postgres
from devtools.servers import ServerStartError


def _install(root: Path, version: str, *tools: str) -> Path:
    bin_dir = root / version / "bin"
    bin_dir.mkdir(parents=True)
    for tool in tools:
        (bin_dir / tool).write_text("#!/bin/sh\n")
    return bin_dir


def test_the_newest_complete_version_is_picked(tmp_path: Path) -> None:
    _install(tmp_path, "9.6", "initdb", "pg_ctl")
    newest = _install(tmp_path, "15", "initdb", "pg_ctl")
    _install(tmp_path, "16", "psql")  # only the client: no server to run
    (tmp_path / "common").mkdir()
    assert newest_bin(tmp_path) == newest


@pytest.mark.parametrize("make_root", [False, True])
def test_no_postgresql_is_a_server_start_error_saying_what_to_do(
    tmp_path: Path, make_root: bool
) -> None:
    root = tmp_path / "postgresql"
    if make_root:
        _install(root, "15", "psql")
    with pytest.raises(PostgresNotInstalledError, match=r"not installed: run `make services`"):
        newest_bin(root)
    with pytest.raises(ServerStartError), running_postgres(tmp_path / "pg", root=root):
        pass
