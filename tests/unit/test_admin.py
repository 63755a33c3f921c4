"""The site owners' page: its figures (pure functions over events and ratings), the grouping by
meaning, the refusal events and their cap, and the /admin router in-process (TestClient, fake
embedder): no login configured → 404, no or a wrong login → 401, the right one → the figures."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fakes import FakeEmbedder
from fastapi.testclient import TestClient

from assistant.answer.calibration import Calibration
from assistant.errors import (
    BusyError,
    InputError,
    OriginRefusedError,
    PersonalDataError,
    QuestionTooLongError,
    RateLimitedError,
    WidgetKeyRefusedError,
)
from assistant.index import IndexHandle
from assistant.pipeline import Assistant
from assistant.records import Event
from assistant.records.drafts import declined_drafts
from assistant.serve.admin_events import RefusalGate, refusal_event_cause
from assistant.serve.admin_stats import (
    bar_chart,
    buckets,
    column_chart,
    group_by_meaning,
    percentile,
    ratings_chart,
    summarise,
)
from assistant.serve.web import create_app
from assistant.settings import Settings

NOW = datetime(2026, 12, 4, 12, 30, tzinfo=UTC)
LOGIN = ("owner", "s3cret-pass")
HOSTS = ("testserver",)


def _event(
    outcome: str, cause: str = "", *, ago: timedelta = timedelta(hours=1), **kw: Any
) -> Event:
    return Event("api", "ask", outcome, cause, created=NOW - ago, **kw)  # type: ignore[arg-type]


def _rating(rating: int, ago: timedelta, row_id: int = 1) -> dict[str, Any]:
    created = (NOW - ago).isoformat(timespec="seconds")
    return {"id": row_id, "created": created, "rating": rating, "question": "q", "comment": ""}


# -- figures ------------------------------------------------------------------------------------


def test_percentile_of_answer_times() -> None:
    assert percentile([], 50) is None
    assert percentile([100, 200, 300], 50) == 200
    assert percentile(list(range(1, 101)), 95) == 95
    assert percentile([7], 95) == 7


def test_buckets_count_each_day_and_keep_the_empty_ones() -> None:
    since = NOW - timedelta(days=3)
    times = [NOW, NOW - timedelta(hours=1), NOW - timedelta(days=2), NOW - timedelta(days=9)]
    rows = buckets(times, since, NOW, timedelta(days=1))
    assert [n for _, n in rows] == [0, 1, 0, 2]  # the one 9 days ago is outside
    assert rows[0][0] == datetime(2026, 12, 1, tzinfo=UTC)
    hourly = buckets([NOW], NOW - timedelta(hours=24), NOW, timedelta(hours=1))
    assert len(hourly) == 25
    assert hourly[-1][1] == 1
    assert sum(n for _, n in hourly) == 1


def test_summarise_counts_outcomes_causes_times_sources_and_ratings() -> None:
    events = [
        _event("answered", latency_ms=100, sources=("Guide A", "Guide B")),
        _event("answered", latency_ms=300, sources=("Guide A",)),
        _event("answered", latency_ms=200, sources=("Guide A",), ago=timedelta(days=2)),
        _event("declined", "not_covered", latency_ms=50),
        _event("refused", "personal_data"),
        _event("refused", "rate"),
        _event("refused", "rate"),
        _event("answered", latency_ms=9999, ago=timedelta(days=40)),  # outside the period
    ]
    ratings = [_rating(1, timedelta(hours=2)), _rating(-1, timedelta(hours=3)),
               _rating(-1, timedelta(days=1, hours=1)), _rating(1, timedelta(days=60))]  # fmt: skip
    s = summarise(events, ratings, NOW - timedelta(days=7), NOW)
    assert (s.questions, s.answered, s.declined) == (7, 3, 1)
    assert s.refused == {"personal_data": 1, "rate": 2}
    assert s.median_ms == 150  # refusals take no answer time
    assert s.p95_ms is not None
    assert 200 < s.p95_ms <= 300
    assert s.sources == [("Guide A", 3), ("Guide B", 1)]
    assert (s.thumbs_up, s.thumbs_down) == (1, 2)
    assert len(s.per_bucket) == 8
    assert s.per_bucket[-1][1] == 6
    assert s.per_bucket[-3][1] == 1
    assert s.ratings[-1][1:] == (1, 1)
    assert s.ratings[-2][1:] == (0, 1)


def test_groups_by_meaning_put_near_vectors_together() -> None:
    a, b = np.eye(4)[0], np.eye(4)[1]
    vectors = np.stack([a, b + 0.05 * a, a + 0.1 * b, a + 0.05 * np.eye(4)[2], np.eye(4)[3]])
    assert group_by_meaning(vectors) == [[0, 2, 3], [1], [4]]
    assert group_by_meaning(np.stack([a])) == [[0]]
    assert group_by_meaning(np.zeros((0, 4))) == []


def test_groups_of_real_texts_with_the_fake_embedder() -> None:
    texts = ["parking permit for the car park", "car park parking permit",
             "annual leave for nurses", "nurses annual leave"]  # fmt: skip
    groups = group_by_meaning(FakeEmbedder().encode(texts))
    assert sorted(groups) == [[0, 1], [2, 3]]


def test_column_chart_scales_to_the_highest_bar_and_keeps_the_numbers() -> None:
    chart = column_chart("c", "Questions", [("Mon", 2), ("Tue", 0), ("Wed", 4)], "questions")
    heights = [bar.height for bar in chart.bars]
    assert heights[1] == 0
    assert heights[2] == pytest.approx(2 * heights[0])
    assert chart.rows == [("Mon", 2), ("Tue", 0), ("Wed", 4)]
    assert chart.bars[2].text == "Wed: 4 questions"


def test_ratings_chart_puts_thumbs_up_above_the_line_and_down_below() -> None:
    chart = ratings_chart("r", "Ratings", [("Mon", 3, 1)])
    up, down = chart.bars
    assert chart.axis is not None
    assert up.y + up.height == pytest.approx(chart.axis)
    assert up.kind == "up"
    assert down.y == pytest.approx(chart.axis)
    assert down.height == pytest.approx(up.height / 3)
    assert any("thumbs down" in label.text for label in chart.labels)


def test_bar_chart_writes_each_label_and_number() -> None:
    chart = bar_chart("b", "Docs", [("A very long document title " * 3, 5), ("B", 1)], "answers")
    texts = [label.text for label in chart.labels]
    assert "5" in texts
    assert "1" in texts
    assert "B" in texts
    assert any(t.endswith("…") for t in texts)


# -- refusal events --------------------------------------------------------------------------------


def test_refusal_causes_recorded_as_events() -> None:
    assert refusal_event_cause(PersonalDataError(["email address"])) == "personal_data"
    assert refusal_event_cause(QuestionTooLongError("long")) == "input_too_long"
    assert refusal_event_cause(RateLimitedError("slow down", 5)) == "rate"
    assert refusal_event_cause(BusyError("busy", 5)) == "queue"
    assert refusal_event_cause(WidgetKeyRefusedError("no")) == "widget_key"
    assert refusal_event_cause(InputError("empty")) is None
    assert refusal_event_cause(OriginRefusedError("no")) is None


def test_the_gate_lets_60_a_minute_through_per_cause() -> None:
    now = [0.0]
    gate = RefusalGate(clock=lambda: now[0])
    assert sum(gate.admit("rate") for _ in range(100)) == 60
    assert gate.left_out == {"rate": 40}
    assert gate.admit("queue")  # another cause has its own 60
    now[0] = 61.0
    assert gate.admit("rate")


def test_declined_questions_become_drafts_a_reviewer_completes() -> None:
    kept = _event("declined", "not_covered", question="Where do I park?", id=7)
    unkept = _event("declined", "not_covered", id=8)
    (draft,) = declined_drafts([kept, unkept, _event("answered", question="x", id=9)])
    assert draft["id"] == "declined-007"
    assert draft["question"] == "Where do I park?"
    assert draft["answerable"] is None
    assert draft["must"] == []
    assert draft["evidence"] == ""


# -- the router ------------------------------------------------------------------------------------


def _app(assistant: Assistant, data_dir: Path, **settings: Any) -> TestClient:
    base: dict[str, Any] = {
        "data_dir": data_dir,
        "allowed_hosts": HOSTS,
        "admin_auth": "owner:s3cret-pass",
    }
    return TestClient(create_app(Settings(**{**base, **settings}), assistant))


def _flush(client: TestClient) -> None:
    client.app.state.server.events.flush()  # type: ignore[attr-defined]


def _figure(html: str, name: str) -> str:
    found = re.search(rf'data-figure="{name}">([^<]*)<', html)
    assert found, name
    return found.group(1)


@pytest.fixture
def owners(tiny_assistant: Assistant, tmp_path: Path) -> Iterator[TestClient]:
    with _app(tiny_assistant, tmp_path / "data", keep_questions=True) as client:
        yield client


def test_no_page_without_admin_auth(tiny_assistant: Assistant, tmp_path: Path) -> None:
    with _app(tiny_assistant, tmp_path / "d", admin_auth="") as client:
        assert client.get("/admin", auth=LOGIN).status_code == 404
        assert client.get("/admin/export.jsonl?kind=feedback&ids=1").status_code == 404


@pytest.mark.parametrize("auth", [None, ("owner", "wrong"), ("someone", "s3cret-pass")])
def test_without_the_right_login_401(owners: TestClient, auth: tuple[str, str] | None) -> None:
    r = owners.get("/admin", auth=auth)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Basic")
    assert r.json() == {"error": "the site owners' page needs its login"}


def test_the_api_token_does_not_open_the_page(tiny_assistant: Assistant, tmp_path: Path) -> None:
    with _app(tiny_assistant, tmp_path / "d", api_token="tok") as client:  # no chat-page login
        assert client.get("/admin", headers={"Authorization": "Bearer tok"}).status_code == 401
        assert client.get("/admin", auth=LOGIN).status_code == 200  # the page is not Gradio's
        assert client.get("/admin", auth=LOGIN, headers={"Host": "evil.example"}).status_code == 400


def test_the_page_shows_the_figures_groups_and_exports(owners: TestClient) -> None:
    for question in ["What do the guides say about commissioning?"] * 3:
        assert owners.post("/api/ask", json={"question": question}).status_code == 200
    assert owners.post("/api/ask", json={"question": "x" * 1001}).status_code == 400
    rated = {
        "question": "commissioning guides",
        "answer": "a",
        "rating": -1,
        "comment": "too vague",
    }
    row = owners.post("/api/feedback", json=rated).json()["id"]
    owners.post("/api/feedback", json={**rated, "rating": 1, "comment": ""})
    _flush(owners)
    r = owners.get("/admin?window=24h", auth=LOGIN)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    assert (_figure(html, "questions"), _figure(html, "answered")) == ("4", "3")
    assert (_figure(html, "refused"), _figure(html, "declined")) == ("1", "0")
    assert (_figure(html, "thumbs-up"), _figure(html, "thumbs-down")) == ("1", "1")
    assert "refused: question too long" in html
    assert html.count("<figure") == 4
    assert html.count("<svg") == 4
    assert "commissioning guides — too vague" in html
    link = re.search(r'href="(/admin/export\.jsonl\?kind=feedback&amp;ids=[0-9,]+)"', html)
    assert link
    export = owners.get(link.group(1).replace("&amp;", "&"), auth=LOGIN)
    (draft,) = [json.loads(line) for line in export.text.splitlines()]
    assert draft["id"] == f"fb-{row:03d}"
    assert draft["comment"] == "too vague"
    assert owners.get("/admin?window=1y", auth=LOGIN).status_code == 400


def test_declined_questions_are_grouped_and_exported(
    tiny_handle: IndexHandle, fake_embedder: FakeEmbedder, declining: Calibration, tmp_path: Path
) -> None:
    assistant = Assistant(tiny_handle, fake_embedder, calibration=declining)
    asked = [
        "parking permit for the car park",
        "car park parking permit",
        "annual leave for nurses",
    ]
    with _app(assistant, tmp_path / "d", keep_questions=True) as client:
        for question in asked:
            client.post("/api/ask", json={"question": question})
        _flush(client)
        html = client.get("/admin", auth=LOGIN).text
        assert _figure(html, "declined") == "3"
        assert "2 questions like “car park parking permit”" in html  # newest first
        links = re.findall(r'href="(/admin/export\.jsonl\?kind=declined&amp;ids=[0-9,]+)"', html)
        assert len(links) == 2
        lines = client.get(links[0].replace("&amp;", "&"), auth=LOGIN).text.splitlines()
    assert sorted(json.loads(line)["question"] for line in lines) == sorted(asked[:2])


def test_without_kept_questions_counts_only(tiny_assistant: Assistant, tmp_path: Path) -> None:
    with _app(tiny_assistant, tmp_path / "d") as client:
        client.post("/api/feedback", json={"question": "q", "answer": "a", "rating": -1})
        html = client.get("/admin", auth=LOGIN).text
        assert 'id="counts-only"' in html
        assert "export.jsonl" not in html
        assert client.get("/admin/export.jsonl?kind=feedback&ids=1", auth=LOGIN).status_code == 400


def test_refusals_are_events_at_most_60_a_minute(tiny_assistant: Assistant, tmp_path: Path) -> None:
    with _app(tiny_assistant, tmp_path / "d", rate_limit_per_minute=1) as client:
        statuses = [client.post("/api/search", json={"question": "commissioning"}).status_code
                    for _ in range(63)]  # fmt: skip
        assert statuses.count(429) == 62
        _flush(client)
        html = client.get("/admin?window=24h", auth=LOGIN).text
        assert _figure(html, "refused") == "60"
        assert "2 left out by this process" in html


def test_questions_over_either_length_limit_are_input_too_long_events(
    owners: TestClient,
) -> None:
    assert owners.post("/api/ask", json={"question": "x" * 1001}).status_code == 400
    assert owners.post("/api/ask/stream", json={"question": "x" * 9000}).status_code == 422
    assert owners.post("/api/search", json={"question": 42}).status_code == 422  # not a length
    _flush(owners)
    html = owners.get("/admin?window=24h", auth=LOGIN).text
    assert _figure(html, "refused") == "2"
    assert "x" * 50 not in html  # the refused questions are not kept


def test_failed_logins_back_off(tiny_assistant: Assistant, tmp_path: Path) -> None:
    settings = {"login_max_failures": 2, "login_backoff_seconds": 60}
    with _app(tiny_assistant, tmp_path / "d", **settings) as client:
        assert client.get("/admin").status_code == 401  # no login given: not a failure
        assert client.get("/admin", auth=LOGIN).status_code == 200  # and a success forgets
        assert [client.get("/admin", auth=("owner", "guess")).status_code for _ in range(2)] == [
            401,
            401,
        ]
        held = client.get("/admin", auth=LOGIN)
        assert held.status_code == 429
        assert int(held.headers["retry-after"]) > 0
