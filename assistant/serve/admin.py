"""The site owners' page, ``GET /admin``: what was asked and how it went, over the last 24 hours,
7 days or 30 days (``?window=24h|7d|30d``), from the question events and the ratings of the
feedback database (:mod:`assistant.records`).

It shows questions over time, answered / declined / refused by cause, the median and 95th
percentile answer time, the documents most cited, thumbs up and down over time (inline SVG bar
charts with their numbers in a table; :mod:`assistant.serve.admin_stats`), and, when questions
are kept (``ASSISTANT_KEEP_QUESTIONS``), the declined questions and the thumbs-down with their
comments grouped by meaning, each group exported as draft evaluation cases
(``GET /admin/export.jsonl?kind=declined|feedback&ids=…``, JSON lines).

Only with ``ASSISTANT_ADMIN_AUTH`` (``user:password[,…]``, HTTP basic, compared in constant
time; failed logins back off as the chat page's do, 429); without it there is no page (404).
Not the API token's: its own login (401 with ``WWW-Authenticate: Basic``). The Host check and
the security headers apply as everywhere.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from fastapi.templating import Jinja2Templates

from assistant.errors import InputError, NotServedError, RateLimitedError
from assistant.records import Event, EventStore
from assistant.records.drafts import declined_drafts, feedback_drafts
from assistant.serve.admin_events import REFUSAL_EVENTS_PER_MINUTE
from assistant.serve.admin_stats import (
    WINDOWS,
    Chart,
    Summary,
    bar_chart,
    column_chart,
    group_by_meaning,
    ratings_chart,
    summarise,
)
from assistant.serve.deps import ServerState, StateDep, server_state
from assistant.serve.metrics import note_refusal

__all__ = ["MAX_EVENTS", "Group", "admin_login", "router"]

#: at most this many events are read for one page
MAX_EVENTS = 100_000
#: at most this many texts shown per group (the export has them all)
_SHOWN = 8
_CAUSE_NAMES = {
    "personal_data": "refused: personal data",
    "input_too_long": "refused: question too long",
    "rate": "refused: over the rate limit",
    "queue": "refused: server busy (queue full)",
    "widget_key": "refused: widget key",
}
_templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))
_basic = HTTPBasic(realm="Site owners", auto_error=False)


def admin_login(
    request: Request, credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)]
) -> str:
    """Dependency: the signed-in site owner's name; 404 without ``ASSISTANT_ADMIN_AUTH``, 401
    (``WWW-Authenticate: Basic``) without a right login, 429 after failed logins
    (``ASSISTANT_LOGIN_MAX_FAILURES``, ``ASSISTANT_LOGIN_BACKOFF_SECONDS``)."""
    state = server_state(request)
    logins = state.settings.admin_logins()
    if not logins:
        raise NotServedError("not found (the site owners' page needs ASSISTANT_ADMIN_AUTH)")
    if credentials is not None:
        client = request.client.host if request.client else "unknown"
        wait = state.admin_guard.attempt(client)  # failed logins back off (429)
        if wait > 0:
            raise RateLimitedError("too many failed logins: try again later", math.ceil(wait))
        if _right(credentials, logins):
            state.admin_guard.succeeded(client)
            return credentials.username
    note_refusal(request.scope, "login")  # metrics
    raise HTTPException(
        401,
        "the site owners' page needs its login",
        {"WWW-Authenticate": 'Basic realm="Site owners"'},
    )


def _right(credentials: HTTPBasicCredentials, logins: Sequence[tuple[str, str]]) -> bool:
    user, password = credentials.username.encode(), credentials.password.encode()
    right = False
    for name, secret in logins:  # every login compared, in constant time
        same = secrets.compare_digest(user, name.encode())
        right |= secrets.compare_digest(password, secret.encode()) and same
    return right


router = APIRouter(include_in_schema=False, dependencies=[Depends(admin_login)])


@dataclass(frozen=True)
class Group:
    """Texts of similar meaning: what the page lists, and the ids its export link names."""

    texts: list[str]
    ids: list[int]
    kind: str

    @property
    def shown(self) -> list[str]:
        return self.texts[:_SHOWN]

    @property
    def export(self) -> str:
        return f"/admin/export.jsonl?kind={self.kind}&ids={','.join(map(str, self.ids))}"


def _events(state: ServerState, since: datetime) -> list[Event]:
    store = state.events.store if state.events is not None else EventStore(state.feedback.database)
    return store.recent(since, limit=MAX_EVENTS)


def _groups(state: ServerState, texts: Sequence[str], ids: Sequence[int], kind: str) -> list[Group]:
    if not texts:
        return []
    vectors = state.get_assistant().embedder.encode(list(texts))
    return [
        Group([texts[i] for i in members], [ids[i] for i in members], kind)
        for members in group_by_meaning(vectors)
    ]


def _charts(summary: Summary, period: str) -> list[Chart]:
    outcomes = [("answered", summary.answered), ("declined: not covered", summary.declined)]
    outcomes += [
        (_CAUSE_NAMES.get(c, f"refused: {c}"), n) for c, n in sorted(summary.refused.items())
    ]
    last = f"the last {period}"
    return [
        column_chart("per-time", f"Questions over {last}", summary.per_bucket, "questions"),
        bar_chart("outcomes", f"What happened to the questions, {last}", outcomes, "questions"),
        bar_chart(
            "sources", f"Documents most cited in answers, {last}", summary.sources, "answers"
        ),
        ratings_chart("ratings", f"Thumbs up and down over {last}", summary.ratings),
    ]


def _page_data(state: ServerState, window: str) -> dict[str, Any]:
    length, step = WINDOWS[window]
    now = datetime.now(UTC)
    since = now - length
    events = _events(state, since)
    ratings = state.feedback.rows(since)
    summary = summarise(events, ratings, since, now, step)
    data: dict[str, Any] = {
        "window": window,
        "windows": list(WINDOWS),
        "summary": summary,
        "charts": _charts(summary, window.replace("h", " hours").replace("d", " days")),
        "keep_questions": state.keep_questions,
        "cap": REFUSAL_EVENTS_PER_MINUTE,
        "left_out": sum(state.refusal_gate.left_out.values()),
        "retention_days": state.settings.retention_days,
        "capped": len(events) >= MAX_EVENTS,
        "declined_groups": [],
        "feedback_groups": [],
    }
    if state.keep_questions:
        declined = [e for e in events if e.outcome == "declined" and e.question and e.id]
        data["declined_groups"] = _groups(
            state,
            [str(e.question) for e in declined],
            [int(e.id or 0) for e in declined],
            "declined",
        )
        down = [r for r in ratings if r["rating"] == -1]
        texts = [
            f"{r['question']} — {r['comment']}" if r["comment"] else str(r["question"])
            for r in down
        ]
        data["feedback_groups"] = _groups(
            state, texts, [int(str(r["id"])) for r in down], "feedback"
        )
    return data  # fmt: skip


@router.get("/admin", response_class=HTMLResponse)
def page(request: Request, state: StateDep, window: Annotated[str, Query()] = "7d") -> HTMLResponse:
    """The site owners' page (sync: reading the database and embedding run in the thread pool)."""
    if window not in WINDOWS:
        raise InputError(f"the period is one of {', '.join(WINDOWS)}, not {window!r}")
    response = _templates.TemplateResponse(request, "admin.html", _page_data(state, window))
    response.headers["Cache-Control"] = "no-store"
    return response


