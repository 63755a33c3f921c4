"""The events table: one row per answered, declined or refused question, for the site owners'
page and operators.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

__all__ = ["downgrade", "upgrade"]

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("route", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("cause", sa.Text, nullable=False, server_default=""),
        sa.Column("question", sa.Text, nullable=True),
        sa.Column("sources", sa.JSON, nullable=False),
        sa.Column("latency_ms", sa.Integer, nullable=False),
        sa.Column("build_id", sa.Text, nullable=False, server_default=""),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_created", "events", ["created"])


def downgrade() -> None:
    op.drop_index("ix_events_created", table_name="events")
    op.drop_table("events")
