"""Widget keys through the HTTP app in-process (FastAPI's TestClient, fake embedder): who may ask
with a key, from where, on which routes, how often; CORS for the keys' origins."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from assistant.errors import ConfigError
from assistant.pipeline import Assistant
from assistant.serve.web import create_app
from assistant.settings import Settings

TOKEN = "api-t0ken-secret"
KEY = "w1dget-key-intranet-0123"
FILE_KEY = "w1dget-key-from-a-file-99"
BOUND = "http://intranet.example.org:8080"
LISTED = "http://listed.example.org"  # in ASSISTANT_CORS_ORIGINS, bound to no key
EVIL = "http://evil.example"
QUESTION = {"question": "commissioning guides"}
FEEDBACK = {"question": "q", "answer": "a", "rating": 1}


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "widget-keys.txt"
    path.write_text(f"{FILE_KEY}={BOUND}\n", encoding="utf-8")
    return path


@pytest.fixture
def client(tiny_assistant: Assistant, tmp_path: Path, keys_file: Path) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path / "data",
        api_token=TOKEN,
        cors_origins=(LISTED,),
        widget_keys=f"{KEY}={BOUND}",
        widget_keys_file=keys_file,
        widget_rate_per_minute=3,
        allowed_hosts=("testserver",),
    )
    with TestClient(create_app(settings, tiny_assistant)) as c:
        yield c


def _post(
    client: TestClient,
    path: str = "/api/ask",
    *,
    key: str | None = KEY,
    origin: str | None = BOUND,
    body: dict[str, object] = QUESTION,
) -> httpx.Response:
    headers = {}
    if key is not None:
        headers["X-Widget-Key"] = key
    if origin is not None:
        headers["Origin"] = origin
    return client.post(path, json=body, headers=headers)


@pytest.mark.parametrize(
    ("path", "body"),
    [("/api/ask", QUESTION), ("/api/ask/stream", QUESTION), ("/api/feedback", FEEDBACK)],
)
def test_a_key_may_ask_and_send_feedback_from_its_origin(
    client: TestClient, path: str, body: dict[str, object]
) -> None:
    r = _post(client, path, body=body)
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == BOUND


def test_a_key_from_the_keys_file_works_too(client: TestClient) -> None:
    assert _post(client, key=FILE_KEY).status_code == 200


@pytest.mark.parametrize("origin", [EVIL, LISTED, "http://testserver", None, "null"])
def test_a_key_from_another_origin_or_none_is_a_403(client: TestClient, origin: str | None) -> None:
    r = _post(client, origin=origin)
    assert r.status_code == 403
    assert "widget key" in r.json()["error"]
    if origin != LISTED:  # ASSISTANT_CORS_ORIGINS pages may read the refusal
        assert "access-control-allow-origin" not in r.headers


def test_an_unknown_key_is_a_401(client: TestClient) -> None:
    r = _post(client, key="not-a-key-at-all-000000")
    assert r.status_code == 401
    assert "widget key is not valid" in r.json()["error"]
    assert _post(client, key="").status_code == 401


@pytest.mark.parametrize("origin", [BOUND, EVIL, None])
def test_a_key_may_not_search(client: TestClient, origin: str | None) -> None:
    r = _post(client, "/api/search", origin=origin)
    assert r.status_code == 403
    assert "may only ask questions and send feedback" in r.json()["error"]


def test_a_key_is_not_the_token(client: TestClient) -> None:
    # the API token as a widget key, or a widget key as the bearer token: neither works
    assert _post(client, key=TOKEN).status_code == 401
    r = client.post("/api/search", json=QUESTION, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 401


def test_the_token_still_opens_everything(client: TestClient) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post("/api/search", json=QUESTION, headers=bearer).status_code == 200
    assert client.post("/api/ask", json=QUESTION, headers=bearer).status_code == 200
    assert client.post("/api/ask", json=QUESTION).status_code == 401


def test_each_visitor_of_a_key_has_a_rate_limit(client: TestClient) -> None:
    statuses = [_post(client).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = _post(client)
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "too many questions" in refused.json()["error"]
    assert _post(client, key=FILE_KEY).status_code == 200  # another key: its own count


def test_a_key_removed_from_the_file_stops_working_at_once(
    client: TestClient, keys_file: Path
) -> None:
    assert _post(client, key=FILE_KEY).status_code == 200
    before = keys_file.stat().st_mtime_ns
    keys_file.write_text("# revoked\n", encoding="utf-8")
    import os

    os.utime(keys_file, ns=(before + 10**9, before + 10**9))
    assert _post(client, key=FILE_KEY).status_code == 401
    assert _post(client).status_code == 200  # the key of the setting is untouched


def test_preflight_for_the_keys_origins_on_the_widget_routes_only(client: TestClient) -> None:
    ask = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-widget-key",
    }
    for path in ("/api/ask", "/api/ask/stream", "/api/feedback"):
        ok = client.options(path, headers={"Origin": BOUND, **ask})
        assert ok.status_code == 200, path
        assert ok.headers["access-control-allow-origin"] == BOUND
        assert "x-widget-key" in ok.headers["access-control-allow-headers"].lower()
    assert client.options("/api/search", headers={"Origin": BOUND, **ask}).status_code == 400
    assert client.options("/api/ask", headers={"Origin": EVIL, **ask}).status_code == 400
    listed = client.options("/api/search", headers={"Origin": LISTED, **ask})
    assert listed.status_code == 200  # ASSISTANT_CORS_ORIGINS as before


def test_a_token_sent_from_a_page_is_logged_once(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with caplog.at_level(logging.WARNING):
        client.post("/api/ask", json=QUESTION, headers=bearer)  # not from a page
        assert "data-token" not in caplog.text
        for _ in range(2):
            client.post("/api/ask", json=QUESTION, headers={**bearer, "Origin": LISTED})
    assert len([r for r in caplog.records if "data-token" in r.getMessage()]) == 1


def test_without_keys_the_header_changes_nothing(tiny_assistant: Assistant, tmp_path: Path) -> None:
    # the default local setup: no token, no keys
    settings = Settings(data_dir=tmp_path / "data", allowed_hosts=("testserver",))
    with TestClient(create_app(settings, tiny_assistant)) as c:
        assert _post(c, origin=None).status_code == 200
        assert _post(c, "/api/search", origin=None).status_code == 200
        assert _post(c, origin=EVIL).status_code == 403  # other origins: refused as before


def test_a_malformed_key_setting_is_a_configuration_error(tiny_assistant: Assistant) -> None:
    with pytest.raises(ConfigError, match="ASSISTANT_WIDGET_KEYS, entry 2"):
        create_app(Settings(widget_keys=f"{KEY}={BOUND};{KEY}"), tiny_assistant)
