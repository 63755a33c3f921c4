"""Two replicas of the server (two real ``app.py`` processes) sharing one
``PROMETHEUS_MULTIPROC_DIR``: a scrape of either shows the requests, answers and refusals of both,
and a replica that stops takes its live gauges with it but not its counts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools.servers import AppProcess, ServerStartError, start_app, stop_process, wait_for_health

pytestmark = pytest.mark.slow

TOKEN = "replica-t0ken-5c1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
COVERED = "What are the four stages of the commissioning cycle?"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The replicas' shared metrics folder (empty at the start, as the README asks)."""
    return tmp_path_factory.mktemp("prometheus-multiproc")


@pytest.fixture(scope="module")
def replicas(
    real_index: Path, shared_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AppProcess, AppProcess]]:
    """Two app.py processes on one index and one metrics folder, started side by side."""
    logs = tmp_path_factory.mktemp("replicas")
    env = {
        "ASSISTANT_INDEX_DIR": str(real_index),
        "ASSISTANT_API_TOKEN": TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(shared_dir),
    }
    apps = [
        start_app({**env, "ASSISTANT_DATA_DIR": str(logs / f"data-{n}")}, logs / f"app-{n}.log")
        for n in (1, 2)
    ]
    try:
        for app in apps:
            wait_for_health(app, timeout=240)
        yield apps[0], apps[1]
    except ServerStartError as err:
        pytest.fail(str(err))
    finally:
        for app in apps:
            stop_process(app.process)


def scrape(app: AppProcess) -> Samples:
    r = httpx.get(f"{app.url}/metrics", headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def ask(app: AppProcess, **headers: str) -> httpx.Response:
    return httpx.post(f"{app.url}/api/ask", json={"question": COVERED}, headers=headers, timeout=60)


COUNTED = [
    ("assistant_requests_total", {"route": "ask", "status": "200"}),
    ("assistant_requests_total", {"route": "ask", "status": "401"}),
    ("assistant_answers_total", {"channel": "api", "outcome": "answered"}),
    ("assistant_refusals_total", {"cause": "token"}),
    ("assistant_request_duration_seconds_count", {"route": "ask"}),
    ("assistant_request_duration_seconds_bucket", {"route": "ask", "le": "+Inf"}),
]


def test_a_scrape_of_either_replica_counts_both(replicas: tuple[AppProcess, AppProcess]) -> None:
    first, second = replicas
    before = scrape(first)
    assert [ask(first, **AUTH).status_code for _ in range(2)] == [200, 200]
    assert ask(second, **AUTH).status_code == 200
    assert ask(first).status_code == 401  # no token: a refusal at each replica
    assert ask(second).status_code == 401
    from_first, from_second = scrape(first), scrape(second)
    grown = {
        (name, tuple(labels.values())): get(from_first, name, **labels)
        - get(before, name, **labels)
        for name, labels in COUNTED
    }
    assert grown == {
        ("assistant_requests_total", ("ask", "200")): 3,
        ("assistant_requests_total", ("ask", "401")): 2,
        ("assistant_answers_total", ("api", "answered")): 3,
        ("assistant_refusals_total", ("token",)): 2,
        ("assistant_request_duration_seconds_count", ("ask",)): 3,
        ("assistant_request_duration_seconds_bucket", ("ask", "+Inf")): 3,
    }
    for name, labels in COUNTED:  # either replica gives the same sums
        assert get(from_second, name, **labels) == get(from_first, name, **labels)


def test_the_gauges_and_the_index_in_multiprocess_mode(
    replicas: tuple[AppProcess, AppProcess],
) -> None:
    first, _ = replicas
    samples = scrape(first)
    build = httpx.get(f"{first.url}/api/health", timeout=30).json()["index"]["build"]
    assert get(samples, "assistant_index_build_info", build_id=build) == 1
    assert get(samples, "assistant_index_chunks") > 0
    assert (("assistant_queue_in_use", frozenset())) in samples  # the two idle replicas: 0
    assert get(samples, "assistant_queue_in_use") == 0
    assert get(samples, "assistant_queue_depth") == 0
    # one process's CPU would pass for the service's: not given with a shared folder
    assert not any(name.startswith("process_") for name, _ in samples)


def test_a_stopped_replica_leaves_its_counts_but_not_its_gauges(
    replicas: tuple[AppProcess, AppProcess], shared_dir: Path
) -> None:
    first, second = replicas
    assert ask(second, **AUTH).status_code == 200
    before = scrape(first)
    pid = second.process.pid
    assert (shared_dir / f"gauge_livesum_{pid}.db").exists()
    stop_process(second.process)  # SIGTERM: uvicorn shuts down, the app's lifespan ends
    assert not (shared_dir / f"gauge_livesum_{pid}.db").exists()
    assert (shared_dir / f"counter_{pid}.db").exists()
    after = scrape(first)
    for name, labels in COUNTED:
        assert get(after, name, **labels) == get(before, name, **labels)
