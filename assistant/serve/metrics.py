"""Prometheus metrics for operators, served at ``/metrics`` (prometheus-client).

Metrics (every name prefixed ``assistant_``; no label holds question text):

- ``requests_total{route, status}``: every HTTP request, counted by :class:`RequestMetrics`,
  a pure ASGI middleware outside all the others (streamed responses pass through untouched);
  ``route`` is one of :data:`ROUTES`' names, ``other`` (any other ``/api/`` path) or ``page``
  (the Gradio chat page and its assets).
- ``request_duration_seconds{route}``: a histogram of ask, ask_stream and search, answered
  (status below 400), from the request's arrival to its last byte (:data:`BUCKETS`).
- ``answers_total{channel, outcome}``: ``answered`` or ``declined`` (not covered by the
  guidance) on ``api``, ``widget`` or ``page`` (:meth:`Metrics.answer`).
- ``refusals_total{cause}``: each of :data:`CAUSES`. The place that refuses notes its cause in
  the request's scope (:func:`note_refusal`, :func:`cause_of` for the assistant's errors); the
  middleware counts it with the response. A decline counts as ``not_covered``.
- ``queue_depth`` and ``queue_in_use``: requests waiting for an answer slot and slots busy,
  set by :class:`~assistant.serve.access.AnswerQueue` whenever they change
  (:meth:`Metrics.queue_changed`).
- ``index_build_info{build_id}``, ``index_age_seconds``, ``index_chunks``: the serving build,
  read at scrape time (:class:`IndexCollector`).
- with one process, prometheus-client's process, platform and garbage-collector metrics.

Each app has its own :class:`~prometheus_client.CollectorRegistry` (never the global one), so
tests may build many apps. With ``PROMETHEUS_MULTIPROC_DIR`` set (before the process starts:
prometheus-client reads it at import), every process writes its values to files there and a
scrape of any process merges them (:class:`~prometheus_client.multiprocess.MultiProcessCollector`
on a fresh registry, prometheus-client's documented pattern); the queue gauges then sum the live
processes' values: a process that shuts down (the app's lifespan ends, :meth:`Metrics.close`)
takes its gauges with it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    multiprocess,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import GaugeMetricFamily, InfoMetricFamily, Metric
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assistant.errors import (
    AssistantError,
    BusyError,
    ConfigError,
    InputError,
    NotAuthorisedError,
    NotServedError,
    OriginRefusedError,
    PersonalDataError,
    RateLimitedError,
    StorageFullError,
    SwitchedOffError,
    WidgetKeyRefusedError,
    WidgetKeyUnknownError,
)
from assistant.pipeline import Assistant

__all__ = [
    "BUCKETS",
    "CAUSES",
    "CHANNELS",
    "MULTIPROC_VAR",
    "ROUTES",
    "TIMED_ROUTES",
    "BuildFacts",
    "IndexCollector",
    "Metrics",
    "PastHostCheck",
    "RequestMetrics",
    "StatusWatch",
    "answer_channel",
    "cause_of",
    "note_refusal",
    "route_of",
    "serving_build",
]

#: the variable naming the folder processes share their values in (prometheus-client's own)
MULTIPROC_VAR = "PROMETHEUS_MULTIPROC_DIR"

#: the ``route`` label of each path the server knows
ROUTES = {
    "/api/ask": "ask",
    "/api/ask/stream": "ask_stream",
    "/api/search": "search",
    "/api/feedback": "feedback",
    "/api/health": "health",
    "/metrics": "metrics",
    "/widget.js": "widget",
    "/openapi.json": "openapi",
}
#: the routes whose duration is a histogram
TIMED_ROUTES = ("ask", "ask_stream", "search")
#: seconds: a search takes tens of milliseconds, an answer up to the chat model's timeout
BUCKETS = (0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0)
#: the ``channel`` label of answers
CHANNELS = ("api", "widget", "page")
#: the ``cause`` label of refusals
CAUSES = (
    "not_covered",  # the assistant declined: the guidance does not cover the question
    "personal_data",  # the question or feedback holds personal data (400)
    "invalid",  # a request that is malformed, too long or empty (400, 422)
    "token",  # no or a wrong bearer token (401)
    "origin",  # a page on an origin not allowed (403, a refused CORS preflight 400)
    "widget_key",  # an unknown widget key (401), or one used off its origins or routes (403)
    "rate",  # over a rate limit: per client, per widget key, ratings (429)
    "queue",  # every answer slot stayed busy (503)
    "body_size",  # a request body over the limit (413)
    "host",  # a Host header the server does not answer to (400)
    "login",  # a chat-page sign-in failed or held back after failures (400, 429)
    "switched_off",  # uploads, or the chat page with a token but no login (403)
    "not_served",  # a route switched off: the API schema, /metrics (404)
    "storage_full",  # the feedback store is full (507)
)

_ERROR_CAUSES: tuple[tuple[type[AssistantError], str], ...] = (
    (PersonalDataError, "personal_data"),
    (InputError, "invalid"),
    (WidgetKeyRefusedError, "widget_key"),
    (WidgetKeyUnknownError, "widget_key"),
    (NotAuthorisedError, "token"),
    (OriginRefusedError, "origin"),
    (RateLimitedError, "rate"),
    (BusyError, "queue"),
    (SwitchedOffError, "switched_off"),
    (NotServedError, "not_served"),
    (StorageFullError, "storage_full"),
)
_SCOPE_KEY = "assistant.metrics"


def cause_of(err: AssistantError) -> str | None:
    """The refusal cause of one of the assistant's errors; None for a fault of the server (the
    index unavailable, say), which is no refusal."""
    for kind, cause in _ERROR_CAUSES:
        if isinstance(err, kind):
            return cause
    return None


def route_of(path: str) -> str:
    """The ``route`` label of a request's path."""
    return ROUTES.get(path) or ("other" if path.startswith("/api/") else "page")


