"""Tokens, origins, the per-client rate limit and the answer queue."""

from __future__ import annotations

import pytest

from assistant.errors import BusyError, NotAuthorisedError, OriginRefusedError, RateLimitedError
from assistant.serve.access import AnswerQueue, RateLimiter, check_origin, check_token


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer wrong", "Basic s3cret", "s3cret"])
def test_a_missing_or_wrong_token_is_refused(header: str | None) -> None:
    with pytest.raises(NotAuthorisedError):
        check_token(header, "s3cret")


@pytest.mark.parametrize("header", ["Bearer s3cret", "bearer s3cret", "Bearer  s3cret "])
def test_the_right_token_passes(header: str) -> None:
    check_token(header, "s3cret")


def test_no_token_configured_lets_everyone_in() -> None:
    check_token(None, "")


def test_origins() -> None:
    own, allowed = "http://a.example", frozenset({"http://b.example"})
    for origin in (None, "", own, "http://b.example"):
        check_origin(origin, own, allowed)
    with pytest.raises(OriginRefusedError, match=r"http://c\.example"):
        check_origin("http://c.example", own, allowed)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_limit_slides_per_client() -> None:
    clock = Clock()
    limiter = RateLimiter(3, clock=clock)
    for _ in range(3):
        limiter.check("a")
    limiter.check("b")  # another client has its own allowance
    clock.now += 20
    with pytest.raises(RateLimitedError) as refused:
        limiter.check("a")
    assert refused.value.retry_after == 40
    assert refused.value.status == 429
    clock.now += 40  # the first three are a minute old now
    limiter.check("a")


def test_no_rate_limit_when_zero() -> None:
    limiter = RateLimiter(0)
    for _ in range(1000):
        limiter.check("a")


async def test_the_queue_runs_at_most_size_at_once_and_refuses_after_the_timeout() -> None:
    queue = AnswerQueue(2, timeout=0.2)
    await queue.acquire()
    await queue.acquire()  # both slots taken
    assert queue.free == 0
    with pytest.raises(BusyError) as busy:
        await queue.acquire()
    assert busy.value.status == 503
    assert busy.value.retry_after is not None
    queue.release()
    async with queue.slot():  # free again
        assert queue.free == 0
    assert queue.free == 1
