"""The security review's findings against the real server (app.py over loopback HTTP): Gradio's
routes under the token and the rate limit, uploads off, logs without question text, security
headers, the docs off, Host and X-Forwarded-For not trusted, error bodies without paths."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from servers import running_app

from devtools.servers import start_app, stop_process

pytestmark = pytest.mark.slow

SECRET_QUESTION = "Does patient Zanzibar Quuxley need continuing healthcare funding?"
TOKEN = "tok-hardening-7"


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server") / "server.log"


@pytest.fixture(scope="module")
def server(
    real_index: Path, tmp_path_factory: pytest.TempPathFactory, log_path: Path
) -> Iterator[str]:
    """A server as `make run` starts it, with no settings of its own."""
    env = {
        "ASSISTANT_INDEX_DIR": str(real_index),
        "ASSISTANT_DATA_DIR": str(tmp_path_factory.mktemp("data")),
    }
    with running_app(env, log_path) as base:
        yield base


@pytest.fixture(scope="module")
def token_only(real_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with an API token and no page login."""
    env = {
        "ASSISTANT_INDEX_DIR": str(real_index),
        "ASSISTANT_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "ASSISTANT_API_TOKEN": TOKEN,
    }
    with running_app(env, tmp_path_factory.mktemp("server") / "token.log") as base:
        yield base


def _join(base: str, question: str, session: str, **headers: str) -> httpx.Response:
    body = {"data": [question, []], "fn_index": 0, "session_hash": session}
    return httpx.post(f"{base}/gradio_api/queue/join", json=body, headers=headers, timeout=30)


def test_gradio_event_calls_from_another_origin_are_refused(server: str) -> None:
    r = _join(server, "What is commissioning?", "evil", Origin="http://evil.example")
    assert r.status_code == 403


def test_uploads_are_refused(server: str) -> None:
    files = {"files": ("big.bin", b"x" * 2_000_000, "application/octet-stream")}
    r = httpx.post(f"{server}/gradio_api/upload", files=files, timeout=30)
    assert r.status_code == 403
    assert "uploads are off" in r.json()["error"]


