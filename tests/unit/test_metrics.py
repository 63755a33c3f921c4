"""The Prometheus metrics at /metrics, in-process (FastAPI's TestClient, fake embedder): what
each answer, decline and refusal counts, the histogram, the index and queue gauges, who may
scrape, and the text format (read back with prometheus-client's own parser)."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from assistant.answer.calibration import Calibration
from assistant.errors import ConfigError
from assistant.index import IndexHandle
from assistant.pipeline import Assistant
from assistant.records.feedback import FeedbackStore
from assistant.serve.access import AnswerQueue
from assistant.serve.metrics import (
    CAUSES,
    IndexCollector,
    Metrics,
    PastHostCheck,
    RequestMetrics,
    route_of,
)
from assistant.serve.observe import Observer
from assistant.serve.web import create_app
from assistant.settings import Settings

HOSTS = ("testserver",)
TOKEN = "metrics-t0ken-9d2"
KEY = "w1dget-key-intranet-0123"
BOUND = "http://intranet.example.org:8080"
QUESTION = {"question": "What do the guides say about commissioning?"}
PERSONAL = "Jane Smith, NHS number 943 476 5919: what now?"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient, **headers: str) -> Samples:
    """Every sample of /metrics, parsed by prometheus-client: (name, labels) → value."""
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (KeyError if the sample is not there at all)."""
    return samples[(name, frozenset(labels.items()))]


