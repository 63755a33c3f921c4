"""The feedback database's schema migrations (Alembic), run by
:func:`assistant.records.database.upgrade` when a store first connects; no ``alembic.ini``
is needed. A new revision goes into ``versions/`` (``NNNN_what.py``, ``down_revision`` the one
before); ``script.py.mako`` is its template."""

from __future__ import annotations

from pathlib import Path

__all__ = ["HEAD", "MIGRATIONS_DIR", "VERSION_TABLE"]

#: the folder Alembic reads (``script_location``)
MIGRATIONS_DIR = Path(__file__).resolve().parent
#: the table holding the applied revision: not ``alembic_version``, so the database may be
#: shared with another application that uses Alembic
VERSION_TABLE = "assistant_alembic_version"
#: the newest revision (a unit test checks it is Alembic's head)
HEAD = "0002"
