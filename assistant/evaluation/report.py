"""Renders an :class:`~assistant.evaluation.run.EvalRun`: a text table, ``eval.json``,
``eval.html``.

The HTML report is one self-contained file: inline CSS, and the plots (hit@k curves, the
assistant's latency histogram) as PNG data URIs drawn with matplotlib's Agg backend. No script,
font or stylesheet is fetched from anywhere. Every text that comes from a case, a document or an
answer is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from assistant.evaluation.gate import Gate
from assistant.evaluation.run import CaseResult, EvalRun, SystemRun

if TYPE_CHECKING:
    from assistant.evaluation.suite import SuiteRun

__all__ = [
    "METRICS",
    "hit_curve_png",
    "latency_png",
    "render_html",
    "render_set",
    "render_text",
    "write_report",
]

#: the metrics shown, in order, with their labels
METRICS: tuple[tuple[str, str], ...] = (
    ("hit@1", "hit@1"),
    ("hit@3", "hit@3"),
    ("hit@5", "hit@5"),
    ("hit@10", "hit@10"),
    ("mrr", "MRR"),
    ("ndcg@10", "nDCG@10"),
    ("key_fact_accuracy", "key-fact accuracy"),
    ("citation_precision", "citation precision"),
    ("supported_answer_rate", "supported-answer rate"),
    ("refusal_precision", "refusal precision"),
    ("refusal_recall", "refusal recall"),
    ("false_refusal_rate", "false-refusal rate"),
    ("follow_ups_answered", "follow-ups answered"),
    ("switches_own_topic_or_declined", "topic switches: own topic or declined"),
    ("retrieve_p50_ms", "retrieve p50 (ms)"),
    ("retrieve_p95_ms", "retrieve p95 (ms)"),
    ("answer_p50_ms", "answer p50 (ms)"),
    ("answer_p95_ms", "answer p95 (ms)"),
    ("total_p50_ms", "end to end p50 (ms)"),
    ("total_p95_ms", "end to end p95 (ms)"),
)
_REFUSAL = ("refusal_precision", "refusal_recall", "false_refusal_rate")
_NOT_APPLICABLE = "n/a"
_COLOURS = ("#1f5fa8", "#d9822b", "#3a9a5b", "#a83279", "#6b6b6b")


def _cell(run: SystemRun, metric: str) -> str:
    """A metric of one system as shown; refusal metrics of a system that never declines are n/a."""
    if (metric in _REFUSAL and not run.declines) or metric not in run.summary.metrics:
        return _NOT_APPLICABLE
    value = run.summary.metrics[metric]
    return f"{value:.1f}" if metric.endswith("_ms") else f"{value:.3f}"


def _clip(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _gold(r: CaseResult) -> str:
    if not r.case.answerable:
        return "–"
    return str(r.gold_rank) if r.gold_rank is not None else "none"


# -- text ---------------------------------------------------------------------------------------


def _shown(run: EvalRun) -> list[tuple[str, str]]:
    """The metrics a run reports (conversation metrics only for conversation sets)."""
    have = set(run.runs[0].summary.metrics) if run.runs else set()
    return [(m, label) for m, label in METRICS if m in have]


def render_text(run: EvalRun, gate: Gate | None = None) -> str:
    """The metrics of every system side by side, the gap to each target, then the assistant's
    failing cases."""
    width = max(len(label) for _, label in METRICS)
    cols = [max(len(r.name), 9) for r in run.runs]

    def row(label: str, cells: Sequence[str]) -> str:
        return " ".join(
            [label.ljust(width), *(c.rjust(w) for c, w in zip(cells, cols, strict=True))]
        )

    lines = [
        f"== {run.case_set}: {run.cases} cases, k={run.k}, {run.date}, {run.seconds:.1f}s",
        *run.notes,
        "",
        row("", [r.name for r in run.runs]),
    ]
    lines += [row(label, [_cell(r, metric) for r in run.runs]) for metric, label in _shown(run)]
    lines.append(row("declined", [str(r.refusals) for r in run.runs]))
    lines.append(row("failing cases", [str(r.summary.counts["failures"]) for r in run.runs]))
    if any(not r.declines for r in run.runs):
        lines += ["", "n/a: the baselines answer with their top passage and never decline."]
    first = run.runs[0] if run.runs else None
    if first is not None and gate is not None:
        gaps = gate.gaps(run.case_set, first.summary.metrics)
        if gaps:
            lines += ["", f"Targets of {run.case_set}:"]
            lines += [
                f"- {g.metric}: {g.value:.3f} (target {g.target:g}"
                + (", met)" if g.met else f", {g.gap:.3f} to go)")
                for g in gaps
            ]
    if first is not None:
        failures = first.failures
        lines += ["", f"Failing cases of {first.name} ({len(failures)} of {len(first.results)}):"]
        for r in failures:
            lines.append(f"- {r.case.id} [gold {_gold(r)}; {r.why}] {_clip(r.case.question, 100)}")
            lines.append(f"    answer: {_clip(r.answer, 110)}")
            for i, top in enumerate(r.retrieved[:3], start=1):
                lines.append(f"    {i}. {_clip(top, 110)}")
    return "\n".join(lines)


# -- plots ----------------------------------------------------------------------------------------


def _png(fig: Figure) -> str:
    """The figure as a ``data:image/png;base64,`` URI (drawn by the Agg backend)."""
    FigureCanvasAgg(fig)  # attaches itself to the figure: savefig draws with Agg
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def hit_curve_png(run: EvalRun) -> str:
    """hit@k for k = 1 … run.k, one line per system."""
    fig = Figure(figsize=(7.5, 4.2), dpi=110)
    ax = fig.add_subplot()
    ks = list(range(1, run.k + 1))
    for i, sys_run in enumerate(run.runs):
        ax.plot(ks, sys_run.hit_curve(run.k), marker="o", linewidth=2,
                color=_COLOURS[i % len(_COLOURS)], label=sys_run.name)  # fmt: skip
    ax.set_xlabel("k (passages retrieved)")
    ax.set_ylabel("hit@k (answerable cases)")
    ax.set_xticks(ks)
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("Evidence among the first k passages")
    fig.tight_layout()
    return _png(fig)


def latency_png(sys_run: SystemRun) -> str:
    """Histogram of the end-to-end time of every case, with p50 and p95 marked."""
    totals = [r.timings_ms["total"] for r in sys_run.results if "total" in r.timings_ms]
    fig = Figure(figsize=(7.5, 3.6), dpi=110)
    ax = fig.add_subplot()
    if totals:
        ax.hist(totals, bins=min(30, max(5, len(totals) // 4)), color=_COLOURS[0], alpha=0.85)
        for q, style in (("p50", "--"), ("p95", ":")):
            value = sys_run.summary.metrics[f"total_{q}_ms"]
            ax.axvline(value, color="#222222", linestyle=style, label=f"{q} {value:.0f} ms")
        ax.legend(loc="best")
    ax.set_xlabel("end-to-end time per question (ms)")
    ax.set_ylabel("questions")
    ax.set_title(f"Latency of {sys_run.name}")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return _png(fig)


# -- html ---------------------------------------------------------------------------------------

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:1150px;padding:0 1rem;color:#1d1d1f;background:#fff}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem}
.meta{color:#555;margin-top:0}table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{border:1px solid #d6d6d6;padding:.3rem .5rem;vertical-align:top;text-align:left}
th{background:#f2f4f7}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.best td.num{font-weight:600}.metrics{width:auto}.metrics td:first-child{white-space:nowrap}
.fail td{font-size:.88rem}.fail td:nth-child(1){white-space:nowrap}
.fail ol{margin:0;padding-left:1.2rem}img{max-width:100%;height:auto;border:1px solid #eee}
.note{color:#555;font-size:.9rem}code{background:#f2f4f7;padding:0 .2rem}
h3{font-size:1rem;margin-top:1.2rem}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _metrics_table(run: EvalRun) -> str:
    head = "".join(f"<th>{_e(r.name)}</th>" for r in run.runs)
    rows = [f"<tr><th>metric</th>{head}</tr>"]
    for metric, label in _shown(run):
        cells = "".join(f'<td class="num">{_e(_cell(r, metric))}</td>' for r in run.runs)
        rows.append(f"<tr><td>{_e(label)}</td>{cells}</tr>")
    for key in ("failures", "refused"):
        cells = "".join(
            f'<td class="num">{_e(r.refusals if key == "refused" else r.summary.counts[key])}</td>'
            for r in run.runs
        )
        rows.append(f"<tr><td>{_e('declined' if key == 'refused' else 'failing cases')}</td>"
                    f"{cells}</tr>")  # fmt: skip
    return '<table class="metrics">' + "".join(rows) + "</table>"


def _failures_table(sys_run: SystemRun) -> str:
    failures = sys_run.failures
    if not failures:
        return "<p>No failing case.</p>"
    rows = [
        "<tr><th>case</th><th>question</th><th>gold rank</th><th>refused</th><th>why</th>"
        "<th>answer</th><th>top retrieved</th></tr>"
    ]
    for r in failures:
        history = "".join(
            f'<div class="note">{_e(t.role)}: {_e(_clip(t.content, 160))}</div>'
            for t in r.case.history
        )
        tops = "".join(f"<li>{_e(_clip(t, 160))}</li>" for t in r.retrieved[:3])
        rows.append(
            f"<tr><td>{_e(r.case.id)}</td><td>{history}{_e(r.case.question)}</td>"
            f'<td class="num">{_e(_gold(r))}</td><td>{"yes" if r.refused else "no"}</td>'
            f"<td>{_e(r.why)}</td><td>{_e(_clip(r.answer, 400))}</td><td><ol>{tops}</ol></td></tr>"
        )
    return '<table class="fail">' + "".join(rows) + "</table>"


def _systems_list(runs: Sequence[SystemRun]) -> str:
    items = "".join(
        f"<li><b>{_e(r.name)}</b>: {_e(r.description)} ({r.seconds:.1f}s)</li>" for r in runs
    )
    return f"<ul>{items}</ul>"


_NOTE = (
    '<p class="note">Retrieval metrics count answerable cases whose evidence snippet is in a '
    "passage among the first k. A correct answer contains every key fact; a citation is precise "
    "if its passage holds the evidence or a key fact. Conversations are asked turn by turn, each "
    "turn with the questions and answers before it. The baselines answer with their top passage, "
    "cited once, and never decline: their refusal metrics are n/a.</p>"
)


def _targets_table(run: EvalRun, gate: Gate | None) -> str:
    main = run.runs[0] if run.runs else None
    gaps = gate.gaps(run.case_set, main.summary.metrics) if gate and main else []
    if not gaps:
        return ""
    rows = ["<tr><th>metric</th><th>figure</th><th>floor</th><th>target</th><th>gap</th></tr>"]
    floors = gate.floors.get(run.case_set) if gate else None
    for g in gaps:
        floor = ""
        if floors is not None:
            bound = floors.minimum.get(g.metric, floors.maximum.get(g.metric))
            floor = "" if bound is None else f"{bound:g}"
        rows.append(
            f'<tr><td>{_e(g.metric)}</td><td class="num">{g.value:.3f}</td>'
            f'<td class="num">{_e(floor)}</td><td class="num">{g.target:g}</td>'
            f'<td class="num">{"met" if g.met else f"{g.gap:.3f}"}</td></tr>'
        )
    return (
        f"<h3>Targets of {_e(run.case_set)}</h3>"
        '<table class="metrics">' + "".join(rows) + "</table>"
    )


def render_set(run: EvalRun, gate: Gate | None = None) -> str:
    """One set's section: systems, metrics, targets, hit@k, latency, failing cases."""
    main = run.runs[0] if run.runs else None
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in run.notes)
    parts = [
        f'<h2 id="set-{_e(run.case_set)}">{_e(run.case_set)}</h2>',
        f'<p class="meta">{run.cases} cases · k = {run.k} · {_e(run.date)} · '
        f"{run.seconds:.1f}s</p>{notes}",
        _systems_list(run.runs),
        _metrics_table(run),
        _targets_table(run, gate),
        f'<img src="{hit_curve_png(run)}" '
        f'alt="hit@k curves of every system on {_e(run.case_set)}">',
    ]
    if main is not None:
        parts += [
            f'<img src="{latency_png(main)}" alt="histogram of end-to-end latency">',
            f"<h3>Failing cases of {_e(main.name)} ({len(main.failures)} of "
            f"{len(main.results)})</h3>",
            '<p class="note">A case fails if an unanswerable question is answered, or an '
            "answerable one is declined, misses a key fact, has no supporting citation, or its "
            "evidence is not the top passage.</p>",
            _failures_table(main),
        ]
    return "\n".join(parts)