def _ids(raw: str) -> set[int]:
    try:
        return {int(part) for part in raw.split(",") if part.strip()}
    except ValueError:
        raise InputError("ids is a comma-separated list of whole numbers") from None


@router.get("/admin/export.jsonl")
def export(
    state: StateDep, kind: Annotated[str, Query()], ids: Annotated[str, Query(max_length=20_000)]
) -> Response:
    """The rows ``ids`` of ``kind`` (declined questions or thumbs-down ratings, of the last 30
    days) as draft evaluation cases, one JSON object a line (``assistant eval
    export-feedback``'s format), to be completed by a reviewer."""
    wanted = _ids(ids)
    since = datetime.now(UTC) - WINDOWS["30d"][0]
    if kind == "declined" and state.keep_questions:
        drafts = declined_drafts(e for e in _events(state, since) if e.id in wanted)
    elif kind == "feedback" and state.keep_questions:
        drafts = feedback_drafts(r for r in state.feedback.rows(since) if r["id"] in wanted)
    else:
        raise InputError("kind is declined or feedback, with ASSISTANT_KEEP_QUESTIONS on")
    body = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in drafts)
    return Response(
        body,
        media_type="application/x-ndjson; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{kind}-drafts.jsonl"',
            "Cache-Control": "no-store",
        },
    )
