"""Alembic's environment for the feedback database.

The store passes its own connection (already in a transaction, under PostgreSQL's advisory lock)
in ``config.attributes["connection"]``; without one (a developer running the ``alembic``
command with an ini file that gives ``sqlalchemy.url``) an engine is made from the ini's section.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, engine_from_config, pool

from assistant.records.migrations import VERSION_TABLE
from assistant.records.schema import metadata

__all__: list[str] = []


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=True,  # SQLite alters tables by copying them
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_from_ini() -> None:
    config = context.config
    section = config.get_section(config.config_ini_section, {})
    engine = engine_from_config(section, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as connection:
        _run(connection)


_given = context.config.attributes.get("connection")
if _given is not None:
    _run(_given)
else:
    _run_from_ini()
