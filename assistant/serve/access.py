"""Who may ask, how often, and how many at once: bearer tokens, origins, a per-client rate
limit and the answer queue. The HTTP shell turns each refusal (:class:`~assistant.errors.
AccessError`) into its status code; nothing here knows about HTTP frameworks.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from assistant.errors import BusyError, NotAuthorisedError, OriginRefusedError, RateLimitedError

__all__ = ["AnswerQueue", "RateLimiter", "check_origin", "check_token"]

_WINDOW_S = 60.0


def check_token(authorization: str | None, token: str) -> None:
    """Raise unless ``authorization`` is ``Bearer <token>`` (no token configured: anyone)."""
    if not token:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        raise NotAuthorisedError(
            "this assistant needs an access token: send the header 'Authorization: Bearer <token>'"
            if not given
            else "the access token is not valid"
        )


def check_origin(origin: str | None, own: str, allowed: frozenset[str]) -> None:
    """Raise when a page on another origin, not in ``allowed``, calls the API."""
    if origin and origin != own and origin not in allowed:
        raise OriginRefusedError(
            f"pages on {origin} may not use this assistant "
            "(the server's ASSISTANT_CORS_ORIGINS does not list it)"
        )


class RateLimiter:
    """At most ``per_minute`` requests per client in any sliding minute (0: no limit)."""

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        what: str = "questions",
    ) -> None:
        self.per_minute = per_minute
        self.what = what
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, client: str) -> None:
        if self.per_minute <= 0:
            return
        now = self._clock()
        with self._lock:
            times = self._seen.setdefault(client, deque())
            while times and now - times[0] >= _WINDOW_S:
                times.popleft()
            if len(times) >= self.per_minute:
                wait = max(1, math.ceil(_WINDOW_S - (now - times[0])))
                raise RateLimitedError(
                    f"too many {self.what} from this client (limit {self.per_minute} a minute); "
                    f"try again in {wait} s",
                    retry_after=wait,
                )
            times.append(now)
            if len(self._seen) > 10_000:  # forget idle clients so memory stays bounded
                idle = [k for k, v in self._seen.items() if not v or now - v[-1] >= _WINDOW_S]
                for k in idle:
                    del self._seen[k]


class AnswerQueue:
    """Answers at most ``size`` questions at once; the rest wait up to ``timeout`` seconds.

    Waiting is asynchronous (a future on the waiter's event loop), so requests waiting for a slot
    hold no worker thread; a slot may be released from any thread. A waiter whose time runs out,
    or whose task is cancelled, gives back a slot handed to it meanwhile.
    ``on_change(waiting, in_use)`` (metrics) is told every change, in order.
    """

    def __init__(
        self, size: int, timeout: float, on_change: Callable[[int, int], None] | None = None
    ) -> None:
        self.size = size
        self.timeout = timeout
        self._free = size
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()
        self._lock = threading.Lock()
        self._on_change = on_change

    def _changed(self) -> None:
        """metrics: report the queue (called holding the lock, so reports keep their order)."""
        if self._on_change is not None:
            self._on_change(len(self._waiters), self.size - self._free)

    @property
    def free(self) -> int:
        """Slots free now (for /api/health)."""
        return self._free

    async def acquire(self) -> None:
        """Take a slot, waiting up to ``timeout``; :class:`BusyError` if none frees up."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                self._changed()
                return
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, waiter))
            self._changed()
        try:
            await asyncio.wait({waiter}, timeout=self.timeout)
        except BaseException:  # the waiting task was cancelled (e.g. the server stops)
            if self._settle(loop, waiter):
                self.release()
            raise
        if not self._settle(loop, waiter):
            raise BusyError(
                "the assistant is busy; try again in a few seconds",
                retry_after=max(1, math.ceil(self.timeout / 6)),
            )

    def _settle(self, loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[None]) -> bool:
        """After waiting: True if ``waiter`` holds a slot; otherwise it leaves the line."""
        with self._lock:
            if waiter.done() and not waiter.cancelled():
                return True
            if (loop, waiter) in self._waiters:
                self._waiters.remove((loop, waiter))
                self._changed()
            waiter.cancel()  # a slot handed over but not yet delivered comes back in _deliver
            return False

    def release(self) -> None:
        """Give a slot back: to the longest waiter if there is one."""
        with self._lock:
            while self._waiters:
                loop, waiter = self._waiters.popleft()
                if waiter.done() or loop.is_closed():
                    continue
                loop.call_soon_threadsafe(self._deliver, waiter)
                self._changed()
                return
            self._free = min(self.size, self._free + 1)
            self._changed()

    def _deliver(self, waiter: asyncio.Future[None]) -> None:
        with self._lock:
            if not waiter.done():
                waiter.set_result(None)
                return
        self.release()  # its waiter gave up meanwhile: the next one gets it

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """A slot for the length of the ``async with`` block."""
        await self.acquire()
        try:
            yield
        finally:
            self.release()
