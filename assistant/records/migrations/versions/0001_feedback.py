"""The feedback table, as the first SQLite store made it; created only if missing, so a
``feedback.sqlite3`` from before migrations is adopted with its rows.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

__all__ = ["downgrade", "upgrade"]

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("feedback"):
        return  # made by the store before it used Alembic: same columns, kept as it is
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created", sa.Text, nullable=False),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("history", sa.Text, nullable=False, server_default="[]"),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("rating", sa.Integer, sa.CheckConstraint("rating IN (1, -1)"), nullable=False),
        sa.Column("comment", sa.Text, nullable=False, server_default=""),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("feedback")
