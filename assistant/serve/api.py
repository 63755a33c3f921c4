"""The JSON API under ``/api``: ask (whole or streamed), search, feedback and health.

Every route checks the caller's origin; all but ``/api/health`` (monitoring needs no token) also
need the bearer token and count against the client's rate limit (:mod:`assistant.serve.deps`).
Asking and feedback also take a widget key from one of its origins instead of the token
(:mod:`assistant.serve.keys`); a widget key anywhere else is a 403.
Answering takes a slot in the answer queue, so a busy server says 503 with Retry-After.
Beside the API, ``GET /metrics`` (:data:`scrape`): Prometheus metrics behind the same origin
check and bearer token, never a widget key, and no rate limit (:mod:`assistant.serve.metrics`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import AfterValidator, BaseModel, Field, field_validator
from starlette.concurrency import run_in_threadpool

from assistant.conversation import clean_question
from assistant.errors import AssistantError, IndexError_, InputError, PersonalDataError
from assistant.pipeline import Assistant
from assistant.privacy import screen_turns
from assistant.records.feedback import MAX_COMMENT_CHARS
from assistant.schema import Answer, Turn, passage_json
from assistant.serve.deps import (
    AssistantDep,
    FeedbackDep,
    QueueDep,
    RecordAnswerDep,
    StateDep,
    allowed_origin,
    bearer_token,
    metrics_on,
    token_or_widget_key,
    within_feedback_limit,
    within_rate_limit,
)
from assistant.serve.display import display_json
from assistant.serve.hardening import public_message
from assistant.serve.limits import MAX_TURN_CHARS, MAX_TURNS, ReleasingStreamingResponse
from assistant.serve.metrics import serving_build

__all__ = [
    "MAX_TURNS",
    "MAX_TURN_CHARS",
    "AskIn",
    "FeedbackIn",
    "SearchIn",
    "TurnIn",
    "answer_json",
    "error_body",
    "router",
    "scrape",
    "status_for",
]


# The request bodies. Comments, not docstrings: a docstring would become the model's description
# in the OpenAPI schema.


#: One earlier turn of the conversation.
class TurnIn(BaseModel):
    role: str = Field(pattern="^(user|assistant)$")
    content: str

    @field_validator("content")
    @classmethod
    def _not_too_long(cls, content: str) -> str:
        # checked after parsing: a length constraint would make pydantic refuse lone surrogates,
        # which the pipeline drops like any other character that is not text
        return _at_most(content, "a turn")


def _at_most(text: str, what: str) -> str:
    # checked after parsing: see TurnIn
    if len(text) > MAX_TURN_CHARS:
        raise ValueError(f"{what} is at most {MAX_TURN_CHARS} characters")
    return text


#: a question of any request: at most MAX_TURN_CHARS, checked after parsing (see TurnIn)
Question = Annotated[str, AfterValidator(lambda text: _at_most(text, "a question"))]


#: A question and the conversation before it.
class AskIn(BaseModel):
    question: Question
    history: list[TurnIn] = Field(default_factory=list, max_length=MAX_TURNS)


#: A question and how many passages to return (the settings' top_k if not given).
class SearchIn(BaseModel):
    question: Question
    k: int | None = Field(default=None, ge=1, le=50)


#: A rating of an answer, with an optional comment and the conversation before it.
class FeedbackIn(BaseModel):
    question: str
    answer: str
    rating: int = Field(description="1 helpful, -1 unhelpful")
    comment: str = Field(default="", max_length=MAX_COMMENT_CHARS)
    history: list[TurnIn] = Field(default_factory=list, max_length=MAX_TURNS)

    @field_validator("question", "answer")
    @classmethod
    def _text_not_too_long(cls, text: str) -> str:
        return _at_most(text, "a rated question or answer")


def status_for(err: AssistantError) -> int:
    """The HTTP status of one of the assistant's errors (access refusals carry their own)."""
    if isinstance(err, InputError):
        return 400
    if isinstance(err, IndexError_):
        return 503
    return 500


def error_body(err: AssistantError) -> dict[str, Any]:
    """``{"error"}``, and for personal data ``"reason": "personal_data"`` and the ``"kinds"``
    found (never the values)."""
    if isinstance(err, PersonalDataError):
        return {"error": str(err), "reason": err.reason, "kinds": err.kinds}
    return {"error": public_message(err)}


def _turns(history: list[TurnIn]) -> list[Turn]:
    return [Turn(t.role, t.content) for t in history]


