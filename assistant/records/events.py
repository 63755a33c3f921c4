"""Events: one row per question answered, declined or refused, for the site owners' page and
for operators (table ``events`` of the feedback database).

An :class:`Event` says where the question came from (``channel``: api, widget, page), which
route took it (ask, search, stream), what happened (``outcome``: answered, declined, refused)
and why (``cause``: ``not_covered``, ``personal_data``, ``token``, ``origin``, ``widget_key``,
``rate``, ``queue``…, or empty), with the question as already screened (or None), the cited
sources, the time taken and the index build that answered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from sqlalchemy import delete, insert, select

from assistant.errors import InputError
from assistant.records.database import Database
from assistant.records.schema import events

__all__ = ["Channel", "Event", "EventLog", "EventStore", "Outcome", "Route"]

log = logging.getLogger(__name__)

Channel = Literal["api", "widget", "page"]
Route = Literal["ask", "search", "stream"]
Outcome = Literal["answered", "declined", "refused"]
_ALLOWED: dict[str, tuple[str, ...]] = {
    "channel": get_args(Channel),
    "route": get_args(Route),
    "outcome": get_args(Outcome),
}


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Event:
    """One answered, declined or refused question; ``id`` is set once stored."""

    channel: Channel
    route: Route
    outcome: Outcome
    cause: str = ""
    #: the question as the personal-data guard left it; None: not kept
    question: str | None = None
    #: titles or ids of the documents the answer cited
    sources: tuple[str, ...] = ()
    latency_ms: int = 0
    build_id: str = ""
    created: datetime = field(default_factory=_now)
    id: int | None = None

    def __post_init__(self) -> None:
        for name, allowed in _ALLOWED.items():
            if getattr(self, name) not in allowed:
                raise InputError(
                    f"an event's {name} is one of {', '.join(allowed)}, not {getattr(self, name)!r}"
                )
        if self.created.tzinfo is None:
            raise InputError("an event's time needs its time zone (e.g. datetime.now(UTC))")
        if self.latency_ms < 0:
            raise InputError(f"an event's latency is 0 ms or more, not {self.latency_ms}")


class EventStore:
    """Records events and lists the recent ones; shares the :class:`Database` of the ratings
    (``EventStore(feedback_store.database)``)."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def record(self, event: Event) -> int:
        """Store ``event`` (its ``id`` is ignored); returns the new row's id."""
        values: dict[str, Any] = {
            "created": event.created,
            "channel": event.channel,
            "route": event.route,
            "outcome": event.outcome,
            "cause": event.cause,
            "question": event.question,
            "sources": list(event.sources),
            "latency_ms": event.latency_ms,
            "build_id": event.build_id,
        }
        statement = insert(events).values(values).returning(events.c.id)
        with self.database.storing("event") as conn:
            return int(conn.execute(statement).scalar_one())

    def recent(self, since: datetime, limit: int = 1000) -> list[Event]:
        """The events from ``since`` on, newest first, at most ``limit`` of them."""
        if since.tzinfo is None:
            raise InputError("give the time zone of `since` (e.g. datetime.now(UTC))")
        if not self.database.exists():
            return []
        query = (
            select(events)
            .where(events.c.created >= since)
            .order_by(events.c.created.desc(), events.c.id.desc())
            .limit(limit)
        )
        with self.database.begin() as conn:
            rows = conn.execute(query).mappings().all()
        return [Event(**{**row, "sources": tuple(row["sources"])}) for row in rows]

    def prune(self, before: datetime) -> int:
        """Delete the events made before ``before``; returns how many."""
        if not self.database.exists():
            return 0
        with self.database.storing("event") as conn:
            return int(conn.execute(delete(events).where(events.c.created < before)).rowcount)


class EventLog:
    """Writes events in the background, so that no answer waits for the database or fails with
    it: at most ``max_pending`` wait (more are dropped, and counted), a failed write is logged
    (once a minute at most) and dropped. Once an hour the writer deletes events older than
    ``keep_days`` (0: kept until deleted by hand), and calls each of ``prune_also`` with the
    same time (the ratings' retention)."""

    def __init__(
        self,
        store: EventStore,
        keep_days: int = 90,
        max_pending: int = 1000,
        prune_also: Sequence[Callable[[datetime], object]] = (),
    ) -> None:
        self.store, self.keep_days, self.max_pending = store, keep_days, max_pending
        self.prune_also = list(prune_also)
        self.dropped = 0
        self._pending = 0
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="events")
        self._pruned_at = float("-inf")
        self._warned_at = float("-inf")

    def submit(self, event: Event) -> None:
        """Queue ``event`` to be stored (never raises, never blocks)."""
        with self._lock:
            if self._pending >= self.max_pending:
                self.dropped += 1
                return
            self._pending += 1
        self._writer.submit(self._write, event)

    def _write(self, event: Event) -> None:
        try:
            self.store.record(event)
            self._prune_hourly()
        except Exception as err:  # the answer has gone out: the event is lost, the log says so
            self._warn(err)
        finally:
            with self._lock:
                self._pending -= 1

    def _prune_hourly(self) -> None:
        now = time.monotonic()
        if self.keep_days > 0 and now - self._pruned_at >= 3600:
            self._pruned_at = now
            before = datetime.now(UTC) - timedelta(days=self.keep_days)
            for prune in (self.store.prune, *self.prune_also):
                prune(before)

    def _warn(self, err: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= 60:
            self._warned_at = now
            log.warning("could not store a question event (%s); answers go on", type(err).__name__)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until the events submitted so far are written (tests, shutdown)."""
        self._writer.submit(lambda: None).result(timeout=timeout)

    def close(self) -> None:
        self._writer.shutdown(wait=True)
