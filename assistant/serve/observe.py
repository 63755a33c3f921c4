"""What happened to each question, from every channel (the API, the widget, the chat page):
counted in the metrics (:mod:`assistant.serve.metrics`) and kept as an event in the feedback
database (:class:`~assistant.records.EventLog`, written in the background) for operators and
the site owners' page.

An event keeps its question's text only when the settings say so (``ASSISTANT_KEEP_QUESTIONS``)
and the question holds no personal data (:func:`assistant.privacy.find_personal_data`, whatever
``ASSISTANT_PII_CHECK`` says); otherwise the event is a count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.datastructures import Headers

from assistant.privacy import find_personal_data
from assistant.records import Event, EventLog
from assistant.records.events import Channel, Route
from assistant.schema import Answer
from assistant.serve.metrics import Metrics, answer_channel

__all__ = ["QUESTION_ROUTES", "Observer", "channel_of"]

#: the API's routes that take a question, as an event names them
QUESTION_ROUTES: dict[str, Route] = {
    "/api/ask": "ask",
    "/api/ask/stream": "stream",
    "/api/search": "search",
}


def channel_of(headers: Headers) -> Channel:
    """An API request's channel: ``widget`` from a web page, ``api`` from a program."""
    return "widget" if answer_channel(headers) == "widget" else "api"


def _no_build() -> str:
    return ""


@dataclass
class Observer:
    """Counts and logs each question's outcome; ``events`` None: counted only."""

    metrics: Metrics
    events: EventLog | None = None
    #: the serving build's id (read when an event is made; "" when no index is open)
    build_id: Callable[[], str] = _no_build
    #: keep the text of questions that hold no personal data
    keep_questions: bool = False

    def answered(self, channel: Channel, route: Route, answer: Answer) -> None:
        """An answer, or a decline (the guidance does not cover the question)."""
        self.metrics.answer(channel, answer.refused)
        if self.events is None:
            return
        self.events.submit(
            Event(
                channel,
                route,
                "declined" if answer.refused else "answered",
                "not_covered" if answer.refused else "",
                question=self._kept(answer.question),
                sources=tuple(dict.fromkeys(c.title for c in answer.citations)),
                latency_ms=round(answer.timings_ms.get("total", 0.0)),
                build_id=self._build(),
            )
        )

    def refused(self, channel: Channel, route: Route, cause: str, *, counted: bool = False) -> None:
        """A question refused before it was answered (``cause``: ``personal_data``); its text is
        not kept. ``counted``: the metrics have it already (an HTTP refusal)."""
        if not counted:
            self.metrics.refusal(cause)
        if self.events is not None:
            self.events.submit(Event(channel, route, "refused", cause, build_id=self._build()))

    def _kept(self, question: str) -> str | None:
        if not self.keep_questions or find_personal_data(question):
            return None
        return question

    def _build(self) -> str:
        try:
            return self.build_id()
        except Exception:  # no index yet, or the store is away: the event goes without it
            return ""

    def close(self) -> None:
        """At shutdown: the events still queued are written."""
        if self.events is not None:
            self.events.close()