#: every /api route: pages on other origins only when the settings list them
router = APIRouter(prefix="/api", dependencies=[Depends(allowed_origin)])
#: the routes that answer or store: bearer token, then the client's rate limit
guarded = APIRouter(dependencies=[Depends(bearer_token), Depends(within_rate_limit)])
#: asking and feedback: the bearer token or a widget key from one of its origins, then the limit
widget = APIRouter(dependencies=[Depends(token_or_widget_key), Depends(within_rate_limit)])


@router.get("/health")
def health(state: StateDep) -> JSONResponse:
    """``status`` "ok", "busy" (every answer slot taken: new questions wait) or "unavailable"
    (503); ``slots`` and ``slots_free`` count the answer slots."""
    slots = {"slots": state.queue.size, "slots_free": state.queue.free}
    try:
        info = state.get_assistant().index.get().describe()
    except AssistantError as err:
        body = {"status": "unavailable", "error": public_message(err), **slots}
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ok" if slots["slots_free"] else "busy", "index": info, **slots})


# The answering routes are async: waiting for a slot holds no worker thread; the work itself
# runs in the thread pool.


@widget.post("/ask")
async def ask(
    body: AskIn, assistant: AssistantDep, queue: QueueDep, record: RecordAnswerDep
) -> dict[str, Any]:
    async with queue.slot():
        answer = await run_in_threadpool(assistant.ask, body.question, _turns(body.history))
    record(answer)
    return answer_json(answer)


def answer_json(answer: Answer) -> dict[str, Any]:
    """An answer as the API sends it: :meth:`Answer.to_json` and, added, ``display`` (the
    blocks the widget shows, one marker per run, and the text its copy button copies)."""
    return {**answer.to_json(), "display": display_json(answer)}


def _ndjson_events(
    assistant: Assistant, question: str, turns: list[Turn], record: Callable[[Answer], None]
) -> Iterator[bytes]:
    """The streamed answer's lines (``record`` counts the answer)."""
    try:
        for item in assistant.ask_stream(question, turns):
            if isinstance(item, Answer):
                record(item)
                event: dict[str, Any] = {"type": "answer", "answer": answer_json(item)}
            else:
                event = {"type": "delta", "text": item}
            yield (json.dumps(event, ensure_ascii=False) + "\n").encode()
    except AssistantError as err:
        error = {"type": "error", **error_body(err), "status": status_for(err)}
        yield (json.dumps(error) + "\n").encode()


@widget.post("/ask/stream")
async def ask_stream(
    body: AskIn, assistant: AssistantDep, queue: QueueDep, record: RecordAnswerDep
) -> StreamingResponse:
    """The answer as it is written: one JSON object a line, ``{"type": "delta", "text"}``
    while a chat model writes, then ``{"type": "answer", "answer": {...}}`` (as /api/ask),
    or ``{"type": "error", "error", "status"}``."""
    turns = _turns(body.history)
    question = clean_question(body.question, assistant.max_question_chars)  # bad: 400 now
    screen_turns(question, turns, assistant.pii_check)  # personal data: 400 now, not streamed
    await queue.acquire()  # busy → 503 before the stream starts
    lines = _ndjson_events(assistant, body.question, turns, record)
    # the slot comes back however the response ends, the client gone included
    return ReleasingStreamingResponse(lines, queue.release, media_type="application/x-ndjson")


@guarded.post("/search")
async def search(body: SearchIn, assistant: AssistantDep, queue: QueueDep) -> dict[str, Any]:
    question = clean_question(body.question, assistant.max_question_chars)
    async with queue.slot():
        passages = await run_in_threadpool(assistant.search, question, body.k)
    return {"question": question, "results": [passage_json(p) for p in passages]}


@widget.post("/feedback", dependencies=[Depends(within_feedback_limit)])
def rate(body: FeedbackIn, feedback: FeedbackDep) -> dict[str, Any]:
    row = feedback.add(body.question, body.answer, body.rating, _turns(body.history), body.comment)
    return {"id": row}


router.include_router(guarded)
router.include_router(widget)

#: metrics: /metrics, off with ASSISTANT_METRICS=off (404), then the API's origin and token rules
scrape = APIRouter(
    dependencies=[Depends(metrics_on), Depends(allowed_origin), Depends(bearer_token)],
    include_in_schema=False,
)


@scrape.get("/metrics")
def metrics(state: StateDep, accept: Annotated[str | None, Header()] = None) -> Response:
    """Prometheus metrics, in the text format (OpenMetrics if ``Accept`` asks for it)."""
    body, content_type = state.metrics.exposition(serving_build(state.assistant), accept)
    return Response(body, media_type=content_type)
