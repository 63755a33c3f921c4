"""Events: one row per question answered, declined or refused, for the site owners' page and
for operators (table ``events`` of the feedback database).

An :class:`Event` says where the question came from (``channel``: api, widget, page), which
route took it (ask, search, stream), what happened (``outcome``: answered, declined, refused)
and why (``cause``: ``not_covered``, ``personal_data``, ``token``, ``origin``, ``widget_key``,
``rate``, ``queue``…, or empty), with the question as already screened (or None), the cited
sources, the time taken and the index build that answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sqlalchemy import insert, select

from assistant.errors import InputError
from assistant.serve.store.database import Database
from assistant.serve.store.schema import events

__all__ = ["Channel", "Event", "EventStore", "Outcome", "Route"]

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
