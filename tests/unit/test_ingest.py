"""Ingestion: every supported format to normalised text, every bad file reported by name."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from assistant.errors import CorpusError
from assistant.ingest import (
    SUPPORTED_SUFFIXES,
    UnreadableFile,
    ingest,
    load_manifest,
    normalise_markdown,
    normalise_plain_text,
    read_document,
    slugify_path,
)
from assistant.schema import DocInfo, IngestReport

REAL_CORPUS = Path(__file__).resolve().parents[2] / "corpus"


# ---------------------------------------------------------------------------------------------
# fixture builders (nothing binary is committed: every file is made here, under tmp_path)


def make_pdf(lines: list[str]) -> bytes:
    """A minimal valid one-page PDF, one Helvetica text line per entry, with a correct xref."""
    ops = []
    for n, text in enumerate(lines):
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        size = 18 if n == 0 else 12
        ops.append(f"BT /F1 {size} Tf 72 {720 - 30 * n} Td ({escaped}) Tj ET")
    stream = "\n".join(ops).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


PDF_LINES = [
    "Commissioning basics",
    "The commissioning cycle has four stages.",
    "Analyse, plan, do and review.",
]


def make_docx() -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Guide to procurement", level=0)  # style "Title"
    document.add_heading("Stages of procurement", level=1)
    document.add_paragraph("Procurement follows a cycle.")
    document.add_paragraph("Identify the need", style="List Bullet")
    document.add_paragraph("Select a supplier", style="List Number")
    document.add_heading("Contract details", level=2)
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "Contract length"
    table.rows[0].cells[1].text = "Three years"
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


HTML_PAGE = """<!DOCTYPE html>
<html><head><title>Joint commissioning</title>
<style>body { color: red }</style><script>alert("x")</script></head>
<body>
<header><nav><a href="/">Home</a> | <a href="/about">About us</a></nav></header>
<h1>Joint commissioning</h1>
<p>Local authorities and the&nbsp;NHS   commission <b>together</b>.<br>Second line.</p>
<h2>Who takes part</h2>
<ul><li>Local authorities</li><li>Clinical commissioning groups</li></ul>
<p>Shown as text: &lt;script&gt;alert(1)&lt;/script&gt;</p>
<table><tr><td>Budget</td><td>Pooled</td></tr></table>
<form><input name="q"><button>Search the site</button></form>
<footer>Copyright notice</footer>
</body></html>
"""

MARKDOWN = """# Markdown guide

Some *intro* text
spread over two lines.

## Steps

* first step
+ second step
  continued here
1. third step

Setext heading
--------------

