"""The feedback database on a real PostgreSQL (Debian's binaries, a throwaway cluster): ratings,
comments, events, migrations run once however many replicas start together, clear errors for a
database that cannot be reached; and a SQLite file made before migrations, adopted with its rows.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import Connection, create_engine, inspect, text

from assistant.errors import (
    ConfigError,
    DatabaseUnavailableError,
    InputError,
    PersonalDataError,
    StorageFullError,
)
from assistant.pipeline import Assistant
from assistant.records import Database, Event, EventStore
from assistant.records.database import MIGRATION_LOCK
from assistant.records.feedback import FEEDBACK_FILE, FeedbackStore
from assistant.records.migrations import HEAD, VERSION_TABLE
from assistant.records.schema import metadata
from assistant.schema import Turn
from assistant.serve.web import create_app
from assistant.settings import Settings
from devtools.postgres import fresh_database
from devtools.servers import free_port

pytestmark = pytest.mark.slow

HOURS_2 = timedelta(hours=2)
PERSONAL = "Jane Smith, DOB 14/03/1962, NHS number 943 476 5919, 07700 900123"


@pytest.fixture
def database_url(postgres_url: str) -> str:
    """A new, empty database on the session's PostgreSQL."""
    return fresh_database(postgres_url)


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[FeedbackStore]:
    store = FeedbackStore(tmp_path / "data", url=database_url)
    yield store
    store.database.dispose()


def _applied(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())
    finally:
        engine.dispose()


