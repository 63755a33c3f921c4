"""Thumbs up/down from the chat page and the API, in the feedback database.

The database is ``ASSISTANT_FEEDBACK_URL`` (any SQLAlchemy URL, e.g. a PostgreSQL shared by
every replica) or by default the SQLite file ``<data_dir>/feedback.sqlite3``; see
:mod:`assistant.records.database`. Table ``feedback``: id, created (ISO 8601 UTC),
question, history (JSON list of ``{role, content}``), answer, rating (1 or -1), comment. No IP
address, user name or cookie is stored. Every write is its own transaction, so a kill during a
write loses at most that write and never corrupts earlier rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, insert, select, update

from assistant.errors import InputError, StorageFullError
from assistant.privacy import redact, screen, screen_turns
from assistant.records.database import FEEDBACK_FILE, Database
from assistant.records.schema import feedback
from assistant.schema import MAX_TURN_CHARS, MAX_TURNS, Turn

__all__ = ["FEEDBACK_FILE", "MAX_COMMENT_CHARS", "FeedbackStore"]

MAX_COMMENT_CHARS = 2000
#: row ids are 32-bit integers on every database
_MAX_ID = 2**31 - 1


class FeedbackStore:
    """Adds ratings and comments; any thread may use it. ``url`` (``ASSISTANT_FEEDBACK_URL``)
    names the database; empty: ``<data_dir>/feedback.sqlite3``."""

    def __init__(
        self, data_dir: Path, pii_check: str = "block", max_bytes: int = 0, url: str = ""
    ) -> None:
        #: the database, shared with :class:`~assistant.records.events.EventStore`
        self.database = Database.for_data_dir(data_dir, url)
        #: the personal-data guard (ASSISTANT_PII_CHECK): block, redact or off
        self.pii_check = pii_check
        self.max_bytes = max_bytes  # 0: no cap on the database's size

    def add(
        self,
        question: str,
        answer: str,
        rating: int,
        history: Sequence[Turn] = (),
        comment: str = "",
    ) -> int:
        """Store one rating (1 helpful, -1 unhelpful); returns the row id."""
        if rating not in (1, -1):
            raise InputError(f"a rating is 1 (helpful) or -1 (unhelpful), not {rating!r}")
        question, history = screen_turns(question, history, self.pii_check, "feedback")
        comment = screen([comment], self.pii_check, "comment")[0]
        answer = answer if self.pii_check == "off" else redact(answer)
        _check_sizes(question, answer, history)
        self._check_room()
        row = {
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "question": question,
            "history": json.dumps([{"role": t.role, "content": t.content} for t in history]),
            "answer": answer,
            "rating": rating,
            "comment": _comment(comment),
        }
        statement = insert(feedback).values(row).returning(feedback.c.id)
        with self.database.storing("feedback") as conn:
            return int(conn.execute(statement).scalar_one())

    def _check_room(self) -> None:
        """limits: refuse new rows once the database reaches ``max_bytes`` (SQLite: the file
        with its WAL; PostgreSQL: the feedback and events tables; other databases: not
        measured, their server has its own quotas)."""
        if self.max_bytes <= 0 or not self.database.exists():
            return
        size = self.database.size()
        if size is not None and size >= self.max_bytes:
            raise StorageFullError(
                f"the feedback store is full ({self.max_bytes // 1_000_000} MB); "
                "tell the service owner"
            )

    def comment(self, row_id: int, comment: str) -> None:
        """Attach (or replace) the comment of a stored rating."""
        comment = _comment(screen([comment], self.pii_check, "comment")[0])
        if not 0 < row_id <= _MAX_ID:
            raise InputError(f"no feedback with id {row_id}")
        change = update(feedback).where(feedback.c.id == row_id).values(comment=comment)
        with self.database.storing("comment") as conn:
            result = conn.execute(change)
        if result.rowcount == 0:
            raise InputError(f"no feedback with id {row_id}")

    def prune(self, before: datetime) -> int:
        """Delete the ratings made before ``before`` (retention); returns how many."""
        if not self.database.exists():
            return 0
        cutoff = before.astimezone(UTC).isoformat(timespec="seconds")  # as ``created`` is written
        with self.database.storing("feedback") as conn:
            return int(conn.execute(delete(feedback).where(feedback.c.created < cutoff)).rowcount)

    def rows(self, since: datetime | None = None) -> list[dict[str, object]]:
        """Every stored row (made from ``since`` on, if given), oldest first (for tests,
        exports and the site owners' page)."""
        if not self.database.exists():
            return []
        query = select(feedback).order_by(feedback.c.id)
        if since is not None:
            if since.tzinfo is None:
                raise InputError("give the time zone of `since` (e.g. datetime.now(UTC))")
            cutoff = since.astimezone(UTC).isoformat(timespec="seconds")  # as written
            query = query.where(feedback.c.created >= cutoff)
        with self.database.begin() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]


def _comment(text: str) -> str:
    text = text.strip()
    if len(text) > MAX_COMMENT_CHARS:
        raise InputError(f"a comment is at most {MAX_COMMENT_CHARS} characters")
    return text


def _check_sizes(question: str, answer: str, history: Sequence[Turn]) -> None:
    """limits: the same bounds as the API's fields, for every path that stores a rating."""
    if len(question) > MAX_TURN_CHARS or len(answer) > MAX_TURN_CHARS:
        raise InputError(f"a rated question or answer is at most {MAX_TURN_CHARS} characters")
    if len(history) > MAX_TURNS or any(len(t.content) > MAX_TURN_CHARS for t in history):
        raise InputError(
            f"the conversation of a rating is at most {MAX_TURNS} turns "
            f"of {MAX_TURN_CHARS} characters"
        )
