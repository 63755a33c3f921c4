"""Draft evaluation cases (the ``eval/cases.jsonl`` format) from what the service kept: the
thumbs-down ratings (:func:`feedback_drafts`, what ``assistant eval export-feedback`` writes)
and the declined questions of the events (:func:`declined_drafts`, the site owners' page).

A draft is for a reviewer to complete before it joins a set: ``must`` and ``evidence`` are
empty, and fields the loader does not know (``comment``, ``answer_given``, ``created``) are for
the reviewer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from assistant.records.events import Event

__all__ = ["declined_drafts", "feedback_drafts"]

log = logging.getLogger(__name__)


def feedback_drafts(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Draft cases (``eval/cases.jsonl`` format) from the thumbs-down rows of the feedback
    database (:meth:`assistant.records.FeedbackStore.rows`: id, created, question, history as a
    JSON list of ``{role, content}``, answer, rating 1 or -1, comment).

    A reviewer completes each draft: ``answerable`` is only a guess, ``must`` and ``evidence``
    are empty, and ``comment`` and ``answer_given`` are for the reviewer (the loader ignores them).
    """
    drafts: list[dict[str, Any]] = []
    for row in rows:
        if row.get("rating") != -1:
            continue
        row_id, question, history = int(row["id"]), row.get("question"), row.get("history")
        answer, comment = row.get("answer"), row.get("comment")
        draft: dict[str, Any] = {
            "id": f"fb-{row_id:03d}",
            "question": question or "",
            "answerable": True,
            "must": [],
            "evidence": "",
        }
        turns = _turns(history, row_id)
        if turns:
            draft["history"] = turns
        draft.update(tags=["from-feedback"], comment=comment or "", answer_given=answer or "")
        drafts.append(draft)
    return drafts


def _turns(raw: Any, row_id: int) -> list[dict[str, str]]:
    """The well-formed turns of a stored history (a JSON list of ``{role, content}``)."""
    if not raw:
        return []
    try:
        turns = json.loads(raw)
    except (TypeError, json.JSONDecodeError):
        log.warning("feedback row %s: history is not JSON; left out", row_id)
        return []
    if not isinstance(turns, list):
        return []
    return [
        {"role": t["role"], "content": t["content"]}
        for t in turns
        if isinstance(t, dict)
        and t.get("role") in ("user", "assistant")
        and isinstance(t.get("content"), str)
    ]


def declined_drafts(events: Iterable[Event]) -> list[dict[str, Any]]:
    """Draft cases from declined questions whose text was kept (``ASSISTANT_KEEP_QUESTIONS``).

    Whether the guidance should have answered is not known: ``answerable`` is None, which the
    case loader refuses, so a reviewer must decide it (and fill ``must`` and ``evidence``)
    before the draft joins a set.
    """
    return [
        {
            "id": f"declined-{event.id:03d}" if event.id is not None else "declined",
            "question": event.question,
            "answerable": None,
            "must": [],
            "evidence": "",
            "tags": ["from-declined"],
            "created": event.created.isoformat(timespec="seconds"),
        }
        for event in events
        if event.outcome == "declined" and event.question
    ]
