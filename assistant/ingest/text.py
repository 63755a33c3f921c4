"""The normalised text, the contract between every reader of the corpus and the chunker.

Every supported file (plain text, Markdown, HTML, PDF, Word .docx) is turned into the same
*normalised text*:

* headings are lines starting with ``#`` (``# `` title, ``## `` section, ``### `` …); a line
  of text that starts like one (a comment in a code block) is escaped as ``\\#``;
* list items are lines starting with ``- ``, one per line, consecutive items on consecutive lines;
* paragraphs (and lists, and headings) are separated by exactly one blank line;
* whitespace inside a line is collapsed to single spaces (non-breaking spaces included), lines
  have no leading or trailing spaces, and the text has no leading or trailing blank lines.

The words themselves are kept as they are; stripping navigation debris is the chunker's job.

:class:`Blocks` collects headings, paragraphs and lists and renders them in that form;
:func:`normalise_plain_text` finds the structure of a plain-text document by heuristics;
:func:`decode_text` reads the bytes of a text file, and :class:`UnreadableFile` is the verdict
on a file that cannot be used.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

__all__ = [
    "Blocks",
    "UnreadableFile",
    "clean_line",
    "decode_text",
    "normalise_plain_text",
    "short_error",
]


class UnreadableFile(Exception):  # noqa: N818 - a verdict on a file, not a program error
    """One file of the corpus cannot be used; ``reason`` says why, for a person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_text(data: bytes) -> str:
    """Strict UTF-8 (a byte-order mark is accepted); anything else is a reason to skip."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UnreadableFile("UTF-16 text, not UTF-8; save it as UTF-8")
    if b"\x00" in data:
        raise UnreadableFile("binary file, not text (NUL bytes)")
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = err.start + bom
        raise UnreadableFile(
            f"not valid UTF-8 (byte 0x{data[offset]:02x} at offset {offset}); save it as UTF-8"
        ) from None


# --------------------------------------------------------------------------------------------
# normalised text


_INVISIBLE = dict.fromkeys(
    [*range(0x09), 0x0B, *range(0x0E, 0x20), 0x7F, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, 0xAD]
)


def clean_line(line: str) -> str:
    """One line with invisible characters removed and whitespace (NBSP too) collapsed."""
    return " ".join(line.translate(_INVISIBLE).split())


_HEADING_MARK = re.compile(r"^#{1,6}\s")


def _escape_heading(line: str) -> str:
    """A text line that would read as a heading ("# a comment" in a code block) is escaped
    ("\\# a comment"); the chunker turns it back into text."""
    return "\\" + line if _HEADING_MARK.match(line) else line


@dataclass
class Blocks:
    """Collects headings, paragraphs and lists, then renders the normalised text."""

    out: list[str] = field(default_factory=list)
    para: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)

    def heading(self, level: int, text: str) -> None:
        self.flush()
        text = clean_line(text)
        if text:
            self.out.append("#" * max(1, min(level, 6)) + " " + text)

    def line(self, text: str) -> None:
        """A line of paragraph text; consecutive lines make one paragraph."""
        if self.items:
            self.flush()
        text = _escape_heading(clean_line(text))
        if text:
            self.para.append(text)

    def item(self, text: str) -> None:
        if self.para:
            self.flush()
        text = clean_line(text)
        if text:
            self.items.append(text)

    def continue_item(self, text: str) -> None:
        text = clean_line(text)
        if self.items and text:
            self.items[-1] = f"{self.items[-1]} {text}"

    def paragraph(self, text: str) -> None:
        """A whole paragraph at once; explicit line breaks (``\\n``) inside it are kept."""
        self.flush()
        lines = [_escape_heading(clean_line(line)) for line in text.splitlines()]
        joined = "\n".join(line for line in lines if line)
        if joined:
            self.out.append(joined)

    def flush(self) -> None:
        if self.para:
            self.out.append(" ".join(self.para))
            self.para = []
        if self.items:
            self.out.append("\n".join(f"- {item}" for item in self.items))
            self.items = []

    def render(self) -> str:
        self.flush()
        return "\n\n".join(self.out)


_BULLET = re.compile(
    r"^(?:[-*–—]\s+|[•·‣◦▪▫●○■□►▸➢✓✔](?:\s+|(?=\S))|\(?\d{1,3}[.)]\s+|[a-z][.)]\s+)(?P<rest>.*)$"
)
_BARE_BULLET = re.compile(r"^(?:[•·‣◦▪▫●○■□►▸➢✓✔*–—-]|\d{1,3}[.)])$")


def _is_heading_like(line: str, *, max_chars: int, max_words: int) -> bool:
    """A short line that reads as a heading rather than as a sentence."""
    words = line.split()
    if not words or len(line) > max_chars or len(words) > max_words:
        return False
    if line[-1] in ",;:" or line[0].islower() or not any(c.isalpha() for c in line):
        return False
    return not (line.endswith(".") and len(words) > 4)


def normalise_plain_text(text: str) -> str:
    """Normalised text of a plain-text document, its structure found by heuristics.

    * the first non-empty line becomes the ``# `` title if it reads like one;
    * bulleted or numbered lines become ``- `` items (a line starting with a small letter right
      after an item continues it);
    * a short line after a blank line that reads like a heading (not a sentence) and has text
      after it becomes a ``## `` heading, unless the next line is such a heading too and does not
      end with a full stop (then it is stray text, like "Source: …" above a section);
    * other consecutive lines form one paragraph.
    """
    lines = [clean_line(line) for line in text.splitlines()]
    if not any(lines):
        return ""
    kinds, items = _line_kinds(lines)
    levels = _heading_levels(lines, kinds)
    blocks = Blocks()
    for i, line in enumerate(lines):
        kind = kinds[i]
        if kind == "blank":
            blocks.flush()
        elif kind == "item":
            blocks.item(items[i])
        elif kind == "more":
            blocks.continue_item(line)
        elif kind == "bare":
            continue
        elif i in levels:
            blocks.heading(levels[i], line)
        else:
            blocks.line(line)
    return blocks.render()


def _line_kinds(lines: list[str]) -> tuple[list[str], dict[int, str]]:
    """What each line is: "blank", "bare" (a bullet alone), "item", "more" (of an item) or
    "text"; and the text of each item, keyed by line (without its bullet)."""
    kinds: list[str] = []
    items: dict[int, str] = {}
    pending = False  # a bullet alone on its line: the next line is the item
    for i, line in enumerate(lines):
        bullet = _BULLET.match(line)
        previous = kinds[-1] if kinds else "blank"
        if not line:
            kinds.append("blank")
        elif _BARE_BULLET.match(line):
            kinds.append("bare")
            pending = True
            continue
        elif bullet and bullet.group("rest"):
            kinds.append("item")
            items[i] = bullet.group("rest")
        elif pending:
            kinds.append("item")
            items[i] = line
        elif previous in ("item", "more") and line[0].islower():
            kinds.append("more")
        else:
            kinds.append("text")
        pending = False
    return kinds, items


def _heading_levels(lines: list[str], kinds: list[str]) -> dict[int, int]:
    """The text lines that are headings, keyed by line: 1 for the title, 2 for a section."""
    content = [i for i, line in enumerate(lines) if line]
    first, last = content[0], content[-1]

    def reads_as_heading(i: int, max_chars: int, max_words: int) -> bool:
        wrapped = i + 1 < len(lines) and lines[i + 1][:1].islower()  # a sentence going on
        return (
            kinds[i] == "text"
            and i < last
            and not wrapped
            and _is_heading_like(lines[i], max_chars=max_chars, max_words=max_words)
        )

    candidate = [
        i > first and kinds[i - 1] == "blank" and reads_as_heading(i, 80, 10)
        for i in range(len(lines))
    ]
    next_content = dict(itertools.pairwise(content))

    def strong(i: int) -> bool:  # a heading candidate that is not a short sentence
        return candidate[i] and not lines[i].endswith(".")

    levels: dict[int, int] = {}
    if reads_as_heading(first, 120, 16):
        levels[first] = 1
    for i in content:
        if i != first and candidate[i] and not strong(next_content.get(i, i)):
            levels[i] = 2
    return levels


def short_error(err: BaseException) -> str:
    """A one-line, bounded description of a library's exception."""
    message = " ".join(str(err).split()) or type(err).__name__
    return message if len(message) <= 160 else message[:157] + "..."
