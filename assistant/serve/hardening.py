"""What makes the HTTP shell safe to put in front of staff, beyond the API's own checks.

- :class:`SecurityHeaders`: a Content-Security-Policy the chat page works under (nothing from
  another origin; ``frame-ancestors`` from ``Settings.frame_ancestors``, ``'none'`` by default,
  with ``X-Frame-Options: DENY`` then), ``X-Content-Type-Options: nosniff``,
  ``Referrer-Policy: no-referrer``, a ``Permissions-Policy`` that allows nothing; the widget
  script may be loaded by pages on any origin.
- :func:`public_message`: an error's message for a client, without the server's paths.
- :class:`GradioGuard`: Gradio's own routes under the API's rules. Uploads are refused (the
  page has no file inputs). With an API token but no page login, the chat page and all of
  Gradio's routes are refused (403): a browser cannot send the bearer token, so the page would
  be the way round it. Every Gradio event call (a question, a rating, a comment) checks the
  origin and counts against the client's rate limit, as ``/api/*`` does.
- :class:`QuestionFreeLogs`: a logging filter that keeps request data (pydantic's
  ``input_value=``) out of the log and turns tracebacks into one line; :func:`quiet_logs` also
  turns the tracebacks Gradio prints past logging into one line.

The middleware sees requests as ASGI scopes: it needs nothing from Gradio.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
import traceback
import types
from collections.abc import Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assistant.errors import AccessError, NotAuthorisedError, NotServedError, SwitchedOffError
from assistant.serve.access import RateLimiter, check_origin, check_token
from assistant.serve.metrics import PastHostCheck, note_refusal
from assistant.settings import Settings

__all__ = [
    "API_DOCS_PATHS",
    "GradioGuard",
    "QuestionFreeLogs",
    "SecurityHeaders",
    "content_security_policy",
    "docs_routes",
    "harden",
    "install_log_filter",
    "is_gradio_path",
    "public_message",
    "quiet_logs",
    "refusal",
]

log = logging.getLogger(__name__)

#: FastAPI's documentation routes (off unless ``Settings.api_docs``)
API_DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")
#: Gradio's routes that run an event (the chat, a rating, a comment, New chat)
_EVENT_PREFIXES = ("/gradio_api/queue/join", "/gradio_api/run/", "/gradio_api/call/")
_UPLOAD_PREFIXES = ("/gradio_api/upload",)

#: The tightest the chat page works under (tests/browser/test_hardening.py): Gradio's page runs
#: inline bootstrap scripts ('self' alone: 5 violations, no page) and sets styles inline; it needs
#: no eval. Nothing may come from another origin; no plugin, <base> or form target elsewhere.
_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
    "connect-src 'self'; media-src 'self' blob:; worker-src 'self' blob:; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors {ancestors}"
)


def content_security_policy(frame_ancestors: Iterable[str]) -> str:
    """The CSP header's value; pages on ``frame_ancestors`` may frame the chat page."""
    ancestors = " ".join(frame_ancestors) or "'none'"
    return _CSP.format(ancestors=ancestors)


def is_gradio_path(path: str) -> bool:
    """Whether ``path`` is one of Gradio's routes (the chat page and what it calls), not the
    API's, the widget's or the docs'."""
    own = path.startswith(("/api/", "/admin/")) or path == "/admin"  # /admin: its own login
    return not (own or path in ("/widget.js", "/metrics", *API_DOCS_PATHS))


class SecurityHeaders:
    """ASGI middleware: the security headers on every HTTP response."""

    def __init__(self, app: ASGIApp, frame_ancestors: tuple[str, ...] = ()) -> None:
        self.app = app
        self.headers = {
            "Content-Security-Policy": content_security_policy(frame_ancestors),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            # the page needs no camera, microphone, location or payment
            "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
        }
        if not frame_ancestors:
            self.headers["X-Frame-Options"] = "DENY"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        widget = scope["path"] == "/widget.js"

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers.setdefault(name, value)
                if widget:  # loaded by pages on other origins, even cross-origin-isolated ones
                    headers["Cross-Origin-Resource-Policy"] = "cross-origin"
            await send(message)

        await self.app(scope, receive, with_headers)