def _schema_differences(url: str) -> list[object]:
    """What the migrated database lacks or has beyond the tables the code uses (none)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


# -- ratings ---------------------------------------------------------------------------------------


def test_a_rating_and_its_comment_are_stored(store: FeedbackStore, tmp_path: Path) -> None:
    history = [Turn("user", "What is it?"), Turn("assistant", "A unit. [1]")]
    row = store.add("Who hosts it?", "A PCT. [1]", -1, history)
    store.comment(row, "  Wrong host.  ")
    second = store.add("And now?", "An ICB. [2]", 1)
    first, last = store.rows()
    assert (first["id"], last["id"]) == (row, second)
    assert (first["question"], first["comment"]) == ("Who hosts it?", "Wrong host.")
    assert json.loads(str(first["history"]))[1] == {"role": "assistant", "content": "A unit. [1]"}
    assert str(first["created"]).endswith("+00:00")
    assert set(first) == {"id", "created", "question", "history", "answer", "rating", "comment"}
    assert not (tmp_path / "data" / FEEDBACK_FILE).exists()  # nothing went to SQLite


def test_personal_data_is_refused_and_nothing_stored(store: FeedbackStore) -> None:
    with pytest.raises(PersonalDataError):
        store.add("Who hosts it?", "A PCT.", 1, [Turn("user", PERSONAL)])
    row = store.add("Who hosts it?", "Write to england.contactus@nhs.net", 1)
    with pytest.raises(PersonalDataError):
        store.comment(row, f"me: {PERSONAL}")
    (stored,) = store.rows()
    assert (stored["answer"], stored["comment"]) == ("Write to [email address]", "")


@pytest.mark.parametrize("bad", ["a NUL \x00 inside", "a lone surrogate \ud800"])
def test_text_postgresql_cannot_hold_is_an_input_error(store: FeedbackStore, bad: str) -> None:
    with pytest.raises(InputError, match="feedback"):
        store.add(bad, "an answer", 1)
    row = store.add("q", "a", 1)
    with pytest.raises(InputError, match="comment"):
        store.comment(row, bad)
    assert [r["comment"] for r in store.rows()] == [""]


@pytest.mark.parametrize("row_id", [99, 2**40, -1])
def test_a_comment_on_an_unknown_row_is_an_input_error(store: FeedbackStore, row_id: int) -> None:
    store.add("q", "a", 1)
    with pytest.raises(InputError, match=f"no feedback with id {row_id}"):
        store.comment(row_id, "hello")


def test_the_size_cap_counts_the_tables(database_url: str, tmp_path: Path) -> None:
    roomy = FeedbackStore(tmp_path, max_bytes=10_000_000, url=database_url)
    tiny = FeedbackStore(tmp_path, max_bytes=1, url=database_url)  # an empty table has pages
    try:
        roomy.add("q", "a", 1)
        with pytest.raises(StorageFullError):
            tiny.add("q", "a", 1)
        assert len(roomy.rows()) == 1
    finally:
        roomy.database.dispose()
        tiny.database.dispose()


def test_ratings_sent_to_the_api_land_in_postgresql(
    database_url: str, tiny_assistant: Assistant, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", allowed_hosts=("testserver",), feedback_url=database_url
    )
    with TestClient(create_app(settings, tiny_assistant)) as client:
        r = client.post("/api/feedback", json={"question": "q?", "answer": "a.", "rating": -1})
    assert r.status_code == 200
    reader = FeedbackStore(tmp_path / "elsewhere", url=database_url)
    assert [row["id"] for row in reader.rows()] == [r.json()["id"]]
    reader.database.dispose()


# -- events ----------------------------------------------------------------------------------------


def test_events_are_recorded_and_listed_newest_first(database_url: str) -> None:
    events = EventStore(Database(database_url))
    now = datetime.now(UTC).replace(microsecond=0)
    old = Event("api", "ask", "answered", created=now - timedelta(days=2))
    refused = Event("widget", "stream", "refused", "rate", created=now - timedelta(minutes=5))
    answered = Event(
        "page", "ask", "answered", question="Who hosts it?", sources=("NHS England", "doc-7"),
        latency_ms=412, build_id="20261204-0800", created=now.astimezone(timezone(HOURS_2)),
    )  # fmt: skip
    ids = [events.record(e) for e in (old, refused, answered)]
    got = events.recent(now - timedelta(days=1))
    assert [e.id for e in got] == [ids[2], ids[1]]
    assert got[0] == Event(**{**answered.__dict__, "id": ids[2], "created": now})
    assert got[0].created.tzinfo == UTC
    assert got[1].question is None
    assert events.recent(now + timedelta(seconds=1)) == []
    assert len(events.recent(now - timedelta(days=3), limit=2)) == 2
    events.database.dispose()


# -- migrations ------------------------------------------------------------------------------------


def test_migrations_run_once_and_a_second_start_changes_nothing(
    database_url: str, tmp_path: Path
) -> None:
    first = FeedbackStore(tmp_path, url=database_url)
    row = first.add("q", "a", 1)
    first.database.dispose()
    again = FeedbackStore(tmp_path, url=database_url)
    again.database.upgrade()
    assert [r["id"] for r in again.rows()] == [row]
    again.database.dispose()
    assert _applied(database_url) == [HEAD]
    assert _schema_differences(database_url) == []


def test_replicas_starting_together_all_work(database_url: str, tmp_path: Path) -> None:
    replicas = 4
    barrier = threading.Barrier(replicas)
    ids: list[int] = []
    errors: list[BaseException] = []

    def replica(n: int) -> None:
        store = FeedbackStore(tmp_path / str(n), url=database_url)
        try:
            barrier.wait(timeout=30)
            ids.append(store.add(f"from replica {n}", "a", 1))
        except BaseException as err:
            errors.append(err)
        finally:
            store.database.dispose()

    threads = [threading.Thread(target=replica, args=(n,)) for n in range(replicas)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len(set(ids)) == replicas
    assert _applied(database_url) == [HEAD]


def test_the_upgrade_waits_for_the_advisory_lock(database_url: str) -> None:
    """A replica that finds another one migrating waits for it (no table made meanwhile)."""
    holder = create_engine(database_url)
    database = Database(database_url)
    with holder.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
        upgrading = threading.Thread(target=database.upgrade)
        upgrading.start()
        _wait_for(lambda: _advisory_waiters(conn) == 1)
        assert not inspect(conn).has_table("feedback")
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
        conn.commit()
        upgrading.join(timeout=30)
    holder.dispose()
    database.dispose()
    assert not upgrading.is_alive()
    assert _applied(database_url) == [HEAD]


def _advisory_waiters(conn: Connection) -> int:
    query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    waiting = int(conn.execute(text(query)).scalar_one())
    conn.rollback()  # a fresh snapshot for the next poll
    return waiting


def _wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# -- errors ----------------------------------------------------------------------------------------


def test_an_unreachable_server_is_a_clear_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"postgresql+psycopg://app:s3cret-pw@127.0.0.1:{free_port()}/assistant"
    store = FeedbackStore(tmp_path, url=url)
    with caplog.at_level(logging.ERROR), pytest.raises(DatabaseUnavailableError) as caught:
        store.add("q", "a", 1)
    err = caught.value
    assert (err.status, err.retry_after) == (503, 30)
    assert "cannot be reached" in str(err)
    assert err.__cause__ is None  # no driver traceback attached
    assert err.__suppress_context__
    assert err.database.startswith("postgresql+psycopg://app:***@127.0.0.1:")
    assert err.database in caplog.text
    assert "s3cret-pw" not in str(err) + err.database + caplog.text
    assert not (tmp_path / FEEDBACK_FILE).exists()


def test_an_unknown_database_on_a_running_server_is_a_clear_error(postgres_url: str) -> None:
    url = postgres_url.rsplit("/", 1)[0] + "/no_such_database"
    with pytest.raises(DatabaseUnavailableError, match="cannot be reached"):
        EventStore(Database(url)).record(Event("api", "ask", "answered"))


@pytest.mark.parametrize(
    "url", ["not a url", "nosuchdialect://app:s3cret-pw@db/x", "postgresql+nodriver://app@db/x"]
)
def test_a_malformed_url_is_a_config_error(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError, match="ASSISTANT_FEEDBACK_URL") as caught:
        FeedbackStore(tmp_path, url=url)
    assert "s3cret-pw" not in str(caught.value)


# -- a SQLite file from before migrations ----------------------------------------------------------

OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    question TEXT NOT NULL,
    history TEXT NOT NULL DEFAULT '[]',
    answer TEXT NOT NULL,
    rating INTEGER NOT NULL CHECK (rating IN (1, -1)),
    comment TEXT NOT NULL DEFAULT ''
)
"""


