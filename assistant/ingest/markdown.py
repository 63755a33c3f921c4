"""Markdown to normalised text, by line rules (not a full Markdown parser)."""

from __future__ import annotations

import re

from assistant.ingest.text import Blocks

__all__ = ["normalise_markdown"]


_MD_HEADING = re.compile(r"^(#{1,6})(?:\s+(.*?))?(?:\s+#+)?\s*$")
_MD_ITEM = re.compile(r"^\s*(?:[*+-]|\d{1,9}[.)])\s+(?P<rest>.*)$")
_MD_RULE = re.compile(r"^\s{0,3}([-*_])(?:\s*\1){2,}\s*$")
_MD_SETEXT = re.compile(r"^\s{0,3}(=+|-+)\s*$")
_MD_FENCE = re.compile(r"^\s{0,3}(```|~~~)")


def normalise_markdown(text: str) -> str:
    """Normalised text of a Markdown document, by line rules (not a full Markdown parser)."""
    raw = text.splitlines()
    blocks = Blocks()
    in_fence = False
    after_item = False
    for i, line in enumerate(raw):
        if _MD_FENCE.match(line):
            blocks.flush()
            in_fence = not in_fence
            after_item = False
            continue
        if in_fence:
            blocks.line(line)
            continue
        stripped = line.strip()
        if not stripped:
            blocks.flush()
            after_item = False
            continue
        nxt = raw[i + 1] if i + 1 < len(raw) else ""
        heading = _MD_HEADING.match(stripped)
        if heading:
            blocks.heading(len(heading.group(1)), heading.group(2) or "")
            after_item = False
            continue
        setext = _MD_SETEXT.match(nxt)
        if setext and not blocks.para and not after_item and not _MD_ITEM.match(line):
            blocks.heading(1 if setext.group(1).startswith("=") else 2, stripped)
            raw[i + 1] = ""  # the underline is consumed
            continue
        if _MD_RULE.match(line):
            blocks.flush()
            after_item = False
            continue
        item = _MD_ITEM.match(line)
        if item:
            blocks.item(item.group("rest"))
            after_item = True
            continue
        stripped = re.sub(r"^(?:>\s?)+", "", stripped)
        if after_item:  # an indented or lazy continuation of the item
            blocks.continue_item(stripped)
        else:
            blocks.line(stripped)
    return blocks.render()
