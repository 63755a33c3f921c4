"""Refused questions as events for the site owners' page, without their text: personal data,
a question over the length limit (``input_too_long``), over a rate limit (``rate``), the answer
queue full (``queue``) and a widget key refused (``widget_key``), on the question routes
(/api/ask, /api/ask/stream, /api/search).

A flood must not fill the database: :class:`RefusalGate` lets at most
:data:`REFUSAL_EVENTS_PER_MINUTE` events of each cause through per minute and process; the rest
are counted in the metrics only (``assistant_refusals_total``) and in :attr:`RefusalGate.left_out`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from assistant.errors import (
    AssistantError,
    PersonalDataError,
    QuestionTooLongError,
    RateLimitedError,
)
from assistant.serve.access import RateLimiter
from assistant.serve.metrics import cause_of

__all__ = ["EVENT_CAUSES", "REFUSAL_EVENTS_PER_MINUTE", "RefusalGate", "refusal_event_cause"]

#: at most this many refusal events of one cause a minute, in each process
REFUSAL_EVENTS_PER_MINUTE = 60
#: the refusal causes recorded as events (the others are in the metrics only)
EVENT_CAUSES = ("personal_data", "input_too_long", "rate", "queue", "widget_key")


def refusal_event_cause(err: AssistantError) -> str | None:
    """The event cause of a refused question, or None if such a refusal is not an event."""
    if isinstance(err, PersonalDataError):
        return "personal_data"
    if isinstance(err, QuestionTooLongError):
        return "input_too_long"
    cause = cause_of(err)
    return cause if cause in EVENT_CAUSES else None


class RefusalGate:
    """Lets through at most ``per_minute`` events of each cause in any minute (the API's
    :class:`~assistant.serve.access.RateLimiter`, keyed by cause); counts the others in
    :attr:`left_out`. Any thread may use it."""

    def __init__(
        self,
        per_minute: int = REFUSAL_EVENTS_PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = RateLimiter(per_minute, clock, what="refusal events")
        #: refusals not recorded as events since the process started, by cause
        self.left_out: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, cause: str) -> bool:
        """Whether a refusal of ``cause`` may become an event now."""
        try:
            self._limit.check(cause)
        except RateLimitedError:
            with self._lock:
                self.left_out[cause] = self.left_out.get(cause, 0) + 1
            return False
        return True
