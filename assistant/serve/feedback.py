"""Thumbs up/down from the chat page, kept in SQLite (``<data_dir>/feedback.sqlite3``).

Table ``feedback``: id, created (ISO 8601 UTC), question, history (JSON list of ``{role,
content}``), answer, rating (1 or -1), comment. No IP address, user name or cookie is stored.
Every write is its own transaction in WAL mode with ``synchronous=FULL``, so a kill during a
write loses at most that write and never corrupts earlier rows.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from assistant.errors import InputError, StorageFullError
from assistant.privacy import redact, screen, screen_turns
from assistant.schema import Turn
from assistant.serve.limits import MAX_TURN_CHARS, MAX_TURNS

__all__ = ["FEEDBACK_FILE", "MAX_COMMENT_CHARS", "FeedbackStore"]

FEEDBACK_FILE = "feedback.sqlite3"
MAX_COMMENT_CHARS = 2000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    question TEXT NOT NULL,
    history TEXT NOT NULL DEFAULT '[]',
    answer TEXT NOT NULL,
    rating INTEGER NOT NULL CHECK (rating IN (1, -1)),
    comment TEXT NOT NULL DEFAULT ''
)
"""


class FeedbackStore:
    """Adds ratings and comments; one connection per call, so any thread may use it."""

    def __init__(self, data_dir: Path, pii_check: str = "block", max_bytes: int = 0) -> None:
        self.path = data_dir / FEEDBACK_FILE
        #: the personal-data guard (ASSISTANT_PII_CHECK): block, redact or off
        self.pii_check = pii_check
        self.max_bytes = max_bytes  # 0: no cap on the database's size
        self._lock = threading.Lock()
        self._ready = False

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=10)
            if not self._ready:
                with self._lock:
                    conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute(_SCHEMA)
                    conn.commit()
                    self._ready = True
            conn.execute("PRAGMA synchronous=FULL")
            return conn
        except (OSError, sqlite3.Error) as err:
            raise InputError(f"cannot store feedback in {self.path}: {err}") from err

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
        turns = json.dumps([{"role": t.role, "content": t.content} for t in history])
        created = datetime.now(UTC).isoformat(timespec="seconds")
        conn = self._connect()
        try:
            with conn:
                cur = conn.execute(
                    "INSERT INTO feedback (created, question, history, answer, rating, comment) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (created, question, turns, answer, rating, _comment(comment)),
                )
            return int(cur.lastrowid or 0)
        except UnicodeEncodeError as err:  # a lone surrogate: JSON can carry it, SQLite cannot
            raise InputError(f"the feedback is not valid text ({err.reason})") from err
        except sqlite3.Error as err:
            raise InputError(f"cannot store feedback in {self.path}: {err}") from err
        finally:
            conn.close()

    def _check_room(self) -> None:
        """limits: refuse new rows once the database (with its WAL) reaches ``max_bytes``."""
        if self.max_bytes <= 0:
            return
        wal = self.path.with_name(self.path.name + "-wal")
        size = sum(p.stat().st_size for p in (self.path, wal) if p.exists())
        if size >= self.max_bytes:
            raise StorageFullError(
                f"the feedback store is full ({self.max_bytes // 1_000_000} MB); "
                "tell the service owner"
            )

    def comment(self, row_id: int, comment: str) -> None:
        """Attach (or replace) the comment of a stored rating."""
        comment = screen([comment], self.pii_check, "comment")[0]
        conn = self._connect()
        try:
            with conn:
                cur = conn.execute(
                    "UPDATE feedback SET comment = ? WHERE id = ?", (_comment(comment), row_id)
                )
        except UnicodeEncodeError as err:
            raise InputError(f"the comment is not valid text ({err.reason})") from err
        except sqlite3.Error as err:
            raise InputError(f"cannot store feedback in {self.path}: {err}") from err
        finally:
            conn.close()
        if cur.rowcount == 0:
            raise InputError(f"no feedback with id {row_id}")

    def rows(self) -> list[dict[str, object]]:
        """Every stored row, oldest first (for tests and exports)."""
        if not self.path.exists():
            return []
        conn = self._connect()
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute("SELECT * FROM feedback ORDER BY id")]
        finally:
            conn.close()


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
