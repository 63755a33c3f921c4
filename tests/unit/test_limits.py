"""The size and attempt limits of the HTTP shell, in-process: the answer queue's asynchronous
waiting, the body limit counted as the body arrives, login backoff, the streamed answer that gives
its slot back however it ends, field limits, feedback's own rate limit and /api/health's slots."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

from assistant.errors import BusyError, InputError, StorageFullError
from assistant.pipeline import Assistant
from assistant.records.feedback import FeedbackStore
from assistant.schema import Turn
from assistant.serve.access import AnswerQueue
from assistant.serve.limits import (
    MAX_TURN_CHARS,
    MAX_TURNS,
    BodyLimit,
    LoginBackoff,
    LoginGuard,
    ReleasingStreamingResponse,
)
from assistant.serve.ui import history_turns
from assistant.serve.web import create_app
from assistant.settings import Settings

# --- the answer queue --------------------------------------------------------------------------


async def test_a_thousand_waiters_hold_no_thread_and_are_served_in_turn() -> None:
    queue = AnswerQueue(1, timeout=10)
    await queue.acquire()
    threads = threading.active_count()
    served: list[int] = []

    async def wait(n: int) -> None:
        async with queue.slot():
            served.append(n)

    waiters = [asyncio.create_task(wait(n)) for n in range(1000)]
    await asyncio.sleep(0.05)
    assert threading.active_count() == threads  # waiting costs no thread
    threading.Thread(target=queue.release).start()  # a slot released from a worker thread
    await asyncio.gather(*waiters)
    assert served == list(range(1000))
    assert queue.free == 1


async def test_waiters_that_time_out_or_are_cancelled_leave_no_slot_behind() -> None:
    queue = AnswerQueue(2, timeout=0.05)
    await queue.acquire()
    await queue.acquire()
    timed_out = [asyncio.create_task(queue.acquire()) for _ in range(5)]
    cancelled = asyncio.create_task(queue.acquire())
    await asyncio.sleep(0)
    cancelled.cancel()
    results = await asyncio.gather(*timed_out, cancelled, return_exceptions=True)
    assert all(isinstance(r, BusyError) for r in results[:5])
    assert isinstance(results[5], asyncio.CancelledError)
    queue.release()
    queue.release()
    assert queue.free == 2
    async with queue.slot(), queue.slot():
        assert queue.free == 0


async def test_a_slot_handed_to_a_waiter_that_gave_up_goes_to_the_next() -> None:
    queue = AnswerQueue(1, timeout=5)
    await queue.acquire()
    first = asyncio.create_task(queue.acquire())
    second = asyncio.create_task(queue.acquire())
    await asyncio.sleep(0)
    queue.release()  # handed to ``first`` (delivered on the loop's next turn) ...
    first.cancel()  # ... which gives up before it is delivered
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.wait_for(second, 1)  # the slot went on to the next waiter
    queue.release()
    assert queue.free == 1


# --- the body limit ----------------------------------------------------------------------------


class _Client:
    """Feeds an ASGI app a body in chunks and records what it sends back."""

    def __init__(self, chunks: list[bytes], headers: list[tuple[bytes, bytes]] = []) -> None:  # noqa: B006
        self.chunks = list(chunks)
        self.read = 0
        self.sent: list[Message] = []
        self.scope: Scope = {
            "type": "http", "method": "POST", "path": "/api/ask", "headers": headers,
            "client": ("10.0.0.1", 1234),
        }  # fmt: skip

    async def receive(self) -> Message:
        if not self.chunks:
            return {"type": "http.disconnect"}
        self.read += 1
        body = self.chunks.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(self.chunks)}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])


async def _echo(scope: Scope, receive: Receive, send: Send) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def test_a_chunked_body_over_the_limit_is_refused_once_it_passes_it() -> None:
    client = _Client([b"x" * 1000] * 1000, [(b"transfer-encoding", b"chunked")])
    await BodyLimit(_echo, api_bytes=10_000)(client.scope, client.receive, client.send)
    assert client.status == 413
    assert client.read == 11  # stopped reading at the chunk that passed 10 kB
    assert b"over 10 kB" in client.sent[1]["body"]


async def test_a_content_length_over_the_limit_is_refused_before_reading() -> None:
    client = _Client([b"x" * 20_000], [(b"content-length", b"20000")])
    await BodyLimit(_echo, api_bytes=10_000)(client.scope, client.receive, client.send)
    assert (client.status, client.read) == (413, 0)


async def test_a_body_within_the_limit_reaches_the_app_whole() -> None:
    client = _Client([b"a" * 4000, b"b" * 4000, b"c" * 2000])
    await BodyLimit(_echo, api_bytes=10_000)(client.scope, client.receive, client.send)
    assert client.status == 200
    assert client.sent[1]["body"] == b"a" * 4000 + b"b" * 4000 + b"c" * 2000


def test_the_chat_page_routes_take_more_than_the_api() -> None:
    limit = BodyLimit(_echo, api_bytes=256_000, other_bytes=2_000_000)
    assert limit.limit_for("/api/feedback") == 256_000
    assert limit.limit_for("/gradio_api/queue/join") == 2_000_000


# --- login backoff -----------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_login_attempts_wait_longer_after_each_failure_and_a_success_resets() -> None:
    clock = _Clock()
    guard = LoginGuard(3, 1.0, clock)
    assert [guard.attempt("a") for _ in range(3)] == [0, 0, 0]
    assert guard.attempt("a") == pytest.approx(1.0)  # the third failure: wait 1 s
    assert guard.attempt("b") == 0  # per client
    clock.now += 1
    assert guard.attempt("a") == 0
    assert guard.attempt("a") == pytest.approx(2.0)  # then 2 s, 4 s, ...
    clock.now += 2
    assert guard.attempt("a") == 0
    guard.succeeded("a")
    assert [guard.attempt("a") for _ in range(3)] == [0, 0, 0]


def test_login_waits_are_capped() -> None:
    clock = _Clock()
    guard = LoginGuard(1, 1.0, clock)
    for _ in range(100):
        guard.attempt("a")
        clock.now += 10_000
    guard.attempt("a")
    assert guard.attempt("a") <= 900


async def test_the_login_middleware_refuses_with_retry_after_and_lets_other_paths_through() -> None:
    ok = {"status": 400}

    async def login(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": ok["status"], "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    app = LoginBackoff(login, LoginGuard(2, 5.0))
    statuses = []
    for _ in range(3):
        client = _Client([b"username=a&password=b"])
        client.scope["path"] = "/login"
        await app(client.scope, client.receive, client.send)
        statuses.append(client.status)
    assert statuses == [400, 400, 429]
    assert (b"retry-after", b"5") in client.sent[0]["headers"]
    other = _Client([b"{}"])  # /api/ask: not a login
    await app(other.scope, other.receive, other.send)
    assert other.status == 400


# --- the streamed answer's slot ----------------------------------------------------------------


async def test_a_stream_gives_its_slot_back_when_the_client_left_before_the_first_byte() -> None:
    queue = AnswerQueue(1, timeout=0.1)
    await queue.acquire()
    started = []

    def lines() -> Iterator[bytes]:
        started.append(True)
        yield b"{}\n"

    async def gone(message: Message) -> None:
        raise OSError("the client closed the connection")

    response = ReleasingStreamingResponse(lines(), queue.release)
    scope = {"type": "http", "asgi": {"spec_version": "2.4"}}
    with pytest.raises(ClientDisconnect):
        await response(scope, _Client([]).receive, gone)
    assert not started
    assert queue.free == 1
    response.release()  # once only
    assert queue.free == 1


async def test_a_stream_gives_its_slot_back_when_it_is_cancelled_mid_answer() -> None:
    queue = AnswerQueue(1, timeout=0.1)
    await queue.acquire()
    closed = []

    def lines() -> Iterator[bytes]:
        try:
            for _ in range(1000):
                yield b"{}\n"
        finally:
            closed.append(True)

    sent = asyncio.Event()

    async def slow(message: Message) -> None:  # the first line is written, then the socket stalls
        if message["type"] == "http.response.body":
            sent.set()
            await asyncio.sleep(10)

    async def quiet() -> Message:
        await asyncio.sleep(10)
        return {"type": "http.disconnect"}

    response = ReleasingStreamingResponse(lines(), queue.release)
    task = asyncio.create_task(response({"type": "http"}, quiet, slow))
    await sent.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert queue.free == 1
    assert closed == [True]


# --- field limits ------------------------------------------------------------------------------


def test_the_feedback_store_refuses_text_over_the_limits(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path)
    long = "x" * (MAX_TURN_CHARS + 1)
    with pytest.raises(InputError, match="at most"):
        store.add(long, "an answer", 1)
    with pytest.raises(InputError, match="at most"):
        store.add("q", long, 1)
    with pytest.raises(InputError, match="turns"):
        store.add("q", "a", 1, [Turn("user", "hi")] * (MAX_TURNS + 1))
    with pytest.raises(InputError, match="turns"):
        store.add("q", "a", 1, [Turn("user", long)])
    assert store.rows() == []


def test_the_feedback_store_stops_at_its_size_cap(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path, max_bytes=100_000)
    with pytest.raises(StorageFullError) as full:  # noqa: PT012
        for _ in range(1000):
            store.add("q" * 8000, "a" * 8000, 1)
    assert full.value.status == 507
    assert 5 <= len(store.rows()) < 20


def test_the_chat_page_reads_at_most_the_api_s_turns_of_the_api_s_length() -> None:
    history = [{"role": "user", "content": f"{n} " + "x" * 20_000} for n in range(200)]
    turns = history_turns(history)
    assert len(turns) == MAX_TURNS
    assert turns[-1].content.startswith("199 ")
    assert max(len(t.content) for t in turns) == MAX_TURN_CHARS


# --- the API -----------------------------------------------------------------------------------


@pytest.fixture
def client(tiny_assistant: Assistant, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path / "data",
        feedback_rate_per_minute=3,
        max_concurrent=2,
        allowed_hosts=("testserver",),
    )
    with TestClient(create_app(settings, tiny_assistant)) as c:
        yield c


def _rating(**fields: Any) -> dict[str, Any]:
    return {"question": "q", "answer": "a", "rating": 1, **fields}


@pytest.mark.parametrize(
    "body",
    [
        _rating(question="x" * (MAX_TURN_CHARS + 1)),
        _rating(answer="x" * (MAX_TURN_CHARS + 1)),
        _rating(history=[{"role": "user", "content": "x" * (MAX_TURN_CHARS + 1)}]),
        _rating(history=[{"role": "user", "content": "x"}] * (MAX_TURNS + 1)),
    ],
    ids=["question", "answer", "turn", "turns"],
)
def test_feedback_fields_over_the_limits_are_422(client: TestClient, body: dict[str, Any]) -> None:
    r = client.post("/api/feedback", json=body)
    assert r.status_code == 422
    assert r.json()["error"].startswith("invalid request")


def test_a_question_over_the_field_limit_is_422(client: TestClient) -> None:
    for route in ("/api/ask", "/api/ask/stream", "/api/search"):
        r = client.post(route, json={"question": "x" * (MAX_TURN_CHARS + 1)})
        assert r.status_code == 422, route


def test_feedback_has_its_own_rate_limit(client: TestClient) -> None:
    statuses = [client.post("/api/feedback", json=_rating()).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    r = client.post("/api/feedback", json=_rating())
    assert int(r.headers["retry-after"]) >= 1
    assert "ratings" in r.json()["error"]
    assert client.post("/api/ask", json={"question": "commissioning"}).status_code == 200


def test_health_counts_the_answer_slots(client: TestClient) -> None:
    body = client.get("/api/health").json()
    assert (body["status"], body["slots"], body["slots_free"]) == ("ok", 2, 2)
