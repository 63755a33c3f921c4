"""What the service keeps, in one database through SQLAlchemy (``ASSISTANT_FEEDBACK_URL``: a
PostgreSQL shared by every replica, or by default ``<data_dir>/feedback.sqlite3``), migrated with
Alembic on first use:

- :class:`FeedbackStore`: the thumbs up/down with their comments (table ``feedback``);
- :class:`EventStore` and :class:`EventLog`: each question answered, declined or refused
  (table ``events``), for operators and the site owners' page.

A layer of its own under the shells (the server writes, the CLI exports), over the personal-data
guard it screens with.
"""

from __future__ import annotations

from assistant.records.database import FEEDBACK_FILE, Database
from assistant.records.events import Event, EventLog, EventStore
from assistant.records.feedback import MAX_COMMENT_CHARS, FeedbackStore

__all__ = [
    "FEEDBACK_FILE",
    "MAX_COMMENT_CHARS",
    "Database",
    "Event",
    "EventLog",
    "EventStore",
    "FeedbackStore",
]