def test_an_old_sqlite_file_is_adopted_with_its_rows(tmp_path: Path) -> None:
    db = tmp_path / FEEDBACK_FILE
    with sqlite3.connect(db) as conn:  # as the store wrote it before SQLAlchemy
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(OLD_SCHEMA)
        conn.executemany(
            "INSERT INTO feedback (created, question, history, answer, rating, comment) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [("2026-11-30T09:00:00+00:00", "Old?", '[{"role": "user", "content": "hi"}]',
              "Yes. [1]", 1, "fine"),
             ("2026-11-30T09:05:00+00:00", "Older?", "[]", "No. [1]", -1, "")],
        )  # fmt: skip
        conn.execute("DELETE FROM feedback WHERE id = 2")  # AUTOINCREMENT: 2 is not used again
    conn.close()
    store = FeedbackStore(tmp_path)
    (old,) = store.rows()
    assert (old["id"], old["question"], old["comment"]) == (1, "Old?", "fine")
    new = store.add("New?", "Yes. [2]", -1, comment="late")
    assert new == 3
    assert [r["question"] for r in store.rows()] == ["Old?", "New?"]
    EventStore(store.database).record(Event("page", "ask", "declined", "not_covered"))
    store.database.dispose()
    url = f"sqlite:///{db}"
    assert _applied(url) == [HEAD]
    # the old "id INTEGER PRIMARY KEY" lacks NOT NULL, which SQLite reports as nullable: it is
    # the rowid, never NULL, so nothing differs that matters
    (only,) = _schema_differences(url)
    assert only[0][:4] == ("modify_nullable", None, "feedback", "id")  # type: ignore[index]