_OVERVIEW = (
    ("hit@1", "hit@1"),
    ("hit@5", "hit@5"),
    ("key_fact_accuracy", "key facts"),
    ("citation_precision", "citation precision"),
    ("refusal_precision", "refusal precision"),
    ("refusal_recall", "refusal recall"),
    ("false_refusal_rate", "false refusals"),
    ("follow_ups_answered", "follow-ups answered"),
    ("switches_own_topic_or_declined", "switches: own topic or declined"),
)


def _overview(runs: Sequence[EvalRun], gate: Gate | None) -> str:
    """Every set side by side: the assistant's figure (target), each baseline's beside it."""
    head = "".join(f"<th>{_e(r.case_set)}</th>" for r in runs)
    rows = [f"<tr><th>metric</th><th>system</th>{head}</tr>"]
    systems = list(dict.fromkeys(s.name for r in runs for s in r.runs))
    for metric, label in _OVERVIEW:
        if not any(metric in s.summary.metrics for r in runs for s in r.runs):
            continue
        for name in systems:
            cells = []
            for r in runs:
                run = next((s for s in r.runs if s.name == name), None)
                cell = _cell(run, metric) if run is not None else ""
                target = gate.targets.get(r.case_set, {}).get(metric) if gate else None
                if run is r.runs[0] and target is not None and cell != _NOT_APPLICABLE:
                    cell += f" ({target:g})"
                cells.append(f'<td class="num">{_e(cell)}</td>')
            rows.append(f"<tr><td>{_e(label)}</td><td>{_e(name)}</td>{''.join(cells)}</tr>")
    return '<table class="metrics">' + "".join(rows) + "</table>"


