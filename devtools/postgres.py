"""A real PostgreSQL for the tests: Debian's binaries (``apt-get install postgresql``) running a
throwaway cluster on a free port of 127.0.0.1 with trust authentication.

As root (tests in containers and CI), ``initdb`` and ``pg_ctl`` run as the ``postgres`` user
(``runuser``), in a folder of its own under the system's temporary folder, since pytest's
folders are closed to other users; the server's log is copied into ``folder`` when it stops.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import URL, create_engine, make_url, text

from devtools.servers import LOG_TAIL_CHARS, ServerStartError, free_port

__all__ = [
    "DEBIAN_ROOT",
    "PostgresNotInstalledError",
    "fresh_database",
    "newest_bin",
    "running_postgres",
]

#: where Debian installs each major version's binaries (``<version>/bin``)
DEBIAN_ROOT = Path("/usr/lib/postgresql")
#: seconds ``pg_ctl`` waits for the server to start or stop
WAIT_SECONDS = 60
#: superuser ``postgres`` without a password, UTF-8, no fsync (a cluster thrown away after)
INITDB_OPTIONS = ("-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")


class PostgresNotInstalledError(ServerStartError):
    """No ``initdb``/``pg_ctl`` under :data:`DEBIAN_ROOT`."""


def newest_bin(root: Path = DEBIAN_ROOT) -> Path:
    """The ``bin`` folder of the newest version under ``root`` that has ``initdb`` and
    ``pg_ctl``; :class:`PostgresNotInstalledError` if there is none."""
    found = [
        d / "bin"
        for d in (root.iterdir() if root.is_dir() else [])
        if re.fullmatch(r"\d+(\.\d+)?", d.name)
        and (d / "bin" / "initdb").is_file()
        and (d / "bin" / "pg_ctl").is_file()
    ]
    if not found:
        raise PostgresNotInstalledError("PostgreSQL is not installed: run `make services`")
    return max(found, key=lambda b: tuple(int(n) for n in b.parent.name.split(".")))


@contextmanager
def running_postgres(folder: Path, *, root: Path = DEBIAN_ROOT) -> Iterator[str]:
    """A new cluster started on a free port; yields its SQLAlchemy URL (user and database
    ``postgres``, no password). Stopped (``pg_ctl stop -m fast``) when the block ends;
    :class:`ServerStartError` with the log's end if it does not start."""
    bin_dir = newest_bin(root)
    folder.mkdir(parents=True, exist_ok=True)
    as_root = os.geteuid() == 0
    work = Path(tempfile.mkdtemp(prefix="assistant-pg-")) if as_root else folder
    if as_root:
        user = pwd.getpwnam("postgres")
        os.chown(work, user.pw_uid, user.pw_gid)
    run = _Run(["runuser", "-u", "postgres", "--"] if as_root else [])
    data, log, port = work / "data", work / "postgres.log", free_port()
    try:
        run([bin_dir / "initdb", "-D", data, *INITDB_OPTIONS], log)
        options = f"-c listen_addresses=127.0.0.1 -p {port} -k {work} -c fsync=off"
        pg_ctl: list[str | Path] = [
            bin_dir / "pg_ctl",
            "-D",
            data,
            "-l",
            log,
            "-w",
            "-t",
            str(WAIT_SECONDS),
        ]
        run([*pg_ctl, "-o", options, "start"], log)
        try:
            yield URL.create(
                "postgresql+psycopg", "postgres", host="127.0.0.1", port=port, database="postgres"
            ).render_as_string(hide_password=False)
        finally:
            run([*pg_ctl, "-m", "fast", "stop"], log, check=False)
    finally:
        if as_root:
            if log.exists():
                shutil.copyfile(log, folder / "postgres.log")
            shutil.rmtree(work, ignore_errors=True)


class _Run:
    """Runs a PostgreSQL binary (as ``postgres`` when we are root); a failure raises
    :class:`ServerStartError` with its output and the server log's end."""

    def __init__(self, prefix: list[str]) -> None:
        self.prefix = prefix

    def __call__(self, args: list[str | Path], log: Path, *, check: bool = True) -> None:
        done = subprocess.run(
            [*self.prefix, *map(str, args)],
            capture_output=True,
            text=True,
            env={**os.environ, "LC_ALL": "C"},
            cwd="/",  # a folder postgres may enter
            check=False,
        )
        if check and done.returncode != 0:
            tail = log.read_text(errors="replace")[-LOG_TAIL_CHARS:] if log.exists() else ""
            raise ServerStartError(
                f"{Path(str(args[0])).name} exited with {done.returncode}:\n"
                f"{done.stdout}{done.stderr}\n{tail}"
            )


def fresh_database(url: str, prefix: str = "test") -> str:
    """A new, empty database on the server of ``url`` (its user may create databases);
    returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)