def test_with_a_token_and_no_login_gradio_routes_are_refused(token_only: str) -> None:
    assert _join(token_only, "What is commissioning?", "t1").status_code == 403
    page = httpx.get(f"{token_only}/", timeout=30)
    assert page.status_code == 403
    assert "ASSISTANT_UI_AUTH" in page.json()["error"]
    assert httpx.get(f"{token_only}/config", timeout=30).status_code == 403
    # the API itself still works with the token
    ok = httpx.post(
        f"{token_only}/api/search",
        json={"question": "commissioning cycle"},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    assert ok.status_code == 200


def test_security_headers_on_the_page_and_the_api(server: str) -> None:
    for path in ("/", "/api/health"):
        r = httpx.get(f"{server}{path}", timeout=30)
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp
        assert "default-src 'self'" in csp
        assert "http" not in csp  # no source on another origin
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
    widget = httpx.get(f"{server}/widget.js", timeout=30)
    assert widget.headers["cross-origin-resource-policy"] == "cross-origin"


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
def test_the_api_docs_are_off_by_default(server: str, path: str) -> None:
    assert httpx.get(f"{server}{path}", timeout=30).status_code == 404


def test_other_host_headers_are_refused(server: str) -> None:
    r = httpx.get(f"{server}/api/health", headers={"Host": "rebound.example:7860"}, timeout=30)
    assert r.status_code == 400
    r = httpx.post(
        f"{server}/api/search",
        json={"question": "commissioning"},
        headers={"Host": "rebound.example", "Origin": "http://rebound.example"},
        timeout=30,
    )
    assert r.status_code == 400


def test_one_rate_limit_per_client_over_the_api_and_gradio(
    real_index: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """X-Forwarded-For does not pick the key (no proxy is trusted by default), and the chat
    page's queue counts against the same limit as /api."""
    env = {
        "ASSISTANT_INDEX_DIR": str(real_index),
        "ASSISTANT_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "ASSISTANT_RATE_LIMIT_PER_MINUTE": "3",
    }

    def search(i: int) -> int:
        headers = {"X-Forwarded-For": f"10.9.8.{i}"}
        body = {"question": "commissioning"}
        return httpx.post(f"{base}/api/search", json=body, headers=headers, timeout=30).status_code

    with running_app(env, tmp_path_factory.mktemp("server") / "limited.log") as base:
        statuses = [search(1), search(2), _join(base, "What is commissioning?", "rl1").status_code]
        refused = _join(base, "What is commissioning?", "rl2")
        assert [*statuses, refused.status_code, search(3)] == [200, 200, 200, 429, 429]
        assert "too many" in refused.json()["error"]
        assert 1 <= int(refused.headers["retry-after"]) <= 60


def _like_fn_index(base: str) -> int:
    config = httpx.get(f"{base}/config", timeout=30).json()
    return next(
        d["id"] for d in config["dependencies"] if any(t[1] == "like" for t in d["targets"])
    )


def _run_event(base: str, body: dict[str, object]) -> None:
    """Join Gradio's queue with ``body`` and read its events until the call ends."""
    httpx.post(f"{base}/gradio_api/queue/join", json=body, timeout=30)
    url = f"{base}/gradio_api/queue/data?session_hash={body['session_hash']}"
    with httpx.stream("GET", url, timeout=30) as events:
        for line in events.iter_lines():
            if "process_completed" in line:
                break


def test_the_log_holds_no_question_text(server: str, log_path: Path) -> None:
    # a rating with a malformed conversation: pydantic's error quotes it (input_value=...)
    bad_history = [
        {"role": "user", "content": {"words": SECRET_QUESTION}, "metadata": SECRET_QUESTION}
    ]
    like = {"index": 0, "value": "x", "liked": True}
    body = {"data": [bad_history], "fn_index": _like_fn_index(server), "session_hash": "bad-h"}
    _run_event(server, {**body, "event_data": like})
    bad = {"data": [SECRET_QUESTION, []], "fn_index": "x", "session_hash": 7}
    httpx.post(f"{server}/gradio_api/queue/join", json=bad, timeout=30)
    bad_list = [{"question": SECRET_QUESTION}]
    httpx.post(f"{server}/gradio_api/queue/join", json=bad_list, timeout=30)
    httpx.post(f"{server}/api/ask", json={"question": [SECRET_QUESTION]}, timeout=30)
    for i in range(3):  # a made-up session: Gradio's traceback, once a line at most
        # Gradio raises inside the event stream it has started, so the server ends the
        # connection without the last chunk: the client sees a broken stream, not an answer
        with contextlib.suppress(httpx.RemoteProtocolError):
            httpx.get(f"{server}/gradio_api/queue/data?session_hash=made-up-{i}", timeout=30)
    log = log_path.read_text(errors="replace")
    assert "Zanzibar" not in log
    assert "Traceback" not in log
    assert len(log.splitlines()) < 40, log[-3000:]


def test_error_bodies_name_no_folder_of_the_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    empty = tmp_path_factory.mktemp("srv-index-folder")
    env = {"ASSISTANT_INDEX_DIR": str(empty), "ASSISTANT_DATA_DIR": str(empty / "data")}
    log = tmp_path_factory.mktemp("server") / "no-index.log"
    app = start_app(env, log)
    try:
        health = _wait_for_answer(app.url + "/api/health")
        ask = httpx.post(f"{app.url}/api/ask", json={"question": "What is commissioning?"})
    finally:
        stop_process(app.process)
    assert health.status_code == ask.status_code == 503
    for body in (health.text, ask.text):
        assert "srv-index-folder" not in body
        assert "[a path on the server]" in body
    assert "srv-index-folder" in log.read_text()  # whoever runs the server still sees it


def _wait_for_answer(url: str, timeout: float = 120.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=10)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_zero_width_characters_change_neither_answer_nor_confidence(server: str) -> None:
    def ask(question: str) -> dict[str, object]:
        r = httpx.post(f"{server}/api/ask", json={"question": question}, timeout=60)
        assert r.status_code == 200
        body: dict[str, object] = r.json()
        return body

    plain = ask("What is the role of commissioning support units?")
    marked = ask("What is the role of commis\u200bsioning sup\u00adport un\u2060its?")
    assert marked["answer"] == plain["answer"]
    assert marked["confidence"] == plain["confidence"]
    assert marked["refused"] == plain["refused"]