def answer_channel(headers: Headers) -> str:
    """``widget`` for a request from a web page (a widget key, or an ``Origin``, which browsers
    send with every POST), ``api`` for a program's."""
    return "widget" if "x-widget-key" in headers or "origin" in headers else "api"


@dataclass
class _Seen:
    """What the layers under :class:`RequestMetrics` tell it about one request."""

    cause: str | None = None
    past_host_check: bool = False


def note_refusal(scope: MutableMapping[str, Any], cause: AssistantError | str | None) -> None:
    """Note why the request of ``scope`` is refused (an error is mapped by :func:`cause_of`),
    for :class:`RequestMetrics` to count with its response."""
    seen = scope.get(_SCOPE_KEY)
    if isinstance(cause, AssistantError):
        cause = cause_of(cause)
    if isinstance(seen, _Seen) and cause is not None:
        seen.cause = cause


def _unnoted_cause(scope: Scope, status: int, seen: _Seen) -> str | None:
    """The cause of a refusal made where nothing notes it: Starlette's Host check and CORS
    preflight, the body limit, a request validation error of Gradio's."""
    if status == 400 and not seen.past_host_check:
        return "host"
    preflight = scope["method"] == "OPTIONS" and "access-control-request-method" in Headers(
        scope=scope
    )
    if status == 400 and preflight:
        return "origin"
    return {413: "body_size", 422: "invalid"}.get(status)


class BuildFacts(Protocol):
    """What the metrics read of the serving build (:class:`assistant.index.BuildMeta`)."""

    @property
    def build_id(self) -> str: ...
    @property
    def created(self) -> str: ...
    @property
    def chunk_count(self) -> int: ...


def serving_build(assistant: Assistant | None) -> BuildFacts | None:
    """The serving build of ``assistant``, if it is loaded and its index can be opened (a scrape
    never loads the assistant: that takes a model)."""
    if assistant is None:
        return None
    try:
        return assistant.index.get().meta
    except AssistantError:
        return None


class IndexCollector:
    """A collector of the serving build's gauges, read when scraped."""

    def __init__(self, build: BuildFacts | None, clock: Callable[[], float] = time.time) -> None:
        self.build = build
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        if self.build is None:
            return
        info = InfoMetricFamily("assistant_index_build", "The serving index build", labels=[])
        info.add_metric([], {"build_id": self.build.build_id})
        yield info
        yield GaugeMetricFamily(
            "assistant_index_chunks", "Chunks in the serving index", value=self.build.chunk_count
        )
        try:
            created = datetime.fromisoformat(self.build.created)
        except ValueError:
            return
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        age = self.clock() - created.timestamp()
        yield GaugeMetricFamily(
            "assistant_index_age_seconds", "Seconds since the serving build was made", value=age
        )


