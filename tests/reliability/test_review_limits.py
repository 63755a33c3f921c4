"""The security review's limits findings against the real server (app.py over HTTP on loopback):
dropped streams give their answer slot back, waiting for a slot starves nothing, chunked bodies
meet the body limit, feedback fields are bounded and feedback is rate-limited, and failed logins
back off."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from devtools.servers import AppProcess, running_app

pytestmark = pytest.mark.slow

SLOTS = 2
FEEDBACK_PER_MINUTE = 5
LOGIN = ("staff", "the-right-password")
QUESTION = "What are the four stages of the commissioning cycle?"


@pytest.fixture(scope="module")
def app(real_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    env = {
        "ASSISTANT_INDEX_DIR": str(real_index),
        "ASSISTANT_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "ASSISTANT_MAX_CONCURRENT": str(SLOTS),
        "ASSISTANT_QUEUE_TIMEOUT": "5",
        "ASSISTANT_FEEDBACK_RATE_PER_MINUTE": str(FEEDBACK_PER_MINUTE),
        "ASSISTANT_UI_AUTH": ":".join(LOGIN),
        "ASSISTANT_LOGIN_MAX_FAILURES": "3",
        "ASSISTANT_LOGIN_BACKOFF_SECONDS": "1",
    }
    with running_app(env, tmp_path_factory.mktemp("server") / "server.log") as running:
        yield running


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=10)


def _request_head(path: str, extra: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra}\r\n"
    ).encode()


def test_dropped_streams_give_their_answer_slots_back(app: AppProcess) -> None:
    body = json.dumps({"question": QUESTION}).encode()
    for n in range(SLOTS * 3):
        with _connect(app.url) as sock:
            sock.sendall(
                _request_head("/api/ask/stream", f"Content-Length: {len(body)}\r\n") + body
            )
            if n % 2:  # half leave after the first bytes, half before any
                sock.recv(1)
    deadline = time.monotonic() + 30
    while (
        r := httpx.post(f"{app.url}/api/ask", json={"question": QUESTION}, timeout=30)
    ).status_code != 200:
        assert time.monotonic() < deadline, f"the dropped streams kept their slots: {r.status_code}"
        time.sleep(0.5)
    assert httpx.get(f"{app.url}/api/health").json()["slots_free"] == SLOTS
    assert httpx.post(f"{app.url}/api/search", json={"question": QUESTION}).status_code == 200


def test_many_waiting_questions_do_not_stall_the_server(app: AppProcess) -> None:
    def stream(_: int) -> int:
        with httpx.stream(
            "POST", f"{app.url}/api/ask/stream", json={"question": QUESTION}, timeout=60
        ) as r:
            r.read()
            return r.status_code

    with ThreadPoolExecutor(50) as pool:
        results = pool.map(stream, range(50))
        time.sleep(1)  # all 50 sent: two answering, the rest waiting for a slot
        started = time.perf_counter()
        health = httpx.get(f"{app.url}/api/health", timeout=30)
        took = time.perf_counter() - started
        statuses = list(results)
    assert took < 2, f"/api/health took {took:.1f} s while questions waited"
    assert health.json()["slots"] == SLOTS
    assert set(statuses) <= {200, 503}
    assert statuses.count(200) >= SLOTS


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_chunked_body_over_the_limit_is_refused_without_being_held(app: AppProcess) -> None:
    before = _rss_kb(app.process.pid)
    chunk = b"x" * 65_536
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    reply = b""
    with _connect(app.url) as sock:
        sock.sendall(_request_head("/api/ask", "Transfer-Encoding: chunked\r\n"))
        for _ in range(1000):  # up to 64 MB, unless the server answers first
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(framed)
            except OSError:
                break
        with contextlib.suppress(OSError):
            reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert _rss_kb(app.process.pid) - before < 20_000  # kB


def test_feedback_fields_over_their_limits_are_refused(app: AppProcess) -> None:
    rating = {"question": "q", "answer": "a" * 9000, "rating": 1}
    r = httpx.post(f"{app.url}/api/feedback", json=rating)
    assert r.status_code in (422, 429)  # 429: the flood test ran first
    if r.status_code == 422:
        assert "at most" in r.json()["error"]


def test_a_feedback_flood_is_rate_limited(app: AppProcess) -> None:
    rating = {"question": "q", "answer": "a", "rating": 1}
    statuses = [httpx.post(f"{app.url}/api/feedback", json=rating).status_code for _ in range(30)]
    assert statuses.count(200) <= FEEDBACK_PER_MINUTE
    assert statuses[-1] == 429
    r = httpx.post(f"{app.url}/api/feedback", json=rating)
    assert int(r.headers["retry-after"]) >= 1


def test_failed_logins_back_off_and_the_right_password_works_after_the_wait(
    app: AppProcess,
) -> None:
    wrong = {"username": LOGIN[0], "password": "guess"}
    statuses = [httpx.post(f"{app.url}/login", data=wrong).status_code for _ in range(3)]
    assert statuses == [400, 400, 400]
    refused = [httpx.post(f"{app.url}/login", data=wrong) for _ in range(50)]
    codes = [r.status_code for r in refused]
    assert codes[0] == 429
    assert codes.count(400) <= 3  # one try each time a wait (1 s, 2 s, 4 s ...) is over
    assert refused[-1].status_code == 429
    wait = int(refused[-1].headers["retry-after"])
    time.sleep(wait)
    right = {"username": LOGIN[0], "password": LOGIN[1]}
    assert httpx.post(f"{app.url}/login", data=right).status_code == 200