def change(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much a sample grew between two scrapes (it must be in the second)."""
    key = (name, frozenset(labels.items()))
    return after[key] - before.get(key, 0.0)


def _app(assistant: Assistant | None, tmp_path: Path, **settings: Any) -> FastAPI:
    base: dict[str, Any] = {"data_dir": tmp_path / "data", "allowed_hosts": HOSTS}
    return create_app(Settings(**{**base, **settings}), assistant)


@pytest.fixture
def client(tiny_assistant: Assistant, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(_app(tiny_assistant, tmp_path)) as c:
        yield c


# -- the format -----------------------------------------------------------------------------------


def test_every_metric_is_there_with_its_type(client: TestClient) -> None:
    client.post("/api/ask", json=QUESTION)
    r = client.get("/metrics")
    types = {f.name: f.type for f in text_string_to_metric_families(r.text)}
    assert {
        "assistant_requests": "counter",
        "assistant_answers": "counter",
        "assistant_refusals": "counter",
        "assistant_request_duration_seconds": "histogram",
        "assistant_queue_depth": "gauge",
        "assistant_queue_in_use": "gauge",
        "assistant_index_build_info": "gauge",
        "assistant_index_age_seconds": "gauge",
        "assistant_index_chunks": "gauge",
        "process_resident_memory_bytes": "gauge",  # prometheus-client's own, one process
    }.items() <= types.items()


def test_every_refusal_cause_and_answer_label_is_there_from_the_start(client: TestClient) -> None:
    samples = scrape(client)
    for cause in CAUSES:
        assert value(samples, "assistant_refusals_total", cause=cause) == 0
    for channel in ("api", "widget", "page"):
        for outcome in ("answered", "declined"):
            assert value(samples, "assistant_answers_total", channel=channel, outcome=outcome) == 0


def test_openmetrics_when_the_scraper_asks_for_it(client: TestClient) -> None:
    r = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    names = {f.name for f in openmetrics_families(r.text)}
    assert {"assistant_requests", "assistant_index_build"} <= names


def test_each_app_counts_alone(tiny_assistant: Assistant, tmp_path: Path) -> None:
    with TestClient(_app(tiny_assistant, tmp_path)) as first:
        first.post("/api/ask", json=QUESTION)
        with TestClient(_app(tiny_assistant, tmp_path)) as second:
            other = scrape(second)
        mine = scrape(first)
    assert value(mine, "assistant_answers_total", channel="api", outcome="answered") == 1
    assert value(other, "assistant_answers_total", channel="api", outcome="answered") == 0


# -- answers, declines, requests, the histogram --------------------------------------------------


def test_an_answer_counts_its_request_its_answer_and_its_time(client: TestClient) -> None:
    before = scrape(client)
    assert client.post("/api/ask", json=QUESTION).status_code == 200
    after = scrape(client)
    assert change(before, after, "assistant_requests_total", route="ask", status="200") == 1
    assert change(before, after, "assistant_answers_total", channel="api", outcome="answered") == 1
    assert change(before, after, "assistant_refusals_total", cause="not_covered") == 0
    count = change(before, after, "assistant_request_duration_seconds_count", route="ask")
    assert count == 1
    assert change(before, after, "assistant_request_duration_seconds_sum", route="ask") > 0


def test_a_decline_counts_as_declined_and_not_covered(
    tiny_handle: IndexHandle, fake_embedder: Any, declining: Calibration, tmp_path: Path
) -> None:
    assistant = Assistant(tiny_handle, fake_embedder, calibration=declining)
    with TestClient(_app(assistant, tmp_path)) as c:
        body = c.post("/api/ask", json=QUESTION).json()
        samples = scrape(c)
    assert body["refused"] is True
    assert value(samples, "assistant_answers_total", channel="api", outcome="declined") == 1
    assert value(samples, "assistant_answers_total", channel="api", outcome="answered") == 0
    assert value(samples, "assistant_refusals_total", cause="not_covered") == 1


def test_a_streamed_answer_is_counted_once_it_is_sent(client: TestClient) -> None:
    r = client.post("/api/ask/stream", json=QUESTION, headers={"Origin": "http://testserver"})
    assert r.status_code == 200
    assert r.text.splitlines()[-1].startswith('{"type": "answer"')  # still streamed whole
    samples = scrape(client)
    assert value(samples, "assistant_answers_total", channel="widget", outcome="answered") == 1
    assert value(samples, "assistant_requests_total", route="ask_stream", status="200") == 1
    assert value(samples, "assistant_request_duration_seconds_count", route="ask_stream") == 1


def test_the_histogram_counts_asks_and_searches_in_its_buckets(client: TestClient) -> None:
    for _ in range(3):
        client.post("/api/search", json={"question": "commissioning", "k": 2})
    client.post("/api/ask", json=QUESTION)
    client.post("/api/search", json={"question": "   "})  # 400: not an answered search
    samples = scrape(client)
    assert value(samples, "assistant_request_duration_seconds_count", route="search") == 3
    assert value(samples, "assistant_request_duration_seconds_count", route="ask") == 1
    assert (
        value(samples, "assistant_request_duration_seconds_bucket", route="search", le="+Inf") == 3
    )
    buckets = [
        value(samples, "assistant_request_duration_seconds_bucket", route="search", le=le)
        for le in ("0.02", "0.1", "1.0", "30.0", "+Inf")
    ]
    assert buckets == sorted(buckets)  # cumulative
    assert value(samples, "assistant_requests_total", route="search", status="400") == 1


def test_other_routes_are_counted_by_name_not_by_path(client: TestClient) -> None:
    client.get("/api/health")
    client.get("/widget.js")
    client.get("/api/nothing-here")
    client.get("/config")  # the chat page's
    samples = scrape(client)
    assert value(samples, "assistant_requests_total", route="health", status="200") == 1
    assert value(samples, "assistant_requests_total", route="widget", status="200") == 1
    assert value(samples, "assistant_requests_total", route="page", status="200") == 1
    others = [
        v for (n, labels), v in samples.items()
        if n == "assistant_requests_total" and ("route", "other") in labels
    ]  # fmt: skip
    assert others == [1]  # the 404 of /api/nothing-here
    assert [route_of(p) for p in ("/api/ask", "/api/x", "/gradio_api/queue/join", "/metrics")] == [
        "ask", "other", "page", "metrics"
    ]  # fmt: skip


# -- refusals: every cause the server can give ---------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    cause: str
    status: int
    settings: dict[str, Any]
    send: Callable[[TestClient], httpx.Response]
    times: int = 1


def _ask(client: TestClient, **headers: str) -> httpx.Response:
    return client.post("/api/ask", json=QUESTION, headers=headers)


def _twice(client: TestClient) -> httpx.Response:
    _ask(client)
    return _ask(client)


def _wrong_login(client: TestClient) -> httpx.Response:
    return client.post("/login", data={"username": "staff", "password": "nope"})


def _wrong_login_twice(client: TestClient) -> httpx.Response:
    _wrong_login(client)
    return _wrong_login(client)  # held back: the first failure was the last allowed


REFUSALS = [
    Refusal("token", 401, {"api_token": TOKEN}, _ask),
    Refusal("origin", 403, {}, lambda c: _ask(c, Origin="http://evil.example")),
    Refusal("rate", 429, {"rate_limit_per_minute": 1}, _twice),
    Refusal("personal_data", 400, {}, lambda c: c.post("/api/ask", json={"question": PERSONAL})),
    Refusal(
        "personal_data", 400, {}, lambda c: c.post("/api/ask/stream", json={"question": PERSONAL})
    ),
    Refusal("invalid", 422, {}, lambda c: c.post("/api/ask", json={"question": 42})),
    Refusal("invalid", 400, {}, lambda c: c.post("/api/ask", json={"question": "  "})),
    Refusal("body_size", 413, {}, lambda c: c.post("/api/ask", json={"question": "x" * 300_000})),
    Refusal("host", 400, {}, lambda c: c.get("/api/health", headers={"Host": "evil.example"})),
    Refusal(
        "widget_key",
        401,
        {"widget_keys": f"{KEY}={BOUND}"},
        lambda c: _ask(c, **{"X-Widget-Key": "n0-such-key-0123456789", "Origin": BOUND}),
    ),
    Refusal(
        "widget_key",
        403,
        {"widget_keys": f"{KEY}={BOUND}"},
        lambda c: _ask(c, **{"X-Widget-Key": KEY, "Origin": "http://evil.example"}),
    ),
    Refusal("login", 400, {"ui_auth": "staff:pa55-word"}, _wrong_login),
    Refusal(
        "login",
        429,
        {"ui_auth": "staff:pa55-word", "login_max_failures": 1, "login_backoff_seconds": 60},
        _wrong_login_twice,
        times=2,
    ),
    Refusal("switched_off", 403, {"api_token": TOKEN}, lambda c: c.get("/config")),
    Refusal("not_served", 404, {}, lambda c: c.get("/openapi.json")),
    Refusal(
        "origin",
        400,
        {},
        lambda c: c.options(
            "/api/ask",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
        ),
    ),
]


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda r: f"{r.cause}-{r.status}")
def test_each_refusal_is_counted_with_its_cause(
    tiny_assistant: Assistant, tmp_path: Path, refusal: Refusal
) -> None:
    with TestClient(_app(tiny_assistant, tmp_path, **refusal.settings)) as c:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        before = scrape(c, **auth)
        assert refusal.send(c).status_code == refusal.status
        after = scrape(c, **auth)
    counted = {
        cause: change(before, after, "assistant_refusals_total", cause=cause) for cause in CAUSES
    }
    assert counted == {cause: refusal.times * (cause == refusal.cause) for cause in CAUSES}


async def _bad_request(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("no", status_code=400)(scope, receive, send)


@pytest.mark.parametrize(("past_host_check", "counted"), [(False, 1), (True, 0)])
def test_only_the_host_checks_unnoted_400_is_a_host_refusal(
    past_host_check: bool, counted: int
) -> None:
    metrics = Metrics()
    inner = PastHostCheck(_bad_request) if past_host_check else _bad_request
    client = TestClient(RequestMetrics(inner, metrics))  # no lifespan: the app has none
    assert client.get("/gradio_api/anything").status_code == 400  # e.g. one of Gradio's own
    sample = metrics.registry.get_sample_value
    assert sample("assistant_refusals_total", {"cause": "host"}) == counted
    assert sample("assistant_requests_total", {"route": "page", "status": "400"}) == 1


def test_a_full_queue_is_a_queue_refusal_and_the_gauges_follow_it(
    tiny_assistant: Assistant, tmp_path: Path
) -> None:
    app = _app(tiny_assistant, tmp_path, max_concurrent=1, queue_timeout=1)
    queue: AnswerQueue = app.state.server.queue
    with TestClient(app) as c:
        asyncio.run(queue.acquire())  # the only slot, taken from outside
        busy = scrape(c)
        assert _ask(c).status_code == 503
        after = scrape(c)
        queue.release()
        idle = scrape(c)
    assert value(busy, "assistant_queue_in_use") == 1
    assert change(busy, after, "assistant_refusals_total", cause="queue") == 1
    assert value(after, "assistant_queue_depth") == 0  # the refused request left the line
    assert value(idle, "assistant_queue_in_use") == 0


def test_the_queue_depth_counts_a_request_waiting_for_a_slot(
    tiny_assistant: Assistant, tmp_path: Path
) -> None:
    app = _app(tiny_assistant, tmp_path, max_concurrent=1, queue_timeout=30)
    queue: AnswerQueue = app.state.server.queue
    with TestClient(app) as c:
        asyncio.run(queue.acquire())
        statuses: list[int] = []
        waiting = threading.Thread(target=lambda: statuses.append(_ask(c).status_code))
        waiting.start()
        deadline = time.monotonic() + 10
        while value(scrape(c), "assistant_queue_depth") != 1:  # poll until it waits
            assert time.monotonic() < deadline, "the request never waited for a slot"
            time.sleep(0.02)
        queue.release()  # its turn
        waiting.join(10)
        samples = scrape(c)
    assert statuses == [200]
    assert value(samples, "assistant_queue_depth") == 0
    assert value(samples, "assistant_queue_in_use") == 0


def test_the_queue_reports_every_change_in_order() -> None:
    seen: list[tuple[int, int]] = []
    queue = AnswerQueue(1, timeout=5, on_change=lambda *state: seen.append(state))

    async def run() -> None:
        await queue.acquire()
        waiter = asyncio.create_task(queue.acquire())
        await asyncio.sleep(0)
        queue.release()  # handed to the waiter
        await waiter
        queue.release()

    asyncio.run(run())
    assert seen == [(0, 1), (1, 1), (0, 1), (0, 0)]


# -- the chat page -------------------------------------------------------------------------------


def test_the_chat_page_counts_its_answers_and_personal_data(
    tiny_assistant: Assistant, tmp_path: Path
) -> None:
    from assistant.serve.ui import _Handlers

    metrics = Metrics()
    handlers = _Handlers(lambda: tiny_assistant, FeedbackStore(tmp_path), Observer(metrics))
    list(handlers.chat(QUESTION["question"], []))
    assert handlers.check(PERSONAL)["is_valid"] is False
    sample = metrics.registry.get_sample_value
    assert sample("assistant_answers_total", {"channel": "page", "outcome": "answered"}) == 1
    assert sample("assistant_refusals_total", {"cause": "personal_data"}) == 1


# -- the index gauges ----------------------------------------------------------------------------


def test_the_index_gauges_describe_the_serving_build(
    client: TestClient, tiny_handle: IndexHandle
) -> None:
    meta = tiny_handle.get().meta
    samples = scrape(client)
    assert value(samples, "assistant_index_build_info", build_id=meta.build_id) == 1
    assert value(samples, "assistant_index_chunks") == meta.chunk_count > 0
    assert 0 <= value(samples, "assistant_index_age_seconds") < 600  # built for this test


@dataclass(frozen=True)
class _Build:
    build_id: str = "20260101T000000-abc"
    created: str = "2026-01-01T00:00:00+00:00"
    chunk_count: int = 7


def test_the_index_age_is_now_minus_the_builds_creation() -> None:
    now = 1_767_225_600.0 + 3 * 86_400  # 2026-01-04T00:00:00Z
    families = {f.name: f for f in IndexCollector(_Build(), clock=lambda: now).collect()}
    assert families["assistant_index_age_seconds"].samples[0].value == 3 * 86_400
    assert families["assistant_index_chunks"].samples[0].value == 7
    (info,) = families["assistant_index_build"].samples
    assert (info.name, info.labels, info.value) == (
        "assistant_index_build_info", {"build_id": "20260101T000000-abc"}, 1
    )  # fmt: skip


def test_a_scrape_never_loads_the_assistant(tmp_path: Path) -> None:
    app = _app(None, tmp_path)
    with TestClient(app) as c:
        samples = scrape(c)
    assert app.state.server.assistant is None  # no model loaded for a scrape
    assert not any(name.startswith("assistant_index_") for name, _ in samples)
    assert value(samples, "assistant_queue_depth") == 0


# -- who may scrape ------------------------------------------------------------------------------


def test_metrics_need_the_token_when_one_is_set(tiny_assistant: Assistant, tmp_path: Path) -> None:
    app = _app(tiny_assistant, tmp_path, api_token=TOKEN, widget_keys=f"{KEY}={BOUND}")
    with TestClient(app) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        for origin in ({"Origin": BOUND}, {}):  # a widget key opens no /metrics, from anywhere
            assert c.get("/metrics", headers={"X-Widget-Key": KEY, **origin}).status_code == 403
        samples = scrape(c, Authorization=f"Bearer {TOKEN}")  # the chat page is off: not this
    assert value(samples, "assistant_refusals_total", cause="token") == 2
    assert value(samples, "assistant_refusals_total", cause="widget_key") == 2


def test_metrics_are_not_rate_limited(tiny_assistant: Assistant, tmp_path: Path) -> None:
    with TestClient(_app(tiny_assistant, tmp_path, rate_limit_per_minute=1)) as c:
        statuses = [c.get("/metrics").status_code for _ in range(5)]
    assert statuses == [200] * 5


def test_metrics_off_is_a_404_token_or_not(tiny_assistant: Assistant, tmp_path: Path) -> None:
    with TestClient(_app(tiny_assistant, tmp_path, metrics=False, api_token=TOKEN)) as c:
        assert c.get("/metrics").status_code == 404
        r = c.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 404
    assert "ASSISTANT_METRICS" in r.json()["error"]


def test_the_metrics_setting_reads_on_and_off() -> None:
    assert Settings.from_env({}).metrics is True
    assert Settings.from_env({"ASSISTANT_METRICS": "off"}).metrics is False
    assert Settings.from_env({"ASSISTANT_METRICS": "on"}).metrics is True


# -- the shipped alert rules ---------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"


def test_the_alert_rules_use_only_metrics_the_server_gives(client: TestClient) -> None:
    import yaml

    client.post("/api/ask", json=QUESTION)
    names = {name for name, _ in scrape(client)}
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"][0]["rules"]
    assert [r["alert"] for r in rules] == [
        "AssistantDeclinesRising", "AssistantAskSlow", "AssistantIndexStale"
    ]  # fmt: skip
    used = {name for r in rules for name in re.findall(r"\bassistant_\w+", r["expr"])}
    assert used
    assert used <= names


def test_the_readme_shows_the_alert_rules_as_shipped() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"```yaml\n{ALERTS.read_text(encoding='utf-8')}```" in readme


def test_a_shared_folder_that_is_not_there_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PROMETHEUS_MULTIPROC_DIR"):
        Metrics(multiprocess_dir=str(tmp_path / "missing"))
