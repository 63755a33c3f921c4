"""The feedback store (SQLite here; PostgreSQL in tests/integration/test_feedback_database.py):
rows, comments, bad input, no network identity kept; the migrations, the database URL and its
errors; events."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from assistant.errors import ConfigError, DatabaseUnavailableError, InputError
from assistant.records import Event, EventStore
from assistant.records.drafts import feedback_drafts
from assistant.records.feedback import FEEDBACK_FILE, MAX_COMMENT_CHARS, FeedbackStore
from assistant.schema import Turn
from assistant.serve.web import create_app
from assistant.settings import Settings


def test_a_rating_and_its_comment_are_stored(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "data")
    history = [Turn("user", "What is it?"), Turn("assistant", "A unit. [1]")]
    row = store.add("Who hosts it?", "A PCT. [1]", -1, history)
    store.comment(row, "  Wrong host.  ")
    (stored,) = store.rows()
    assert stored["id"] == row
    assert (stored["question"], stored["answer"], stored["rating"]) == (
        "Who hosts it?",
        "A PCT. [1]",
        -1,
    )
    assert stored["comment"] == "Wrong host."
    assert json.loads(str(stored["history"])) == [
        {"role": "user", "content": "What is it?"},
        {"role": "assistant", "content": "A unit. [1]"},
    ]
    assert str(stored["created"]).endswith("+00:00")
    assert set(stored) == {"id", "created", "question", "history", "answer", "rating", "comment"}


def test_thumbs_down_rows_become_draft_cases(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path)
    store.add("Good?", "Yes. [1]", 1)
    store.add("Bad?", "No. [1]", -1, comment="missing the date")
    (draft,) = feedback_drafts(store.rows())
    assert draft["question"] == "Bad?"
    assert draft["comment"] == "missing the date"


@pytest.mark.parametrize("rating", [0, 2, -2])
def test_a_rating_is_one_or_minus_one(tmp_path: Path, rating: int) -> None:
    with pytest.raises(InputError, match="rating"):
        FeedbackStore(tmp_path).add("q", "a", rating)


def test_an_overlong_comment_is_refused(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path)
    row = store.add("q", "a", 1)
    with pytest.raises(InputError, match=str(MAX_COMMENT_CHARS)):
        store.comment(row, "x" * (MAX_COMMENT_CHARS + 1))


def test_a_comment_on_an_unknown_row_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no feedback with id 99"):
        FeedbackStore(tmp_path).comment(99, "hello")


def test_an_unwritable_data_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(InputError, match="cannot store feedback"):
        FeedbackStore(blocker).add("q", "a", 1)


def test_the_database_is_in_wal_mode(tmp_path: Path) -> None:
    FeedbackStore(tmp_path).add("q", "a", 1)
    with sqlite3.connect(tmp_path / FEEDBACK_FILE) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# -- pii: feedback is checked before it is stored ------------------------------------------------

PERSONAL = "Jane Smith, DOB 14/03/1962, NHS number 943 476 5919, 07700 900123"


@pytest.mark.parametrize("where", ["question", "history", "comment"])
def test_feedback_with_personal_data_is_refused_and_nothing_stored(
    tmp_path: Path, where: str
) -> None:
    from assistant.errors import PersonalDataError

    store = FeedbackStore(tmp_path)
    question = PERSONAL if where == "question" else "Who hosts it?"
    history = [Turn("user", PERSONAL)] if where == "history" else []
    comment = PERSONAL if where == "comment" else ""
    with pytest.raises(PersonalDataError) as caught:
        store.add(question, "A PCT. [1]", 1, history, comment)
    assert caught.value.kinds == ["date of birth", "NHS number", "phone number"]
    assert "not stored" in str(caught.value)
    assert store.rows() == []


def test_a_comment_with_personal_data_is_refused(tmp_path: Path) -> None:
    from assistant.errors import PersonalDataError

    store = FeedbackStore(tmp_path)
    row = store.add("Who hosts it?", "A PCT. [1]", 1)
    with pytest.raises(PersonalDataError, match="phone number"):
        store.comment(row, "call me on 07700 900123")
    assert store.rows()[0]["comment"] == ""


def test_an_answer_quoting_a_contact_address_is_masked_not_refused(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path)
    store.add("Who do I write to?", "Write to england.contactus@nhs.net [1]", 1)
    assert store.rows()[0]["answer"] == "Write to [email address] [1]"


def test_redact_stores_feedback_masked(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path, pii_check="redact")
    row = store.add(f"About {PERSONAL}?", "A PCT.", -1, [Turn("user", PERSONAL)], PERSONAL)
    store.comment(row, f"again: {PERSONAL}")
    (stored,) = store.rows()
    text = json.dumps(stored)
    for value in ("943 476 5919", "14/03/1962", "07700"):
        assert value not in text
    assert "[NHS number]" in str(stored["question"])
    assert "[NHS number]" in str(stored["comment"])
    assert "[NHS number]" in str(stored["history"])


def test_off_stores_feedback_as_given(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path, pii_check="off")
    store.add(PERSONAL, "A PCT.", 1)
    assert store.rows()[0]["question"] == PERSONAL


# -- the database: URL, migrations, errors, events ------------------------------------------------


def test_the_migrations_make_the_tables_the_code_uses(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.config import Config
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine

    from assistant.records.migrations import HEAD, MIGRATIONS_DIR, VERSION_TABLE
    from assistant.records.schema import metadata

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_heads() == [HEAD]
    FeedbackStore(tmp_path).database.upgrade()
    engine = create_engine(f"sqlite:///{tmp_path / FEEDBACK_FILE}")
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        assert context.get_current_revision() == HEAD
        assert compare_metadata(context, metadata) == []
    engine.dispose()


def test_a_feedback_url_is_used_instead_of_the_data_folder(tmp_path: Path) -> None:
    elsewhere = tmp_path / "shared" / "ratings.db"
    store = FeedbackStore(tmp_path / "data", url=f"sqlite:///{elsewhere}")
    store.add("q", "a", 1)
    assert elsewhere.exists()
    assert not (tmp_path / "data" / FEEDBACK_FILE).exists()
    assert Settings.from_env({"ASSISTANT_FEEDBACK_URL": "sqlite:///x"}).feedback_url == (
        "sqlite:///x"
    )
    assert "s3cret" not in repr(Settings(feedback_url="postgresql://u:s3cret@db/x"))


def test_a_malformed_url_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ASSISTANT_FEEDBACK_URL"):
        FeedbackStore(tmp_path, url="not a url")


def test_a_database_that_cannot_be_opened_is_a_503_without_its_path(tmp_path: Path) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()  # SQLite cannot open a folder as its database
    settings = Settings(
        data_dir=tmp_path, allowed_hosts=("testserver",), feedback_url=f"sqlite:///{folder}"
    )
    with pytest.raises(DatabaseUnavailableError) as caught:
        FeedbackStore(tmp_path, url=settings.feedback_url).add("q", "a", 1)
    assert caught.value.database == f"sqlite:///{folder}"
    with TestClient(create_app(settings)) as client:
        r = client.post("/api/feedback", json={"question": "q", "answer": "a", "rating": 1})
    assert (r.status_code, r.headers["Retry-After"]) == (503, "30")
    assert "cannot be reached" in r.json()["error"]
    assert str(tmp_path) not in r.text


def test_events_are_recorded_and_listed_in_sqlite(tmp_path: Path) -> None:
    events = EventStore(FeedbackStore(tmp_path).database)
    assert events.recent(datetime(2000, 1, 1, tzinfo=UTC)) == []
    assert not (tmp_path / FEEDBACK_FILE).exists()  # listing made no database
    now = datetime.now(UTC)
    in_paris = timezone(timedelta(hours=1))
    older = events.record(Event("api", "search", "refused", "token", created=now - timedelta(1)))
    newer = events.record(
        Event("widget", "ask", "declined", "not_covered", "Who?", ("Doc A",), 35, "b1",
              created=now.astimezone(in_paris))
    )  # fmt: skip
    (got,) = events.recent(now - timedelta(hours=1))
    assert (got.id, got.created, got.sources, got.question) == (newer, now, ("Doc A",), "Who?")
    assert [e.id for e in events.recent(now - timedelta(days=2))] == [newer, older]
    assert [e.id for e in events.recent(now - timedelta(days=2), limit=1)] == [newer]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"channel": "email"}, "channel"),
        ({"route": "upload"}, "route"),
        ({"outcome": "maybe"}, "outcome"),
        ({"latency_ms": -1}, "latency"),
        ({"created": datetime(2026, 12, 4, 9, 0)}, "time zone"),
    ],
)
def test_an_event_out_of_its_vocabulary_is_refused(change: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {"channel": "api", "route": "ask", "outcome": "answered", **change}
    with pytest.raises(InputError, match=message):
        Event(**fields)


def test_recent_events_need_an_aware_time(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="time zone"):
        EventStore(FeedbackStore(tmp_path).database).recent(datetime(2026, 12, 4))
