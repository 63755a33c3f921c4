"""The figures of the site owners' page (:mod:`assistant.serve.admin`), as pure functions over
question events and rating rows: counts by outcome and cause, answer times, the documents cited,
ratings over time; bar charts as geometry for inline SVG (the numbers go in a table beside each);
and texts grouped by meaning (:func:`group_by_meaning`: scikit-learn's agglomerative clustering
of their embeddings, cosine distance).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sklearn.cluster import AgglomerativeClustering

from assistant.records import Event

__all__ = [
    "GROUP_DISTANCE",
    "WINDOWS",
    "Chart",
    "Mark",
    "Summary",
    "bar_chart",
    "buckets",
    "column_chart",
    "group_by_meaning",
    "percentile",
    "ratings_chart",
    "summarise",
]

#: the page's periods: name → (length, bucket of the "per day" charts)
WINDOWS: dict[str, tuple[timedelta, timedelta]] = {
    "24h": (timedelta(hours=24), timedelta(hours=1)),
    "7d": (timedelta(days=7), timedelta(days=1)),
    "30d": (timedelta(days=30), timedelta(days=1)),
}
#: texts closer than this (cosine distance, average linkage) fall in one group
GROUP_DISTANCE = 0.45


def percentile(values: Sequence[int], q: float) -> int | None:
    """The ``q``-th percentile (0-100) of ``values``, rounded to a whole number; None if empty."""
    if not values:
        return None
    return round(float(np.percentile(np.asarray(values, dtype=float), q)))


def buckets(
    times: Iterable[datetime], since: datetime, now: datetime, step: timedelta
) -> list[tuple[datetime, int]]:
    """How many of ``times`` fall in each ``step`` from ``since`` (aligned down to a whole hour
    or day) to ``now``, empty buckets included, oldest first."""
    start = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if step >= timedelta(days=1):
        start = start.replace(hour=0)
    count = int((now - start) / step) + 1
    tally = [0] * count
    for moment in times:
        i = int((moment - start) / step)
        if 0 <= i < count and moment >= since:
            tally[i] += 1
    return [(start + i * step, n) for i, n in enumerate(tally)]


def _label(moment: datetime, step: timedelta) -> str:
    return moment.strftime("%d %b %H:00" if step < timedelta(days=1) else "%a %d %b")


@dataclass(frozen=True)
class Summary:
    """The figures of one period."""

    since: datetime
    questions: int
    answered: int
    declined: int
    #: refused questions by cause (personal_data, input_too_long, rate, queue, widget_key…)
    refused: dict[str, int]
    median_ms: int | None
    p95_ms: int | None
    #: (bucket label, questions), oldest first
    per_bucket: list[tuple[str, int]]
    #: (document, answers citing it), most cited first
    sources: list[tuple[str, int]]
    thumbs_up: int
    thumbs_down: int
    #: (bucket label, thumbs up, thumbs down), oldest first
    ratings: list[tuple[str, int, int]] = field(default_factory=list)


def _rating_time(row: Mapping[str, Any]) -> datetime:
    moment = datetime.fromisoformat(str(row["created"]))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def summarise(
    events: Sequence[Event],
    ratings: Sequence[Mapping[str, Any]],
    since: datetime,
    now: datetime,
    step: timedelta = timedelta(days=1),
    top: int = 10,
) -> Summary:
    """The figures of ``events`` and rating rows (``FeedbackStore.rows``) from ``since`` to
    ``now``, bucketed by ``step``; ``top`` documents at most."""
    events = [e for e in events if since <= e.created <= now]
    ratings = [r for r in ratings if since <= _rating_time(r) <= now]
    outcomes = Counter(e.outcome for e in events)
    times = [e.latency_ms for e in events if e.outcome != "refused"]
    cited = Counter(s for e in events if e.outcome == "answered" for s in e.sources)
    per = buckets((e.created for e in events), since, now, step)
    up = buckets((_rating_time(r) for r in ratings if r["rating"] == 1), since, now, step)
    down = buckets((_rating_time(r) for r in ratings if r["rating"] == -1), since, now, step)
    return Summary(
        since=since,
        questions=len(events),
        answered=outcomes["answered"],
        declined=outcomes["declined"],
        refused=dict(Counter(e.cause or "other" for e in events if e.outcome == "refused")),
        median_ms=percentile(times, 50),
        p95_ms=percentile(times, 95),
        per_bucket=[(_label(t, step), n) for t, n in per],
        sources=sorted(cited.items(), key=lambda kv: (-kv[1], kv[0]))[:top],
        thumbs_up=sum(n for _, n in up),
        thumbs_down=sum(n for _, n in down),
        ratings=[(_label(t, step), u, d) for (t, u), (_, d) in zip(up, down, strict=True)],
    )


def group_by_meaning(
    vectors: np.ndarray[Any, Any], distance: float = GROUP_DISTANCE
) -> list[list[int]]:
    """Indices of ``vectors`` (one row per text) in groups of similar meaning, biggest group
    first (ties: the earliest text first); each group in its rows' order."""
    n = len(vectors)
    if n < 2:
        return [[0]] if n == 1 else []
    labels = AgglomerativeClustering(
        n_clusters=None, distance_threshold=distance, metric="cosine", linkage="average"
    ).fit_predict(np.asarray(vectors, dtype=float))
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        groups.setdefault(int(label), []).append(i)
    return sorted(groups.values(), key=lambda g: (-len(g), g[0]))


