"""How an answer is shown and copied: one marker for a run of sentences from the same source.

The answer text carries a marker after every sentence and every list item ("… [1] … [1]"), and
the evaluation scores that text, so it stays as it is. :func:`display_blocks` reads it into
paragraphs and lists of parts, each part the text before a marker and the sources it cites, and
keeps a marker only where a run of parts citing the same sources ends: consecutive sentences
from one passage share one marker after the last of them; a list whose items all cite the same
sources keeps its items on their own lines and one marker after the list (on its last item); a
list mixing sources keeps each item's marker. The chat page renders these blocks, and the API
sends them (:func:`display_json`) so the widget shows the same thing without its own rules.

:func:`copy_text` is the plain-text form a copy button puts on the clipboard: the answer with
its markers, its notices, then ``Sources:`` with a numbered line per source.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from assistant.schema import Answer, Citation

__all__ = [
    "Block",
    "Part",
    "answer_body",
    "copy_text",
    "display_blocks",
    "display_json",
    "display_text",
    "render_blocks",
    "source_key",
]

#: a group of markers as the answerers write them: " [1]", " [1][2]", " [1, 2]"
_MARKERS = re.compile(r"(?:\s*\[\d+(?:\s*[,;]\s*\d+)*\])+")
_BULLET = re.compile(r"^\s*[-*•]\s+")
#: text that follows the part before it without a space
_CLINGS = re.compile(r"^[.,;:!?)\]]")


@dataclass(frozen=True)
class Part:
    """Text and the sources it cites (empty: no marker after it)."""

    text: str
    cite: tuple[int, ...] = ()


@dataclass(frozen=True)
class Block:
    """A paragraph (one line of parts) or a list (one line of parts per item); ``para``: which
    paragraph of the text it is in (a list and its lead-in share one)."""

    kind: Literal["p", "list"]
    lines: tuple[tuple[Part, ...], ...]
    para: int = 0


def answer_body(answer: Answer) -> str:
    """The answer without the notices the pipeline appends to it (they are shown apart)."""
    body = answer.answer
    for notice in reversed(answer.notices):
        body = body.removesuffix(notice).rstrip()
    return body


def _numbers(marker: str) -> tuple[int, ...]:
    return tuple(dict.fromkeys(int(n) for n in re.findall(r"\d+", marker)))


def _parts(line: str, cited: Collection[int]) -> list[Part]:
    """A line cut after each group of markers; only this answer's citation numbers are markers,
    and not straight after "]" ("[ref][1]" in a document is text)."""
    parts: list[Part] = []
    pos = 0
    for m in _MARKERS.finditer(line):
        numbers = _numbers(m.group())
        if not all(n in cited for n in numbers) or (m.start() > 0 and line[m.start() - 1] == "]"):
            continue
        parts.append(Part(line[pos : m.start()].strip(), numbers))
        pos = m.end()
    rest = line[pos:].strip()
    if rest:
        parts.append(Part(rest))
    return parts


def _blocks(body: str, cited: Collection[int]) -> list[Block]:
    """The body as paragraphs and lists, every marker still in place."""
    blocks: list[Block] = []
    for para, paragraph in enumerate(re.split(r"\n\s*\n", body.strip())):
        for line in paragraph.splitlines():
            if not line.strip():
                continue
            item = _BULLET.match(line)
            kind: Literal["p", "list"] = "list" if item else "p"
            parts = tuple(_parts(line[item.end() :] if item else line, cited))
            last = blocks[-1] if blocks else None
            if last is None or last.kind != kind or last.para != para:
                blocks.append(Block(kind, (parts,), para))
            elif kind == "list":
                blocks[-1] = replace(last, lines=(*last.lines, parts))
            else:
                blocks[-1] = replace(last, lines=((*last.lines[0], *parts),))
    return [b for b in blocks if any(b.lines)]


def _merge(blocks: list[Block]) -> list[Block]:
    """Drop every marker but the last of a run of parts citing the same sources. A run ends at
    a paragraph break, after a list, and after each item of a list that mixes sources."""
    flat = [
        (b, li, pi) for b, block in enumerate(blocks) for li, line in enumerate(block.lines)
        for pi in range(len(line))
    ]  # fmt: skip
    keep: set[tuple[int, int, int]] = set()
    for k, (b, li, pi) in enumerate(flat):
        block = blocks[b]
        cite = block.lines[li][pi].cite
        mixed = block.kind == "list" and len({p.cite for line in block.lines for p in line}) > 1
        nb, nli, npi = flat[k + 1] if k + 1 < len(flat) else (-1, -1, -1)
        ends = (
            nb < 0
            or blocks[nb].lines[nli][npi].cite != cite
            or (nb != b and (block.kind == "list" or blocks[nb].para != block.para))
            or (mixed and nli != li)
        )
        if ends:
            keep.add((b, li, pi))
    return [
        replace(block, lines=tuple(
            tuple(p if (b, li, pi) in keep else Part(p.text) for pi, p in enumerate(line))
            for li, line in enumerate(block.lines)
        ))
        for b, block in enumerate(blocks)
    ]  # fmt: skip


def display_blocks(text: str, cited: Collection[int]) -> list[Block]:
    """``text`` (an answer body) as blocks with one marker per run (see the module's docs);
    ``cited``: the answer's citation numbers (other bracketed numbers are text)."""
    return _merge(_blocks(text, cited))


def _plain_markers(cite: Sequence[int]) -> str:
    return "".join(f"[{n}]" for n in cite)


def render_blocks(
    blocks: Sequence[Block],
    text: Callable[[str], str] = str,
    markers: Callable[[tuple[int, ...]], str] | None = None,
) -> str:
    """``blocks`` laid out as text: paragraphs apart, a list's items as "- " lines, each part's
    ``text`` then its ``markers`` (plain "[1][2]" by default) after a space; a part opening with
    punctuation clings to the one before it. The chat page (Markdown, linked markers) and the
    copied text share it."""

    def line(parts: Sequence[Part]) -> str:
        out = ""
        for p in parts:
            piece = text(p.text) + (" " + (markers or _plain_markers)(p.cite) if p.cite else "")
            out += piece if not out or not p.text or _CLINGS.match(p.text) else " " + piece
        return out.strip()

    return "\n\n".join(
        line(b.lines[0]) if b.kind == "p" else "\n".join("- " + line(item) for item in b.lines)
        for b in blocks
    )


def _where(c: Citation) -> str:
    where = c.title + (f" — {c.section}" if c.section else "")
    when = ", ".join(x for x in (c.era, "historical" if c.status == "historical" else "") if x)
    return where + (f" ({when})" if when else "")


def display_text(answer: Answer) -> str:
    """The answer body as shown, in plain text: one marker per run, list items on their lines."""
    return render_blocks(display_blocks(answer_body(answer), [c.n for c in answer.citations]))


def copy_text(answer: Answer, declined_heading: str = "Not covered by the guidance") -> str:
    """The answer as plain text with its notices and numbered sources, for the clipboard:
    "… [1]\\n\\nSources:\\n[1] Title — section (era)"."""
    text = display_text(answer)
    if answer.refused:
        return f"{declined_heading}. {text}".strip()
    text = "\n\n".join([text, *answer.notices])
    if answer.citations:
        sources = [f"[{c.n}] {_where(c)}" for c in sorted(answer.citations, key=lambda c: c.n)]
        text += "\n\nSources:\n" + "\n".join(sources)
    return text


def source_key(answer: Answer) -> str:
    """A short key for this answer's sources, so each answer's anchors are its own on a page."""
    seed = "\x1f".join([answer.question, answer.answer, *(c.chunk_id for c in answer.citations)])
    return hashlib.sha256(seed.encode()).hexdigest()[:10]


def _part_json(p: Part) -> dict[str, Any]:
    return {"text": p.text, "cite": list(p.cite)}


def display_json(answer: Answer) -> dict[str, Any]:
    """The API's ``display`` field: the blocks to show (paragraphs ``{"type": "p", "parts"}``,
    lists ``{"type": "list", "items"}``, a part being ``{"text", "cite"}``), the plain text to
    copy, and the key of the answer's source anchors."""
    blocks = display_blocks(answer_body(answer), [c.n for c in answer.citations])
    return {
        "blocks": [
            {"type": "p", "parts": [_part_json(p) for p in b.lines[0]]}
            if b.kind == "p"
            else {"type": "list", "items": [[_part_json(p) for p in line] for line in b.lines]}
            for b in blocks
        ],
        "copy": copy_text(answer),
        "key": source_key(answer),
    }
