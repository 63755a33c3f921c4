"""FastAPI dependencies of the HTTP shell: what a route needs, read from ``request.app.state``.

:func:`create_app <assistant.serve.web.create_app>` puts one :class:`ServerState` on
``app.state.server``; the dependencies here hand its parts to the routes and apply
:mod:`assistant.serve.access`'s checks (origin 403, bearer token 401, rate limit 429). A refusal is
an :class:`~assistant.errors.AccessError`, which the app's exception handler turns into its status
and headers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Annotated

from fastapi import Depends, Request

from assistant.errors import NotServedError
from assistant.pipeline import Assistant
from assistant.records import EventLog, EventStore
from assistant.records.feedback import FeedbackStore
from assistant.schema import Answer
from assistant.serve.access import AnswerQueue, RateLimiter, check_origin, check_token
from assistant.serve.admin_events import RefusalGate
from assistant.serve.keys import KEY_HEADER, WIDGET_PATHS, WidgetKeys
from assistant.serve.limits import LoginGuard
from assistant.serve.metrics import Metrics
from assistant.serve.observe import QUESTION_ROUTES, Observer, channel_of
from assistant.settings import Settings

__all__ = [
    "AssistantDep",
    "FeedbackDep",
    "QueueDep",
    "RecordAnswerDep",
    "ServerState",
    "StateDep",
    "allowed_origin",
    "answer_queue",
    "bearer_token",
    "current_assistant",
    "feedback_store",
    "metrics_on",
    "record_answer",
    "server_state",
    "token_or_widget_key",
    "within_feedback_limit",
    "within_rate_limit",
]


@dataclass
class ServerState:
    """Everything the routes share: settings, the assistant (made on first use), the feedback
    store, the per-client rate limiter and the answer queue."""

    settings: Settings
    feedback: FeedbackStore
    limiter: RateLimiter
    queue: AnswerQueue
    allowed_origins: frozenset[str]
    assistant: Assistant | None = field(default=None)
    widget_keys: WidgetKeys = field(default_factory=WidgetKeys)
    #: limits: feedback's own per-client rate limit
    feedback_limiter: RateLimiter = field(default_factory=lambda: RateLimiter(0))
    #: metrics: what /metrics shows (a registry of this app's own)
    metrics: Metrics = field(default_factory=Metrics)
    #: where each question's outcome is logged (the feedback database); None: not logged
    events: EventLog | None = None
    #: whether an event keeps its question's text (ASSISTANT_KEEP_QUESTIONS)
    keep_questions: bool = False
    #: refused questions recorded as events: at most 60 a minute per cause (the rest: metrics)
    refusal_gate: RefusalGate = field(default_factory=RefusalGate)
    #: failed logins to the site owners' page back off, as the chat page's do
    admin_guard: LoginGuard = field(default_factory=lambda: LoginGuard(0, 1))

    @cached_property
    def observer(self) -> Observer:
        """Each question's outcome: counted in ``metrics`` and logged to ``events``."""
        return Observer(self.metrics, self.events, self._build_id, self.keep_questions)

    def _build_id(self) -> str:
        return self.assistant.index.get().build_id if self.assistant is not None else ""

    @classmethod
    def from_settings(cls, settings: Settings, assistant: Assistant | None = None) -> ServerState:
        """The state for ``settings``; without ``assistant``, one is made from them when needed."""
        metrics = Metrics()
        feedback = FeedbackStore(
            settings.data_dir,
            settings.pii_check,
            settings.feedback_max_mb * 1_000_000,
            url=settings.feedback_url,
        )
        events = EventLog(
            EventStore(feedback.database), settings.retention_days, prune_also=[feedback.prune]
        )
        return cls(
            settings=settings,
            feedback=feedback,
            limiter=RateLimiter(settings.rate_limit_per_minute),
            queue=AnswerQueue(
                settings.max_concurrent, settings.queue_timeout, metrics.queue_changed
            ),
            allowed_origins=frozenset(settings.cors_origins),
            assistant=assistant,
            widget_keys=WidgetKeys.from_settings(settings),
            feedback_limiter=RateLimiter(settings.feedback_rate_per_minute, what="ratings"),
            metrics=metrics,
            events=events,
            keep_questions=settings.keep_questions,
            admin_guard=LoginGuard(settings.login_max_failures, settings.login_backoff_seconds),
        )

    def get_assistant(self) -> Assistant:
        """The assistant, created from the settings the first time it is needed."""
        if self.assistant is None:
            self.assistant = Assistant.from_settings(self.settings)
        return self.assistant