class Metrics:
    """The server's metrics, in a registry of their own (one per app)."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        """``multiprocess_dir``: the shared folder of several processes; by default
        ``$PROMETHEUS_MULTIPROC_DIR``, if set."""
        folder = multiprocess_dir or os.environ.get(MULTIPROC_VAR) or None
        if folder is not None and not Path(folder).is_dir():
            raise ConfigError(f"{MULTIPROC_VAR}: {folder} is not a folder (create it, empty)")
        self.multiprocess_dir = folder
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "assistant_requests", "HTTP requests by route and status code",
            ["route", "status"], registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "assistant_request_duration_seconds",
            "Seconds from a request's arrival to its last byte, of answered asks and searches",
            ["route"], buckets=BUCKETS, registry=r,
        )  # fmt: skip
        self.answers = Counter(
            "assistant_answers", "Questions answered or declined (not covered), by channel",
            ["channel", "outcome"], registry=r,
        )  # fmt: skip
        self.refusals = Counter(
            "assistant_refusals", "Requests refused and questions declined, by cause", ["cause"],
            registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "assistant_queue_depth", "Requests waiting for an answer slot",
            multiprocess_mode="livesum", registry=r,
        )  # fmt: skip
        self.queue_in_use = Gauge(
            "assistant_queue_in_use", "Answer slots busy", multiprocess_mode="livesum", registry=r
        )
        self._start(r)

    def _start(self, registry: CollectorRegistry) -> None:
        """Every label value known from the start at 0 (so rates and alerts see them), and the
        process's own collectors."""
        for cause in CAUSES:
            self.refusals.labels(cause)
        for channel in CHANNELS:
            for outcome in ("answered", "declined"):
                self.answers.labels(channel, outcome)
        for route in TIMED_ROUTES:
            self.duration.labels(route)
        if (
            self.multiprocess_dir is None
        ):  # one process: its CPU, memory, file descriptors, Python version, collections
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)

    def close(self) -> None:
        """At the app's shutdown: with a shared folder, this process's live gauges leave it (its
        counts stay: they happened)."""
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)  # type: ignore[no-untyped-call]

    def answer(self, channel: str, declined: bool) -> None:
        """An answer (or a decline, also a refusal ``not_covered``) on ``channel``."""
        self.answers.labels(channel, "declined" if declined else "answered").inc()
        if declined:
            self.refusals.labels("not_covered").inc()

    def refusal(self, cause: str) -> None:
        """A refusal that is no HTTP response of its own (the chat page's personal-data check)."""
        self.refusals.labels(cause).inc()

    def queue_changed(self, waiting: int, in_use: int) -> None:
        """The answer queue now: ``waiting`` requests, ``in_use`` slots busy."""
        self.queue_depth.set(waiting)
        self.queue_in_use.set(in_use)

    def request(self, scope: Scope, status: int, seconds: float, seen: _Seen) -> None:
        """One request answered with ``status`` after ``seconds``."""
        route = route_of(str(scope.get("path", "")))
        self.requests.labels(route, str(status)).inc()
        if route in TIMED_ROUTES and status < 400:
            self.duration.labels(route).observe(seconds)
        cause = seen.cause or (_unnoted_cause(scope, status, seen) if status >= 400 else None)
        if cause is not None:
            self.refusals.labels(cause).inc()

    def exposition(self, build: BuildFacts | None, accept: str | None = None) -> tuple[bytes, str]:
        """The scrape's body and content type (OpenMetrics if ``accept`` asks for it): this
        process's metrics, or every process's with a shared folder, and ``build``'s gauges."""
        registry = CollectorRegistry()
        if self.multiprocess_dir is not None:
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        else:
            registry.register(self.registry)  # a registry is a collector of its collectors
        registry.register(IndexCollector(build))
        encode, content_type = choose_encoder(accept or "")
        return encode(registry), content_type


class RequestMetrics:
    """ASGI middleware, outermost: counts every HTTP request by route and status, times the
    answering routes, and counts refusals with the cause noted by the layers below."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen = scope[_SCOPE_KEY] = _Seen()
        watch = StatusWatch(send)
        start = time.perf_counter()
        try:
            await self.app(scope, receive, watch)
        except Exception:
            watch.status = watch.status or 500  # what Starlette's error middleware answers
            raise
        finally:
            # 499 (nginx's "client closed request"): cancelled before any response
            self.metrics.request(scope, watch.status or 499, time.perf_counter() - start, seen)


class StatusWatch:
    """An ASGI ``send`` that passes every message on and keeps the response's status (0 until
    the response starts)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 0

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
        await self._send(message)


class PastHostCheck:
    """ASGI middleware just inside the Host check: marks the requests it let through, so that
    :class:`RequestMetrics` knows a 400 of the check from a 400 of anything else."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        seen = scope.get(_SCOPE_KEY)
        if isinstance(seen, _Seen):
            seen.past_host_check = True
        await self.app(scope, receive, send)
