"""The server as `make run` starts it: app.py in its own process, real HTTP on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from servers import running_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the server keeps its data (``data/``) and its log (``server.log``)."""
    return tmp_path_factory.mktemp("server")


@pytest.fixture(scope="module")
def server(real_index: Path, server_dir: Path) -> Iterator[str]:
    env = {
        "ASSISTANT_INDEX_DIR": str(real_index),
        "ASSISTANT_DATA_DIR": str(server_dir / "data"),
    }
    with running_app(env, server_dir / "server.log") as base:
        yield base


def test_health_reports_the_index(server: str) -> None:
    body = httpx.get(f"{server}/api/health").json()
    assert body["status"] == "ok"
    assert body["index"]["embed_model"] == "bundled:all-MiniLM-L6-v2"
    assert body["index"]["chunks"] > 0


def test_ask_answers_with_a_citation(server: str) -> None:
    question = "How many CCGs manage most of the NHS commissioning budget?"
    r = httpx.post(f"{server}/api/ask", json={"question": question}, timeout=30)
    assert r.status_code == 200
    body = r.json()
    assert "209" in body["answer"]
    assert not body["refused"]
    assert any("209 clinical commissioning groups" in c["passage"] for c in body["citations"])


def test_follow_up_through_the_api(server: str) -> None:
    history = [
        {"role": "user", "content": "What is Specialised Commissioning?"},
        {"role": "assistant", "content": "The main regional commissioning unit for health."},
    ]
    r = httpx.post(
        f"{server}/api/ask", json={"question": "Who hosts it?", "history": history}, timeout=30
    )
    assert "Leicestershire" in r.json()["answer"]


def test_search_returns_k_passages(server: str) -> None:
    r = httpx.post(f"{server}/api/search", json={"question": "commissioning cycle", "k": 3})
    results = r.json()["results"]
    assert [p["rank"] for p in results] == [1, 2, 3]


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"question": "   "}, 400),
        ({"question": "x" * 1001}, 400),
        ({"question": 42}, 422),
        ({}, 422),
        ({"question": "ok", "history": [{"role": "system", "content": "x"}]}, 422),
    ],
)
def test_bad_requests_get_a_4xx_json_error(server: str, payload: object, status: int) -> None:
    r = httpx.post(f"{server}/api/ask", json=payload, timeout=30)
    assert r.status_code == status
    body = r.json()
    assert "error" in body or "detail" in body
    assert "Traceback" not in r.text


def test_malformed_json_is_a_4xx(server: str) -> None:
    r = httpx.post(
        f"{server}/api/ask", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422


def test_chat_page_is_served_and_the_docs_are_off(server: str) -> None:
    assert httpx.get(f"{server}/").status_code == 200
    # their pages load scripts from a public CDN: off unless ASSISTANT_API_DOCS=on (schema only)
    assert httpx.get(f"{server}/docs").status_code == 404


def test_gradio_client_can_chat(server: str) -> None:
    from gradio_client import Client

    client = Client(server + "/", verbose=False)
    reply = client.predict("Who hosts Specialised Commissioning?", api_name="/chat")
    assert "Leicestershire" in str(reply)


# -- pii: personal data is refused, with its kinds, and never stored or logged -----------------

PERSONAL = (
    "Jane Smith, DOB 14/03/1962, NHS number 943 476 5919, jane.smith@example.nhs.uk, 07700 900123"
)
KINDS = ["date of birth", "NHS number", "email address", "phone number"]


def test_personal_data_is_refused_and_not_stored_or_logged(server: str, server_dir: Path) -> None:
    import sqlite3

    question = f"Who commissions care for {PERSONAL}?"
    for path in ("/api/ask", "/api/ask/stream"):
        r = httpx.post(f"{server}{path}", json={"question": question}, timeout=30)
        assert r.status_code == 400
        body = r.json()
        assert (body["reason"], body["kinds"]) == ("personal_data", KINDS)
        assert "943" not in r.text
    feedback = {"question": question, "answer": "An answer.", "rating": -1, "comment": PERSONAL}
    r = httpx.post(f"{server}/api/feedback", json=feedback, timeout=30)
    assert r.status_code == 400
    assert r.json()["kinds"] == KINDS
    stored = server_dir / "data" / "feedback.sqlite3"
    if stored.exists():
        with sqlite3.connect(stored) as conn:
            assert conn.execute("SELECT count(*) FROM feedback").fetchone() == (0,)
    log = (server_dir / "server.log").read_text(encoding="utf-8", errors="replace")
    for value in ("943 476 5919", "jane.smith", "07700 900123", "14/03/1962"):
        assert value not in log
