"""How much a client may send and how often it may try: the HTTP shell's size and attempt limits.

- :class:`BodyLimit`, a pure ASGI middleware: reads a request's body as it arrives and answers 413
  as soon as it passes the limit, whether the body has a ``Content-Length`` or is chunked, so a
  large body is never held in memory. The API takes :data:`MAX_BODY_BYTES`; the chat page's Gradio
  routes take :data:`MAX_UI_BODY_BYTES` (each question re-sends the whole conversation).
- :class:`LoginBackoff`, a pure ASGI middleware over the chat page's ``POST /login``: after
  ``max_failures`` attempts without a success from one client address, further attempts are
  refused (429 with Retry-After) for a time that doubles with each failure (up to
  :data:`LOGIN_BACKOFF_CAP_S`); a successful login forgets the client's failures.
- :class:`ReleasingStreamingResponse`: a streamed answer that gives back its answer slot however
  the response ends (sent, failed, or the client gone, even before the first byte).
- The field limits of the API's and the page's text (:data:`MAX_TURNS`, :data:`MAX_TURN_CHARS`, from
  :mod:`assistant.schema`).
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from starlette.responses import StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assistant.schema import MAX_TURN_CHARS, MAX_TURNS
from assistant.serve.metrics import StatusWatch, note_refusal

__all__ = [
    "LOGIN_BACKOFF_CAP_S",
    "MAX_BODY_BYTES",
    "MAX_TURNS",
    "MAX_TURN_CHARS",
    "MAX_UI_BODY_BYTES",
    "BodyLimit",
    "LoginBackoff",
    "LoginGuard",
    "ReleasingStreamingResponse",
]

#: largest request body the API reads (a question, its history, feedback): more is a 413
MAX_BODY_BYTES = 256_000
#: largest body the chat page's routes read: the page sends the whole conversation with every
#: question, answers and their Sources blocks included (about 15 kB an exchange with five cited
#: passages), so 2 MB carries a conversation of well over the 50 turns the pipeline reads
MAX_UI_BODY_BYTES = 2_000_000
#: the longest a client is kept waiting after failed logins
LOGIN_BACKOFF_CAP_S = 900.0

_NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


async def _refuse(send: Send, status: int, message: str, headers: dict[str, str]) -> None:
    body = json.dumps({"error": message}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class BodyLimit:
    """413 for a body over the limit, counted as it arrives (chunked bodies too)."""

    def __init__(
        self, app: ASGIApp, api_bytes: int = MAX_BODY_BYTES, other_bytes: int = MAX_UI_BODY_BYTES
    ) -> None:
        self.app = app
        self.api_bytes = api_bytes
        self.other_bytes = other_bytes

    def limit_for(self, path: str) -> int:
        return self.api_bytes if path.startswith("/api/") else self.other_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in _NO_BODY_METHODS:
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        length = _header(scope, b"content-length")
        if (length or "").strip().isdigit() and int(length or 0) > limit:
            await self._too_large(send, limit)
            return
        body = await self._read(receive, limit)
        if body is None:  # over the limit (or the client went away)
            await self._too_large(send, limit)
            return
        await self.app(scope, _replay(body, receive), send)

    @staticmethod
    async def _read(receive: Receive, limit: int) -> bytes | None:
        """The whole body, or None once it passes ``limit`` bytes (nothing more is read)."""
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = bytes(message.get("body", b""))
            total += len(chunk)
            if total > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    async def _too_large(send: Send, limit: int) -> None:
        size = f"{limit // 1000} kB" if limit < 1_000_000 else f"{limit / 1e6:g} MB"
        await _refuse(send, 413, f"the request is over {size}", {"Connection": "close"})


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` first, then whatever the client sends (a disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


class LoginGuard:
    """Failed logins per client: after ``max_failures`` attempts without a success, each further
    attempt waits ``base_s``, then twice as long, and so on (at most :data:`LOGIN_BACKOFF_CAP_S`).

    An attempt counts as a failure when it starts, so parallel guesses are counted too; a
    success forgets them.
    """

    def __init__(
        self, max_failures: int, base_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_failures = max_failures
        self.base_s = base_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, tuple[int, float]] = {}  # client -> (attempts, blocked until)

    def attempt(self, client: str) -> float:
        """Seconds ``client`` must still wait (0: it may try now, and the try is counted)."""
        if self.max_failures <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            count, until = self._failures.get(client, (0, 0.0))
            if now < until:
                return until - now
            count += 1
            if count >= self.max_failures:
                delay = self.base_s * 2.0 ** min(count - self.max_failures, 32)
                until = now + min(LOGIN_BACKOFF_CAP_S, delay)
            self._failures[client] = (count, until)
            if len(self._failures) > 10_000:  # forget clients no longer held back
                for key in [k for k, (_, u) in self._failures.items() if u <= now]:
                    del self._failures[key]
            return 0.0

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


class LoginBackoff:
    """Applies a :class:`LoginGuard` to ``POST .../login`` (Gradio: 200 on success, 400 not)."""

    def __init__(self, app: ASGIApp, guard: LoginGuard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", "")).rstrip("/")
        if scope["type"] != "http" or scope.get("method") != "POST" or not path.endswith("/login"):
            await self.app(scope, receive, send)
            return
        client = scope["client"][0] if scope.get("client") else "unknown"
        wait = self.guard.attempt(client)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            message = f"too many failed sign-ins from this address; try again in {seconds} s"
            note_refusal(scope, "login")  # metrics
            await _refuse(send, 429, message, {"Retry-After": str(seconds)})
            return
        watch = StatusWatch(send)
        await self.app(scope, receive, watch)
        if 200 <= watch.status < 400:
            self.guard.succeeded(client)
        elif watch.status:
            note_refusal(scope, "login")  # metrics: a failed sign-in


class ReleasingStreamingResponse(StreamingResponse):
    """A streamed response that calls ``release`` once, however sending it ends: finished, failed,
    cancelled, or the client gone before or during the stream; the iterator is closed then too."""

    def __init__(self, content: Iterator[bytes], release: Callable[[], None], **kw: Any) -> None:
        super().__init__(content, **kw)
        self._source = content
        self._release: Callable[[], None] | None = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()

    def release(self) -> None:
        """Give the slot back (once) and stop the answer if it is not running in a thread now."""
        release, self._release = self._release, None
        close = getattr(self._source, "close", None)
        if close is not None:
            # a worker thread may be in it now (ValueError): it finishes that step, no more
            with contextlib.suppress(ValueError):
                close()
        if release is not None:
            release()
