"""HTTP shell: a FastAPI app with a JSON API and the Gradio chat page, over one Assistant.

Routes: ``/`` (chat page), ``POST /api/ask``, ``POST /api/search``, ``GET /api/health``,
OpenAPI docs at ``/docs``. The assistant's errors become a status and a JSON ``{"error": ...}``.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from typing import Any, cast

import gradio as gr
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from assistant.errors import AssistantError, IndexError_, InputError
from assistant.pipeline import Assistant
from assistant.schema import Answer, Turn, passage_json
from assistant.settings import Settings

__all__ = ["create_app"]

log = logging.getLogger(__name__)

EXAMPLES = [
    "How many CCGs manage most of the NHS commissioning budget?",
    "What are the four stages of the commissioning cycle?",
    "Is procurement the same as commissioning?",
    "What is Specialised Commissioning?",
]


class TurnIn(BaseModel):
    role: str = Field(pattern="^(user|assistant)$")
    content: str


class AskIn(BaseModel):
    question: str
    history: list[TurnIn] = Field(default_factory=list)


class SearchIn(BaseModel):
    question: str
    k: int | None = Field(default=None, ge=1, le=50)


def _status(err: AssistantError) -> int:
    if isinstance(err, InputError):
        return 400
    if isinstance(err, IndexError_):
        return 503
    return 500


def format_sources(answer: Answer) -> str:
    """The sources block under an answer, as Markdown with every document text escaped."""
    lines: list[str] = []
    if answer.refused:
        lines.append("**Closest passages** (they do not answer the question):")
        for p in answer.passages[:3]:
            ch = p.chunk
            where = html.escape(ch.doc.title + (f" — {ch.section}" if ch.section else ""))
            era = html.escape(ch.doc.era or "date unknown")
            lines.append(f"- *{where}* ({era}): {html.escape(ch.text[:300])}")
        return "\n".join(lines)
    for c in answer.citations:
        where = html.escape(c.title + (f" — {c.section}" if c.section else ""))
        age = html.escape(c.era or "date unknown")
        lines.append(f"**[{c.n}] {where}** ({age})\n\n> {html.escape(c.quote)}")
    return "\n\n".join(lines)


def _chat_fn(get: Callable[[], Assistant]) -> Callable[[str, list[Any]], str]:
    def chat(message: str, history: list[Any]) -> str:
        turns = [
            Turn(str(m["role"]), str(m["content"]))
            for m in history
            if isinstance(m, dict) and isinstance(m.get("content"), str)
        ]
        try:
            answer = get().ask(message, turns)
        except AssistantError as err:
            raise gr.Error(str(err)) from None
        return f"{html.escape(answer.answer)}\n\n---\n{format_sources(answer)}"

    return chat


def create_app(settings: Settings, assistant: Assistant | None = None) -> FastAPI:
    """The server's app. ``assistant`` is created from ``settings`` on first use if not given."""
    state: dict[str, Assistant] = {}
    if assistant is not None:
        state["a"] = assistant

    def get() -> Assistant:
        if "a" not in state:
            state["a"] = Assistant.from_settings(settings)
        return state["a"]

    app = FastAPI(title="Commissioning guidance assistant", version="0.1.0")

    @app.exception_handler(AssistantError)
    async def on_error(_: Request, err: AssistantError) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=_status(err))

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
        return get().ask(body.question, turns).to_json()

    @app.post("/api/search")
    def search(body: SearchIn) -> dict[str, Any]:
        passages = get().search(body.question, body.k)
        return {"question": body.question, "results": [passage_json(p) for p in passages]}

    chat = gr.ChatInterface(
        _chat_fn(get),
        api_name="chat",
        title="Commissioning guidance assistant",
        description="Answers from the health and care commissioning guidance, with the passages "
        "it used. The guidance predates the 2013 and 2022 reorganisations.",
        examples=EXAMPLES,
        cache_examples=False,
    )
    return cast(FastAPI, gr.mount_gradio_app(app, chat, path="/"))
