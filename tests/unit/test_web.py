"""The HTTP app in-process (FastAPI's TestClient, fake embedder): API errors, origins, feedback,
the widget script."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from assistant.errors import ConfigError
from assistant.pipeline import Assistant
from assistant.records.feedback import FeedbackStore
from assistant.serve.web import WIDGET_JS, create_app
from assistant.settings import Settings

ALLOWED = "http://intranet.example.org:8080"
OWN = "http://testserver"
#: TestClient's Host header, which the server must be told to answer to
HOSTS = ("testserver",)


@pytest.fixture
def client(tiny_assistant: Assistant, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", cors_origins=(ALLOWED,), allowed_hosts=HOSTS)
    with TestClient(create_app(settings, tiny_assistant)) as c:
        yield c


def test_ask_answers(client: TestClient) -> None:
    r = client.post("/api/ask", json={"question": "What do the guides say about commissioning?"})
    assert r.status_code == 200
    assert r.json()["citations"]


def test_ask_adds_the_answer_as_shown(client: TestClient) -> None:
    body = client.post("/api/ask", json={"question": "What do the guides say about commissioning?"})
    data = body.json()
    assert data["answer"]  # unchanged: a marker after every sentence
    shown = data["display"]
    assert shown["blocks"]
    assert shown["blocks"][0]["type"] in ("p", "list")
    assert "\n\nSources:\n[1] " in shown["copy"]
    assert len(shown["key"]) == 10


@pytest.mark.parametrize("origin", [None, OWN, ALLOWED])
def test_same_origin_and_allowed_origins_may_ask(client: TestClient, origin: str | None) -> None:
    headers = {"Origin": origin} if origin else {}
    r = client.post("/api/ask", json={"question": "commissioning guides"}, headers=headers)
    assert r.status_code == 200
    if origin == ALLOWED:
        assert r.headers["access-control-allow-origin"] == ALLOWED


@pytest.mark.parametrize("origin", ["http://evil.example", "http://intranet.example.org", "null"])
def test_other_origins_are_refused(client: TestClient, origin: str) -> None:
    r = client.post(
        "/api/ask", json={"question": "commissioning guides"}, headers={"Origin": origin}
    )
    assert r.status_code == 403
    assert "may not use this assistant" in r.json()["error"]
    assert "access-control-allow-origin" not in r.headers


def test_preflight_is_answered_for_allowed_origins_only(client: TestClient) -> None:
    ask = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    ok = client.options("/api/ask", headers={"Origin": ALLOWED, **ask})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == ALLOWED
    bad = client.options("/api/ask", headers={"Origin": "http://evil.example", **ask})
    assert bad.status_code == 400
    assert "access-control-allow-origin" not in bad.headers


def test_validation_errors_are_json_with_an_error_message(client: TestClient) -> None:
    r = client.post("/api/ask", json={"question": 42, "history": "nope"})
    assert r.status_code == 422
    error = r.json()["error"]
    assert error.startswith("invalid request: ")
    assert "question" in error
    assert "history" in error


def test_feedback_is_stored_through_the_api(client: TestClient, tmp_path: Path) -> None:
    r = client.post(
        "/api/feedback",
        json={"question": "q?", "answer": "a. [1]", "rating": -1, "comment": "too vague",
              "history": [{"role": "user", "content": "earlier"}]},
    )  # fmt: skip
    assert r.status_code == 200
    (row,) = FeedbackStore(tmp_path / "data").rows()
    assert row["id"] == r.json()["id"]
    assert (row["rating"], row["comment"]) == (-1, "too vague")


def test_a_bad_rating_is_a_400(client: TestClient) -> None:
    r = client.post("/api/feedback", json={"question": "q", "answer": "a", "rating": 5})
    assert r.status_code == 400
    assert "rating" in r.json()["error"]


def test_the_widget_script_is_served_as_javascript(client: TestClient) -> None:
    r = client.get("/widget.js")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert r.content == WIDGET_JS.read_bytes()


@pytest.mark.parametrize("bad", ["intranet.example.org", "http://x.org/path", "ftp://x.org"])
def test_a_malformed_allowed_origin_is_a_configuration_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="ASSISTANT_CORS_ORIGINS"):
        Settings.from_env({"ASSISTANT_CORS_ORIGINS": f"http://ok.example, {bad}"})


def test_allowed_origins_are_a_comma_separated_list() -> None:
    env = {"ASSISTANT_CORS_ORIGINS": "http://a.example:8080/, https://b.example"}
    assert Settings.from_env(env).cors_origins == ("http://a.example:8080", "https://b.example")


TOKEN = "tok-3f9a1c"


@pytest.fixture
def guarded(tiny_assistant: Assistant, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path / "data",
        api_token=TOKEN,
        ui_auth="staff:pa55-word",
        rate_limit_per_minute=3,
        allowed_hosts=HOSTS,
    )
    with TestClient(create_app(settings, tiny_assistant)) as c:
        yield c


def _ask(client: TestClient, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.post("/api/ask", json={"question": "commissioning guides"}, headers=headers)


def test_the_api_needs_the_token(guarded: TestClient) -> None:
    missing = _ask(guarded, None)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "needs an access token" in missing.json()["error"]
    wrong = _ask(guarded, "tok-wrong")
    assert wrong.status_code == 401
    assert "not valid" in wrong.json()["error"]
    assert _ask(guarded).status_code == 200
    assert guarded.get("/api/health").status_code in (200, 503)  # monitoring needs no token


def test_too_many_requests_get_429_with_retry_after(guarded: TestClient) -> None:
    statuses = [_ask(guarded).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = _ask(guarded)
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "too many questions" in refused.json()["error"]


def test_no_secret_in_the_widget_or_the_page(guarded: TestClient) -> None:
    for path in ("/widget.js", "/", "/login", "/docs", "/openapi.json"):
        body = guarded.get(path).text
        assert TOKEN not in body, path
        assert "pa55-word" not in body, path


def test_the_chat_page_needs_a_login_when_configured(guarded: TestClient) -> None:
    assert guarded.get("/config").status_code == 401
    join = {"data": ["What is commissioning?", []], "fn_index": 0, "session_hash": "s1"}
    assert guarded.post("/gradio_api/queue/join", json=join).status_code == 401
    bad = guarded.post("/login", data={"username": "staff", "password": "nope"})
    assert bad.status_code == 400
    ok = guarded.post("/login", data={"username": "staff", "password": "pa55-word"})
    assert ok.status_code == 200
    assert guarded.get("/config").status_code == 200


def test_the_chat_page_is_open_without_logins(client: TestClient) -> None:
    assert client.get("/config").status_code == 200


def _events(response: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def test_the_stream_endpoint_ends_with_the_answer(client: TestClient) -> None:
    r = client.post(
        "/api/ask/stream", json={"question": "What do the guides say about commissioning?"}
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/x-ndjson")
    events = _events(r)
    assert events[-1]["type"] == "answer"
    assert events[-1]["answer"]["citations"]
    assert all(e["type"] == "delta" for e in events[:-1])


def test_the_stream_endpoint_streams_what_a_chat_model_writes(
    tiny_assistant: Assistant, tmp_path: Path
) -> None:
    from test_generate import BUDGET_FACT, BUDGET_Q, replies

    generative = tiny_assistant.with_llm(replies(f"{BUDGET_FACT} [1]."))
    with TestClient(create_app(Settings(data_dir=tmp_path, allowed_hosts=HOSTS), generative)) as c:
        events = _events(c.post("/api/ask/stream", json={"question": BUDGET_Q}))
    deltas = [e["text"] for e in events if e["type"] == "delta"]
    assert len(deltas) > 1
    assert "42 regional boards" in "".join(deltas)
    final = events[-1]["answer"]
    assert events[-1]["type"] == "answer"
    assert final["mode"] == "generative"
    assert "42 regional boards" in final["answer"]


def test_a_bad_question_on_the_stream_endpoint_is_a_400(client: TestClient) -> None:
    r = client.post("/api/ask/stream", json={"question": "   "})
    assert r.status_code == 400
    assert "empty" in r.json()["error"]


# -- pii: personal data is refused with its kinds, never stored ---------------------------------

PERSONAL = (
    "Jane Smith, DOB 14/03/1962, NHS number 943 476 5919, jane.smith@example.nhs.uk, 07700 900123"
)
KINDS = ["date of birth", "NHS number", "email address", "phone number"]


def _refused_for_personal_data(r: httpx.Response) -> None:
    assert r.status_code == 400
    body = r.json()
    assert body["reason"] == "personal_data"
    assert body["kinds"] == KINDS
    assert "rephrase" in body["error"] or "send it" in body["error"]
    for value in ("943", "jane.smith", "07700", "14/03"):
        assert value not in r.text


@pytest.mark.parametrize("path", ["/api/ask", "/api/ask/stream", "/api/search"])
def test_a_question_with_personal_data_is_a_400_naming_the_kinds(
    client: TestClient, path: str
) -> None:
    _refused_for_personal_data(client.post(path, json={"question": f"{PERSONAL}: what now?"}))


def test_earlier_turns_with_personal_data_are_a_400(client: TestClient) -> None:
    history = [{"role": "user", "content": PERSONAL}, {"role": "assistant", "content": "No."}]
    r = client.post("/api/ask", json={"question": "Who hosts it?", "history": history})
    _refused_for_personal_data(r)


def test_feedback_with_personal_data_is_a_400_and_not_stored(
    client: TestClient, tmp_path: Path
) -> None:
    r = client.post(
        "/api/feedback",
        json={"question": "Who hosts it?", "answer": "a. [1]", "rating": -1, "comment": PERSONAL},
    )
    _refused_for_personal_data(r)
    assert FeedbackStore(tmp_path / "data").rows() == []


def test_redact_mode_answers_and_stores_masked(tiny_assistant: Assistant, tmp_path: Path) -> None:
    tiny_assistant.pii_check = "redact"
    settings = Settings(data_dir=tmp_path / "data", pii_check="redact", allowed_hosts=HOSTS)
    with TestClient(create_app(settings, tiny_assistant)) as c:
        r = c.post("/api/ask", json={"question": f"Who hosts the apple archive? {PERSONAL}"})
        assert r.status_code == 200
        assert "[NHS number]" in r.json()["question"]
        feedback = {"question": PERSONAL, "answer": "a", "rating": 1, "comment": PERSONAL}
        assert c.post("/api/feedback", json=feedback).status_code == 200
    (row,) = FeedbackStore(tmp_path / "data").rows()
    assert "943" not in json.dumps(row)
    assert "[NHS number]" in str(row["comment"])
    assert "943" not in r.text
