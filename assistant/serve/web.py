"""HTTP shell: a FastAPI app with the JSON API, the widget script and the Gradio chat page.

Routes: ``/`` (chat page, :mod:`assistant.serve.ui`), ``POST /api/ask``, ``POST /api/search``,
``POST /api/feedback``, ``GET /api/health``, ``GET /widget.js``, OpenAPI docs at ``/docs``.
The assistant's errors become a status and a JSON ``{"error": ...}``. Pages on other origins may
call ``/api/*`` only when ``Settings.cors_origins`` lists them; other cross-origin calls get 403.
:mod:`assistant.serve.access` decides the rest: bearer token (401), rate limit (429 with
Retry-After), and the answer queue (503 with Retry-After when it stays full).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import gradio as gr
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from assistant.conversation import clean_question
from assistant.errors import (
    AccessError,
    AssistantError,
    IndexError_,
    InputError,
    NotAuthorisedError,
)
from assistant.pipeline import Assistant
from assistant.schema import Answer, Turn, passage_json
from assistant.serve.access import AnswerQueue, RateLimiter, check_origin, check_token
from assistant.serve.feedback import MAX_COMMENT_CHARS, FeedbackStore
from assistant.serve.ui import UI_CSS, build_ui
from assistant.settings import Settings

__all__ = ["WIDGET_JS", "create_app"]

log = logging.getLogger(__name__)

WIDGET_JS = Path(__file__).with_name("static") / "widget.js"


#: largest request body the API reads (a question, its history, feedback): more is a 413
MAX_BODY_BYTES = 256_000
#: earlier turns a request may carry, and the longest turn (the widget and page send far less)
MAX_TURNS = 50
MAX_TURN_CHARS = 8_000


class TurnIn(BaseModel):
    role: str = Field(pattern="^(user|assistant)$")
    content: str

    @field_validator("content")
    @classmethod
    def _not_too_long(cls, content: str) -> str:
        # checked after parsing: a length constraint would make pydantic refuse lone surrogates,
        # which the pipeline drops like any other character that is not text
        if len(content) > MAX_TURN_CHARS:
            raise ValueError(f"a turn is at most {MAX_TURN_CHARS} characters")
        return content


class AskIn(BaseModel):
    question: str
    history: list[TurnIn] = Field(default_factory=list, max_length=MAX_TURNS)


class SearchIn(BaseModel):
    question: str
    k: int | None = Field(default=None, ge=1, le=50)


class FeedbackIn(BaseModel):
    question: str
    answer: str
    rating: int = Field(description="1 helpful, -1 unhelpful")
    comment: str = Field(default="", max_length=MAX_COMMENT_CHARS)
    history: list[TurnIn] = Field(default_factory=list, max_length=MAX_TURNS)


def _status(err: AssistantError) -> int:
    if isinstance(err, InputError):
        return 400
    if isinstance(err, IndexError_):
        return 503
    return 500


def _refusal(err: AccessError) -> JSONResponse:
    headers = {}
    if err.retry_after is not None:
        headers["Retry-After"] = str(err.retry_after)
    if isinstance(err, NotAuthorisedError):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse({"error": str(err)}, status_code=err.status, headers=headers)


def _own_origin(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', '')}"


def create_app(settings: Settings, assistant: Assistant | None = None) -> FastAPI:
    """The server's app. ``assistant`` is created from ``settings`` on first use if not given."""
    state: dict[str, Assistant] = {}
    if assistant is not None:
        state["a"] = assistant

    def get() -> Assistant:
        if "a" not in state:
            state["a"] = Assistant.from_settings(settings)
        return state["a"]

    feedback = FeedbackStore(settings.data_dir)
    allowed = frozenset(settings.cors_origins)
    limiter = RateLimiter(settings.rate_limit_per_minute)
    queue = AnswerQueue(settings.max_concurrent, settings.queue_timeout)
    app = FastAPI(title="Commissioning guidance assistant", version="0.1.0")

    @app.exception_handler(AssistantError)
    async def on_error(_: Request, err: AssistantError) -> JSONResponse:
        if isinstance(err, AccessError):
            return _refusal(err)
        return JSONResponse({"error": str(err)}, status_code=_status(err))

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(_: Request, err: StarletteHTTPException) -> JSONResponse:
        # e.g. a body that is not UTF-8 or JSON nested too deep: the same {"error"} shape
        return JSONResponse(
            {"error": str(err.detail)}, status_code=err.status_code, headers=err.headers
        )

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_: Request, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
            for e in err.errors()
        )
        return JSONResponse({"error": f"invalid request: {problems}"}, status_code=422)

    @app.middleware("http")
    async def access(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        if path.startswith("/api/") and request.method != "OPTIONS":
            length = request.headers.get("content-length", "")
            if length.isdigit() and int(length) > MAX_BODY_BYTES:
                return JSONResponse(
                    {"error": f"the request is over {MAX_BODY_BYTES // 1000} kB"}, status_code=413
                )
            try:
                check_origin(request.headers.get("origin"), _own_origin(request), allowed)
                if path != "/api/health":
                    check_token(request.headers.get("authorization"), settings.api_token)
                    limiter.check(request.client.host if request.client else "unknown")
            except AccessError as err:
                return _refusal(err)
        return await call_next(request)

    # outermost: answers preflight requests and adds the CORS headers for allowed origins
    app.add_middleware(
        CORSMiddleware,
        allow_origins=sorted(allowed),
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type", "Authorization"],
        max_age=600,
    )

    @app.get("/api/health")
    def health() -> JSONResponse:
        try:
            info = get().index.get().describe()
        except AssistantError as err:
            return JSONResponse({"status": "unavailable", "error": str(err)}, status_code=503)
        return JSONResponse({"status": "ok", "index": info})

    @app.post("/api/ask")
    def ask(body: AskIn) -> dict[str, Any]:
        turns = [Turn(t.role, t.content) for t in body.history]
        with queue.slot():
            return get().ask(body.question, turns).to_json()

    @app.post("/api/ask/stream")
    def ask_stream(body: AskIn) -> StreamingResponse:
        """The answer as it is written: one JSON object a line, ``{"type": "delta", "text"}``
        while a chat model writes, then ``{"type": "answer", "answer": {...}}`` (as /api/ask),
        or ``{"type": "error", "error", "status"}``."""
        turns = [Turn(t.role, t.content) for t in body.history]
        assistant = get()
        clean_question(body.question, assistant.max_question_chars)  # bad question → 400 now
        queue.acquire()  # busy → 503 before the stream starts

        def lines() -> Iterator[bytes]:
            try:
                for item in assistant.ask_stream(body.question, turns):
                    if isinstance(item, Answer):
                        event: dict[str, Any] = {"type": "answer", "answer": item.to_json()}
                    else:
                        event = {"type": "delta", "text": item}
                    yield (json.dumps(event, ensure_ascii=False) + "\n").encode()
            except AssistantError as err:
                error = {"type": "error", "error": str(err), "status": _status(err)}
                yield (json.dumps(error) + "\n").encode()
            finally:
                queue.release()

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @app.post("/api/search")
    def search(body: SearchIn) -> dict[str, Any]:
        assistant = get()
        question = clean_question(body.question, assistant.max_question_chars)
        with queue.slot():
            passages = assistant.search(question, body.k)
        return {"question": question, "results": [passage_json(p) for p in passages]}

    @app.post("/api/feedback")
    def rate(body: FeedbackIn) -> dict[str, Any]:
        turns = [Turn(t.role, t.content) for t in body.history]
        row = feedback.add(body.question, body.answer, body.rating, turns, body.comment)
        return {"id": row}

    @app.get("/widget.js", include_in_schema=False)
    def widget() -> FileResponse:
        return FileResponse(
            WIDGET_JS,
            media_type="text/javascript; charset=utf-8",
            headers={"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"},
        )

    ui = build_ui(get, feedback)
    ui.queue(default_concurrency_limit=settings.max_concurrent, max_size=256)
    # system fonts: the default theme would fetch web fonts from a CDN an intranet cannot reach
    theme = gr.themes.Default(
        font=["system-ui", "Segoe UI", "Arial", "sans-serif"],
        font_mono=["ui-monospace", "Consolas", "monospace"],
    )
    mounted = gr.mount_gradio_app(
        app, ui, path="/", css=UI_CSS, theme=theme, footer_links=["api"],
        auth=settings.ui_logins() or None,
        auth_message="Sign in to the commissioning guidance assistant.",
    )  # fmt: skip
    return cast(FastAPI, mounted)
