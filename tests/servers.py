"""Real servers for the tests: :mod:`devtools.servers`, with a server that does not start
reported as a test failure."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from devtools.servers import (
    REPO,
    ServerStartError,
    free_port,
    start_app,
    static_site,
    stop_process,
    wait_for_health,
)

__all__ = ["REPO", "free_port", "running_app", "static_site"]


@contextmanager
def running_app(env: Mapping[str, str], log: Path, *, port: int | None = None) -> Iterator[str]:
    """Start ``app.py`` as `make run` does, wait until /api/health answers; yield its base URL."""
    app = start_app(env, log, port=port)
    try:
        try:
            wait_for_health(app)
        except ServerStartError as err:
            pytest.fail(str(err))
        yield app.url
    finally:
        stop_process(app.process)