class GradioGuard:
    """ASGI middleware: Gradio's routes under the token, origin and rate-limit rules."""

    def __init__(self, app: ASGIApp, settings: Settings, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter
        self.page_off = bool(settings.api_token) and not settings.ui_logins()
        self.token = settings.api_token
        self.docs = settings.api_docs

    def check(self, scope: Scope) -> None:
        """Raise an :class:`AccessError` when the request is refused."""
        path: str = scope["path"]
        headers = Headers(scope=scope)
        if path in API_DOCS_PATHS and not self.docs:  # Gradio's app has an /openapi.json too
            raise NotServedError("not found (the API schema is served with ASSISTANT_API_DOCS=on)")
        if path == "/openapi.json":  # the API's schema: the API's token
            check_token(headers.get("authorization"), self.token)
        if not is_gradio_path(path):
            return
        if path.startswith(_UPLOAD_PREFIXES):
            raise SwitchedOffError("uploads are off: this assistant takes no files")
        if self.page_off:
            raise SwitchedOffError(
                "the chat page is off: the server has an API token but no page login "
                "(set ASSISTANT_UI_AUTH to serve the page)"
            )
        if scope["method"] == "POST" and path.startswith(_EVENT_PREFIXES):
            own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
            check_origin(headers.get("origin"), own, frozenset())
            client = scope.get("client")
            self.limiter.check(client[0] if client else "unknown")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if scope["type"] == "http":
                self.check(scope)
        except AccessError as err:
            note_refusal(scope, err)  # metrics
            await refusal(err)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def refusal(err: AccessError) -> JSONResponse:
    """A refusal as its status, ``{"error"}`` and headers (Retry-After, WWW-Authenticate)."""
    headers = {}
    if err.retry_after is not None:
        headers["Retry-After"] = str(err.retry_after)
    if isinstance(err, NotAuthorisedError):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse({"error": str(err)}, status_code=err.status, headers=headers)


# pydantic's "input_value={...}, input_type=dict": the request's data, question and all
_INPUT_VALUE = re.compile(r"input_value=.*?(?=, input_type=|\]|$)", re.DOTALL)


def _scrub(text: str) -> str:
    return _INPUT_VALUE.sub("input_value=<hidden>", text)


class QuestionFreeLogs(logging.Filter):
    """Keeps request data out of log records: ``input_value=`` hidden, tracebacks one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            # the type only: an exception's text may quote the request
            message = f"{message} ({type(record.exc_info[1]).__name__})"
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
        record.msg = _scrub(message)
        record.args = ()
        return True


def install_log_filter(loggers: Iterable[str] = ("", "uvicorn", "uvicorn.error")) -> None:
    """Put :class:`QuestionFreeLogs` on the handlers of ``loggers`` (root by default) and on
    the loggers themselves."""
    flt = QuestionFreeLogs()
    for name in loggers:
        logger = logging.getLogger(name)
        targets: list[Any] = [logger, *logger.handlers]
        for target in targets:
            if not any(isinstance(f, QuestionFreeLogs) for f in target.filters):
                target.addFilter(flt)


def docs_routes(settings: Settings) -> dict[str, Any]:
    """FastAPI's docs arguments: ``/openapi.json`` only with ``api_docs`` on; ``/docs`` and
    ``/redoc`` never (their pages load scripts and fonts from a public CDN)."""
    return {
        "docs_url": None,
        "redoc_url": None,
        "openapi_url": "/openapi.json" if settings.api_docs else None,
    }


def harden(app: Starlette, settings: Settings, limiter: RateLimiter) -> None:
    """Wrap ``app`` (after its other middleware, so these run first): Gradio's routes under
    the API's rules, then the Host check (400: DNS rebinding), then the security headers."""
    app.add_middleware(GradioGuard, settings=settings, limiter=limiter)
    app.add_middleware(PastHostCheck)  # metrics: tells the Host check's 400 from others
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.served_hosts())
    app.add_middleware(SecurityHeaders, frame_ancestors=settings.frame_ancestors)


class _OneLineTracebacks(types.ModuleType):
    """The ``traceback`` module as Gradio's queue and routes see it: ``print_exc`` writes one
    log line with the error's type instead of a traceback whose text may quote the question."""

    def __getattr__(self, name: str) -> Any:
        return getattr(traceback, name)

    @staticmethod
    def print_exc(*_: Any, **__: Any) -> None:
        err = sys.exc_info()[1]
        log.error(
            "a chat page request failed (%s); its details are not logged: they may quote "
            "the question",
            type(err).__name__,
        )


def quiet_logs() -> None:
    """No question text and no tracebacks in the server's log: :class:`QuestionFreeLogs` on
    the root and uvicorn loggers, and Gradio's ``traceback.print_exc`` (straight to stderr,
    past logging) made one log line. Call it after uvicorn has set up its logging."""
    install_log_filter()
    quiet = _OneLineTracebacks("traceback")
    for name in ("gradio.queueing", "gradio.routes", "gradio.route_utils"):
        module = importlib.import_module(name)
        if getattr(module, "traceback", None) is traceback:
            module.traceback = quiet  # type: ignore[attr-defined]


# an absolute path (POSIX or Windows), not the path part of a URL ("http://host/x") or a route
_ABSOLUTE_PATH = re.compile(
    r"(?<![\w/:.\\])(?:[A-Za-z]:\\|/(?!api/|gradio_api/))[^\s'\"(),;]*[^\s'\"(),;:.]"
)


def public_message(err: Exception) -> str:
    """``err``'s message for a client: folders and files of the server left out (the full
    message is logged here, for whoever runs the server)."""
    text = str(err)
    public = _ABSOLUTE_PATH.sub("[a path on the server]", text)
    if public != text:
        log.warning("%s: %s", type(err).__name__, text)
    return public