def render_html(suite: SuiteRun | EvalRun, gate: Gate | None = None) -> str:
    """The whole report as one self-contained HTML page."""
    runs = [suite] if isinstance(suite, EvalRun) else [run for _, run in suite.runs]
    toc = "".join(f'<li><a href="#set-{_e(r.case_set)}">{_e(r.case_set)}</a></li>' for r in runs)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Evaluation — {_e(', '.join(r.case_set for r in runs))}</title>"
        f"<style>{_CSS}</style></head><body>",
        "<h1>Evaluation of the commissioning guidance assistant</h1>",
        f'<p class="meta">{len(runs)} set(s): <ul>{toc}</ul></p>',
        _NOTE,
        "<h2>All sets side by side</h2>",
        '<p class="note">The assistant\'s figure is followed by its target in brackets.</p>',
        _overview(runs, gate),
        *(render_set(r, gate) for r in runs),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_report(
    suite: SuiteRun | EvalRun, folder: Path, gate: Gate | None = None
) -> tuple[Path, Path]:
    """Write ``folder/eval.json`` (everything, per case) and ``folder/eval.html``."""
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / "eval.json"
    html_path = folder / "eval.html"
    json_path.write_text(
        json.dumps(suite.to_json(cases=True), ensure_ascii=False, indent=1) + "\n",
        encoding="utf-8",
    )
    html_path.write_text(render_html(suite, gate), encoding="utf-8")
    return html_path, json_path
