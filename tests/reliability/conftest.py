"""Reliability suite: load, index changes while serving, faults, bad input.

Everything is real: the bundled model, Chroma on disk, app.py over loopback HTTP, the CLI in
its own processes, ``kill -9``. The tests add to one tally (requests sent, errors, kills
survived, bad inputs tried, latencies); the end of the run prints it on one line and writes it to
``test-reports/reliability.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from rel_helpers import Tally
from servers import running_app

from devtools.servers import REPO

REPORT = REPO / "test-reports" / "reliability.json"


TALLY = Tally()


@pytest.fixture(scope="session")
def tally() -> Tally:
    return TALLY


@pytest.fixture(scope="session")
def real_server(real_index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """app.py serving the repository's corpus (the session's real index); its base URL."""
    tmp = tmp_path_factory.mktemp("reliability-server")
    env = {"ASSISTANT_INDEX_DIR": str(real_index), "ASSISTANT_DATA_DIR": str(tmp / "data")}
    with running_app(env, tmp / "server.log") as base:
        yield base


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count each passing test of the security review's findings (``test_review_*.py``)."""
    if report.when == "call" and report.passed and "/test_review_" in report.nodeid:
        TALLY.add(review_findings_checked=1)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TALLY.used:
        return
    terminalreporter.write_sep("-", "reliability")
    terminalreporter.write_line(TALLY.summary())
    for channel, numbers in TALLY.latency.items():
        shown = ", ".join(f"{k} {v:g}" for k, v in numbers.items())
        terminalreporter.write_line(f"  {channel}: {shown}")
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(TALLY.to_json(), indent=2) + "\n", encoding="utf-8")
    terminalreporter.write_line(f"  written to {REPORT.relative_to(REPO)}")
