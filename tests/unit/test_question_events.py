"""Each question's outcome as an event in the feedback database (SQLite here; PostgreSQL in
tests/integration/test_feedback_database.py): from the API, the widget and the chat page, written
in the background so that no answer waits for the database or fails with it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fakes import FakeEmbedder
from fastapi.testclient import TestClient

from assistant.answer.calibration import Calibration
from assistant.index import IndexHandle
from assistant.pipeline import Assistant
from assistant.records import Event, EventLog, EventStore
from assistant.records.database import Database
from assistant.records.feedback import FeedbackStore
from assistant.serve.metrics import Metrics
from assistant.serve.observe import Observer
from assistant.serve.web import create_app
from assistant.settings import Settings

HOSTS = ("testserver",)
QUESTION = "What do the guides say about commissioning?"
PERSONAL = "Jane Smith, NHS number 943 476 5919: who commissions her care?"
ORIGIN = "http://testserver"  # a page of the server's own: the widget channel


def _events(data_dir: Path, client: TestClient) -> list[Event]:
    client.app.state.server.events.flush()  # type: ignore[attr-defined]
    store = EventStore(Database.for_data_dir(data_dir, ""))
    return store.recent(datetime.now(UTC) - timedelta(minutes=5))


def _client(assistant: Assistant, data_dir: Path, **settings: Any) -> TestClient:
    base: dict[str, Any] = {"data_dir": data_dir, "allowed_hosts": HOSTS}
    return TestClient(create_app(Settings(**{**base, **settings}), assistant))


@pytest.fixture
def client(tiny_assistant: Assistant, tmp_path: Path) -> Iterator[TestClient]:
    with _client(tiny_assistant, tmp_path / "data", keep_questions=True) as c:
        yield c


def test_an_answer_is_an_event_with_its_question_sources_time_and_build(
    client: TestClient, tmp_path: Path, tiny_handle: IndexHandle
) -> None:
    answer = client.post("/api/ask", json={"question": QUESTION}).json()
    (event,) = _events(tmp_path / "data", client)
    assert (event.channel, event.route, event.outcome, event.cause) == (
        "api",
        "ask",
        "answered",
        "",
    )
    assert event.question == QUESTION
    assert list(event.sources) == list(dict.fromkeys(c["title"] for c in answer["citations"]))
    assert event.sources
    assert event.latency_ms >= 0
    assert event.build_id == tiny_handle.get().build_id


def test_a_decline_from_the_widget_is_a_not_covered_event(
    tiny_handle: IndexHandle, fake_embedder: FakeEmbedder, declining: Calibration, tmp_path: Path
) -> None:
    assistant = Assistant(tiny_handle, fake_embedder, calibration=declining)
    with _client(assistant, tmp_path / "data", keep_questions=True) as client:
        body = {"question": "What is the capital of France?"}
        lines = client.post("/api/ask/stream", json=body, headers={"Origin": ORIGIN}).text
        assert '"refused": true' in lines
        (event,) = _events(tmp_path / "data", client)
    assert (event.channel, event.route, event.outcome, event.cause) == (
        "widget",
        "stream",
        "declined",
        "not_covered",
    )
    assert event.question == "What is the capital of France?"
    assert event.sources == ()


def test_personal_data_is_a_refused_event_without_the_question(
    client: TestClient, tmp_path: Path
) -> None:
    assert client.post("/api/ask", json={"question": PERSONAL}).status_code == 400
    assert client.post("/api/search", json={"question": PERSONAL}).status_code == 400
    events = _events(tmp_path / "data", client)
    assert {(e.route, e.outcome, e.cause, e.question) for e in events} == {
        ("ask", "refused", "personal_data", None),
        ("search", "refused", "personal_data", None),
    }


def test_a_question_with_personal_data_is_never_kept_even_with_the_guard_off(
    tiny_handle: IndexHandle, fake_embedder: FakeEmbedder, answering: Calibration, tmp_path: Path
) -> None:
    assistant = Assistant(tiny_handle, fake_embedder, calibration=answering, pii_check="off")
    with _client(assistant, tmp_path / "data", pii_check="off", keep_questions=True) as client:
        assert client.post("/api/ask", json={"question": PERSONAL}).status_code == 200
        (event,) = _events(tmp_path / "data", client)
    assert event.outcome == "answered"
    assert event.question is None


def test_by_default_events_are_counts_without_the_question(
    tiny_assistant: Assistant, tmp_path: Path
) -> None:
    with _client(tiny_assistant, tmp_path / "data") as client:
        assert client.post("/api/ask", json={"question": QUESTION}).status_code == 200
        (event,) = _events(tmp_path / "data", client)
    assert (event.outcome, event.question) == ("answered", None)
    assert event.sources  # what was cited is kept: it says nothing about the user


def test_an_unreachable_database_does_not_fail_the_answer(
    tiny_assistant: Assistant, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a feedback database on a port where nothing listens: events are lost, answers are not
    url = "postgresql+psycopg://nobody:s3cret@127.0.0.1:9/none?connect_timeout=1"
    with _client(tiny_assistant, tmp_path / "data", feedback_url=url) as client:
        for _ in range(3):
            assert client.post("/api/ask", json={"question": QUESTION}).status_code == 200
        client.app.state.server.events.flush()  # type: ignore[attr-defined]
    warnings = [r for r in caplog.records if "could not store a question event" in r.message]
    assert len(warnings) == 1  # once a minute at most, not once a question
    assert "s3cret" not in caplog.text


def test_the_chat_page_records_its_answers_and_refusals(
    tiny_assistant: Assistant, tmp_path: Path
) -> None:
    from assistant.serve.ui import _Handlers

    feedback = FeedbackStore(tmp_path)
    events = EventLog(EventStore(feedback.database))
    handlers = _Handlers(lambda: tiny_assistant, feedback, Observer(Metrics(), events))
    list(handlers.chat(QUESTION, []))
    assert handlers.check(PERSONAL)["is_valid"] is False
    events.flush()
    got = EventStore(feedback.database).recent(datetime.now(UTC) - timedelta(minutes=5))
    assert sorted((e.channel, e.outcome, e.cause) for e in got) == [
        ("page", "answered", ""),
        ("page", "refused", "personal_data"),
    ]


def test_the_log_drops_what_it_cannot_hold_and_prunes_old_events_and_ratings(
    tmp_path: Path,
) -> None:
    feedback = FeedbackStore(tmp_path)
    store = EventStore(feedback.database)
    old = datetime.now(UTC) - timedelta(days=40)
    store.record(Event("api", "ask", "answered", created=old))
    feedback.add("Old?", "Yes. [1]", 1)
    with feedback.database.begin() as conn:  # made 40 days ago
        conn.execute(sa.text("UPDATE feedback SET created = :c"), {"c": old.isoformat()})
    feedback.add("New?", "Yes. [1]", -1)
    log = EventLog(store, keep_days=30, max_pending=2, prune_also=[feedback.prune])
    log._pending = 2  # as if the writer were held up with two waiting: the next is dropped
    log.submit(Event("api", "ask", "answered"))
    log._pending = 0
    assert log.dropped == 1
    log.submit(Event("api", "search", "answered"))
    log.flush()
    events = store.recent(old - timedelta(days=1))
    assert [e.route for e in events] == ["search"]  # the 40-day-old one is pruned
    assert [r["question"] for r in feedback.rows()] == ["New?"]  # and so is the old rating
    log.close()
