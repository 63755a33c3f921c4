"""Widget keys on the real server (app.py in its own process, real HTTP, real model): a key asks
from its origin only, may not search, and a key revoked in the keys file stops working on the
next request, without a restart."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from servers import running_app

from devtools.servers import REPO, app_environment, free_port

pytestmark = pytest.mark.slow

TOKEN = "integration-api-token-0001"
KEY = "integration-widget-key-0001"
FILE_KEY = "integration-file-key-00002"
PAGE = "http://intranet.example.org:8080"
QUESTION = {"question": "How many CCGs manage most of the NHS commissioning budget?"}


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "widget-keys.txt"
    path.write_text(f"# issued for the intranet\n{FILE_KEY}={PAGE}\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def server(
    real_index: Path, keys_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    env = {
        "ASSISTANT_INDEX_DIR": str(real_index),
        "ASSISTANT_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "ASSISTANT_API_TOKEN": TOKEN,
        "ASSISTANT_WIDGET_KEYS": f"{KEY}={PAGE}",
        "ASSISTANT_WIDGET_KEYS_FILE": str(keys_file),
    }
    with running_app(env, tmp_path_factory.mktemp("server") / "server.log") as base:
        yield base


def _ask(
    server: str, key: str, origin: str | None = PAGE, path: str = "/api/ask"
) -> httpx.Response:
    headers = {"X-Widget-Key": key}
    if origin:
        headers["Origin"] = origin
    return httpx.post(f"{server}{path}", json=QUESTION, headers=headers, timeout=60)


def test_a_key_answers_from_its_origin_and_is_refused_elsewhere(server: str) -> None:
    ok = _ask(server, KEY)
    assert ok.status_code == 200
    assert "209" in ok.json()["answer"]
    assert ok.headers["access-control-allow-origin"] == PAGE
    assert _ask(server, KEY, "http://evil.example").status_code == 403
    assert _ask(server, KEY, None).status_code == 403
    assert _ask(server, "no-such-widget-key-0000").status_code == 401
    assert _ask(server, KEY, path="/api/search").status_code == 403
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.post(f"{server}/api/search", json=QUESTION, headers=bearer).status_code == 200


def test_a_key_revoked_in_the_file_stops_working_without_a_restart(
    server: str, keys_file: Path
) -> None:
    assert _ask(server, FILE_KEY).status_code == 200
    before = keys_file.stat().st_mtime_ns
    keys_file.write_text("# revoked\n", encoding="utf-8")
    os.utime(keys_file, ns=(before + 10**9, before + 10**9))
    refused = _ask(server, FILE_KEY)
    assert refused.status_code == 401
    assert "not valid" in refused.json()["error"]
    assert _ask(server, KEY).status_code == 200


def test_a_malformed_key_setting_stops_the_server_with_a_clear_message(
    tmp_path: Path, real_index: Path
) -> None:
    env = app_environment(
        {"ASSISTANT_INDEX_DIR": str(real_index), "ASSISTANT_WIDGET_KEYS": "oops"}, free_port()
    )
    done = subprocess.run(
        [sys.executable, str(REPO / "app.py")], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert "ASSISTANT_WIDGET_KEYS, entry 1: no '='" in done.stderr
    assert "Traceback" not in done.stderr
