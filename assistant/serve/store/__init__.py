"""The feedback database through SQLAlchemy: :class:`Database` (one engine, migrated with
Alembic on first use), its tables, and :class:`EventStore` for the answered and refused
questions. The ratings' store is :class:`assistant.serve.feedback.FeedbackStore`."""

from __future__ import annotations

from assistant.serve.store.database import FEEDBACK_FILE, Database
from assistant.serve.store.events import Event, EventStore

__all__ = ["FEEDBACK_FILE", "Database", "Event", "EventStore"]
