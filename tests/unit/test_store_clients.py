"""Clients of different kinds in one process do not change each other (chromadb writes into the
settings object it is given)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from assistant.errors import StoreUnavailableError
from assistant.index.chroma import (
    ChromaServer,
    ChromaStore,
    persistent_client,
    release_client,
    server_client,
)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_embedded_store_still_works_after_a_server_client_was_tried(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailableError, match="not reachable"):
        server_client(ChromaServer("127.0.0.1", _closed_port()))
    client = persistent_client(tmp_path / "chroma")
    try:
        assert ChromaStore(client, "guidance").count() == 0
    finally:
        release_client(client)