# -- charts: geometry for inline SVG ------------------------------------------------------------


@dataclass(frozen=True)
class Mark:
    """A bar (``kind`` "up" or "down" styles it; the text names it), or a text."""

    x: float
    y: float
    width: float = 0.0
    height: float = 0.0
    text: str = ""
    kind: str = "bar"


@dataclass(frozen=True)
class Chart:
    """A chart and its table: ``bars`` and ``labels`` drawn in a ``width`` × ``height`` SVG,
    ``columns`` and ``rows`` the same numbers as a table."""

    id: str
    caption: str
    width: int
    height: int
    bars: list[Mark]
    labels: list[Mark]
    columns: tuple[str, ...]
    rows: list[tuple[str | int, ...]]
    #: the y of the base line (None: no line)
    axis: float | None = None


def _scale(values: Sequence[int], room: float) -> float:
    top = max(values, default=0)
    return room / top if top else 0.0


def column_chart(id_: str, caption: str, rows: Sequence[tuple[str, int]], what: str) -> Chart:
    """Vertical bars over time, one per ``(label, value)``; the first and last labels below."""
    width, height, base = 640, 180, 150
    step = (width - 20) / max(len(rows), 1)
    k = _scale([v for _, v in rows], base - 20)
    bars = [
        Mark(10 + i * step + 1, base - v * k, max(step - 2, 1), v * k, f"{label}: {v} {what}")
        for i, (label, v) in enumerate(rows)
    ]
    labels = [Mark(10, height - 8, text=rows[0][0], kind="start")] if rows else []
    if len(rows) > 1:
        labels.append(Mark(width - 10, height - 8, text=rows[-1][0], kind="end"))
    labels.append(Mark(10, 12, text=f"highest: {max((v for _, v in rows), default=0)}"))
    table: list[tuple[str | int, ...]] = [(label, v) for label, v in rows]
    return Chart(id_, caption, width, height, bars, labels, ("When", what), table, base)


def ratings_chart(id_: str, caption: str, rows: Sequence[tuple[str, int, int]]) -> Chart:
    """Thumbs up above the middle line, thumbs down below it (position, not colour, tells
    them apart; each side is labelled)."""
    width, height, mid = 640, 200, 95
    step = (width - 20) / max(len(rows), 1)
    k = _scale([max(u, d) for _, u, d in rows], mid - 20)
    bars: list[Mark] = []
    for i, (label, up, down) in enumerate(rows):
        x, w = 10 + i * step + 1, max(step - 2, 1)
        bars.append(Mark(x, mid - up * k, w, up * k, f"{label}: {up} thumbs up", "up"))
        bars.append(Mark(x, mid, w, down * k, f"{label}: {down} thumbs down", "down"))
    labels = [Mark(10, 12, text="▲ thumbs up"), Mark(10, 2 * mid - 5, text="▼ thumbs down")]
    if rows:
        labels.append(Mark(width - 10, height - 4, text=rows[-1][0], kind="end"))
    return Chart(
        id_, caption, width, height, bars, labels, ("When", "Thumbs up", "Thumbs down"),
        [(label, u, d) for label, u, d in rows], mid,
    )  # fmt: skip


def bar_chart(id_: str, caption: str, rows: Sequence[tuple[str, int]], what: str) -> Chart:
    """Horizontal bars, each with its label and number written beside it."""
    width, line, left = 640, 26, 250
    height = max(len(rows), 1) * line + 8
    k = _scale([v for _, v in rows], width - left - 50)
    bars = [
        Mark(left, 6 + i * line, max(v * k, 1 if v else 0), line - 8, f"{label}: {v} {what}")
        for i, (label, v) in enumerate(rows)
    ]
    labels = [Mark(left - 6, 6 + i * line + 13, text=_short(lb), kind="end") for i, (lb, _) in
              enumerate(rows)]  # fmt: skip
    labels += [Mark(left + v * k + 6, 6 + i * line + 13, text=str(v)) for i, (_, v) in
               enumerate(rows)]  # fmt: skip
    table: list[tuple[str | int, ...]] = [*rows]
    return Chart(id_, caption, width, height, bars, labels, ("", what), table)


def _short(text: str, most: int = 34) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"
