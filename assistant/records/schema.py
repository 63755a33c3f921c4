"""The tables of the feedback database, as SQLAlchemy Core sees them.

``feedback`` (thumbs up/down from the chat page and the API) keeps the columns and types of the
first, hand-written SQLite schema, so files made before Alembic still fit: ``created`` is ISO 8601
text and ``history`` JSON text. ``events`` has one row per answered, declined or refused question.
The migrations (``assistant/records/migrations``) create them; a unit test checks that they agree.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    TypeDecorator,
)

__all__ = ["UTCDateTime", "events", "feedback", "metadata"]

metadata = MetaData()


class UTCDateTime(TypeDecorator[datetime]):
    """A moment, always aware and in UTC when read; stored as UTC (``timestamptz`` on
    PostgreSQL, UTC text on SQLite, which has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("a naive datetime: give its time zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created", Text, nullable=False),
    Column("question", Text, nullable=False),
    Column("history", Text, nullable=False, server_default="[]"),
    Column("answer", Text, nullable=False),
    Column("rating", Integer, CheckConstraint("rating IN (1, -1)"), nullable=False),
    Column("comment", Text, nullable=False, server_default=""),
    sqlite_autoincrement=True,
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created", UTCDateTime, nullable=False),
    Column("channel", Text, nullable=False),
    Column("route", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("cause", Text, nullable=False, server_default=""),
    Column("question", Text, nullable=True),
    Column("sources", JSON, nullable=False),
    Column("latency_ms", Integer, nullable=False),
    Column("build_id", Text, nullable=False, server_default=""),
    Index("ix_events_created", "created"),
    sqlite_autoincrement=True,
)
