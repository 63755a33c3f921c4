"""HTTP shell: a FastAPI app with the JSON API, the widget script and the Gradio chat page.

Routes: ``/`` (chat page, :mod:`assistant.serve.ui`), ``POST /api/ask``, ``POST /api/search``,
``POST /api/feedback``, ``GET /api/health``, ``GET /widget.js``, ``GET /metrics``
(:mod:`assistant.serve.metrics`, counted by its outermost middleware), ``/admin`` (the site
owners' page, :mod:`assistant.serve.admin`, with ``ASSISTANT_ADMIN_AUTH``); the API schema at
``/openapi.json`` only with ``ASSISTANT_API_DOCS=on`` (:mod:`assistant.serve.hardening`, which
also adds the security headers, the Host check and Gradio's routes under the same rules).
The assistant's errors become a status and a JSON ``{"error": ...}``. Pages on other origins may
call ``/api/*`` only when ``Settings.cors_origins`` lists them; other cross-origin calls get 403.
:mod:`assistant.serve.access` decides the rest: bearer token (401), rate limit (429 with
Retry-After), and the answer queue (503 with Retry-After when it stays full).

The app is put together FastAPI's way: the routes are in :mod:`assistant.serve.api` and
:mod:`assistant.serve.pages` (``APIRouter``), what they share is on ``app.state`` and reaches
them through :mod:`assistant.serve.deps` (``Depends``); :func:`create_app` only wires.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import gradio as gr
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from assistant.errors import AccessError, AssistantError
from assistant.pipeline import Assistant
from assistant.serve import admin, api, hardening, pages
from assistant.serve.admin_events import refusal_event_cause
from assistant.serve.deps import ServerState
from assistant.serve.keys import KEY_HEADER, WidgetCORSMiddleware
from assistant.serve.limits import MAX_BODY_BYTES, BodyLimit, LoginBackoff, LoginGuard
from assistant.serve.metrics import RequestMetrics, note_refusal
from assistant.serve.observe import QUESTION_ROUTES, channel_of
from assistant.serve.pages import WIDGET_JS
from assistant.serve.ui import UI_CSS, UI_HEAD, build_ui
from assistant.settings import Settings

__all__ = ["MAX_BODY_BYTES", "WIDGET_JS", "create_app"]

log = logging.getLogger(__name__)


async def on_assistant_error(request: Request, err: AssistantError) -> JSONResponse:
    """An :class:`AssistantError` as its status and ``{"error"}`` (refusals with their headers)."""
    note_refusal(request.scope, err)  # metrics: its cause, if it is a refusal
    _refusal_event(request, err)  # events: a question refused, without its text
    if isinstance(err, AccessError):
        return hardening.refusal(err)
    return JSONResponse(api.error_body(err), status_code=api.status_for(err))


def _refusal_event(request: Request, err: AssistantError | str) -> None:
    """A question refused on a question route, as an event (at most 60 a minute per cause)."""
    route = QUESTION_ROUTES.get(request.url.path)
    cause = refusal_event_cause(err) if isinstance(err, AssistantError) else err
    if route is None or cause is None:
        return
    state: ServerState = request.app.state.server
    if state.refusal_gate.admit(cause):
        state.observer.refused(channel_of(request.headers), route, cause, counted=True)


async def on_http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
    """Starlette's HTTP errors (e.g. a body that is not UTF-8, JSON nested too deep) as
    ``{"error"}``, like the rest."""
    if err.status_code == 400:
        note_refusal(request.scope, "invalid")
    return JSONResponse(
        {"error": str(err.detail)}, status_code=err.status_code, headers=err.headers
    )


async def on_invalid(request: Request, err: RequestValidationError) -> JSONResponse:
    """A request that does not match its model: 422 with every problem in one message."""
    note_refusal(request.scope, "invalid")
    if any(tuple(e.get("loc", ())) == ("body", "question") and "at most" in str(e.get("msg"))
           for e in err.errors()):  # fmt: skip
        _refusal_event(request, "input_too_long")  # over the API's own 8,000 characters
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
        for e in err.errors()
    )
    return JSONResponse({"error": f"invalid request: {problems}"}, status_code=422)


def _mount_ui(app: FastAPI, state: ServerState) -> FastAPI:
    """The Gradio chat page at ``/``, behind the settings' logins if there are any."""
    settings = state.settings
    ui = build_ui(state.get_assistant, state.feedback, state.observer)
    ui.queue(default_concurrency_limit=settings.max_concurrent, max_size=256)
    # system fonts: the default theme would fetch web fonts from a CDN an intranet cannot reach
    theme = gr.themes.Default(
        font=["system-ui", "Segoe UI", "Arial", "sans-serif"],
        font_mono=["ui-monospace", "Consolas", "monospace"],
    )
    mounted = gr.mount_gradio_app(
        app, ui, path="/", css=UI_CSS, head=UI_HEAD, theme=theme, footer_links=["api"],
        auth=settings.ui_logins() or None,
        auth_message="Sign in to the commissioning guidance assistant.",
    )  # fmt: skip
    return cast(FastAPI, mounted)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """metrics: at shutdown, this process's live gauges leave the replicas' shared folder."""
    try:
        yield
    finally:
        app.state.server.metrics.close()
        app.state.server.observer.close()  # events still queued are written


def create_app(settings: Settings, assistant: Assistant | None = None) -> FastAPI:
    """The server's app. ``assistant`` is created from ``settings`` on first use if not given."""
    app = FastAPI(
        title="Commissioning guidance assistant",
        version="0.1.0",
        exception_handlers={
            AssistantError: on_assistant_error,
            StarletteHTTPException: on_http_error,
            RequestValidationError: on_invalid,
        },
        lifespan=_lifespan,
        **hardening.docs_routes(settings),
    )
    app.state.server = state = ServerState.from_settings(settings, assistant)
    # limits: bodies counted as they arrive (413), backoff after failed chat-page logins (429)
    app.add_middleware(BodyLimit)
    guard = LoginGuard(settings.login_max_failures, settings.login_backoff_seconds)
    app.add_middleware(LoginBackoff, guard=guard)
    # outermost: answers preflight requests and adds the CORS headers for allowed origins
    app.add_middleware(
        WidgetCORSMiddleware,  # CORSMiddleware, plus the widget keys' origins on their routes
        keys=state.widget_keys,
        allow_origins=sorted(state.allowed_origins),
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type", "Authorization", KEY_HEADER],
        max_age=600,
    )
    hardening.harden(app, settings, state.limiter)
    app.add_middleware(RequestMetrics, metrics=state.metrics)  # outermost: sees every answer
    app.include_router(api.router)
    app.include_router(api.scrape)
    app.include_router(pages.router)
    app.include_router(admin.router)  # /admin: 404 unless ASSISTANT_ADMIN_AUTH is set
    return _mount_ui(app, state)