```
# not a heading
```
"""


def write(folder: Path, rel: str, data: bytes | str) -> Path:
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def texts(report: IngestReport) -> dict[str, str]:
    return {doc.info.path: doc.text for doc in report.documents}


def reasons(report: IngestReport) -> dict[str, str]:
    return {skip.path: skip.reason for skip in report.skipped}


def assert_normalised(text: str) -> None:
    """The contract with the chunker."""
    assert text == text.strip()
    assert "\n\n\n" not in text
    assert "\u00a0" not in text
    for line in text.split("\n"):
        assert line == line.strip()
        assert "  " not in line


# ---------------------------------------------------------------------------------------------
# the real corpus


def test_real_corpus_is_read_whole() -> None:
    report = ingest(REAL_CORPUS)
    assert report.skipped == []
    assert len(report.documents) == 5
    by_id = {doc.info.doc_id: doc for doc in report.documents}
    assert set(by_id) == {
        "four-levels",
        "commissioning-levels",
        "nhs-commissioning",
        "guide-to-practice",
        "course-level-1",
    }
    assert [doc.info.path for doc in report.documents] == sorted(
        doc.info.path for doc in report.documents
    )
    course = by_id["course-level-1"].text
    assert by_id["course-level-1"].info.title == (
        "Level 1 commissioning course (for field representatives)"
    )
    assert by_id["four-levels"].info.status == "historical"
    assert by_id["nhs-commissioning"].info.era == "2013-2016"
    lines = course.split("\n")
    for heading in (
        "## Why is this important to me?",
        "## What is the commissioning cycle?",
        "## What is Health and Care commissioning?",
        "## Did you know?",
    ):
        assert heading in lines
    assert any(line.startswith("- Analysing/assessing – finding out") for line in lines)
    assert "The cycle can be broken down into four separate stages:" in lines
    # the long first line is a paragraph, not a 60-word title
    assert lines[0].startswith("Level 1 commissioning course is designed for field")
    levels = by_id["commissioning-levels"].text.split("\n")
    assert levels[0] == "# Commissioning levels"
    assert "## Levels of responsibility" in levels
    assert "## National level commissioning." in levels
    assert "## What has changed?" in by_id["nhs-commissioning"].text.split("\n")
    four = by_id["four-levels"].text.split("\n")
    assert any(line.startswith("Individual level - Commissioning at this level") for line in four)
    for doc in report.documents:
        assert_normalised(doc.text)
        assert len(doc.sha256) == 64


def test_real_manifest() -> None:
    manifest = load_manifest(REAL_CORPUS)
    assert manifest["nhs-commissioning.txt"].title == "NHS Commissioning"
    assert manifest["nhs-commissioning.txt"].historical


# ---------------------------------------------------------------------------------------------
# each format


def test_every_format_is_normalised(tmp_path: Path) -> None:
    write(tmp_path, "guide.docx", make_docx())
    write(tmp_path, "basics.pdf", make_pdf(PDF_LINES))
    write(tmp_path, "sub/joint.html", HTML_PAGE)
    write(tmp_path, "notes.md", MARKDOWN)
    write(tmp_path, "plain.txt", "Plain title\n\nSection one\n\n• item one\n• item two\n")
    report = ingest(tmp_path)
    assert reasons(report) == {}
    got = texts(report)
    assert list(got) == ["basics.pdf", "guide.docx", "notes.md", "plain.txt", "sub/joint.html"]

    assert got["guide.docx"] == (
        "# Guide to procurement\n\n## Stages of procurement\n\nProcurement follows a cycle.\n\n"
        "- Identify the need\n- Select a supplier\n\n### Contract details\n\n"
        "Contract length\n\nThree years"
    )
    assert got["basics.pdf"] == (
        "# Commissioning basics\n\n"
        "The commissioning cycle has four stages. Analyse, plan, do and review."
    )
    assert got["notes.md"] == (
        "# Markdown guide\n\nSome *intro* text spread over two lines.\n\n## Steps\n\n"
        "- first step\n- second step continued here\n- third step\n\n## Setext heading\n\n"
        "\\# not a heading"  # text that starts like a heading is escaped; chunking unescapes it
    )
    html = got["sub/joint.html"]
    assert html.startswith("# Joint commissioning\n\n")
    assert "Local authorities and the NHS commission together.\nSecond line." in html
    assert "## Who takes part\n\n- Local authorities\n- Clinical commissioning groups" in html
    assert "Shown as text: <script>alert(1)</script>" in html
    assert "Budget\n\nPooled" in html
    for debris in ('alert("x")', "color: red", "Home", "About us", "Search the site", "Copyright"):
        assert debris not in html
    for text in got.values():
        assert_normalised(text)

    titles = {doc.info.path: doc.info for doc in report.documents}
    assert titles["guide.docx"].title == "Guide to procurement"
    assert titles["sub/joint.html"].title == "Joint commissioning"
    assert titles["sub/joint.html"].doc_id == "sub--joint"
    assert titles["plain.txt"].title == "Plain title"
    assert titles["plain.txt"].status == "current"
    assert titles["plain.txt"].era == ""
    assert got["plain.txt"] == "# Plain title\n\n## Section one\n\n- item one\n- item two"


def test_html_title_from_title_tag_when_no_h1(tmp_path: Path) -> None:
    page = "<html><head><title>Page title</title></head><body><p>Body text.</p></body></html>"
    doc = read_document(write(tmp_path, "p.htm", page), "p.htm", None)
    assert doc.text == "# Page title\n\nBody text."
    assert doc.info.title == "Page title"


def test_pdf_without_text_and_encrypted_pdf(tmp_path: Path) -> None:
    from pypdf import PdfWriter

    blank = PdfWriter()
    blank.add_blank_page(200, 200)
    buffer = io.BytesIO()
    blank.write(buffer)
    write(tmp_path, "scan.pdf", buffer.getvalue())

    locked = PdfWriter()
    locked.add_blank_page(200, 200)
    locked.encrypt(user_password="secret", owner_password="owner", algorithm="RC4-128")
    buffer = io.BytesIO()
    locked.write(buffer)
    write(tmp_path, "locked.pdf", buffer.getvalue())
    write(tmp_path, "ok.txt", "Fine\n\nSome text.")

    report = ingest(tmp_path)
    assert reasons(report) == {
        "locked.pdf": "encrypted PDF (password protected); save it unprotected",
        "scan.pdf": "PDF has no extractable text (scanned images?)",
    }
    assert list(texts(report)) == ["ok.txt"]


# ---------------------------------------------------------------------------------------------
# bad files: reported by name, the rest still ingested


def test_bad_files_are_skipped_with_reasons(tmp_path: Path) -> None:
    pdf = make_pdf(PDF_LINES)
    write(tmp_path, "good.txt", "Good document\n\nIt has words.")
    write(tmp_path, "good.pdf", pdf)
    write(tmp_path, "empty.txt", b"")
    write(tmp_path, "blank.txt", "  \n\t\n\u00a0\n")
    write(tmp_path, "binary.txt", b"abc\x00\x01\x02def")
    write(tmp_path, "latin1.txt", "Caf\u00e9 society".encode("latin-1"))
    write(tmp_path, "truncated.pdf", pdf[: len(pdf) // 2])
    write(tmp_path, "corrupt.docx", bytes(range(256)) * 4)
    write(tmp_path, "big.txt", "x" * 2000)
    write(tmp_path, "image.png", b"\x89PNG\r\n\x1a\n")
    write(tmp_path, "noext", "text")
    write(tmp_path, "a/copy1.txt", "Same words\n\nin both files.")
    write(tmp_path, "b/copy2.txt", "Same words\n\nin both files.")
    write(tmp_path, "c/spaced.txt", "Same   words\n\n\n\nin both files.  \n")
    write(tmp_path, ".hidden.txt", "secret")
    write(tmp_path, ".git/config.txt", "secret")
    write(tmp_path, "README.md", "# About this folder")
    write(tmp_path, "sub/README.md", "# A real document\n\nInside a subfolder.")

    seen: list[str] = []
    report = ingest(tmp_path, max_file_bytes=1500, progress=seen.append)

    assert reasons(report) == {
        "b/copy2.txt": "duplicate of a/copy1.txt",
        "big.txt": "2000 bytes, over the limit of 1500 bytes",
        "binary.txt": "binary file, not text (NUL bytes)",
        "blank.txt": "no text (only whitespace)",
        "c/spaced.txt": "duplicate of a/copy1.txt (same text)",
        "corrupt.docx": reasons(report)["corrupt.docx"],
        "empty.txt": "empty file (0 bytes)",
        "image.png": "unsupported file type .png (supported: "
        + ", ".join(SUPPORTED_SUFFIXES)
        + ")",
        "latin1.txt": "not valid UTF-8 (byte 0xe9 at offset 3); save it as UTF-8",
        "noext": reasons(report)["noext"],
        "truncated.pdf": reasons(report)["truncated.pdf"],
    }
    assert reasons(report)["corrupt.docx"].startswith("corrupt .docx (not a valid Word file): ")
    assert reasons(report)["truncated.pdf"].startswith("corrupt or truncated PDF: ")
    assert reasons(report)["noext"].startswith("unsupported file type")
    assert [doc.info.path for doc in report.documents] == [
        "a/copy1.txt",
        "good.pdf",
        "good.txt",
        "sub/README.md",
    ]
    assert [s.path for s in report.skipped] == sorted(s.path for s in report.skipped)
    # hidden files and the folder's own README are not files of the corpus: no progress either
    assert seen == sorted(seen)
    assert ".hidden.txt" not in seen
    assert "README.md" not in seen
    assert len(seen) == len(report.documents) + len(report.skipped)


def test_read_document_raises_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.txt", b"\xef\xbb\xbfok \xff")
    with pytest.raises(UnreadableFile) as caught:
        read_document(path, "bad.txt", None)
    assert caught.value.reason == "not valid UTF-8 (byte 0xff at offset 6); save it as UTF-8"


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "bom.txt", b"\xef\xbb\xbfTitle here\n\nBody text.")
    doc = read_document(path, "bom.txt", None)
    assert doc.text == "# Title here\n\nBody text."
    assert doc.info == DocInfo(doc_id="bom", title="Title here", path="bom.txt")


def test_same_stem_gets_distinct_ids(tmp_path: Path) -> None:
    write(tmp_path, "Notes Été.txt", "First\n\nOne thing.")
    write(tmp_path, "Notes Été.md", "# Second\n\nAnother thing.")
    ids = [doc.info.doc_id for doc in ingest(tmp_path).documents]
    assert ids == ["notes-ete", "notes-ete-txt"]
    assert slugify_path("Guides/NHS Commissioning.txt") == "guides--nhs-commissioning"


def test_title_falls_back_to_first_line_then_stem(tmp_path: Path) -> None:
    long_line = "word " * 60
    doc = read_document(write(tmp_path, "long.txt", long_line), "long.txt", None)
    assert doc.text == long_line.strip()
    assert len(doc.info.title) <= 120
    assert doc.info.title.endswith("…")


# ---------------------------------------------------------------------------------------------
# manifest and folder errors


def test_manifest_entry_is_applied(tmp_path: Path) -> None:
    write(tmp_path, "docs/old.txt", "Some heading\n\nOld arrangements.")
    write(tmp_path, "new.txt", "New title\n\nNew arrangements.")
    manifest = {
        "documents": [
            {
                "id": "old-one",
                "file": "docs/old.txt",
                "title": "The old arrangements",
                "source": "A web page",
                "era": "before 2013",
                "status": "historical",
                "note": "Replaced in 2013.",
            }
        ]
    }
    write(tmp_path, "manifest.json", json.dumps(manifest))
    report = ingest(tmp_path)
    assert reasons(report) == {}
    info = {doc.info.path: doc.info for doc in report.documents}
    assert info["docs/old.txt"] == DocInfo(
        doc_id="old-one",
        title="The old arrangements",
        path="docs/old.txt",
        source="A web page",
        era="before 2013",
        status="historical",
        note="Replaced in 2013.",
    )
    assert info["new.txt"] == DocInfo(doc_id="new", title="New title", path="new.txt")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"documents": [', "is not valid JSON"),
        ("[]", '"documents" list'),
        ('{"documents": [{"file": "a.txt", "title": "A"}]}', 'has no "id"'),
        ('{"documents": [{"id": "a", "title": "A"}]}', 'has no "file"'),
        ('{"documents": [{"id": "a", "file": "a.txt"}]}', 'has no "title"'),
        (
            '{"documents": [{"id": "a", "file": "a.txt", "title": "A", "status": "old"}]}',
            '"status" must be "current" or "historical"',
        ),
        ('{"documents": [{"id": "a", "file": "../a.txt", "title": "A"}]}', "inside the corpus"),
    ],
)
def test_malformed_manifest(tmp_path: Path, content: str, problem: str) -> None:
    write(tmp_path, "a.txt", "A\n\ntext")
    write(tmp_path, "manifest.json", content)
    with pytest.raises(CorpusError, match="manifest") as caught:
        ingest(tmp_path)
    assert problem in str(caught.value)
    assert str(tmp_path / "manifest.json") in str(caught.value)


def test_no_manifest_means_no_entries(tmp_path: Path) -> None:
    assert load_manifest(tmp_path) == {}


def test_missing_corpus_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(CorpusError, match="does not exist") as caught:
        ingest(missing)
    assert str(missing) in str(caught.value)
    a_file = write(tmp_path, "file.txt", "x")
    with pytest.raises(CorpusError, match="not a folder"):
        ingest(a_file)


# ---------------------------------------------------------------------------------------------
# the plain-text heuristics


def test_plain_text_headings_lists_and_paragraphs() -> None:
    text = (
        "A Title Line\n"
        "\n"
        "Why is this important to me?\n"
        "\n"
        "  \u2022 First point.\n"
        "  * Second point that wraps\n"
        "    onto the next line.\n"
        "1. Numbered point\n"
        "2) Another numbered point\n"
        "\n"
        "National level commissioning.\n"
        "\n"
        "Individual level - Commissioning at this level may be done by the individual, a carer.\n"
        "\n"
        "Click here to inform us.\n"
        "\n"
        "Continually evaluate services to:\n"
        "\n"
        "Short line\n"
        "followed by its sentence.\n"
        "\n"
        "Source: somewhere\n"
        "\n"
        "Real heading\n"
        "\n"
        "Text\u00a0with   several extra spaces inside.   \n"
        "\n"
        "\n"
        "\u2022\n"
        "Bullet on its own line\n"
        "\n"
        "Trailing words"
    )
    assert normalise_plain_text(text) == (
        "# A Title Line\n\n"
        "## Why is this important to me?\n\n"
        "- First point.\n"
        "- Second point that wraps onto the next line.\n"
        "- Numbered point\n"
        "- Another numbered point\n\n"
        "## National level commissioning.\n\n"
        "Individual level - Commissioning at this level may be done by the individual, a carer.\n\n"
        "Click here to inform us.\n\n"
        "Continually evaluate services to:\n\n"
        "Short line followed by its sentence.\n\n"
        "Source: somewhere\n\n"
        "## Real heading\n\n"
        "Text with several extra spaces inside.\n\n"
        "- Bullet on its own line\n\n"
        "Trailing words"
    )


def test_plain_text_single_line_is_a_paragraph() -> None:
    assert normalise_plain_text("Just one line") == "Just one line"
    assert normalise_plain_text(" \n\t\n") == ""


def test_markdown_rules() -> None:
    assert normalise_markdown("Title\n=====\n\ntext\n\n---\n\n### Deep ###\n\n> quoted\n") == (
        "# Title\n\ntext\n\n### Deep\n\nquoted"
    )


# ---------------------------------------------------------------------------------------------
# pages from documentation generators (Sphinx, MkDocs, DocBook)

SPHINX_PAGE = """<!DOCTYPE html>
<html><head><title>Sorting HOW TO &#8212; Python 3.11.2 documentation</title></head>
<body>
<div class="related" role="navigation"><ul><li><a href="index.html">Python HOWTOs</a></li></ul>
</div>
<div class="document"><div class="body" role="main">
<section id="sorting-how-to">
<h1>Sorting HOW TO<a class="headerlink" href="#sorting-how-to" title="Permalink">¶</a></h1>
<p>Python lists have a built-in <code><span class="pre">list.sort()</span></code> method.</p>
<section id="key-functions">
<h2>Key Functions<a class="headerlink" href="#key-functions">¶</a></h2>
<p>Both take a key parameter:</p>
<div class="highlight"><pre># sort the students by age, youngest first
sorted(students, key=lambda student: student.age)</pre></div>
</section></section></div>
<div class="sphinxsidebar" role="navigation"><h3>Table of Contents</h3>
<ul><li><a href="#">Sorting HOW TO</a></li></ul></div>
</div>
<div class="footer">&copy; Copyright 2001-2023, Python Software Foundation.</div>
</body></html>
"""


def test_a_documentation_generator_page_is_read_from_its_main_content(tmp_path: Path) -> None:
    from assistant.chunking import chunk_document

    doc = read_document(write(tmp_path, "sorting.html", SPHINX_PAGE), "sorting.html", None)
    assert doc.info.title == "Sorting HOW TO"  # its own heading, not "… — Python documentation"
    assert "¶" not in doc.text
    assert "## Key Functions\n" in doc.text
    for furniture in ("Table of Contents", "Copyright", "Python HOWTOs"):
        assert furniture not in doc.text
    chunks = chunk_document(doc)
    assert [c.section for c in chunks] == ["", "Key Functions"]
    code = chunks[1].text
    assert "# sort the students by age" in code  # a comment in code is text, not a heading
    assert chunks[1].section == "Key Functions"


def test_a_title_without_a_heading_loses_the_site_name(tmp_path: Path) -> None:
    page = "<html><head><title>Joint working | Council intranet</title></head><body><p>Text of "
    page += "the page.</p></body></html>"
    doc = read_document(write(tmp_path, "p.html", page), "p.html", None)
    assert doc.info.title == "Joint working"
