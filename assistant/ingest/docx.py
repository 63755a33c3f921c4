"""Word (.docx) files to normalised text: heading and list styles kept, tables read cell by
cell."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from assistant.ingest.text import Blocks, UnreadableFile, short_error

if TYPE_CHECKING:  # python-docx is imported when a Word file is read
    from docx.table import Table
    from docx.text.paragraph import Paragraph

__all__ = ["read_docx"]


def read_docx(data: bytes) -> str:
    import docx

    # python-docx reports damaged packages through zipfile (BadZipFile), its own OpcError,
    # lxml syntax errors and KeyError/ValueError for missing parts, so this one per-file
    # boundary catches Exception.
    try:
        document = docx.Document(io.BytesIO(data))
        blocks = Blocks()
        _docx_blocks(document.iter_inner_content(), blocks, depth=0)
        return blocks.render()
    except Exception as err:  # see above: the per-file boundary
        raise UnreadableFile(f"corrupt .docx (not a valid Word file): {short_error(err)}") from None


_DOCX_HEADING = re.compile(r"^heading\s*(\d)$", re.IGNORECASE)


def _docx_blocks(content: Iterable[Paragraph | Table], blocks: Blocks, *, depth: int) -> None:
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    for part in content:
        if isinstance(part, Paragraph):
            _docx_paragraph(part, blocks)
        elif isinstance(part, Table) and depth < 8:
            for cell in _docx_cells(part):
                _docx_blocks(cell, blocks, depth=depth + 1)
            blocks.flush()


def _docx_cells(table: Table) -> Iterator[list[Paragraph | Table]]:
    """The contents of each distinct cell (a merged cell is listed by python-docx repeatedly)."""
    seen: set[int] = set()
    for row in table.rows:
        for cell in row.cells:
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            yield list(cell.iter_inner_content())


def _docx_paragraph(paragraph: Paragraph, blocks: Blocks) -> None:
    text = paragraph.text
    if not text.strip():
        return
    style = paragraph.style.name if paragraph.style is not None else ""
    style = style or ""
    heading = _DOCX_HEADING.match(style)
    ppr = paragraph._p.pPr
    numbered = ppr is not None and ppr.numPr is not None
    if style == "Title":
        blocks.heading(1, " ".join(text.split()))
    elif heading:
        blocks.heading(int(heading.group(1)) + 1, " ".join(text.split()))
    elif style.startswith("List") or numbered:
        blocks.item(" ".join(text.split()))
    else:
        blocks.paragraph(text)