def server_state(request: Request) -> ServerState:
    """Dependency: the app's :class:`ServerState` (``app.state.server``)."""
    state: ServerState = request.app.state.server
    return state


def current_assistant(request: Request) -> Assistant:
    """Dependency: the assistant (sync, so a first-use load runs in the thread pool)."""
    return server_state(request).get_assistant()


async def feedback_store(request: Request) -> FeedbackStore:
    """Dependency: where ratings are stored."""
    return server_state(request).feedback


async def answer_queue(request: Request) -> AnswerQueue:
    """Dependency: the queue a route takes a slot in while it answers."""
    return server_state(request).queue


def _own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', '')}"


async def allowed_origin(request: Request) -> None:
    """Dependency: refuse (403) a page on another origin that the settings do not list."""
    state = server_state(request)
    if state.widget_keys.active and request.headers.get(KEY_HEADER) is not None:
        # a widget key: its own origins decide (token_or_widget_key), on its routes only
        if request.url.path not in WIDGET_PATHS:
            state.widget_keys.refuse_elsewhere()
        return
    check_origin(request.headers.get("origin"), _own_origin(request), state.allowed_origins)


async def bearer_token(request: Request) -> None:
    """Dependency: refuse (401) a call without the configured bearer token."""
    state = server_state(request)
    token = state.settings.api_token
    check_token(request.headers.get("authorization"), token)
    origin = request.headers.get("origin")
    if token and origin and origin != _own_origin(request):
        state.widget_keys.warn_token_in_page(origin)


async def token_or_widget_key(request: Request) -> None:
    """Dependency of asking and feedback: the bearer token as :func:`bearer_token`, or a widget
    key (``X-Widget-Key``) from a page on one of its origins, within the key's rate limits
    (unknown key 401, another origin or none 403, too many 429)."""
    state = server_state(request)
    given = request.headers.get(KEY_HEADER)
    if given is None or not state.widget_keys.active:
        await bearer_token(request)
        return
    visitor = request.client.host if request.client else "unknown"
    state.widget_keys.admit(given, request.headers.get("origin"), visitor)


async def within_rate_limit(request: Request) -> None:
    """Dependency: refuse (429 with Retry-After) a client over its requests a minute."""
    server_state(request).limiter.check(request.client.host if request.client else "unknown")


async def within_feedback_limit(request: Request) -> None:
    """Dependency (limits): refuse (429 with Retry-After) a client over its ratings a minute."""
    limiter = server_state(request).feedback_limiter
    limiter.check(request.client.host if request.client else "unknown")


async def metrics_on(request: Request) -> None:
    """Dependency (metrics): 404 for /metrics when the settings switch it off."""
    if not server_state(request).settings.metrics:
        raise NotServedError("not found (metrics are served with ASSISTANT_METRICS=on)")


async def record_answer(request: Request) -> Callable[[Answer], None]:
    """Dependency (metrics, events): what records the request's answer or decline, on its
    channel (widget or api) and route (ask or stream)."""
    route = QUESTION_ROUTES.get(request.url.path, "ask")
    return partial(server_state(request).observer.answered, channel_of(request.headers), route)


StateDep = Annotated[ServerState, Depends(server_state)]
AssistantDep = Annotated[Assistant, Depends(current_assistant)]
FeedbackDep = Annotated[FeedbackStore, Depends(feedback_store)]
QueueDep = Annotated[AnswerQueue, Depends(answer_queue)]
RecordAnswerDep = Annotated[Callable[[Answer], None], Depends(record_answer)]
