"""One engine over the feedback database, upgraded to the newest schema when first used.

The database is any SQLAlchemy URL (``ASSISTANT_FEEDBACK_URL``, e.g.
``postgresql+psycopg://user:password@host:5432/db`` shared by every replica), or by default the
SQLite file ``<data_dir>/feedback.sqlite3``. SQLite runs in WAL mode with ``synchronous=FULL``,
and every transaction starts ``BEGIN IMMEDIATE`` (DDL included), so a kill during a write loses
at most that write and two processes never migrate at once. On PostgreSQL the migration runs in
one transaction under an advisory lock, so replicas starting together upgrade once.

A database that cannot be reached is a :class:`~assistant.errors.DatabaseUnavailableError`
(HTTP 503); which database and why goes to the log, its password hidden.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Connection, Engine, create_engine, event, exc, make_url, text

from assistant.errors import ConfigError, DatabaseUnavailableError, InputError
from assistant.records.migrations import MIGRATIONS_DIR

__all__ = ["CONNECT_TIMEOUT", "FEEDBACK_FILE", "MIGRATION_LOCK", "Database", "upgrade"]

log = logging.getLogger(__name__)

FEEDBACK_FILE = "feedback.sqlite3"
#: seconds to wait for a database server (or a SQLite file another process is writing)
CONNECT_TIMEOUT = 10
#: the PostgreSQL advisory lock held while migrating: a number no other application uses
MIGRATION_LOCK = int.from_bytes(b"assist-m", "big") >> 1


class Database:
    """The feedback database at ``url``; any thread may use it. :meth:`begin` upgrades the
    schema the first time (and again after a failed attempt)."""

    def __init__(self, url: str | URL) -> None:
        self.url = _parse(url)
        #: the URL to show: password hidden
        self.name = self.url.render_as_string(hide_password=True)
        #: the SQLite file, or None for a database server
        self.file = _sqlite_file(self.url)
        self.engine = _engine(self.url)
        self._lock = threading.Lock()
        self._upgraded = False

    @classmethod
    def for_data_dir(cls, data_dir: Path, url: str = "") -> Database:
        """``url``, or when it is empty the SQLite file ``<data_dir>/feedback.sqlite3``."""
        if url.strip():
            return cls(url.strip())
        return cls(URL.create("sqlite", database=str(data_dir / FEEDBACK_FILE)))

    @property
    def backend(self) -> str:
        """``sqlite``, ``postgresql``…"""
        return self.url.get_backend_name()

    def exists(self) -> bool:
        """False only for a SQLite file not made yet (nothing stored, nothing to read)."""
        return self.file is None or self.file.exists()

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A connection in a transaction, committed when the block ends (rolled back on an
        error); the schema is upgraded first if this has not been done yet."""
        self.upgrade()
        with self._connect() as conn, self._reachable(), conn.begin():
            yield conn

    def upgrade(self) -> None:
        """Bring the schema to the newest revision (once per instance; idempotent)."""
        if self._upgraded:
            return
        with self._lock:
            if self._upgraded:
                return
            with self._connect() as conn, self._reachable(), conn.begin():
                upgrade(conn)
            self._upgraded = True

    @contextmanager
    def storing(self, what: str) -> Iterator[Connection]:
        """:meth:`begin` for a write of ``what`` ("feedback", "event"): text the database cannot
        hold (a lone surrogate; a NUL character on PostgreSQL) is an :class:`InputError`."""
        try:
            with self.begin() as conn:
                yield conn
        except UnicodeEncodeError as err:
            raise InputError(f"the {what} is not valid text ({err.reason})") from None
        except exc.DataError as err:
            reason = str(err.orig or err).strip().splitlines()[0]
            raise InputError(f"the {what} cannot be stored: {reason}") from None

    def size(self) -> int | None:
        """Bytes taken: SQLite's pages (the file once its WAL is checkpointed; the WAL itself
        is bounded by SQLite's automatic checkpoints), PostgreSQL's two tables with their
        indexes and TOAST; None (not measured) on other databases."""
        if self.backend == "sqlite":
            query = "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"
        elif self.backend == "postgresql":
            query = "SELECT pg_total_relation_size('feedback') + pg_total_relation_size('events')"
        else:
            return None
        with self.begin() as conn:
            return int(conn.execute(text(query)).scalar_one())

    def dispose(self) -> None:
        """Close the pooled connections (a later call opens new ones)."""
        self.engine.dispose()

    def _connect(self) -> Connection:
        if self.file is not None:
            try:
                self.file.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise InputError(f"cannot store feedback in {self.file}: {err}") from err
        with self._reachable():
            return self.engine.connect()

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        """A lost or refused connection (or a SQLite file locked too long) as
        :class:`DatabaseUnavailableError`, without the driver's traceback."""
        try:
            yield
        except (exc.OperationalError, exc.InterfaceError) as err:
            reason = str(err.orig or err).strip().splitlines()[0]
            if self.url.password:
                reason = reason.replace(str(self.url.password), "***")
            log.error("cannot reach the feedback database %s: %s", self.name, reason)
            raise DatabaseUnavailableError(
                f"the feedback database ({self.backend}) cannot be reached now; try again "
                "later (the server's log says why)",
                self.name,
            ) from None


def upgrade(conn: Connection) -> None:
    """Run the migrations up to the newest on ``conn`` (in a transaction), under PostgreSQL's
    advisory lock: a second replica waits, then finds nothing left to do."""
    from alembic import command
    from alembic.config import Config

    if conn.dialect.name == "postgresql":  # released when the transaction ends
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.attributes["connection"] = conn
    command.upgrade(config, "head")


def _parse(url: str | URL) -> URL:
    try:
        return make_url(url)
    except exc.ArgumentError as err:  # its message does not quote the URL (nor its password)
        raise ConfigError(
            f"ASSISTANT_FEEDBACK_URL is not a database URL like "
            f"postgresql+psycopg://user:password@host:5432/db: {err}"
        ) from None


def _sqlite_file(url: URL) -> Path | None:
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).expanduser()


def _engine(url: URL) -> Engine:
    backend = url.get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        connect_args["timeout"] = CONNECT_TIMEOUT
    elif backend == "postgresql":
        connect_args["connect_timeout"] = CONNECT_TIMEOUT
    try:
        engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    except (exc.ArgumentError, ImportError) as err:  # an unknown dialect or a missing driver
        raise ConfigError(
            f"ASSISTANT_FEEDBACK_URL: cannot use {url.render_as_string(hide_password=True)}: {err}"
        ) from None
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_connected)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connected(dbapi_connection: Any, _record: Any) -> None:
    """WAL and ``synchronous=FULL``; transactions begun by :func:`_sqlite_begin`, not by the
    driver (which would leave DDL outside them)."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
    finally:
        cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")
